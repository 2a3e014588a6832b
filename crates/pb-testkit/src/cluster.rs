//! A JetStream cluster of real nats-servers on loopback, for the faults a deployment's NATS
//! cluster meets: a node lost, the meta leader included.

use std::time::{Duration, Instant};

use crate::NatsServer;

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `size` nats-servers named `n0`, `n1`, ..., clustered with JetStream (each with its
/// monitoring port, for [`meta_leader`]).
pub fn start_cluster(size: usize) -> Vec<NatsServer> {
    let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
    let all_routes = routes
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let args = [
                "-n".to_owned(),
                format!("n{i}"),
                "--cluster_name".to_owned(),
                "pb".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{route}"),
                "--routes".to_owned(),
                all_routes.clone(),
                // Clients know only the URLs they are given (so a proxy can cut one off).
                "--no_advertise".to_owned(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            NatsServer::start_with(&args).named(&format!("n{i}"))
        })
        .collect()
}

/// The name of the cluster's JetStream meta leader, once one is elected (waits up to 20 s).
pub async fn meta_leader(nodes: &[&NatsServer]) -> String {
    let started = Instant::now();
    loop {
        for node in nodes.iter().filter(|n| n.running()) {
            if let Some(leader) = leader_named_by(&node.monitoring()).await {
                return leader;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no JetStream meta leader elected within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The JetStream meta leader the node monitored at `monitor` names (`/jsz`), if it
/// answers within 2 s and names one.
pub async fn leader_named_by(monitor: &str) -> Option<String> {
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(2), crate::try_http_get(monitor, "/jsz"))
            .await
            .ok()?
            .ok()?;
    let jsz: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
    jsz["meta_cluster"]["leader"]
        .as_str()
        .filter(|leader| !leader.is_empty())
        .map(str::to_owned)
}
