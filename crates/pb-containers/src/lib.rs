//! The whole system in containers: a handle on the docker-compose stack that
//! `scripts/containers` builds offline and starts, for tests that run the system across
//! real hosts (each container has its own address) and break it there: a container killed,
//! cut off its network and reconnected, a NATS node lost.
//!
//! * [`Containers`]: the running stack (one at a time per machine: its ports are fixed);
//!   taken down, and checked to leave nothing behind, by [`Containers::down`] (or on drop).
//! * [`Containers::bridge`]: the bridge emulator in a container of its own, playing the real
//!   Processor Bridge over TCP through the gateway.
//! * [`Containers::driver`]: a bridge-side client on the host, over the published NATS port,
//!   whose responses and the events a [`pb_testkit::ledger::Ledger`] records.
//!
//! * [`storm::storm_under`]: a login storm from the host under a fault, and the invariants
//!   checked over it.
//!
//! Without a Docker Engine every entry point fails with what is missing and how to get it
//! (`scripts/containers` says it).

pub mod storm;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pb_bridge::flow::Driver;
use pb_protocol::{Subjects, Target};
use pb_testkit::ledger::bridge_inbox;

/// One stack at a time: its ports (4222, 16686, ...) and names are fixed.
static ONE_STACK: Mutex<()> = Mutex::new(());

/// How NATS runs in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nats {
    /// One server (docker-compose.yml as it is).
    Single,
    /// A 3-node JetStream cluster, buckets with 3 copies (deploy/compose/cluster.yml).
    Cluster,
}

impl Nats {
    /// Node `i` (from 0) publishes clients on 127.0.0.1:4222+i, monitoring on 8222+i.
    fn nodes(self) -> u16 {
        match self {
            Nats::Single => 1,
            Nats::Cluster => 3,
        }
    }

    /// The client URLs published on the host.
    fn urls(self) -> Vec<String> {
        (0..self.nodes())
            .map(|i| format!("nats://127.0.0.1:{}", 4222 + i))
            .collect()
    }

    /// Each node's monitoring address on the host.
    fn monitors(self) -> Vec<String> {
        (0..self.nodes())
            .map(|i| format!("127.0.0.1:{}", 8222 + i))
            .collect()
    }
}

/// The compose service of NATS node `name` (`nats-1` is the service `nats`).
pub fn nats_service(name: &str) -> &str {
    if name == "nats-1" { "nats" } else { name }
}

/// The compose project `scripts/containers` runs.
const PROJECT: &str = "pb-client";

/// The running stack ([module documentation](crate)).
#[derive(Debug)]
pub struct Containers {
    nats: Nats,
    down: bool,
    _one: MutexGuard<'static, ()>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run `program args` in the project's root: its output, whatever its exit status.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("run {program}: {e} (is it installed? scripts/containers says what is needed)")
        })
}

/// The same: its standard output, or a panic naming the command and all it printed.
fn must(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The password of NATS user `user` (`pb-gateway`: `PB_GATEWAY_PASSWORD`) as
/// deploy/compose/nats.env gives it to the stack's NATS.
fn password_of(user: &str) -> String {
    let key = format!("{}_PASSWORD=", user.to_uppercase().replace('-', "_"));
    let env = std::fs::read_to_string(root().join("deploy/compose/nats.env"))
        .expect("read deploy/compose/nats.env");
    env.lines()
        .find_map(|line| line.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in deploy/compose/nats.env"))
        .trim()
        .to_owned()
}

impl Containers {
    /// Build what is missing and start a fresh stack (`scripts/containers down`, then
    /// `up`), waiting until it is healthy.
    pub fn up(nats: Nats) -> Self {
        let one = ONE_STACK.lock().unwrap_or_else(|e| e.into_inner());
        must("scripts/containers", &["down"]);
        let mut args = vec!["up"];
        if nats == Nats::Cluster {
            args.push("--cluster");
        }
        // Its progress goes to the test's output as it happens.
        let status = Command::new("scripts/containers")
            .args(&args)
            .current_dir(root())
            .status()
            .expect("run scripts/containers");
        let stack = Self {
            nats,
            down: false,
            _one: one,
        };
        assert!(
            status.success(),
            "scripts/containers {} failed: above",
            args.join(" ")
        );
        stack
    }

    /// Stop the stack and remove what it made; panics if anything is left behind.
    pub fn down(mut self) {
        self.down = true;
        must("scripts/containers", &["down"]);
    }

    /// docker-compose on the stack's files (`scripts/containers compose ARGS`).
    fn compose(&self, args: &[&str]) -> Output {
        let mut all = vec!["compose"];
        all.extend_from_slice(args);
        run("scripts/containers", &all)
    }

    /// Run the bridge emulator in a container of its own (`compose run --rm --use-aliases
    /// bridge ARGS`): it listens as the Processor Bridge, the gateway holding the link
    /// connects to it, and the command goes over that TCP link. Its standard output; a
    /// panic with everything it printed when it fails.
    pub fn bridge(&self, args: &[&str]) -> String {
        Self::run_bridge(&["--rm"], args)
    }

    /// Start the bridge emulator in the background (`compose run -d --use-aliases bridge
    /// ARGS`): its container's name, for [`Containers::finish`].
    pub fn bridge_in_background(&self, args: &[&str]) -> String {
        Self::run_bridge(&["-d"], args).trim().to_owned()
    }

    fn run_bridge(how: &[&str], args: &[&str]) -> String {
        let mut all = vec!["compose", "run"];
        all.extend_from_slice(how);
        all.extend_from_slice(&["--use-aliases", "bridge"]);
        all.extend_from_slice(args);
        must("scripts/containers", &all)
    }

    /// Wait for container `name` to end and remove it: its exit code.
    pub fn finish(&self, name: &str) -> i32 {
        let code = must("docker", &["wait", name]);
        must("docker", &["rm", name]);
        code.trim().parse().unwrap_or(-1)
    }

    /// Each service container's health (`healthy`, `unhealthy`, `starting`), by name.
    pub fn health(&self) -> Vec<(String, String)> {
        let project = format!("label=com.docker.compose.project={PROJECT}");
        let ids = must(
            "docker",
            &[
                "ps",
                "-q",
                "--filter",
                &project,
                "--filter",
                "label=com.docker.compose.oneoff=False",
            ],
        );
        ids.lines()
            .map(|id| {
                let line = must(
                    "docker",
                    &[
                        "inspect",
                        "--format",
                        "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                        id,
                    ],
                );
                let (name, status) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
                (name.trim_start_matches('/').to_owned(), status.to_owned())
            })
            .collect()
    }

    /// The ids of the running containers of compose service `service`, in a stable order.
    pub fn containers(&self, service: &str) -> Vec<String> {
        let project = format!("label=com.docker.compose.project={PROJECT}");
        let of = format!("label=com.docker.compose.service={service}");
        let ids = must(
            "docker",
            &["ps", "-q", "--filter", &project, "--filter", &of],
        );
        let mut ids: Vec<String> = ids.lines().map(str::to_owned).collect();
        ids.sort();
        ids
    }

    /// The host name of container `id` (what its processes put in their spans' `host.name`).
    pub fn hostname(&self, id: &str) -> String {
        must(
            "docker",
            &["inspect", "--format", "{{.Config.Hostname}}", id],
        )
        .trim()
        .to_owned()
    }

    /// Kill container `id` (SIGKILL), as a lost machine.
    pub fn kill(&self, id: &str) {
        must("docker", &["kill", id]);
    }

    /// Cut container `id` off the stack's network (`docker network disconnect`).
    pub fn disconnect(&self, id: &str) {
        must("docker", &["network", "disconnect", &self.network(), id]);
    }

    /// Put container `id` back on the stack's network (`docker network connect`).
    pub fn connect(&self, id: &str) {
        must("docker", &["network", "connect", &self.network(), id]);
    }

    fn network(&self) -> String {
        format!("{PROJECT}_default")
    }

    /// A client of the stack's NATS from the host, as `user` (a user of the lab's
    /// `auth.conf`, its password from deploy/compose/nats.env), reading replies on `inbox`.
    async fn client(&self, user: &str, inbox: String) -> async_nats::Client {
        let password = password_of(user);
        let servers: Vec<async_nats::ServerAddr> = self
            .nats
            .urls()
            .iter()
            .map(|u| u.parse().expect("a NATS URL"))
            .collect();
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password)
            .custom_inbox_prefix(inbox)
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .unwrap_or_else(|e| panic!("connect to the stack's NATS as {user}: {e}"))
    }

    /// A bridge-side client on the host, retrying for `budget` what goes unanswered (with
    /// the same requestId), its responses on the inbox a ledger watches
    /// ([`pb_testkit::ledger::bridge_inbox`]). It connects as the user `pb-gateway`: it
    /// plays a gateway replica, as far as NATS can tell.
    pub async fn driver(&self, budget: Duration) -> Driver {
        let subjects = Subjects::default();
        let client = self.client("pb-gateway", bridge_inbox(&subjects)).await;
        Driver::new(
            client,
            subjects,
            Target::control("PB1").expect("the control target"),
            Duration::from_secs(8),
        )
        .retrying(budget)
    }

    /// A client for a [`pb_testkit::ledger::Ledger`] (it subscribes only).
    pub async fn observer(&self) -> async_nats::Client {
        let user = "pb-gateway";
        self.client(user, pb_runtime::permissions::inbox_prefix(user))
            .await
    }

    /// The JetStream meta leader's node name, once one is elected (up to 30 s).
    pub async fn meta_leader(&self) -> String {
        for _ in 0..300 {
            for monitor in self.nats.monitors() {
                if let Some(leader) = pb_testkit::leader_named_by(&monitor).await {
                    return leader;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no JetStream meta leader within 30 s");
    }

    /// Everything the stack's containers logged (their last `lines` lines each).
    pub fn logs(&self, lines: usize) -> String {
        let tail = lines.to_string();
        let output = self.compose(&["logs", "--no-color", "--tail", &tail]);
        text(&output.stdout)
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.down {
            // A test that failed: leave nothing behind for the next one.
            let _ = run("scripts/containers", &["down"]);
        }
    }
}
