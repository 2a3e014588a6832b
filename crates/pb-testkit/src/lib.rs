//! Test support, shared by every test suite of the workspace:
//!
//! * [`NatsServer`]: a real `nats-server` (JetStream on, its own data folder and port),
//!   stopped when dropped; [`start_cluster`] makes a JetStream cluster of them;
//! * [`Process`]: a service binary of this workspace run as a real process, its standard
//!   error captured so tests can read the logs, killed when dropped;
//! * [`Bridge`]: the bridge side: send commands (well-formed or not) and watch events;
//! * [`OtlpReceiver`]: a real OTLP/HTTP trace receiver, decoding what processes export;
//! * [`Stack`]: the whole system (simulator and every service, with replicas) as processes,
//!   and gateways pointed at a test's bridge listener;
//! * [`Certificates`]: a fresh CA with server and client certificates;
//! * [`http_get`], [`sample`]: an operations port's answers and metrics;
//! * [`ledger`]: the bridge's view of a fault run and the contract's invariants over it;
//! * [`Proxy`]: a TCP proxy to cut one process off a server and let it back.

mod bridge;
mod bucket;
mod certs;
mod cluster;
pub mod ledger;
mod nats;
mod ops;
mod otlp;
mod process;
mod proxy;
mod stack;

pub use bridge::{Bridge, EventStream, RawEvent, Seen, Tap, announced_once, count};
pub use bucket::fill_bucket;
pub use certs::Certificates;
pub use cluster::{leader_named_by, meta_leader, start_cluster};
pub use nats::{NatsServer, Passwords};
pub use ops::{http_get, sample, try_http_get};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use process::{Process, bin_path, cpu_seconds};
pub use proxy::Proxy;
pub use stack::{SERVICES, Stack};

use std::path::PathBuf;

/// The workspace's root folder.
pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A fresh folder under the system's temporary folder, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("pb-{label}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
