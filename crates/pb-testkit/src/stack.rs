use crate::{NatsServer, Process};

/// The whole system as real processes: the simulated CTI, and `replicas` of each service.
#[derive(Debug)]
pub struct Stack {
    pub nats: NatsServer,
    pub processes: Vec<(String, Process)>,
    env: Vec<(&'static str, String)>,
}

/// The services of the system, in start order.
pub const SERVICES: [&str; 3] = ["pb-control", "pb-session", "pb-channel-group"];

impl Stack {
    /// Start nats-server, the simulator and `replicas` of every service; `env` is added to
    /// every process's environment.
    pub async fn start(replicas: usize, env: &[(&'static str, &str)]) -> Self {
        let nats = NatsServer::start();
        let mut stack = Self {
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            nats,
            processes: Vec::new(),
        };
        stack.spawn("pb-cti-sim", "pb-cti-sim").await;
        for service in SERVICES {
            for i in 0..replicas {
                stack.spawn(service, &format!("{service}-{i}")).await;
            }
        }
        stack
    }

    /// The environment of a process of this stack.
    pub fn env(&self, instance: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("NATS_URL", self.nats.url()),
            ("PB_INSTANCE", instance.to_owned()),
            ("PB_LINK_POLL_MS", "500".to_owned()),
            ("PB_DRAIN_GRACE_MS", "100".to_owned()),
            ("SIM_AGENTS", "300".to_owned()),
        ];
        for (k, v) in &self.env {
            env.retain(|(key, _)| key != k);
            env.push((k, v.clone()));
        }
        env
    }

    /// Start one more process (`binary`, named `instance`) and wait until it is ready.
    pub async fn spawn(&mut self, binary: &str, instance: &str) {
        let process = Process::spawn(binary, &self.env(instance)).ready().await;
        self.processes.push((instance.to_owned(), process));
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
