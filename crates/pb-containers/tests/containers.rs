//! The whole system in containers (issue 14), on this machine's Docker Engine with images
//! built offline (`scripts/containers`): NATS with JetStream, the simulated CTI, two
//! replicas of each service and of the gateway, the stand-in for Jaeger; each container a
//! host of its own on the stack's network.
//!
//! * a login, a call answered and completed, and a logout, each driven by the bridge
//!   emulator from a container of its own over TCP through the gateway, and the login's
//!   trace collected across the containers;
//! * a session replica's container killed and a channel-group replica's cut off its
//!   network and reconnected, during a login storm;
//! * on a 3-node JetStream cluster of containers, the meta leader's node killed during a
//!   login storm.
//!
//! Each test brings the stack up and takes it down, checking that nothing is left behind.
//! One stack at a time runs ([`Containers::up`] waits for the previous one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pb_containers::storm::{after, storm_under};
use pb_containers::{Containers, Nats, nats_service};
use serde_json::Value;

/// Agents in each storm.
const AGENTS: usize = 240;

/// The processes a session's creation runs through, each in its own container.
const CREATE_SESSION: [&str; 4] = ["pb-gateway", "pb-control", "pb-session", "pb-cti-sim"];

/// The trace of the gateway's command `message`, once its spans from every one of
/// `services` have reached the stand-in for Jaeger (its query API, on 127.0.0.1:16686).
async fn trace_of(message: &str, services: &[&str]) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(10),
            pb_testkit::http_get("127.0.0.1:16686", "/api/traces?service=pb-gateway"),
        )
        .await
        .expect("the trace query API answers within 10 s");
        assert_eq!(status, 200, "{body}");
        let traces: Value = serde_json::from_str(&body).expect("Jaeger's JSON");
        let found = traces["data"].as_array().into_iter().flatten().find(|t| {
            t["spans"].as_array().into_iter().flatten().any(|s| {
                s["operationName"] == "gateway"
                    && s["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|tag| tag["key"] == "pb.message" && tag["value"] == message)
            })
        });
        if let Some(trace) = found
            && services
                .iter()
                .all(|s| services_of(trace).values().any(|name| name == s))
        {
            return trace.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no complete trace of {message} within 30 s: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A trace's processes: id -> service name.
fn services_of(trace: &Value) -> BTreeMap<String, String> {
    trace["processes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, p)| {
            (
                id.clone(),
                p["serviceName"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The host a trace's process ran on (its `host.name`).
fn host_of(process: &Value) -> String {
    process["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["key"] == "host.name")
        .and_then(|t| t["value"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_every_container_a_login_a_call_and_a_logout_and_the_login_in_one_trace() {
    let stack = Containers::up(Nats::Single);

    // With a bridge listening, the gateway holding the link is healthy too: every health
    // check green.
    let watch = stack.bridge_in_background(&["watch", "--for-ms", "20000"]);
    let started = Instant::now();
    loop {
        let health = stack.health();
        if health.iter().all(|(_, status)| status == "healthy") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not every container healthy with a bridge linked: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(stack.finish(&watch), 0, "the bridge's watch failed");

    let out = stack.bridge(&["login", "1001"]);
    assert!(
        out.contains("agent 1001 logged in: session s-1001, channel group s-1001.g1"),
        "{out}"
    );
    let phone = "s-1001.g1.c1";
    assert!(out.contains(phone), "{out}");

    // A customer calls; the agent takes the call, answers it, hangs up and completes it.
    let offered = stack.bridge(&["sim", "offer", "--type", "TELEPHONY", "--agent", "1001"]);
    let offered: Value = serde_json::from_str(&offered).expect("the offer's JSON");
    let name = offered["name"]
        .as_str()
        .expect("the call's name")
        .to_owned();
    let taken = stack.bridge(&["interaction", "take", phone, &name, "--id", "call-1"]);
    let call = format!("{phone}.call-1");
    assert!(
        taken.contains(&format!("interaction {call} (CTI {name}): ALERTING")),
        "{taken}"
    );
    let leg = taken
        .lines()
        .find_map(|l| l.strip_prefix("  conversation "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no conversation in {taken}"))
        .to_owned();
    for verb in ["answer", "release"] {
        let out = stack.bridge(&["conversation", verb, &leg]);
        assert!(
            out.contains(&format!("conversation.request.{verb}")),
            "{out}"
        );
    }
    let out = stack.bridge(&["interaction", "complete", &call, "--disposition", "sale"]);
    assert!(out.contains("interaction.request.complete"), "{out}");
    let out = stack.bridge(&["logout", "s-1001"]);
    assert!(
        out.contains("disposed: s-1001.g1.c1, s-1001.g1.c2, s-1001.g1.c3, s-1001.g1, s-1001"),
        "{out}"
    );

    // The login's session creation: one trace, rooted at the gateway, through the control,
    // a session replica and the CTI, each span from a container of its service.
    let trace = trace_of("cti.request.createsession", &CREATE_SESSION).await;
    let processes = services_of(&trace);
    let mut hosts = BTreeSet::new();
    for (id, service) in &processes {
        let host = host_of(&trace["processes"][id]);
        let compose_service = match service.as_str() {
            "pb-cti-sim" => "cti-sim",
            other => other.trim_start_matches("pb-"),
        };
        let containers: Vec<String> = stack
            .containers(compose_service)
            .iter()
            .map(|c| stack.hostname(c))
            .collect();
        assert!(
            containers.contains(&host),
            "{service}'s spans name host {host:?}, not one of its containers {containers:?}"
        );
        hosts.insert(host);
    }
    assert!(
        hosts.len() >= CREATE_SESSION.len(),
        "the trace crossed only {hosts:?}"
    );
    let roots: Vec<&Value> = trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["references"].as_array().is_none_or(Vec::is_empty))
        .collect();
    assert_eq!(roots.len(), 1, "one root: {roots:#?}");
    assert_eq!(roots[0]["operationName"], "gateway");

    stack.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_and_one_cut_off_its_network_during_a_storm_lose_nothing_acknowledged() {
    let stack = Containers::up(Nats::Single);
    let done = AtomicUsize::new(0);
    let killed = stack.containers("session")[0].clone();
    let cut = stack.containers("channel-group")[0].clone();
    let faults = async {
        after(&done, AGENTS / 4).await;
        stack.kill(&killed);
        after(&done, AGENTS / 2).await;
        stack.disconnect(&cut);
        tokio::time::sleep(Duration::from_secs(5)).await;
        stack.connect(&cut);
        eprintln!(
            "killed session {killed} at {}, cut channel-group {cut} off for 5 s",
            AGENTS / 4
        );
    };
    let logged = storm_under(&stack, AGENTS, &done, faults).await;
    assert_eq!(logged.len(), AGENTS);
    assert!(done.load(Ordering::Relaxed) >= AGENTS);
    stack.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_cluster_of_containers_losing_the_meta_leader_during_a_storm_loses_nothing_acknowledged()
 {
    let stack = Containers::up(Nats::Cluster);
    // Every bucket keeps three copies (as the monitoring port lists the streams).
    let (status, body) =
        pb_testkit::http_get("127.0.0.1:8222", "/jsz?streams=true&config=true").await;
    assert_eq!(status, 200, "{body}");
    let jsz: Value = serde_json::from_str(&body).expect("/jsz's JSON");
    let copies: BTreeMap<String, u64> = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .map(|s| {
            let name = s["name"].as_str().unwrap_or_default().to_owned();
            (
                name,
                s["config"]["num_replicas"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    for bucket in [
        "pb_replies",
        "pb_sessions",
        "pb_channels",
        "pb_owners",
        "pb_gateway",
    ] {
        assert_eq!(
            copies.get(&format!("KV_{bucket}")),
            Some(&3),
            "{bucket}: {copies:?}"
        );
    }

    let leader = stack.meta_leader().await;
    let node = stack.containers(nats_service(&leader))[0].clone();
    let done = AtomicUsize::new(0);
    let fault = async {
        after(&done, AGENTS / 3).await;
        stack.kill(&node);
        eprintln!("killed the meta leader {leader} ({node}) at {}", AGENTS / 3);
    };
    let logged = storm_under(&stack, AGENTS, &done, fault).await;
    assert_eq!(logged.len(), AGENTS);

    // The survivors have elected a leader among themselves.
    let started = Instant::now();
    let mut elected = stack.meta_leader().await;
    while elected == leader && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        elected = stack.meta_leader().await;
    }
    assert_ne!(elected, leader, "no new meta leader within 20 s");
    stack.down();
}
