//! An agent's whole life through every service, each with two replicas, against a real
//! nats-server and the simulated CTI (contract §4, §5, §7; issue 3).

use std::time::Duration;

use pb_bridge::flow::{Driver, LoggedIn};
use pb_protocol::channel::{AgentState, ChannelType};
use pb_protocol::{Body, Outcome, Response};
use pb_sim_admin::{AddChannel, ForceLogout, ForceState, RemoveChannel};
use pb_system_tests::World;
use pb_testkit::Seen;
use serde_json::json;

const SECOND: Duration = Duration::from_secs(1);

/// Agent `agent`'s session `session_id` at `destination` and its channel group
/// `<destination>.g` for the agent's place, created and initialised one step at a time as
/// a bridge does (no channel yet): the session's init answer and the group's.
async fn session_and_group(
    d: &Driver,
    agent: &str,
    session_id: &str,
    destination: &str,
) -> (Body, Body) {
    let session = json!({"agentId": agent, "agentPassword": format!("pw-{agent}"),
        "sessionId": session_id, "destination": destination});
    d.ok("cti.request.createsession", "PB1.CONTROL", session)
        .await
        .unwrap();
    let init = d
        .ok("session.query.init", destination, json!({}))
        .await
        .unwrap();
    let group = json!({"id": "g", "name": format!("place-{agent}")});
    d.ok("session.request.createchannelgroup", destination, group)
        .await
        .unwrap();
    let target = format!("{destination}.g");
    let group = d
        .ok("channelgroup.query.init", &target, json!({}))
        .await
        .unwrap();
    (init, group)
}

async fn world() -> World {
    World::builder().replicas(2).start().await
}

fn failure(r: &Response) -> String {
    match &r.outcome {
        Outcome::Failure(why) => why.clone(),
        Outcome::Success(b) => panic!(
            "expected FAILURE for {} on {}, got SUCCESS {b:?}",
            r.name, r.target
        ),
    }
}

/// A destination that does not exist (or no longer) has no responder, or answers FAILURE
/// naming it unknown (contract §5.6).
async fn assert_gone(driver: &Driver, name: &'static str, target: &str) {
    match driver.send(name, target, json!({})).await {
        Err(pb_bridge::flow::FlowError::Transport { message, .. }) => {
            assert!(
                message.contains("no responders"),
                "{name} on {target}: {message}"
            )
        }
        Ok(Response {
            outcome: Outcome::Failure(why),
            ..
        }) => assert!(
            why.starts_with("unknown ") && why.contains(&format!("destination `{target}`")),
            "{name} on {target}: {why}"
        ),
        other => panic!("{name} on {target} should be gone: {other:?}"),
    }
}

/// The events seen, as (name, target) pairs, skipping control events.
fn events(seen: &[Seen]) -> Vec<(String, String)> {
    seen.iter()
        .filter(|s| s.kind() == "cti.event" && !s.name().starts_with("cti."))
        .map(|s| {
            (
                s.name().to_owned(),
                s.json["header"]["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_agent_logs_in_changes_state_and_logs_out_through_every_service() {
    let w = world().await;
    let mut tap = w.bridge.tap().await;
    let logged = w.driver.login("1001", "pw-1001", "s-1001").await.unwrap();
    assert_eq!(logged.channels.len(), 3);
    assert_eq!(logged.channels[0].endpoint, "ext-1001");
    let seen = tap.collect(SECOND).await;
    let mut want = Vec::new();
    for c in &logged.channels {
        want.push(("channel.activated".to_owned(), c.target.clone()));
        want.push(("channel.ready".to_owned(), c.target.clone()));
    }
    assert_eq!(events(&seen), want);

    // Each response comes before the event it causes.
    let ext = &logged.channels[0].target;
    w.bridge
        .send_tapped(
            &tap,
            "channel.request.notready",
            ext,
            json!({"reasonCode": "lunch"}),
            "nr-1",
        )
        .await;
    let seen = tap.collect(SECOND).await;
    let order: Vec<(&str, &str)> = seen.iter().map(|s| (s.kind(), s.name())).collect();
    assert_eq!(
        order,
        [
            ("cti.response", "channel.request.notready"),
            ("cti.event", "channel.notready")
        ]
    );
    assert_eq!(seen[1].json["body"]["reasonCode"], "lunch");

    let init = w
        .driver
        .ok("channel.query.init", ext, json!({}))
        .await
        .unwrap();
    assert_eq!(init["state"], "ACTIVE");
    assert_eq!(init["agent-state"], "NOT_READY");
    assert_eq!(init["reasonCode"], "lunch");
    assert_eq!(init["interactions"], json!([]));

    w.driver
        .ok(
            "session.request.logout",
            &logged.session,
            json!({"reasonCode": "eod"}),
        )
        .await
        .unwrap();
    let seen = tap.collect(SECOND).await;
    let names: Vec<String> = events(&seen).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names, ["channel.deactivated"; 3],
        "the desktop's own logout is no session.loggedout"
    );

    for c in &logged.channels {
        w.driver
            .ok("channel.request.dispose", &c.target, json!({}))
            .await
            .unwrap();
    }
    w.driver
        .ok("channelgroup.request.dispose", &logged.group, json!({}))
        .await
        .unwrap();
    w.driver
        .ok("session.request.dispose", &logged.session, json!({}))
        .await
        .unwrap();
    let seen = tap.collect(SECOND).await;
    assert_eq!(
        events(&seen)
            .iter()
            .filter(|(n, _)| n == "channel.disposed")
            .count(),
        3
    );
    drop(tap); // it listens on `>`: with it gone, nobody answers a disposed destination
    w.bridge.client.flush().await.unwrap();
    for (name, target) in [
        ("session.query.init", logged.session.as_str()),
        ("channelgroup.query.init", logged.group.as_str()),
        ("channel.query.init", ext.as_str()),
    ] {
        assert_gone(&w.driver, name, target).await;
    }
}

#[tokio::test]
async fn no_event_before_init_and_init_shows_what_changed_in_between() {
    let w = world().await;
    let d = &w.driver;
    let (init, _) = session_and_group(d, "1002", "s2", "s2").await;
    assert_eq!(init["channel-groups"], json!([{"name": "place-1002"}]));
    d.ok(
        "channelgroup.request.createchannel",
        "s2.g",
        json!({"id": "t", "name": "ext-1002", "type": "TELEPHONY"}),
    )
    .await
    .unwrap();
    let mut tap = w.bridge.tap().await;
    // The CTI changes the channel between its creation and its init.
    w.bridge
        .cti(
            "activate",
            json!({"agent_id": "1002", "endpoint": "ext-1002"}),
        )
        .await;
    w.bridge
        .cti(
            "setstate",
            json!({"agent_id": "1002", "endpoint": "ext-1002", "state": "READY"}),
        )
        .await;
    assert!(
        events(&tap.collect(SECOND).await).is_empty(),
        "no event before init"
    );
    let init = d
        .ok("channel.query.init", "s2.g.t", json!({}))
        .await
        .unwrap();
    assert_eq!(
        (init["state"].as_str(), init["agent-state"].as_str()),
        (Some("ACTIVE"), Some("READY"))
    );
    // From now on, changes at the CTI are events.
    w.bridge
        .admin(&ForceState {
            agent_id: "1002".to_owned(),
            endpoint: "ext-1002".to_owned(),
            state: AgentState::NotReady,
            reason_code: Some("supervisor".to_owned()),
        })
        .await
        .expect("the simulator acts");
    let seen = tap.collect(SECOND).await;
    assert_eq!(
        events(&seen),
        [("channel.notready".to_owned(), "s2.g.t".to_owned())]
    );
    assert_eq!(
        seen.last().unwrap().json["body"]["reasonCode"],
        "supervisor"
    );
}

#[tokio::test]
async fn a_reconnecting_desktop_finds_its_live_channels() {
    let w = world().await;
    w.bridge
        .cti("login", json!({"agent_id": "1003", "password": "pw-1003"}))
        .await;
    w.bridge
        .cti(
            "activate",
            json!({"agent_id": "1003", "endpoint": "ext-1003"}),
        )
        .await;
    w.bridge
        .cti(
            "setstate",
            json!({"agent_id": "1003", "endpoint": "ext-1003", "state": "READY"}),
        )
        .await;
    w.bridge
        .cti(
            "activate",
            json!({"agent_id": "1003", "endpoint": "chat-1003"}),
        )
        .await;
    let d = &w.driver;
    let (_, group) = session_and_group(d, "1003", "s3", "desk.s3").await;
    assert_eq!(group["channels"].as_array().unwrap().len(), 3);
    let mut states = Vec::new();
    for (id, ch) in group["channels"].as_array().unwrap().iter().enumerate() {
        let target = format!("desk.s3.g.{id}");
        d.ok(
            "channelgroup.request.createchannel",
            "desk.s3.g",
            json!({"id": id.to_string(), "name": ch["end-point"], "type": ch["type"]}),
        )
        .await
        .unwrap();
        let init = d
            .ok("channel.query.init", &target, json!({}))
            .await
            .unwrap();
        states.push((
            ch["end-point"].as_str().unwrap().to_owned(),
            init["state"].clone(),
            init["agent-state"].clone(),
        ));
    }
    assert_eq!(
        states,
        [
            ("ext-1003".to_owned(), json!("ACTIVE"), json!("READY")),
            (
                "mail-1003".to_owned(),
                json!("INACTIVE"),
                json!("NOT_READY")
            ),
            ("chat-1003".to_owned(), json!("ACTIVE"), json!("NOT_READY")),
        ]
    );
}

#[tokio::test]
async fn logged_out_from_outside_and_channels_taken_by_another_agent() {
    let w = world().await;
    let mut tap = w.bridge.tap().await;
    let logged: LoggedIn = w.driver.login("1004", "pw-1004", "s4").await.unwrap();
    let ext = logged.channels[0].target.clone();
    quiet(&mut tap).await;
    w.driver
        .ok("channel.request.deactivate", &ext, json!({}))
        .await
        .unwrap();
    // Agent 1005 hot-desks onto place-1004's telephony channel.
    w.bridge
        .cti(
            "login",
            json!({"agent_id": "1005", "password": "pw-1005", "place": "place-1004"}),
        )
        .await;
    w.bridge
        .cti(
            "activate",
            json!({"agent_id": "1005", "endpoint": "ext-1004"}),
        )
        .await;
    w.bridge
        .cti(
            "deactivate",
            json!({"agent_id": "1005", "endpoint": "ext-1004"}),
        )
        .await;
    let seen = tap.collect(SECOND).await;
    let names: Vec<String> = events(&seen)
        .into_iter()
        .filter(|(_, t)| *t == ext)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "channel.deactivated",
            "channel.unavailable",
            "channel.available"
        ]
    );

    w.bridge
        .admin(&ForceLogout {
            agent_id: "1004".into(),
            reason_code: Some("forced".into()),
        })
        .await
        .expect("the simulator acts");
    let seen = tap.collect(SECOND).await;
    let all = events(&seen);
    assert!(
        all.contains(&("session.loggedout".to_owned(), "s4".to_owned())),
        "{all:?}"
    );
    let loggedout = seen
        .iter()
        .find(|s| s.name() == "session.loggedout")
        .unwrap();
    assert_eq!(loggedout.json["body"]["reasonCode"], "forced");
    assert_eq!(
        all.iter()
            .filter(|(n, _)| n == "channel.deactivated")
            .count(),
        2,
        "{all:?}"
    );
}

#[tokio::test]
async fn repeated_request_ids_and_concurrent_changes_on_one_channel() {
    let w = world().await;
    let logged = w.driver.login("1006", "pw-1006", "s6").await.unwrap();
    let ext = logged.channels[0].target.clone();
    let mut tap = w.bridge.tap().await;
    for _ in 0..3 {
        w.bridge
            .send_tapped(
                &tap,
                "channel.request.notready",
                &ext,
                json!({"reasonCode": "x"}),
                "same-id",
            )
            .await;
    }
    let seen = tap.collect(SECOND).await;
    assert_eq!(
        seen.iter().filter(|s| s.kind() == "cti.response").count(),
        3
    );
    // The login's own last events may still be arriving: only the channel's count.
    let on_ext: Vec<_> = events(&seen)
        .into_iter()
        .filter(|(_, t)| *t == ext)
        .collect();
    assert_eq!(on_ext.len(), 1, "acted on once: {on_ext:?}");

    // Twenty alternating changes at once, through both replicas.
    for i in 0..20 {
        let (name, body) = if i % 2 == 0 {
            ("channel.request.ready", json!({}))
        } else {
            (
                "channel.request.notready",
                json!({"reasonCode": format!("r{i}")}),
            )
        };
        w.bridge
            .send_tapped(&tap, name, &ext, body, &format!("c-{i}"))
            .await;
    }
    let seen = tap.collect(SECOND * 2).await;
    let responses: Vec<&Seen> = seen.iter().filter(|s| s.kind() == "cti.response").collect();
    assert_eq!(responses.len(), 20);
    assert!(
        responses
            .iter()
            .all(|r| r.json["header"]["result"] == "SUCCESS")
    );
    // Every response is followed by its event before the next response: serialised.
    let kinds: Vec<&str> = seen.iter().map(|s| s.kind()).collect();
    let pairs: Vec<[&str; 2]> = kinds
        .chunks(2)
        .map(|c| [c[0], c.get(1).copied().unwrap_or("")])
        .collect();
    assert!(
        pairs.iter().all(|p| *p == ["cti.response", "cti.event"]),
        "{kinds:?}"
    );
    let last = seen.last().unwrap();
    let init = w
        .driver
        .ok("channel.query.init", &ext, json!({}))
        .await
        .unwrap();
    let expected = if last.name() == "channel.ready" {
        "READY"
    } else {
        "NOT_READY"
    };
    assert_eq!(init["agent-state"], expected, "the last event is the state");
}

#[tokio::test]
async fn bad_input_on_every_destination_kind_is_answered_failure() {
    let w = world().await;
    let logged = w.driver.login("1007", "pw-1007", "s7").await.unwrap();
    let ext = &logged.channels[0].target;
    let cases = [
        (
            "session.request.createchannelgroup",
            "s7",
            json!({"id": "g2"}),
            "missing field `name`",
        ),
        (
            "session.request.createchannelgroup",
            "s7",
            json!({"id": "g2", "name": "place-1007"}),
            "already has its channel group",
        ),
        (
            "session.request.createchannelgroup",
            "s7",
            json!({"id": "g2", "name": "place-9"}),
            "is not this agent's",
        ),
        (
            "channelgroup.request.createchannel",
            "s7.g1",
            json!({"id": "x", "name": "ext-1007", "type": "FAX"}),
            "unknown variant `FAX`",
        ),
        (
            "channelgroup.request.createchannel",
            "s7.g1",
            json!({"id": "x", "name": "ext-1007", "type": "EMAIL"}),
            "is TELEPHONY, not EMAIL",
        ),
        (
            "channelgroup.request.createchannel",
            "s7.g1",
            json!({"id": "x", "name": "ext-9"}),
            "missing field `type`",
        ),
        (
            "channelgroup.request.createchannel",
            "s7.g1",
            json!({"id": "x", "name": "ext-9", "type": "TELEPHONY"}),
            "has no channel `ext-9`",
        ),
        (
            "channel.request.notready",
            ext,
            json!({"reasonCode": 5}),
            "invalid type",
        ),
        (
            "channel.request.dial",
            &logged.channels[1].target,
            json!({"destination": "+1"}),
            "only TELEPHONY channels dial",
        ),
        (
            "channel.query.weather",
            ext,
            json!({}),
            "is not a message a channel destination accepts",
        ),
        ("channel.query.init", ext, json!({"x": 1}), ""),
    ];
    for (name, target, body, want) in cases {
        let r = w.bridge.send(name, target, body).await;
        if want.is_empty() {
            assert!(
                r.outcome.is_success(),
                "unknown body keys are ignored: {r:?}"
            );
            continue;
        }
        let why = failure(&r);
        assert!(
            why.contains(want),
            "{name} on {target}: {why:?} lacks {want:?}"
        );
    }
    for (name, target) in [
        ("interaction.query.init", "s7.g1.c1.i1"),
        ("conversation.query.init", "s7.g1.c1.i1.v1"),
        ("session.query.init", "s-nobody"),
        ("interaction.query.init", ext.as_str()),
    ] {
        assert_gone(&w.driver, name, target).await;
    }
    let subjects = [
        "pb.session.s7",
        "pb.channelgroup.s7.g1",
        &format!("pb.channel.{ext}"),
    ];
    for subject in subjects {
        let r = w.bridge.send_raw(subject, b"{oops".to_vec()).await;
        assert!(failure(&r).starts_with("payload is not JSON"), "{subject}");
        let r = w.bridge.send_raw(subject, json!({"header": {"type": "cti.query", "name": "session.query.init", "target": "elsewhere", "requestId": "r"}, "body": {}}).to_string().into_bytes()).await;
        assert!(!failure(&r).is_empty());
    }
    // Still serving.
    w.driver
        .ok("channel.request.ready", ext, json!({}))
        .await
        .unwrap();
    // The same create again under a new requestId (a retry whose first answer was lost with
    // its replica): made again, which changes nothing, and answered SUCCESS.
    w.driver
        .ok(
            "session.request.createchannelgroup",
            "s7",
            json!({"id": "g1", "name": "place-1007"}),
        )
        .await
        .unwrap();
    let init = w
        .driver
        .ok("channelgroup.query.init", &logged.group, json!({}))
        .await
        .unwrap();
    assert_eq!(init["channels"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn unsupported_channels_answer_only_init_and_dispose() {
    let w = world().await;
    let d = &w.driver;
    session_and_group(d, "1008", "s8", "s8").await;
    d.ok(
        "channelgroup.request.createchannel",
        "s8.g",
        json!({"id": "u", "name": "mail-1008", "type": "UNSUPPORTED"}),
    )
    .await
    .unwrap();
    let init = d
        .ok("channel.query.init", "s8.g.u", json!({}))
        .await
        .unwrap();
    assert!(init.get("interactions").is_none(), "{init:?}");
    for name in [
        "channel.request.activate",
        "channel.request.ready",
        "channel.request.deactivate",
    ] {
        let r = d.send(name, "s8.g.u", json!({})).await.unwrap();
        assert!(failure(&r).contains("created UNSUPPORTED"), "{name}");
    }
    d.ok("channel.request.dispose", "s8.g.u", json!({}))
        .await
        .unwrap();
}

#[tokio::test]
async fn control_dispose_releases_every_session() {
    let w = world().await;
    let a = w.driver.login("1009", "pw-1009", "s9").await.unwrap();
    let b = w.driver.login("1010", "pw-1010", "s10").await.unwrap();
    w.driver
        .ok("cti.request.dispose", "PB1.CONTROL", json!({}))
        .await
        .unwrap();
    tokio::time::sleep(SECOND).await;
    for target in [&a.session, &b.session] {
        assert_gone(&w.driver, "session.query.init", target).await;
    }
    assert_gone(&w.driver, "channel.query.init", &a.channels[0].target).await;
    assert_gone(&w.driver, "channelgroup.query.init", &b.group).await;
    assert!(
        !w.stack.logs().contains("pw-1009"),
        "a password reached a log"
    );
}

#[tokio::test]
async fn a_command_queued_behind_a_dispose_is_answered_and_emptied_agents_are_forgotten() {
    let w = world().await;
    let logged = w.driver.login("1011", "pw-1011", "s11").await.unwrap();
    let ext = &logged.channels[0].target;
    let mut tap = w.bridge.tap().await;
    // Sent back to back, without waiting: the ready reaches the channel before it is gone.
    w.bridge
        .send_tapped(&tap, "channel.request.dispose", ext, json!({}), "d-1")
        .await;
    w.bridge
        .send_tapped(&tap, "channel.request.ready", ext, json!({}), "r-1")
        .await;
    let seen = tap.collect(SECOND).await;
    let responses: Vec<_> = seen.iter().filter(|s| s.kind() == "cti.response").collect();
    assert_eq!(responses.len(), 2, "every command is answered: {seen:?}");
    assert_eq!(responses[0].json["header"]["result"], "SUCCESS");
    assert_eq!(responses[1].json["header"]["requestId"], "r-1");
    assert_eq!(responses[1].json["header"]["result"], "FAILURE");
    assert_eq!(
        responses[1].json["header"]["errorMessage"],
        format!("unknown channel destination `{ext}`: it does not exist, or has been disposed")
    );
    drop(tap);

    // Dispose everything: the agent's records go away, not just empty.
    for c in &logged.channels[1..] {
        w.driver
            .ok("channel.request.dispose", &c.target, json!({}))
            .await
            .unwrap();
    }
    w.driver
        .ok("channelgroup.request.dispose", &logged.group, json!({}))
        .await
        .unwrap();
    w.driver
        .ok("session.request.dispose", &logged.session, json!({}))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(w.bridge.client.clone());
    for bucket in ["pb_sessions", "pb_channels"] {
        let store = js.get_key_value(bucket).await.unwrap();
        assert_eq!(
            store.get("1011").await.unwrap(),
            None,
            "{bucket} still holds the agent"
        );
    }
    // A refused session has no destination.
    let r = w
        .driver
        .send(
            "cti.request.createsession",
            "PB1.CONTROL",
            json!({"agentId": "1012", "agentPassword": "wrong", "sessionId": "s12", "destination": "s12"}),
        )
        .await
        .unwrap();
    assert!(failure(&r).contains("wrong login or password"), "{r:?}");
    assert_gone(&w.driver, "session.query.init", "s12").await;
}

/// Let what `tap` receives pass until nothing comes for 300 ms: a login's own events (its
/// channels made ready) follow their responses, and must not be counted as the next step's.
async fn quiet(tap: &mut pb_testkit::Tap) {
    while !tap.collect(Duration::from_millis(300)).await.is_empty() {}
}

#[tokio::test]
async fn channels_added_and_removed_at_the_cti_reach_the_group() {
    let w = world().await;
    let mut tap = w.bridge.tap().await;
    let logged = w.driver.login("1013", "pw-1013", "s13").await.unwrap();
    quiet(&mut tap).await;
    w.bridge
        .admin(&AddChannel {
            place: "place-1013".into(),
            endpoint: "cb-1013".into(),
            media: ChannelType::Callback,
        })
        .await
        .expect("the simulator acts");
    let seen = tap.collect(SECOND).await;
    assert_eq!(
        events(&seen),
        [(
            "channelgroup.channel.added".to_owned(),
            logged.group.clone()
        )]
    );
    assert_eq!(
        seen[0].json["body"],
        json!({"endpoint": "cb-1013", "type": "CALLBACK"})
    );
    // The bridge creates the new channel as it would any other.
    w.driver
        .ok(
            "channelgroup.request.createchannel",
            &logged.group,
            json!({"id": "cb", "name": "cb-1013", "type": "CALLBACK"}),
        )
        .await
        .unwrap();
    let init = w
        .driver
        .ok(
            "channel.query.init",
            &format!("{}.cb", logged.group),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(init["state"], "INACTIVE");
    w.bridge
        .admin(&RemoveChannel {
            place: "place-1013".into(),
            endpoint: "cb-1013".into(),
        })
        .await
        .expect("the simulator acts");
    let seen = tap.collect(SECOND).await;
    assert_eq!(
        events(&seen),
        [(
            "channelgroup.channel.removed".to_owned(),
            logged.group.clone()
        )]
    );
}

/// A channel-group replica subscribes once per kind per session (`pb.channel.<session>.>`),
/// so one agent's subscription also carries the commands of a session whose target extends
/// its own. Each command is answered once, by the agent whose destination it is; one for a
/// destination nobody has is answered FAILURE once.
#[tokio::test]
async fn sessions_whose_targets_extend_one_another_answer_once_each() {
    let w = world().await;
    let outer = w.driver.login("1020", "pw-1020", "s20").await.unwrap();
    let inner = w.driver.login("1021", "pw-1021", "s20.x").await.unwrap();
    assert_eq!(inner.channels[0].target, "s20.x.g1.c1");
    let mut tap = w.bridge.tap().await;
    let cases = [
        (
            "channel.query.init",
            inner.channels[0].target.as_str(),
            "SUCCESS",
        ),
        (
            "channel.query.init",
            outer.channels[0].target.as_str(),
            "SUCCESS",
        ),
        ("channelgroup.query.init", inner.group.as_str(), "SUCCESS"),
        ("channel.query.init", "s20.x.g1.c9", "FAILURE"),
        ("channel.query.init", "s20.g9.c1", "FAILURE"),
        ("channelgroup.query.init", "s20.x.g7", "FAILURE"),
    ];
    for (i, (name, target, _)) in cases.iter().enumerate() {
        w.bridge
            .send_tapped(&tap, name, target, json!({}), &format!("q-{i}"))
            .await;
    }
    let seen = tap.collect(SECOND).await;
    for (i, (name, target, result)) in cases.iter().enumerate() {
        let answers: Vec<_> = seen
            .iter()
            .filter(|s| s.kind() == "cti.response")
            .filter(|s| s.json["header"]["requestId"] == format!("q-{i}"))
            .collect();
        assert_eq!(answers.len(), 1, "{name} on {target}: {answers:?}");
        assert_eq!(
            answers[0].json["header"]["result"], *result,
            "{name} on {target}"
        );
        if *result == "FAILURE" {
            let why = answers[0].json["header"]["errorMessage"].as_str().unwrap();
            assert!(why.starts_with("unknown "), "{why}");
        }
    }
    let init = w
        .driver
        .ok("channel.query.init", &inner.channels[0].target, json!({}))
        .await
        .unwrap();
    assert_eq!(init["agent-state"], "READY");
}
