//! Failures while agents log in and change state, with two replicas of every service:
//! SIGKILL of one replica of each service, SIGTERM of one of each, a nats-server restart.
//! Afterwards every session answers and nothing the bridge was told SUCCESS about is lost;
//! a request repeated after its agent was taken over is answered as the first time; a call
//! in progress carries on after its agent's owner is killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use pb_bridge::flow::{Driver, LoggedIn};
use pb_protocol::Subjects;
use pb_protocol::channel::ChannelType;
use pb_sim_admin::{Offer, SetDelay};
use pb_system_tests::{Builder, World};
use pb_testkit::{SERVICES, Stack};
use serde_json::json;

const IN_FLIGHT: usize = 16;

/// Log in, go not ready with a reason of its own, then (even agents) ready again on the
/// telephony channel; the last acknowledged state is what the agent must be found in.
async fn agent_life(driver: &Driver, agent: usize) -> Result<(LoggedIn, String), String> {
    let id = (1001 + agent).to_string();
    let logged = driver
        .login(&id, &format!("pw-{id}"), &format!("life-{id}"))
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

/// How long the bridge waits: longer than the services' deadline (5 s), so a command
/// answered late under a failover's load is answered, not lost; one never answered times
/// out.
const BRIDGE_WAITS: Duration = Duration::from_secs(8);

/// A bridge that waits [`BRIDGE_WAITS`].
fn driver(client: async_nats::Client) -> Driver {
    pb_system_tests::driver(client, BRIDGE_WAITS)
}

/// `replicas` of every service with `env`, and a bridge that waits [`BRIDGE_WAITS`].
fn world(replicas: usize, env: &[(&'static str, &str)]) -> Builder {
    World::builder()
        .replicas(replicas)
        .env(env)
        .driver_timeout(BRIDGE_WAITS)
}

/// Run `agents` lives through `driver` (the status reported); when a third are done,
/// `disrupt` the stack; return every life's result.
async fn lives_while<F>(
    stack: &mut Stack,
    driver: Driver,
    agents: usize,
    disrupt: F,
) -> Vec<(LoggedIn, String)>
where
    F: FnOnce(&mut Stack),
{
    let done = Arc::new(AtomicUsize::new(0));
    let run = {
        let done = done.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..agents)
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
    while done.load(Ordering::Relaxed) < agents / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    disrupt(stack);
    let results = run.await.unwrap();
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("an agent's life did not complete: {e}\n{}", stack.logs()))
        })
        .collect()
}

/// Every session answers, and every acknowledged state is there.
async fn all_there(stack: &Stack, lives: &[(LoggedIn, String)]) {
    let check = driver(stack.nats.client().await).retrying_unrouted(Duration::from_secs(10));
    for (logged, expected) in lives {
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
}

/// Issue 3: SIGKILL of one replica of every service in the middle of 200 agents' lives; a
/// bridge retrying unanswered commands with the same requestId gets correct answers.
#[tokio::test]
async fn killing_a_replica_of_every_service_mid_run_loses_nothing() {
    let World {
        mut stack,
        driver: bridge,
        ..
    } = world(2, &[("PB_OWNER_CHECK_MS", "300")])
        .retrying(Duration::from_secs(30))
        .start()
        .await;
    let lives = lives_while(&mut stack, bridge, 200, |stack| {
        for service in SERVICES {
            stack.process(&format!("{service}-0")).signal("KILL");
        }
    })
    .await;
    all_there(&stack, &lives).await;
    assert!(
        stack.logs().contains("replica gone: taking over its units"),
        "no take-over was logged"
    );
}

/// Issue 4: SIGTERM of one replica of every service during a login storm. Each stopping
/// replica finishes what it received (its inbox, then what its subscriptions hold) and hands
/// its agents over; every life completes and nothing acknowledged is lost. The bridge sends
/// an unanswered command again with the same requestId (contract §5.3): async-nats 0.51 ends
/// a drained subscription one poll after its UNSUB instead of after the server's PONG, so a
/// command the server routes to it in that instant can be dropped by the library; the retry
/// is answered, once, by the agent's new owner.
#[tokio::test]
async fn sigterm_during_a_login_storm_loses_nothing_acknowledged() {
    let World {
        mut stack,
        driver: bridge,
        ..
    } = world(
        2,
        &[("PB_OWNER_CHECK_MS", "300"), ("PB_DRAIN_GRACE_MS", "500")],
    )
    .retrying(Duration::from_secs(30))
    .start()
    .await;
    let lives = lives_while(&mut stack, bridge, 150, |stack| {
        for service in SERVICES {
            stack.process(&format!("{service}-0")).signal("TERM");
        }
    })
    .await;
    for service in SERVICES {
        let status = stack
            .process(&format!("{service}-0"))
            .wait_exit(Duration::from_secs(15))
            .await;
        assert!(status.success(), "{service}-0 exited with {status:?}");
    }
    all_there(&stack, &lives).await;
}

/// Issue 4: the nats-server restarts under load; the services reconnect by themselves and
/// keep serving; the state (JetStream) survives.
#[tokio::test]
async fn the_services_carry_on_after_a_nats_server_restart() {
    let World {
        mut stack,
        driver: bridge,
        ..
    } = world(2, &[])
        .retrying(Duration::from_secs(30))
        .start()
        .await;
    let lives = lives_while(&mut stack, bridge, 150, |stack| stack.nats.restart()).await;
    all_there(&stack, &lives).await;
}

/// Contract §5.3 across a failover: a request answered by a replica that then dies is,
/// when the bridge repeats it with the same requestId, answered by the replica that took
/// the agent over with the recorded answer, and not acted on again.
#[tokio::test]
async fn a_request_repeated_after_a_take_over_gets_its_first_answer_and_is_not_redone() {
    let (mut stack, client, bridge, logged) = one_agent_logged_in("1030").await;
    let ext = logged.channels[0].target.clone();
    let not_ready = || json!({"reasonCode": "first"});
    let first = bridge
        .send_with_id("channel.request.notready", &ext, not_ready(), "once")
        .await
        .unwrap();
    assert!(first.outcome.is_success(), "{first:?}");

    kill_channel_group_owner(&mut stack, &client, "1030").await;

    // The other replica takes the agent over and answers a new request.
    let after = driver(client.clone()).retrying_unrouted(Duration::from_secs(20));
    after
        .ok("channel.request.ready", &ext, json!({}))
        .await
        .unwrap();
    // The first request again: answered as the first time, and not redone.
    let again = after
        .send_with_id("channel.request.notready", &ext, not_ready(), "once")
        .await
        .unwrap();
    assert_eq!(again.encode(), first.encode());
    let init = after
        .ok("channel.query.init", &ext, json!({}))
        .await
        .unwrap();
    assert_eq!(
        init["agent-state"], "READY",
        "the repeated request was acted on"
    );
}

/// A first attempt whose replica died after its CTI change leaves the redo to find the
/// change made: the adapter answers a change repeated with the same request key as the
/// first time, and does not make it again (here a READY came in between: it stays).
#[tokio::test]
async fn a_cti_change_repeated_with_its_request_key_is_answered_as_the_first_time() {
    let (_stack, client, _, logged) = one_agent_logged_in("1031").await;
    let change = |state: &str, key: Option<&str>| {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(key) = key {
            headers.insert(pb_cti::REQUEST_KEY_HEADER, key);
        }
        let body = json!({"agent_id": "1031", "endpoint": logged.channels[0].endpoint, "state": state, "reason_code": "k"});
        let client = client.clone();
        async move {
            client
                .request_with_headers("pb.cti.req.setstate", headers, body.to_string().into())
                .await
                .unwrap()
                .payload
        }
    };
    let first = change("NOT_READY", Some("ext r1 #0")).await;
    assert!(first.starts_with(b"{\"ok\""), "{first:?}");
    change("READY", None).await;
    let again = change("NOT_READY", Some("ext r1 #0")).await;
    assert_eq!(again, first, "answered as the first time");
    let snapshot = client
        .request(
            "pb.cti.req.snapshot",
            json!({"agent_id": "1031"}).to_string().into(),
        )
        .await
        .unwrap();
    let snapshot: serde_json::Value = serde_json::from_slice(&snapshot.payload).unwrap();
    assert_eq!(
        snapshot["ok"]["channels"][0]["agent_state"], "READY",
        "the repeat was made again: {snapshot}"
    );
}

/// A CTI change that got no reply may have been made: the answer says so, is not
/// recorded, and asks for the same requestId again; sent again, the command is acted on
/// again, and the adapter answers the repeated change as the first time (made once).
#[tokio::test]
async fn a_change_the_cti_did_not_answer_in_time_is_retried_with_the_same_request_id() {
    let World {
        stack: _stack,
        driver: d,
        bridge,
        ..
    } = world(1, &[("PB_DEADLINE_MS", "1000")]).start().await;
    let logged = d.login("1032", "pw-1032", "s-1032").await.unwrap();
    let phone = &logged.channels[0].target;
    let mut events = bridge.events().await;
    let body = || json!({"reasonCode": "slow"});
    bridge
        .admin(&SetDelay { ms: 1500 })
        .await
        .expect("the simulator acts");
    let first = d
        .send_with_id("channel.request.notready", phone, body(), "rq-slow")
        .await
        .unwrap();
    let pb_protocol::Outcome::Failure(why) = &first.outcome else {
        panic!("the CTI had no time to answer: {first:?}");
    };
    assert!(why.ends_with(pb_runtime::serve::RETRY_SAME), "{why}");
    bridge
        .admin(&SetDelay { ms: 0 })
        .await
        .expect("the simulator acts");
    // Meanwhile the CTI made the change.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = d
        .send_with_id("channel.request.notready", phone, body(), "rq-slow")
        .await
        .unwrap();
    assert!(again.outcome.is_success(), "{again:?}");
    let seen = events.collect(Duration::from_millis(500)).await;
    assert_eq!(
        pb_testkit::count(&seen, "channel.notready", phone),
        1,
        "{seen:?}"
    );
}

/// A stack whose replicas check on one another every 300 ms, with `agent` logged in
/// (session `s-<agent>`).
async fn one_agent_logged_in(agent: &str) -> (Stack, async_nats::Client, Driver, LoggedIn) {
    let w = world(2, &[("PB_OWNER_CHECK_MS", "300")]).start().await;
    let logged = w.login(agent).await;
    (w.stack, w.bridge.client, w.driver, logged)
}

/// SIGKILL the channel-group replica that owns `agent`, and wait for it to be gone: the
/// process exited, and the server has dropped its connection (its node subject has no
/// responders; until then a command could still be routed to the dead connection and
/// lost, which is the bridge's timeout-and-retry case, not the one these tests show).
async fn kill_channel_group_owner(stack: &mut Stack, client: &async_nats::Client, agent: &str) {
    let owners = async_nats::jetstream::new(client.clone())
        .get_key_value("pb_owners")
        .await
        .unwrap();
    let owner = owners
        .get(format!("channelgroup.{agent}"))
        .await
        .unwrap()
        .unwrap();
    let owner = String::from_utf8_lossy(&owner).into_owned();
    let victim = ["pb-channel-group-0", "pb-channel-group-1"]
        .into_iter()
        .find(|p| owner.starts_with(&format!("{p}-")))
        .unwrap_or_else(|| panic!("no process owns the agent: {owner}"));
    stack.process(victim).signal("KILL");
    stack
        .process(victim)
        .wait_exit(Duration::from_secs(5))
        .await;
    let node = Subjects::default().node(pb_protocol::internal::CHANNEL_GROUP_SERVICE, &owner);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ping = client
            .send_request(
                node.clone(),
                async_nats::Request::new().timeout(Some(Duration::from_millis(200))),
            )
            .await;
        if matches!(&ping, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server still routes to {owner}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 6: a call in progress when its agent's channel-group replica dies carries on: the
/// replica that takes the agent over answers for the interaction and its conversation
/// (subscribed again from the stored state) and reports their changes.
#[tokio::test]
async fn a_call_carries_on_after_its_agents_owner_is_killed() {
    let (mut stack, client, bridge, logged) = one_agent_logged_in("1040").await;
    let ext = logged.channels[0].target.clone();
    let mut events = pb_testkit::Bridge::new(client.clone()).events().await;
    let offer = Offer {
        media: ChannelType::Telephony,
        data: serde_json::from_value(json!({"accountId": "A-7"})).unwrap(),
        from: None,
        agent_id: Some("1040".into()),
    };
    let offered = pb_testkit::Bridge::new(client.clone()).admin(&offer).await;
    let name = offered.unwrap().name;
    events
        .expect("channel.interaction.added", Duration::from_secs(5))
        .await;
    let taken = bridge.take(&ext, &name, "i1").await.unwrap();
    let primary = taken.primary().unwrap().target.clone();
    bridge
        .ok("conversation.request.answer", &primary, json!({}))
        .await
        .unwrap();

    kill_channel_group_owner(&mut stack, &client, "1040").await;

    let after = driver(client.clone()).retrying_unrouted(Duration::from_secs(20));
    after
        .ok("conversation.request.hold", &primary, json!({}))
        .await
        .unwrap();
    loop {
        let event = events
            .expect("conversation.statechanged", Duration::from_secs(5))
            .await;
        if event.target == primary && event.body["conversation-state"] == "HELD" {
            break;
        }
    }
    let init = after
        .ok("interaction.query.init", &taken.target, json!({}))
        .await
        .unwrap();
    assert_eq!(init["interaction-state"], "STARTED");
    assert_eq!(init["interaction-data"]["accountId"], "A-7");
    after
        .ok("conversation.request.release", &primary, json!({}))
        .await
        .unwrap();
    after
        .ok("interaction.request.complete", &taken.target, json!({}))
        .await
        .unwrap();
}
