//! What operations teams see: liveness, readiness and metrics on each process's operations
//! port, and NATS service discovery.

use std::time::Duration;

use futures::StreamExt;
use pb_system_tests::World;
use pb_testkit::{Process, Stack, http_get as get};
use serde_json::Value;

/// `promtool check metrics` on `text`: what it objects to, if anything.
fn promtool_objections(text: &str) -> Option<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs: install it with scripts/ensure-deploy-tools (Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (!out.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn health_metrics_and_discovery() {
    let World {
        mut stack, driver, ..
    } = World::builder().start().await;
    let logged = driver.login("1001", "pw-1001", "s-ops").await.unwrap();

    let control = stack.process("pb-control-0").ops_addr();
    assert_eq!(get(&control, "/livez").await.0, 200);
    assert_eq!(get(&control, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(get(&control, "/nothing").await.0, 404);
    let (_, metrics) = get(&control, "/metrics").await;
    assert!(
        metrics
            .contains("pb_commands_total{name=\"cti.request.createsession\",result=\"SUCCESS\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pb_command_duration_seconds_count{name=\"cti.request.createsession\"} 1")
    );
    assert!(metrics.contains("pb_events_published_total{name=\"cti.serverstatuschanged\"} 1"));
    assert!(metrics.contains("pb_cti_calls_total{op=\"validate\",result=\"ok\"} 1"));

    let groups = stack.process("pb-channel-group-0").ops_addr();
    let (_, metrics) = get(&groups, "/metrics").await;
    assert!(
        metrics.contains("pb_active_destinations{kind=\"channel\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("pb_active_destinations{kind=\"channelgroup\"} 1"));
    assert!(metrics.contains("pb_events_published_total{name=\"channel.ready\"} 3"));

    // While the agent is logged in, its owners list the destinations they subscribed: one
    // subscription for the session, one per kind below it for the channel group and its
    // channels.
    let client = stack.nats.client().await;
    for (service, owned) in [
        ("pb-session", &["session"][..]),
        ("pb-channelgroup", &["channelgroup", "channel"][..]),
    ] {
        let (info, endpoints) = endpoints(&client, service).await;
        for kind in owned {
            let row = [kind.to_string(), format!("pb.{kind}.>"), String::new()];
            assert!(endpoints.contains(&row), "{service}: {info}");
            let listed = info["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == *kind)
                .unwrap();
            assert_eq!(
                listed["metadata"]["subscriptions"], "1",
                "{service}: {info}"
            );
            assert!(
                listed["metadata"]["subscribed"]
                    .as_str()
                    .is_some_and(|how| how.starts_with("one per ")),
                "{service}: {info}"
            );
        }
    }
    driver.logout(&logged).await.unwrap();
    let (_, metrics) = get(&groups, "/metrics").await;
    assert!(
        metrics.contains("pb_active_destinations{kind=\"channel\"} 0"),
        "{metrics}"
    );

    // What every process serves on /metrics is what Prometheus's own checker accepts.
    for (name, process) in &stack.processes {
        let (status, text) = get(&process.ops_addr(), "/metrics").await;
        assert_eq!(status, 200, "{name}");
        if let Some(objections) = promtool_objections(&text) {
            panic!("promtool check metrics refuses {name}'s /metrics: {objections}\n{text}");
        }
    }

    // The containers' health check (`pb-ops probe`) against a real operations port.
    let probe = |url: String| async move {
        tokio::process::Command::new(pb_testkit::bin_path("pb-ops"))
            .args(["probe", &url])
            .output()
            .await
            .unwrap()
    };
    assert!(
        probe(format!("http://{control}/readyz"))
            .await
            .status
            .success()
    );
    let missing = probe(format!("http://{control}/nothing")).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("answered HTTP 404"));

    // NATS service discovery: every process answers $SRV.PING and $SRV.INFO.
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("$SRV.PING", inbox, "".into())
        .await
        .unwrap();
    let mut names = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), answers.next()).await {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        names.push(v["name"].as_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(
        names,
        ["pb-channelgroup", "pb-control", "pb-cti-sim", "pb-session"]
    );
    let info = client
        .request("$SRV.INFO.pb-control", "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["metadata"]["instance"], "pb-control-0");
    let stats = client
        .request("$SRV.STATS.pb-session", "".into())
        .await
        .unwrap();
    assert!(serde_json::from_slice::<Value>(&stats.payload).unwrap()["id"].is_string());

    // INFO lists what each service subscribed (name, subject, queue group); STATS the
    // same. The destinations the agent had are gone with its logout.
    let services: [(&str, &[Row]); 4] = [
        (
            "pb-control",
            &[
                ("commands", "pb.control.PB1.CONTROL", "pb-control"),
                ("cti-link", "pb.cti.evt.link", "pb-control"),
                ("peers", "pb.int.control.peers.PB1", ""),
            ],
        ),
        (
            "pb-session",
            &[
                ("internal", "pb.int.session.>", "pb-session"),
                ("disposed", "pb.int.control.disposed", "pb-session"),
                ("cti-agent-logged-out", "pb.cti.evt.agent.*.logged-out", ""),
                ("cti-link", "pb.cti.evt.link", ""),
                ("node", "pb.node.session.", ""),
            ],
        ),
        (
            "pb-channelgroup",
            &[
                ("internal", "pb.int.channelgroup.>", "pb-channelgroup"),
                ("disposed", "pb.int.control.disposed", "pb-channelgroup"),
                ("cti-agent-events", "pb.cti.evt.agent.*.*", ""),
                ("cti-link", "pb.cti.evt.link", ""),
                ("node", "pb.node.channelgroup.", ""),
            ],
        ),
        (
            "pb-cti-sim",
            &[
                ("cti-calls", "pb.cti.req.>", "pb-cti"),
                ("sim-admin", "pb.sim.>", ""),
            ],
        ),
    ];
    for (service, rows) in services {
        let (info, endpoints) = endpoints(&client, service).await;
        assert_eq!(info["type"], "io.nats.micro.v1.info_response");
        assert_eq!(endpoints, expected(rows), "{service}: {info}");
    }
}

/// `service`'s INFO, and its endpoints sorted as (name, subject, queue group), a replica's
/// node subject cut to its service's prefix (the rest names the replica); checks that its
/// STATS lists the same.
async fn endpoints(client: &async_nats::Client, service: &str) -> (Value, Vec<[String; 3]>) {
    let ask = |verb: &str| {
        let subject = format!("$SRV.{verb}.{service}");
        async move {
            let answer = client.request(subject, "".into()).await.unwrap();
            serde_json::from_slice::<Value>(&answer.payload).unwrap()
        }
    };
    let listed = |answer: &Value| -> Vec<[String; 3]> {
        let mut endpoints: Vec<_> = answer["endpoints"]
            .as_array()
            .unwrap_or_else(|| panic!("no endpoints in {answer}"))
            .iter()
            .map(|e| {
                let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                let mut subject = field("subject");
                if field("name") == "node" {
                    let prefix = format!("pb.node.{}.", service.trim_start_matches("pb-"));
                    assert!(subject.starts_with(&prefix), "{service}: {subject}");
                    subject = prefix;
                }
                [field("name"), subject, field("queue_group")]
            })
            .collect();
        endpoints.sort();
        endpoints
    };
    let info = ask("INFO").await;
    let stats = ask("STATS").await;
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
    assert_eq!(listed(&stats), listed(&info), "{service}: {stats}");
    let endpoints = listed(&info);
    (info, endpoints)
}

/// An endpoint as a test expects it: name, subject, queue group.
type Row = (&'static str, &'static str, &'static str);

fn expected(rows: &[Row]) -> Vec<[String; 3]> {
    let mut rows: Vec<_> = rows
        .iter()
        .map(|(n, s, q)| [n.to_string(), s.to_string(), q.to_string()])
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_draining_replica_is_alive_but_not_ready() {
    let stack = Stack::start(1, &[]).await;
    let mut env = stack.env("pb-control", "draining");
    env.push(("PB_DRAIN_GRACE_MS", "3000".to_owned()));
    let mut control = Process::spawn("pb-control", &env).ready().await;
    let addr = control.ops_addr();
    assert_eq!(get(&addr, "/readyz").await.0, 200);
    control.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get(&addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready: draining\n"));
    assert_eq!(get(&addr, "/livez").await.0, 200);
    assert!(control.wait_exit(Duration::from_secs(10)).await.success());
}
