//! What the gateway's tests share: the system as real processes with gateways pointed at a
//! listener playing the Processor Bridge, and the frames as the bridge reads them.

#![allow(dead_code)] // each test file uses its own part of it

use std::time::Duration;

use bytes::Bytes;
use pb_bridge::flow::Driver;
use pb_bridge::link::{TcpLink, TcpOptions};
use pb_protocol::{MessageType, Subjects, Target};
use pb_testkit::{Bridge, Stack};
use serde_json::Value;
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(10);

/// The control destination every test initialises.
pub fn control() -> Target {
    Target::control("PB1").expect("a valid control target")
}

/// A stack, a listening bridge, and a driver sending over the socket.
pub struct World {
    pub stack: Stack,
    pub link: TcpLink,
    /// The bridge's commands over the socket (through the gateway).
    pub driver: Driver,
    /// NATS, for the simulator's control panel and the CTI.
    pub nats: Bridge,
}

impl World {
    /// `replicas` of each service and one gateway `gw-0` connected to a listener that
    /// initialises the control on each connection; `env` to every process.
    pub async fn start(replicas: usize, env: &[(&'static str, &str)]) -> Self {
        let link = listen(TcpOptions::new(Subjects::default(), control())).await;
        Self::start_with(replicas, env, link, &[]).await
    }

    /// The same with a listener of the test's own, and `gateway` added to the gateway's
    /// environment.
    pub async fn start_with(
        replicas: usize,
        env: &[(&'static str, &str)],
        link: TcpLink,
        gateway: &[(&str, String)],
    ) -> Self {
        let mut stack = Stack::start(replicas, env).await;
        stack
            .gateway("gw-0", &link.local_addr().to_string(), gateway)
            .await;
        link.connected(WAIT).await.expect("the gateway connects");
        let nats = Bridge::new(stack.nats.client().await);
        let driver = driver(&link);
        Self {
            stack,
            link,
            driver,
            nats,
        }
    }

    /// The gateway's metrics now.
    pub async fn gateway_metrics(&mut self) -> String {
        self.stack.process("gw-0").metrics().await
    }
}

/// A driver sending over `link`, to the control every test initialises.
pub fn driver(link: &TcpLink) -> Driver {
    Driver::new(link.clone(), Subjects::default(), control(), WAIT)
}

/// A listener on a free local port.
pub async fn listen(options: TcpOptions) -> TcpLink {
    TcpLink::listen("127.0.0.1:0", options)
        .await
        .expect("listen on a free port")
}

/// A frame as the bridge read it.
#[derive(Debug, Clone)]
pub struct Read {
    pub json: Value,
}

impl Read {
    pub fn header(&self, key: &str) -> &str {
        self.json["header"][key].as_str().unwrap_or_default()
    }

    pub fn is_event(&self) -> bool {
        MessageType::parse(self.header("type")) == Some(MessageType::Event)
    }

    pub fn is_response(&self) -> bool {
        MessageType::parse(self.header("type")) == Some(MessageType::Response)
    }

    pub fn name(&self) -> &str {
        self.header("name")
    }

    pub fn target(&self) -> &str {
        self.header("target")
    }
}

/// Every frame a tap reads until none comes for `quiet`.
pub async fn drain(tap: &mut mpsc::UnboundedReceiver<Bytes>, quiet: Duration) -> Vec<Read> {
    let mut seen = Vec::new();
    while let Ok(Some(bytes)) = tokio::time::timeout(quiet, tap.recv()).await {
        let json = serde_json::from_slice(&bytes).expect("every frame the gateway writes is JSON");
        seen.push(Read { json });
    }
    seen
}
