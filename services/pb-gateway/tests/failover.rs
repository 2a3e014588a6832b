//! One link per processor, and a secured link (contract §8.1, §8.9): two gateway replicas
//! of which exactly one connects, the other taking over when it dies; TLS with the
//! bridge's CA and a client certificate.

mod common;

use std::time::{Duration, Instant};

use pb_bridge::link::{TcpOptions, tls};
use pb_protocol::Subjects;
use pb_sim_admin::SetDelay;
use pb_testkit::{Certificates, Stack, TempDir, sample};
use serde_json::json;

use common::{WAIT, World, control, listen};

#[tokio::test]
async fn a_standby_takes_the_link_over_within_seconds_of_the_active_ones_death() {
    let lease = [("PB_GATEWAY_LEASE_MS", "1500".to_owned())];
    let link = listen(TcpOptions::new(Subjects::default(), control())).await;
    let mut stack = Stack::start(1, &[]).await;
    let addr = link.local_addr().to_string();
    stack.gateway("gw-0", &addr, &lease).await;
    link.connected(WAIT).await.unwrap();
    stack.gateway("gw-1", &addr, &lease).await;
    stack
        .process("gw-1")
        .wait_for_log("standing by", WAIT)
        .await;
    // The standby never connects while the active one lives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((link.accepted(), link.most_open()), (1, 1));
    let m = stack.process("gw-1").metrics().await;
    assert_eq!(sample(&m, "pb_gateway_active"), 0.0, "{m}");
    // Standing by is a healthy state: ready (readiness is "link up" for the active one).
    let (status, _) = pb_testkit::http_get(&stack.process("gw-1").ops_addr(), "/readyz").await;
    assert_eq!(status, 200, "a standby is ready");
    // Service discovery lists the subscription to responses and events where it is: with
    // the active one.
    let client = stack.nats.client().await;
    assert_eq!(
        listed(&client, "gw-0").await,
        ["responses-and-events *.evt.>"]
    );
    assert!(listed(&client, "gw-1").await.is_empty());

    let driver = common::driver(&link);
    let logged = driver.login("1001", "pw-1001", "s-1001").await.unwrap();

    // The active one dies without a word: the standby takes over within a few seconds.
    stack.process("gw-0").signal("KILL");
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(10);
    while link.accepted() < 2 {
        assert!(Instant::now() < deadline, "no take-over within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(5), "took over after {took:?}");
    link.connected(WAIT).await.unwrap();
    assert_eq!(
        link.most_open(),
        1,
        "the two replicas were never connected at once"
    );
    // The sessions lived on.
    driver
        .ok(
            "channel.request.notready",
            &logged.channels[0].target,
            json!({"reasonCode": "x"}),
        )
        .await
        .unwrap();
    let (status, _) = pb_testkit::http_get(&stack.process("gw-1").ops_addr(), "/readyz").await;
    assert_eq!(status, 200, "the active replica is ready");
    assert_eq!(
        listed(&client, "gw-1").await,
        ["responses-and-events *.evt.>"]
    );
}

/// The endpoints (name and subject) that the gateway replica `instance` lists in its
/// `$SRV.INFO`.
async fn listed(client: &async_nats::Client, instance: &str) -> Vec<String> {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("$SRV.INFO.pb-gateway", inbox, "".into())
        .await
        .unwrap();
    while let Ok(Some(answer)) = tokio::time::timeout(WAIT, answers.next()).await {
        let info: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        let replica = info["metadata"]["instance"].as_str().unwrap_or_default();
        if replica.starts_with(&format!("{instance}-")) {
            return info["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["name"].as_str().unwrap(),
                        e["subject"].as_str().unwrap()
                    )
                })
                .collect();
        }
    }
    panic!("no $SRV.INFO from {instance}");
}

#[tokio::test]
async fn the_link_is_tls_with_the_bridges_ca_and_a_client_certificate() {
    let dir = TempDir::new("gw-tls");
    let certs = Certificates::make(dir.path());
    let mut options = TcpOptions::new(Subjects::default(), control());
    options.tls = Some(
        tls::server_config(&certs.server_cert, &certs.server_key, Some(&certs.ca))
            .expect("a server TLS configuration"),
    );
    let secured = listen(options.clone()).await;
    let path = |p: &std::path::Path| p.display().to_string();
    let env = [
        ("PB_BRIDGE_TLS_CA", path(&certs.ca)),
        ("PB_BRIDGE_TLS_CERT", path(&certs.client_cert)),
        ("PB_BRIDGE_TLS_KEY", path(&certs.client_key)),
    ];
    let mut w = World::start_with(1, &[], secured, &env).await;
    let logged = w.driver.login("1001", "pw-1001", "s-1001").await.unwrap();
    w.driver.logout(&logged).await.unwrap();

    // A gateway without the client certificate is refused by the bridge; one that does not
    // trust the bridge's CA refuses the bridge. Neither gets a link. (One at a time, each
    // stopped gracefully so that it hands the processor's lease back.)
    w.stack.process("gw-0").signal("TERM");
    w.stack.process("gw-0").wait_exit(WAIT).await;
    let other = TempDir::new("gw-tls-other");
    let stranger = Certificates::make(other.path());
    for (name, env) in [
        ("gw-nocert", vec![("PB_BRIDGE_TLS_CA", path(&certs.ca))]),
        ("gw-wrongca", env_with_ca(&env, path(&stranger.ca))),
    ] {
        let refused_by_us = name == "gw-wrongca";
        let refusing = listen(options.clone()).await;
        w.stack
            .gateway(name, &refusing.local_addr().to_string(), &env)
            .await;
        w.stack
            .process(name)
            .wait_for_log("connecting to the bridge", WAIT)
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            refusing.connected(Duration::from_millis(10)).await.is_err(),
            "{name} got a link"
        );
        // It keeps trying, with back-off, and never reads a frame from the bridge.
        assert!(refusing.accepted() >= 2, "{name} gave up");
        let m = w.stack.process(name).metrics().await;
        let read: f64 = m
            .lines()
            .filter(|l| l.starts_with("pb_gateway_frames_received_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        assert_eq!(read, 0.0, "{name}: {m}");
        if refused_by_us {
            // The gateway itself refuses a bridge it does not trust, at the handshake.
            assert!(
                sample(&m, r#"pb_gateway_connect_failures_total{reason="tls"}"#) >= 2.0,
                "{m}"
            );
            assert_eq!(sample(&m, "pb_gateway_connects_total"), 0.0, "{m}");
        }
        w.stack.process(name).signal("TERM");
        w.stack.process(name).wait_exit(WAIT).await;
    }
}

fn env_with_ca(env: &[(&'static str, String)], ca: String) -> Vec<(&'static str, String)> {
    env.iter()
        .map(|(k, v)| {
            (
                *k,
                if *k == "PB_BRIDGE_TLS_CA" {
                    ca.clone()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn a_stopping_gateway_answers_what_is_in_flight_then_hands_the_link_over() {
    let link = listen(TcpOptions::new(Subjects::default(), control())).await;
    let mut stack = Stack::start(1, &[]).await;
    let addr = link.local_addr().to_string();
    stack.gateway("gw-0", &addr, &[]).await;
    link.connected(WAIT).await.unwrap();
    stack.gateway("gw-1", &addr, &[]).await;
    stack
        .process("gw-1")
        .wait_for_log("standing by", WAIT)
        .await;
    let nats = pb_testkit::Bridge::new(stack.nats.client().await);
    nats.admin(&SetDelay { ms: 1500 })
        .await
        .expect("the simulator acts");

    // A session's creation calls the CTI, now slow; the active gateway is told to stop
    // meanwhile.
    let driver = common::driver(&link);
    let create = tokio::spawn(async move {
        driver
            .create_session("1001", "pw-1001", "s", "s-1001")
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.process("gw-0").signal("TERM");
    create
        .await
        .unwrap()
        .expect("the command in flight is answered before the link closes");
    stack.process("gw-0").wait_exit(WAIT).await;
    let stopped = Instant::now();

    // It gave the lease back: the standby connects at its next try, well before the lease
    // could have expired (3 s).
    while link.accepted() < 2 {
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "no hand-over before the lease's expiry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    link.connected(WAIT).await.unwrap();
    assert_eq!(link.most_open(), 1);
    assert!(
        stack.process("gw-0").logs().contains("shutdown"),
        "{}",
        stack.process("gw-0").logs()
    );
}
