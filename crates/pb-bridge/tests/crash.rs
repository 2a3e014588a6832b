//! Issue 3's crash test: 200 agents log in through the whole chain and change state while
//! one replica of every service is killed with SIGKILL. Every session must still answer,
//! nothing the bridge was told SUCCESS about may be lost, and a bridge retrying unanswered
//! commands with the same requestId gets correct answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use pb_bridge::flow::{Driver, LoggedIn};
use pb_protocol::{Subjects, Target};
use pb_testkit::{SERVICES, Stack};
use serde_json::json;

const AGENTS: usize = 200;
const IN_FLIGHT: usize = 16;

/// Log in, go not ready with a reason of its own, then ready again on the telephony channel;
/// the last acknowledged state is what the agent must be found in.
async fn agent_life(driver: &Driver, agent: usize) -> Result<(LoggedIn, String), String> {
    let id = (1001 + agent).to_string();
    let logged = driver
        .login(&id, &format!("pw-{id}"), &format!("crash-{id}"))
        .await
        .map_err(|e| e.to_string())?;
    let ext = &logged.channels[0].target;
    let reason = format!("break-{id}");
    driver
        .ok(
            "channel.request.notready",
            ext,
            json!({"reasonCode": reason}),
        )
        .await
        .map_err(|e| e.to_string())?;
    if agent % 2 == 0 {
        driver
            .ok("channel.request.ready", ext, json!({}))
            .await
            .map_err(|e| e.to_string())?;
        return Ok((logged, "READY".into()));
    }
    Ok((logged, reason))
}

#[tokio::test]
async fn killing_a_replica_of_every_service_mid_run_loses_nothing() {
    let mut stack = Stack::start(
        2,
        &[("PB_OWNER_CHECK_MS", "300"), ("PB_DEADLINE_MS", "3000")],
    )
    .await;
    let client = stack.nats.client().await;
    let driver = Driver::new(
        client,
        Subjects::default(),
        Target::control("PB1").unwrap(),
        Duration::from_secs(3),
    )
    .retrying(Duration::from_secs(30));
    driver
        .ok("cti.request.serverstatus", "PB1.CONTROL", json!({}))
        .await
        .unwrap();

    let done = Arc::new(AtomicUsize::new(0));
    let run = {
        let driver = driver.clone();
        let done = done.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..AGENTS)
                .map(|agent| {
                    let driver = driver.clone();
                    let done = done.clone();
                    async move {
                        let result = agent_life(&driver, agent).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        result
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        })
    };
    while done.load(Ordering::Relaxed) < AGENTS / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for service in SERVICES {
        stack.process(&format!("{service}-0")).signal("KILL");
    }
    let results = run.await.unwrap();
    assert!(done.load(Ordering::Relaxed) == AGENTS);
    let mut lives = Vec::new();
    for result in results {
        lives.push(
            result.unwrap_or_else(|e| {
                panic!("an agent's life did not complete: {e}\n{}", stack.logs())
            }),
        );
    }

    // Every session answers, and every acknowledged state is there, on the survivors.
    let check = Driver::new(
        stack.nats.client().await,
        Subjects::default(),
        Target::control("PB1").unwrap(),
        Duration::from_secs(5),
    );
    for (logged, expected) in &lives {
        let init = check
            .ok("session.query.init", &logged.session, json!({}))
            .await
            .unwrap();
        assert_eq!(
            init["channel-groups"][0]["name"],
            format!("place-{}", logged.agent_id)
        );
        let ext = check
            .ok("channel.query.init", &logged.channels[0].target, json!({}))
            .await
            .unwrap();
        assert_eq!(ext["state"], "ACTIVE", "{}", logged.session);
        match expected.as_str() {
            "READY" => assert_eq!(ext["agent-state"], "READY", "{}", logged.session),
            reason => {
                assert_eq!(ext["agent-state"], "NOT_READY", "{}", logged.session);
                assert_eq!(ext["reasonCode"], reason, "{}", logged.session);
            }
        }
        for other in &logged.channels[1..] {
            let init = check
                .ok("channel.query.init", &other.target, json!({}))
                .await
                .unwrap();
            assert_eq!(
                (init["state"].as_str(), init["agent-state"].as_str()),
                (Some("ACTIVE"), Some("READY"))
            );
        }
    }
    // The survivors took the dead replicas' agents over.
    let logs = stack.logs();
    assert!(
        logs.contains("replica gone: taking over its units"),
        "no take-over was logged"
    );
}
