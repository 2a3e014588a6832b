use crate::nats::Passwords;
use crate::{NatsServer, Process};

/// The whole system as real processes: the simulated CTI, and `replicas` of each service.
#[derive(Debug)]
pub struct Stack {
    pub nats: NatsServer,
    /// The other nodes of a clustered stack ([`Stack::start_clustered`]).
    pub peers: Vec<NatsServer>,
    pub processes: Vec<(String, Process)>,
    env: Vec<(&'static str, String)>,
    /// Set for a secured stack: every process connects as its own NATS user.
    pub passwords: Option<Passwords>,
}

/// The services of the system, in start order.
pub const SERVICES: [&str; 3] = ["pb-control", "pb-session", "pb-channel-group"];

impl Stack {
    /// Start nats-server, the simulator and `replicas` of every service; `env` is added to
    /// every process's environment.
    pub async fn start(replicas: usize, env: &[(&'static str, &str)]) -> Self {
        Self::start_on(NatsServer::start(), None, replicas, env).await
    }

    /// The same on a secured server ([`NatsServer::start_secured`]): each process connects
    /// as its own user, with the permissions of the lab's `auth.conf` (the simulator's
    /// included).
    pub async fn start_secured(tls: bool, replicas: usize, env: &[(&'static str, &str)]) -> Self {
        let (nats, passwords) = NatsServer::start_secured(tls);
        Self::start_on(nats, Some(passwords), replicas, env).await
    }

    /// The same on a JetStream cluster of `nodes` servers ([`crate::start_cluster`]): every
    /// process is given every node's URL, and buckets keep `nodes` copies.
    pub async fn start_clustered(
        nodes: usize,
        replicas: usize,
        env: &[(&'static str, &str)],
    ) -> Self {
        let mut servers = crate::start_cluster(nodes).into_iter();
        let first = servers.next().expect("a cluster of at least one node");
        let copies = nodes.to_string();
        let mut env = env.to_vec();
        env.push(("PB_KV_REPLICAS", &copies));
        let peers: Vec<NatsServer> = servers.collect();
        // JetStream takes requests once the cluster has elected its meta leader.
        crate::meta_leader(&std::iter::once(&first).chain(&peers).collect::<Vec<_>>()).await;
        Self::start_on_with(first, peers, None, replicas, &env).await
    }

    /// The name of the JetStream meta leader among the stack's nodes (once elected).
    pub async fn meta_leader(&self) -> String {
        let nodes: Vec<&NatsServer> = std::iter::once(&self.nats).chain(&self.peers).collect();
        crate::meta_leader(&nodes).await
    }

    /// Kill the NATS node named `name` (SIGKILL), as a lost machine.
    pub fn kill_node(&mut self, name: &str) {
        self.node(name).kill();
    }

    /// Start the NATS node named `name` again (after [`Stack::kill_node`]): same port, same
    /// data, so it rejoins the cluster and catches up.
    pub fn restart_node(&mut self, name: &str) {
        self.node(name).restart();
    }

    fn node(&mut self, name: &str) -> &mut NatsServer {
        std::iter::once(&mut self.nats)
            .chain(self.peers.iter_mut())
            .find(|n| n.name() == Some(name))
            .unwrap_or_else(|| panic!("no NATS node {name}"))
    }

    /// Every node's URL, comma-separated (one for a single server).
    pub fn nats_url(&self) -> String {
        std::iter::once(&self.nats)
            .chain(&self.peers)
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that knows every node (and moves to another when one is lost).
    pub async fn client(&self) -> async_nats::Client {
        let url = self.nats_url();
        async_nats::connect(pb_runtime::connect::servers(&url).as_slice())
            .await
            .expect("connect to the test's NATS")
    }

    async fn start_on(
        nats: NatsServer,
        passwords: Option<Passwords>,
        replicas: usize,
        env: &[(&'static str, &str)],
    ) -> Self {
        Self::start_on_with(nats, Vec::new(), passwords, replicas, env).await
    }

    async fn start_on_with(
        nats: NatsServer,
        peers: Vec<NatsServer>,
        passwords: Option<Passwords>,
        replicas: usize,
        env: &[(&'static str, &str)],
    ) -> Self {
        let mut stack = Self {
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            nats,
            peers,
            processes: Vec::new(),
            passwords,
        };
        stack.spawn("pb-cti-sim", "pb-cti-sim").await;
        for service in SERVICES {
            for i in 0..replicas {
                stack.spawn(service, &format!("{service}-{i}")).await;
            }
        }
        stack
    }

    /// The environment of process `instance` of binary `binary`.
    pub fn env(&self, binary: &str, instance: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("NATS_URL", self.nats_url()),
            ("PB_INSTANCE", instance.to_owned()),
            ("PB_LINK_POLL_MS", "500".to_owned()),
            ("PB_DRAIN_GRACE_MS", "100".to_owned()),
            ("SIM_AGENTS", "300".to_owned()),
        ];
        if let Some(passwords) = &self.passwords {
            env.push(("NATS_USER", binary.to_owned()));
            env.push(("NATS_PASSWORD", passwords.of(binary)));
        }
        if let Some(ca) = self.nats.tls_ca() {
            env.push(("NATS_TLS_CA", ca.display().to_string()));
        }
        for (k, v) in &self.env {
            env.retain(|(key, _)| key != k);
            env.push((k, v.clone()));
        }
        env
    }

    /// Start one more process (`binary`, named `instance`) and wait until it is ready.
    pub async fn spawn(&mut self, binary: &str, instance: &str) {
        self.spawn_with(binary, instance, &[]).await;
    }

    /// The same with `extra` added to (or replacing) the stack's environment.
    pub(crate) async fn spawn_with(
        &mut self,
        binary: &str,
        instance: &str,
        extra: &[(&str, String)],
    ) {
        let mut env: Vec<(&str, String)> = self.env(binary, instance);
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((*k, v.clone()));
        }
        let process = Process::spawn(binary, &env).ready().await;
        self.processes.push((instance.to_owned(), process));
    }

    /// Start one more process whose only way to NATS is a [`crate::Proxy`] to the first
    /// node: cutting the proxy cuts it off.
    pub async fn spawn_behind_proxy(&mut self, binary: &str, instance: &str) -> crate::Proxy {
        let proxy = crate::Proxy::start(self.nats.url().trim_start_matches("nats://")).await;
        let url = format!("nats://{}", proxy.addr());
        self.spawn_with(binary, instance, &[("NATS_URL", url)])
            .await;
        proxy
    }

    /// Start a gateway named `instance` connecting to the bridge at `bridge` (a test's
    /// listener), retrying quickly; `extra` is added to its environment.
    pub async fn gateway(&mut self, instance: &str, bridge: &str, extra: &[(&str, String)]) {
        let mut env = vec![
            ("PB_BRIDGE_ADDR", bridge.to_owned()),
            ("PB_BRIDGE_BACKOFF_MIN_MS", "20".to_owned()),
            ("PB_BRIDGE_BACKOFF_MAX_MS", "200".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        self.spawn_with("pb-gateway", instance, &env).await;
    }

    /// The process named `instance`.
    pub fn process(&mut self, instance: &str) -> &mut Process {
        &mut self
            .processes
            .iter_mut()
            .find(|(name, _)| name == instance)
            .unwrap_or_else(|| panic!("no process {instance}"))
            .1
    }

    /// Everything every process logged.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|(name, p)| format!("==== {name}\n{}", p.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
