//! The system tests' shared set-up: [`World`], the whole system as real processes (the
//! simulated CTI and every service on a real nats-server, from `pb-testkit`'s [`Stack`])
//! with the bridge's side of it, a [`Driver`] and a [`Bridge`].
//!
//! The tests are in `tests/`, one file per concern; each starts its own world (or only a
//! [`Stack`] where it needs no bridge). They run the workspace's binaries: build them first
//! (`cargo build --workspace --bins`; `scripts/test` does).

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::Client;
use pb_bridge::flow::{Driver, LoggedIn};
use pb_protocol::{Subjects, Target};
use pb_testkit::ledger::{Ledger, bridge_inbox};
use pb_testkit::{Bridge, EventStream, Proxy, RawEvent, Stack};
use serde_json::json;

/// A bridge's [`Driver`] on `client` for processor `PB1`, waiting up to `timeout` for each
/// answer and retrying nothing.
pub fn driver(client: Client, timeout: Duration) -> Driver {
    Driver::new(
        client,
        Subjects::default(),
        Target::control("PB1").expect("a valid control target"),
        timeout,
    )
}

/// The bridge emulator's CLI (`pb-bridge`, built beside the services) as a command to run.
pub fn cli() -> tokio::process::Command {
    tokio::process::Command::new(pb_testkit::bin_path("pb-bridge"))
}

/// The whole system as real processes, and a bridge on NATS with the control's status
/// reported (`cti.request.serverstatus` answered).
///
/// Made by [`World::builder`]; what a test opted into is `Some`.
#[derive(Debug)]
pub struct World {
    pub stack: Stack,
    /// The bridge's commands, with the deadline and retries the world was built with.
    pub driver: Driver,
    /// The bridge at the JSON level, and the simulator's control panel and the CTI.
    pub bridge: Bridge,
    /// The proxy between NATS and the replica started with [`Builder::behind_proxy`].
    pub proxy: Option<Proxy>,
    /// Everything the driver was answered and every event, from before the status report
    /// on ([`Builder::ledger`]).
    pub ledger: Option<Ledger>,
    /// Every event from the status report on ([`Builder::events`]).
    pub events: Option<EventStream>,
    /// Events read from [`World::events`] while waiting for another, oldest first, for a
    /// later wait to take.
    pub backlog: VecDeque<RawEvent>,
}

impl World {
    /// One replica of each service on one server, a driver waiting 10 s for each answer
    /// and retrying nothing; see [`Builder`] for the rest.
    pub fn builder() -> Builder {
        Builder {
            replicas: 1,
            nodes: 1,
            tls: None,
            env: Vec::new(),
            timeout: Duration::from_secs(10),
            retrying: None,
            behind_proxy: None,
            ledger: false,
            events: false,
        }
    }

    /// Log `agent` in through the whole chain, password `pw-<agent>`, session `s-<agent>`.
    pub async fn login(&self, agent: &str) -> LoggedIn {
        self.driver
            .login(agent, &format!("pw-{agent}"), &format!("s-{agent}"))
            .await
            .unwrap()
    }

    /// The proxy of [`Builder::behind_proxy`].
    pub fn proxy(&self) -> &Proxy {
        self.proxy
            .as_ref()
            .expect("a world built with .behind_proxy(..)")
    }

    /// The event stream of [`Builder::events`].
    pub fn events(&mut self) -> &mut EventStream {
        self.events.as_mut().expect("a world built with .events()")
    }
}

/// How a [`World`] is started; [`Builder::start`] starts it.
#[derive(Debug, Clone)]
pub struct Builder {
    replicas: usize,
    nodes: usize,
    tls: Option<bool>,
    env: Vec<(&'static str, String)>,
    timeout: Duration,
    retrying: Option<Duration>,
    behind_proxy: Option<(&'static str, &'static str)>,
    ledger: bool,
    events: bool,
}

impl Builder {
    /// `replicas` of every service (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// A JetStream cluster of `nodes` servers instead of one ([`Stack::start_clustered`]).
    pub fn cluster(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// A secured server ([`Stack::start_secured`], over TLS if `tls`): every process, and
    /// the bridge, connect as their own NATS users.
    pub fn secured(mut self, tls: bool) -> Self {
        self.tls = Some(tls);
        self
    }

    /// `env` added to every process's environment (replacing the stack's own values).
    pub fn env(mut self, env: &[(&'static str, &str)]) -> Self {
        self.env
            .extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self
    }

    /// The driver waits up to `timeout` for each answer (default 10 s).
    pub fn driver_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The driver retries as a bridge does during a failover, up to `budget` per step
    /// ([`Driver::retrying`]).
    pub fn retrying(mut self, budget: Duration) -> Self {
        self.retrying = Some(budget);
        self
    }

    /// One more replica of `binary`, named `instance`, whose only way to NATS is a
    /// [`Proxy`] ([`Stack::spawn_behind_proxy`]), started after the stack.
    pub fn behind_proxy(mut self, binary: &'static str, instance: &'static str) -> Self {
        self.behind_proxy = Some((binary, instance));
        self
    }

    /// A [`Ledger`] recording what the bridge is told: the driver gets a connection of its
    /// own with the ledger's inbox prefix ([`bridge_inbox`]); the [`Bridge`] uses another.
    pub fn ledger(mut self) -> Self {
        self.ledger = true;
        self
    }

    /// An [`EventStream`] of every event, opened once the status is reported.
    pub fn events(mut self) -> Self {
        self.events = true;
        self
    }

    /// Start the world: the stack, the replica behind the proxy, the bridge's connections
    /// (and the ledger), the status reported, then the event stream.
    pub async fn start(self) -> World {
        let env: Vec<(&'static str, &str)> =
            self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut stack = match (self.tls, self.nodes) {
            (None, 1) => Stack::start(self.replicas, &env).await,
            (None, nodes) => Stack::start_clustered(nodes, self.replicas, &env).await,
            (Some(tls), 1) => Stack::start_secured(tls, self.replicas, &env).await,
            (Some(_), _) => panic!("no secured cluster: the test kit has none"),
        };
        let proxy = match self.behind_proxy {
            Some((binary, instance)) => Some(stack.spawn_behind_proxy(binary, instance).await),
            None => None,
        };
        let client = match &stack.passwords {
            Some(passwords) => {
                assert!(!self.ledger, "the ledger's inbox is not the bridge user's");
                let user = pb_runtime::permissions::BRIDGE;
                stack.nats.client_as(user, &passwords.of(user)).await
            }
            None => stack.client().await,
        };
        let (ledger, driver_client) = if self.ledger {
            let subjects = Subjects::default();
            let ledger = Ledger::start(&client, &subjects).await;
            let url = stack.nats_url();
            let own = async_nats::ConnectOptions::new()
                .custom_inbox_prefix(bridge_inbox(&subjects))
                .connect(pb_runtime::connect::servers(&url).as_slice())
                .await
                .expect("connect the bridge");
            (Some(ledger), own)
        } else {
            (None, client.clone())
        };
        let mut driver = driver(driver_client, self.timeout);
        if let Some(budget) = self.retrying {
            driver = driver.retrying(budget);
        }
        let bridge = Bridge::new(client);
        driver
            .ok("cti.request.serverstatus", "PB1.CONTROL", json!({}))
            .await
            .unwrap();
        let events = if self.events {
            Some(bridge.events().await)
        } else {
            None
        };
        World {
            stack,
            driver,
            bridge,
            proxy,
            ledger,
            events,
            backlog: VecDeque::new(),
        }
    }
}
