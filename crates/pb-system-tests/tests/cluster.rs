//! A real NATS cluster (issue 12): three nats-servers with JetStream on loopback, buckets
//! with three copies, every process given all three URLs. The node that is the JetStream
//! meta leader is killed in the middle of a login storm: every login the bridge was
//! answered SUCCESS for (retrying, with the same requestId, what went unanswered) is still
//! served afterwards with its state, and every agent can go on working.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pb_system_tests::World;
use serde_json::json;

const AGENTS: usize = 120;

/// A stack of `replicas` on a 3-node cluster whose replicas check on one another every
/// 400 ms, and a bridge on every node retrying for `budget`, the status reported.
async fn world(replicas: usize, budget: Duration) -> World {
    World::builder()
        .cluster(3)
        .replicas(replicas)
        .env(&[("PB_OWNER_CHECK_MS", "400")])
        .driver_timeout(Duration::from_secs(8))
        .retrying(budget)
        .start()
        .await
}

#[tokio::test]
async fn losing_the_meta_leader_during_a_storm_loses_nothing_acknowledged() {
    let World {
        mut stack,
        driver: d,
        ..
    } = world(2, Duration::from_secs(40)).await;

    let js = async_nats::jetstream::new(stack.client().await);
    for bucket in ["pb_replies", "pb_sessions", "pb_channels", "pb_owners"] {
        let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
        let copies = stream.info().await.unwrap().config.num_replicas;
        assert_eq!(copies, 3, "{bucket} keeps {copies} copies");
    }

    let done = AtomicUsize::new(0);
    let leader = stack.meta_leader().await;
    let storm = d.login_range(1001, AGENTS, 16, "s", &done);
    let fault = async {
        while done.load(Ordering::Relaxed) < AGENTS / 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stack.kill_node(&leader);
        done.load(Ordering::Relaxed)
    };
    let (logged, killed_at) = tokio::join!(storm, fault);
    assert!(killed_at < AGENTS, "the node died after the storm");
    let failed: Vec<_> = logged.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "logins failed: {failed:#?}\n{}",
        stack.logs()
    );
    // The survivors elect a new leader (until then they may still name the dead one).
    let mut elected = stack.meta_leader().await;
    for _ in 0..100 {
        if elected != leader {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        elected = stack.meta_leader().await;
    }
    assert_ne!(elected, leader, "no new meta leader within 10 s");

    // Every acknowledged login is still there, state and all: each channel answers its
    // init from the stored state, and takes a change.
    for agent in logged.iter().flatten() {
        d.still_served(agent, "after-the-loss")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", agent.agent_id, stack.logs()));
    }
}

/// A replica killed on a cluster: its agents are taken over, as on one server.
#[tokio::test]
async fn a_replica_killed_on_a_cluster_is_taken_over() {
    let World {
        mut stack,
        driver: d,
        ..
    } = world(1, Duration::from_secs(20)).await;
    let a = d.login("1001", "pw-1001", "s-1001").await.unwrap();
    stack.spawn("pb-channel-group", "pb-channel-group-1").await;
    stack.process("pb-channel-group-0").signal("KILL");
    d.ok(
        "channel.request.notready",
        &a.channels[0].target,
        json!({"reasonCode": "taken-over"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    let logs = stack.process("pb-channel-group-1").logs();
    assert!(logs.contains("units taken over"), "{logs}");
}
