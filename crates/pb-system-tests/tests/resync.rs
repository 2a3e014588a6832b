//! Re-synchronisation with the CTI (issue 12, contract §7): the CTI link drops while the
//! switch behind it keeps working (the simulator's `switch_runs`), so changes and calls
//! happen that the client never hears of; when the link is back, every owner re-reads its
//! agents and the bridge is told each change once.

use std::time::Duration;

use pb_protocol::channel::AgentState;
use pb_sim_admin::{ForceState, LoseEvents, SetLink};
use pb_system_tests::World;
use pb_testkit::{announced_once, count};
use serde_json::json;

/// A stack of `replicas` (with `env`), a driver and a bridge on NATS, the status reported.
async fn world(replicas: usize, env: &[(&'static str, &str)]) -> World {
    World::builder()
        .replicas(replicas)
        .env(env)
        .driver_timeout(Duration::from_secs(8))
        .start()
        .await
}

#[tokio::test]
async fn changes_made_while_the_link_was_down_are_told_once_when_it_is_back() {
    let World {
        stack: _stack,
        driver: d,
        bridge,
        ..
    } = world(2, &[]).await;
    let a = d.login("1001", "pw-1001", "s-1001").await.unwrap();
    let b = d.login("1002", "pw-1002", "s-1002").await.unwrap();
    let mut events = bridge.events().await;

    bridge
        .admin(&SetLink {
            switch_runs: true,
            ..SetLink::down("maintenance")
        })
        .await
        .expect("the simulator acts");
    events
        .expect("cti.communicationlost", Duration::from_secs(5))
        .await;
    // Behind the dropped link: a supervisor's change and a customer's call.
    bridge
        .admin(&ForceState {
            agent_id: "1001".to_owned(),
            endpoint: a.channels[0].endpoint.to_owned(),
            state: AgentState::NotReady,
            reason_code: Some("during-outage".to_owned()),
        })
        .await
        .expect("the simulator acts");
    let call = bridge.offer_call("1002").await;
    let quiet = events.collect(Duration::from_millis(500)).await;
    assert!(
        quiet.iter().all(|e| !e.name.starts_with("channel.")),
        "events came through a dropped link: {quiet:#?}"
    );

    bridge
        .admin(&SetLink::up())
        .await
        .expect("the simulator acts");
    let seen = events.collect(Duration::from_secs(4)).await;
    assert_eq!(
        count(&seen, "cti.communicationrestored", "PB1.CONTROL"),
        1,
        "{seen:#?}"
    );
    assert_eq!(
        count(&seen, "channel.notready", &a.channels[0].target),
        1,
        "{seen:#?}"
    );
    announced_once(&seen, &b.channels[0].target, &call);
    // The bridge hears what happened during the outage before it hears the link is back.
    let at = |name: &str| seen.iter().position(|e| e.name == name).unwrap();
    assert!(
        at("channel.notready") < at("cti.communicationrestored")
            && at("channel.interaction.added") < at("cti.communicationrestored"),
        "{seen:#?}"
    );
    let init = d
        .ok("channel.query.init", &a.channels[0].target, json!({}))
        .await
        .unwrap();
    assert_eq!(init["agent-state"], "NOT_READY", "{init:?}");
}

#[tokio::test]
async fn an_adapter_restarted_under_logged_in_agents_is_caught_up_with() {
    let World {
        mut stack,
        driver: d,
        bridge,
        ..
    } = world(1, &[]).await;
    let a = d.login("1001", "pw-1001", "s-1001").await.unwrap();
    let mut events = bridge.events().await;

    // The adapter dies and a new one starts at once: same roster, nobody logged in.
    stack.process("pb-cti-sim").signal("KILL");
    stack
        .process("pb-cti-sim")
        .wait_exit(Duration::from_secs(5))
        .await;
    stack.spawn("pb-cti-sim", "pb-cti-sim-again").await;
    let seen = events.collect(Duration::from_secs(4)).await;
    assert_eq!(count(&seen, "session.loggedout", "s-1001"), 1, "{seen:#?}");
    for channel in &a.channels {
        assert_eq!(
            count(&seen, "channel.deactivated", &channel.target),
            1,
            "{seen:#?}"
        );
    }

    // The bridge logs the agent in again on the same destinations: its changes and the
    // new adapter's calls are reported as before.
    d.create_session("1001", "pw-1001", "again", "s-1001")
        .await
        .unwrap();
    let phone = &a.channels[0].target;
    d.ok("channel.request.activate", phone, json!({}))
        .await
        .unwrap();
    d.ok("channel.request.ready", phone, json!({}))
        .await
        .unwrap();
    let call = bridge.offer_call("1001").await;
    let seen = events.collect(Duration::from_secs(2)).await;
    assert_eq!(count(&seen, "channel.activated", phone), 1, "{seen:#?}");
    assert_eq!(count(&seen, "channel.ready", phone), 1, "{seen:#?}");
    announced_once(&seen, phone, &call);
}

#[tokio::test]
async fn a_change_whose_event_was_lost_is_found_by_the_periodic_re_sync() {
    let World {
        stack: _stack,
        driver: d,
        bridge,
        ..
    } = world(1, &[("PB_RESYNC_MS", "1000")]).await;
    let a = d.login("1001", "pw-1001", "s-1001").await.unwrap();
    let mut events = bridge.events().await;
    // The link stays up; the change's event is lost on the way.
    bridge
        .admin(&LoseEvents { lose: true })
        .await
        .expect("the simulator acts");
    bridge
        .admin(&ForceState {
            agent_id: "1001".to_owned(),
            endpoint: a.channels[0].endpoint.to_owned(),
            state: AgentState::NotReady,
            reason_code: Some("lost".to_owned()),
        })
        .await
        .expect("the simulator acts");
    bridge
        .admin(&LoseEvents { lose: false })
        .await
        .expect("the simulator acts");
    let seen = events.collect(Duration::from_secs(3)).await;
    assert_eq!(
        count(&seen, "channel.notready", &a.channels[0].target),
        1,
        "{seen:#?}"
    );
}
