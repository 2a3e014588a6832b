//! What operations teams see: liveness, readiness and metrics on each process's operations
//! port, and NATS service discovery.

use std::time::Duration;

use futures::StreamExt;
use pb_system_tests::World;
use pb_testkit::{Process, Stack, http_get as get};
use serde_json::Value;

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
    driver.logout(&logged).await.unwrap();
    let (_, metrics) = get(&groups, "/metrics").await;
    assert!(
        metrics.contains("pb_active_destinations{kind=\"channel\"} 0"),
        "{metrics}"
    );

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
    let client = stack.nats.client().await;
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
