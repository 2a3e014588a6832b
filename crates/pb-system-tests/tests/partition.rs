//! A channel-group replica cut off from NATS and let back (issue 12, fenced ownership): a
//! TCP proxy between it and the server drops its connection for 5 s. Its peer takes its
//! agents over; the cut-off replica stops serving them before that and, back on NATS,
//! does not serve them again. Every command is then answered once and each change raised
//! once; agents it takes on after coming back are adopted when it is killed.

use std::collections::HashMap;
use std::time::Duration;

use pb_bridge::flow::{Driver, LoggedIn};
use pb_protocol::channel::AgentState;
use pb_sim_admin::ForceState;
use pb_system_tests::{Builder, World};
use pb_testkit::{Bridge, announced_once, count};
use serde_json::json;

const CHECK_MS: &str = "400";

/// One replica of each service checking on its peers every `check_ms`, and a bridge
/// retrying for 20 s.
fn world(check_ms: &str) -> Builder {
    World::builder()
        .env(&[("PB_OWNER_CHECK_MS", check_ms)])
        .driver_timeout(Duration::from_secs(8))
        .retrying(Duration::from_secs(20))
}

async fn log_in(d: &Driver, first: u64, count: u64) -> Vec<LoggedIn> {
    let mut logged = Vec::new();
    for id in first..first + count {
        let id = id.to_string();
        logged.push(
            d.login(&id, &format!("pw-{id}"), &format!("s-{id}"))
                .await
                .unwrap_or_else(|e| panic!("login {id}: {e}")),
        );
    }
    logged
}

/// Make each agent not ready on its first channel (retrying as a bridge does), `when`
/// naming the moment in a failure.
async fn not_ready_all(d: &Driver, agents: &[LoggedIn], reason: &str, when: &str) {
    for agent in agents {
        d.ok(
            "channel.request.notready",
            &agent.channels[0].target,
            json!({ "reasonCode": reason }),
        )
        .await
        .unwrap_or_else(|e| panic!("{} {when}: {e}", agent.agent_id));
    }
}

/// Send `name` to each agent's first channel on the tap (one requestId each); per
/// requestId, the responses, and per channel, the events named `event`.
async fn once_each(
    bridge: &Bridge,
    agents: &[LoggedIn],
    name: &str,
    body: serde_json::Value,
    event: &str,
) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut tap = bridge.tap().await;
    let mut ids = HashMap::new();
    for agent in agents {
        let id = uuid::Uuid::new_v4().to_string();
        bridge
            .send_tapped(&tap, name, &agent.channels[0].target, body.clone(), &id)
            .await;
        ids.insert(id, 0);
    }
    let mut events: HashMap<String, usize> = HashMap::new();
    for seen in tap.collect(Duration::from_secs(3)).await {
        let header = &seen.json["header"];
        if header["type"] == "cti.response" {
            let id = header["requestId"].as_str().unwrap_or_default();
            assert_eq!(header["result"], "SUCCESS", "{}", seen.json);
            *ids.entry(id.to_owned()).or_default() += 1;
        } else if header["name"] == event {
            *events
                .entry(header["target"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    (ids, events)
}

#[tokio::test]
async fn a_replica_cut_off_and_back_leaves_one_owner_per_agent() {
    let World {
        mut stack,
        driver: d,
        bridge,
        proxy,
        ..
    } = world(CHECK_MS)
        .behind_proxy("pb-channel-group", "pb-channel-group-cut")
        .start()
        .await;
    let proxy = proxy.expect("the replica behind the proxy");
    let before = log_in(&d, 1001, 12).await;

    // Cut off for 5 s: it fences itself, its peer takes its agents over, and the bridge's
    // commands are answered (retried while the take-over happens).
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(1)).await;
    not_ready_all(&d, &before, "cut", "during the cut").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.heal();
    // Wait until it is connected again (the client logs each connection), and a little.
    let reconnect_by = tokio::time::Instant::now() + Duration::from_secs(15);
    while stack
        .process("pb-channel-group-cut")
        .logs()
        .matches("event: connected")
        .count()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < reconnect_by,
            "never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Every command is answered once, every change raised once.
    for (name, body, event) in [
        ("channel.request.ready", json!({}), "channel.ready"),
        (
            "channel.request.notready",
            json!({"reasonCode": "after"}),
            "channel.notready",
        ),
    ] {
        let (answers, events) = once_each(&bridge, &before, name, body, event).await;
        assert!(
            answers.values().all(|n| *n == 1),
            "{name}: answers per requestId {answers:?}"
        );
        assert_eq!(events.len(), before.len(), "{event}: {events:?}");
        assert!(
            events.values().all(|n| *n == 1),
            "{event} per channel: {events:?}"
        );
    }

    let logs = stack.process("pb-channel-group-cut").logs();
    assert!(
        logs.contains("cut off from NATS") && logs.contains("back on NATS"),
        "{logs}"
    );

    // It takes agents again; when it dies, they are adopted.
    let after = log_in(&d, 1101, 12).await;
    let mine = stack.process("pb-channel-group-cut").logs();
    stack.process("pb-channel-group-cut").signal("KILL");
    not_ready_all(&d, &after, "gone", &format!("after the kill\n{mine}")).await;
}

#[tokio::test]
async fn changes_at_the_cti_while_the_owner_is_dead_are_reported_after_the_take_over() {
    let World {
        mut stack,
        driver: d,
        bridge,
        ..
    } = world("300").start().await;
    // Both agents owned by the one channel-group replica; then a second one starts.
    let agents = log_in(&d, 1001, 2).await;
    stack.spawn("pb-channel-group", "pb-channel-group-1").await;
    let mut events = bridge.events().await;

    // The owner dies; at once, a change and a call at the CTI, which nobody hears.
    stack.process("pb-channel-group-0").signal("KILL");
    let (a, b) = (&agents[0], &agents[1]);
    bridge
        .admin(&ForceState {
            agent_id: a.agent_id.to_owned(),
            endpoint: a.channels[0].endpoint.to_owned(),
            state: AgentState::NotReady,
            reason_code: Some("while-dead".to_owned()),
        })
        .await
        .expect("the simulator acts");
    let call = bridge.offer_call(&b.agent_id).await;

    // After the take-over both are reported, once each.
    let seen = events.collect(Duration::from_secs(6)).await;
    assert_eq!(
        count(&seen, "channel.notready", &a.channels[0].target),
        1,
        "{seen:#?}"
    );
    let notready = seen.iter().find(|e| e.name == "channel.notready").unwrap();
    assert_eq!(notready.body["reasonCode"], "while-dead");
    announced_once(&seen, &b.channels[0].target, &call);
    // And the bridge can take the call on the new owner.
    d.ok(
        "channel.request.createinteraction",
        &b.channels[0].target,
        json!({"id": "i1", "name": call}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn units_left_by_an_interrupted_adoption_are_still_taken_over() {
    let World {
        mut stack,
        driver: d,
        bridge,
        ..
    } = world("300").start().await;
    let client = bridge.client;
    let agents = log_in(&d, 1001, 2).await;
    stack.spawn("pb-channel-group", "pb-channel-group-1").await;

    // The owner dies, and an adopter that died half-way has already deleted its membership
    // record (the first step of an adoption) without taking a single unit over.
    let members = async_nats::jetstream::new(client)
        .get_key_value("pb_members")
        .await
        .unwrap();
    let mut dead = None;
    let mut keys = members.keys().await.unwrap();
    while let Some(Ok(key)) = futures::StreamExt::next(&mut keys).await {
        if key.starts_with("channelgroup.") && key.contains("pb-channel-group-0") {
            dead = Some(key);
        }
    }
    let dead = dead.expect("the first replica's membership record");
    stack.process("pb-channel-group-0").signal("KILL");
    members.delete(&dead).await.unwrap();

    // Nobody will adopt it by its record; the sweep for units nobody owns does.
    not_ready_all(&d, &agents, "orphan", "after the sweep").await;
}

#[tokio::test]
async fn a_change_made_while_the_store_refuses_writes_is_answered_as_made_and_kept() {
    let World {
        mut stack,
        driver: d,
        bridge,
        ..
    } = world("300").start().await;
    let client = bridge.client.clone();
    let agent = &log_in(&d, 1001, 1).await[0];
    let phone = &agent.channels[0].target;
    let mut events = bridge.events().await;

    // The channels bucket refuses every write while the CTI makes the change.
    pb_testkit::fill_bucket(&client, "pb_channels", true).await;
    let body = json!({"reasonCode": "sealed"});
    let first = bridge
        .send_with_id("channel.request.notready", phone, body.clone(), "rq-sealed")
        .await;
    assert!(first.outcome.is_success(), "{first:?}");
    // A retry is told the same: the change was made.
    let again = bridge
        .send_with_id("channel.request.notready", phone, body, "rq-sealed")
        .await;
    assert_eq!(again.outcome, first.outcome);
    let seen = events.collect(Duration::from_millis(500)).await;
    assert_eq!(count(&seen, "channel.notready", phone), 1, "{seen:#?}");
    let cti = bridge.cti("snapshot", json!({"agent_id": "1001"})).await;
    assert!(cti.to_string().contains("\"NOT_READY\""), "{cti}");

    // Writes work again: the next save records both changes, so an owner that takes the
    // agent over finds the record matching the CTI and raises nothing again.
    let logs = stack.process("pb-channel-group-0").logs();
    assert!(logs.contains("written with the next save"), "{logs}");
    pb_testkit::fill_bucket(&client, "pb_channels", false).await;
    d.ok("channel.request.ready", phone, json!({}))
        .await
        .unwrap();
    stack.spawn("pb-channel-group", "pb-channel-group-1").await;
    stack.process("pb-channel-group-0").signal("KILL");
    let init = d.ok("channel.query.init", phone, json!({})).await.unwrap();
    assert_eq!(init["agent-state"], "READY", "{init:?}");
    let seen = events.collect(Duration::from_secs(2)).await;
    assert_eq!(count(&seen, "channel.ready", phone), 1, "{seen:#?}");
    assert_eq!(count(&seen, "channel.notready", phone), 0, "{seen:#?}");
}
