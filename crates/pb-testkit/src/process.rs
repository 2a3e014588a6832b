use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of a binary of this workspace built with the same profile as the running
/// program: a test (`target/<profile>/deps/<test>`) or a binary (`target/<profile>/<bin>`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the program's own path");
    let mut dir = exe.parent().expect("target folder");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target folder");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "binary `{name}` is not built at {}: run `cargo build --workspace --bins` first \
         (scripts/test does)",
        path.display()
    );
    path
}

/// A service binary running as a real process, standard error captured.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Process {
    /// Start binary `name` with `env` added to this process's environment.
    pub fn spawn(name: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(bin_path(name));
        command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !env.iter().any(|(k, _)| *k == "PB_HTTP_ADDR") {
            // Many processes per test machine: an ephemeral operations port each.
            command.env("PB_HTTP_ADDR", "127.0.0.1:0");
        }
        if std::env::var_os("PB_LOG").is_none() && !env.iter().any(|(k, _)| *k == "PB_LOG") {
            command.env("PB_LOG", "debug,async_nats=info");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        let echo = std::env::var_os("PB_TEST_ECHO").is_some();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[{label}] {line}");
                }
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Everything the process wrote to standard error so far.
    pub fn logs(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Wait until the logs contain `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let started = Instant::now();
        while !self.logs().contains(needle) {
            assert!(
                started.elapsed() < timeout,
                "{} did not log {needle:?} within {timeout:?}; its logs:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until the service logged that it is ready.
    pub async fn ready(self) -> Self {
        self.wait_for_log("service ready", Duration::from_secs(30))
            .await;
        self
    }

    /// The operations port's address, as the process logged it.
    pub fn ops_addr(&self) -> String {
        let logs = self.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("operations port"))
            .unwrap_or_else(|| panic!("{} logged no operations port:\n{logs}", self.name));
        let start = line.find("addr=").expect("addr= in the line") + "addr=".len();
        line[start..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned()
    }

    /// Its metrics now (the exposition text of `/metrics`).
    pub async fn metrics(&self) -> String {
        crate::http_get(&self.ops_addr(), "/metrics").await.1
    }

    /// Its resident memory now, in KiB (Linux `/proc`), if it still runs.
    pub fn resident_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Its CPU time so far (user and system), if it still runs.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id())
    }

    /// Send a signal (`TERM`, `KILL`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Wait for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "{} did not exit within {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPU time (user and system) process `pid` has used so far, from Linux `/proc`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count the fields after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    // `/proc` counts in USER_HZ, 100 per second on Linux.
    Some((user + system) / 100.0)
}
