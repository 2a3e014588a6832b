//! The Processor Bridge's view (contract §8): a real TCP listener playing the bridge, the
//! gateway connected to it, the whole system behind as real processes. What the bridge
//! reads on its socket is compared with what the services published on NATS.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::{Read, WAIT, World, drain};
use pb_bridge::link::Events;
use pb_protocol::Kind;
use pb_protocol::channel::{AgentState, ChannelType};
use pb_sim_admin::{AddChannel, ForceLogout, ForceState, Hangup, Offer};
use pb_testkit::{RawEvent, sample};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(800);

/// The body of the next event named `name` on `target` read from the socket.
async fn until(events: &mut Events, name: &str, target: &str) -> Value {
    let wait = async {
        while let Some(delivered) = events.next().await {
            let json: Value = serde_json::from_slice(&delivered.payload).unwrap();
            if json["header"]["name"] == name && json["header"]["target"] == target {
                return json["body"].clone();
            }
        }
        panic!("the link closed while waiting for `{name}` on `{target}`");
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no `{name}` on `{target}` on the socket within {WAIT:?}"))
}

/// Wait until the socket says `interaction` is in `state`.
async fn state_of(events: &mut Events, interaction: &str, state: &str) {
    while until(events, "interaction.statechanged", interaction).await["interaction-state"] != state
    {
    }
}

/// Events as (target, name, body), in the order they came.
fn socket_events(frames: &[Read]) -> Vec<(String, String, Value)> {
    frames
        .iter()
        .filter(|f| f.is_event())
        .map(|f| {
            (
                f.target().to_owned(),
                f.name().to_owned(),
                f.json["body"].clone(),
            )
        })
        .collect()
}

fn nats_events(events: &[RawEvent]) -> Vec<(String, String, Value)> {
    events
        .iter()
        .map(|e| (e.target.clone(), e.name.clone(), e.body.clone()))
        .collect()
}

/// Each destination's events, in order.
fn by_destination(events: Vec<(String, String, Value)>) -> BTreeMap<String, Vec<(String, Value)>> {
    let mut map: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (target, name, body) in events {
        map.entry(target).or_default().push((name, body));
    }
    map
}

#[tokio::test]
async fn every_message_kind_crosses_the_socket_over_a_login_a_call_and_a_logout() {
    let w = World::start(1, &[]).await;
    let mut on_nats = w.nats.events().await;
    let mut tap = w.link.tap();
    let mut events = w.driver.events("pb.evt.>".into()).await.unwrap();
    let d = &w.driver;

    d.ok("cti.request.serverstatus", "PB1.CONTROL", json!({}))
        .await
        .unwrap();
    until(&mut events, "cti.serverstatuschanged", "PB1.CONTROL").await;
    let logged = d.login("1001", "pw-1001", "s-1001").await.unwrap();
    let phone = logged
        .channels
        .iter()
        .find(|c| c.media.as_str() == "TELEPHONY")
        .expect("agent 1001 has a telephony channel")
        .target
        .clone();

    // A call: offered at the CTI, taken, answered, hung up by the customer.
    let offered = w
        .nats
        .admin(&Offer {
            media: ChannelType::Telephony,
            data: json!({"order": "42"}).as_object().cloned().unwrap(),
            from: Some("+15550100".into()),
            agent_id: Some("1001".into()),
        })
        .await
        .expect("offer accepted");
    let name = offered.name;
    let added = until(&mut events, "channel.interaction.added", &phone).await;
    assert_eq!(added["name"], name.as_str());
    d.ok(
        "channel.request.createinteraction",
        &phone,
        json!({"id": "i1", "name": name}),
    )
    .await
    .unwrap();
    let interaction = format!("{phone}.i1");
    let init = d
        .ok("interaction.query.init", &interaction, json!({}))
        .await
        .unwrap();
    let leg = init["conversations"]["primary"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.ok(
        "interaction.request.createconversation",
        &interaction,
        json!({"id": "p", "name": leg}),
    )
    .await
    .unwrap();
    let conversation = format!("{interaction}.p");
    d.ok("conversation.query.init", &conversation, json!({}))
        .await
        .unwrap();
    d.ok("conversation.request.answer", &conversation, json!({}))
        .await
        .unwrap();
    let connected = until(&mut events, "conversation.statechanged", &conversation).await;
    assert_eq!(connected["conversation-state"], "CONNECTED");
    w.nats
        .admin(&Hangup {
            interaction: name.clone(),
        })
        .await
        .expect("the simulator acts");
    state_of(&mut events, &interaction, "ENDED").await;
    d.ok("interaction.request.complete", &interaction, json!({}))
        .await
        .unwrap();
    state_of(&mut events, &interaction, "COMPLETED").await;

    // A channel added at the CTI, then the agent logged out there.
    w.nats
        .admin(&AddChannel {
            place: "place-1001".into(),
            endpoint: "cb-1001".into(),
            media: ChannelType::Callback,
        })
        .await
        .expect("the simulator acts");
    until(&mut events, "channelgroup.channel.added", &logged.group).await;
    w.nats
        .admin(&ForceLogout {
            agent_id: "1001".into(),
            reason_code: Some("forced".into()),
        })
        .await
        .expect("the simulator acts");
    let loggedout = until(&mut events, "session.loggedout", &logged.session).await;
    assert_eq!(loggedout["reasonCode"], "forced");
    for channel in &logged.channels {
        d.ok("channel.request.dispose", &channel.target, json!({}))
            .await
            .unwrap();
    }
    d.ok("channelgroup.request.dispose", &logged.group, json!({}))
        .await
        .unwrap();
    d.ok("session.request.dispose", &logged.session, json!({}))
        .await
        .unwrap();

    let frames = drain(&mut tap, QUIET).await;
    // Every kind of destination answered and raised events on the socket.
    let kinds = |responses: bool| -> BTreeSet<&'static str> {
        frames
            .iter()
            .filter(|f| {
                if responses {
                    f.is_response()
                } else {
                    f.is_event()
                }
            })
            .filter_map(|f| Kind::of_name(f.name()).map(|k| k.token()))
            .collect()
    };
    let all: BTreeSet<&str> = Kind::ALL.iter().map(|k| k.token()).collect();
    assert_eq!(kinds(true), all, "responses of every kind");
    assert_eq!(kinds(false), all, "events of every kind");
    let names: BTreeSet<&str> = frames
        .iter()
        .filter(|f| f.is_event())
        .map(Read::name)
        .collect();
    for wanted in [
        "channel.activated",
        "channel.ready",
        "channel.interaction.added",
        "interaction.statechanged",
        "conversation.statechanged",
        "channelgroup.channel.added",
        "session.loggedout",
    ] {
        assert!(
            names.contains(wanted),
            "no {wanted} on the socket: {names:?}"
        );
    }
    // Exactly one response per requestId.
    let mut responses: HashMap<&str, usize> = HashMap::new();
    for f in frames.iter().filter(|f| f.is_response()) {
        *responses.entry(f.header("requestId")).or_default() += 1;
    }
    assert!(responses.values().all(|n| *n == 1), "{responses:?}");
    // Every event the services published reached the socket, each destination's in order.
    let published = on_nats.collect(QUIET).await;
    assert_eq!(
        by_destination(socket_events(&frames)),
        by_destination(nats_events(&published))
    );
    let metrics = w.stack.processes[w.stack.processes.len() - 1]
        .1
        .metrics()
        .await;
    assert!(
        sample(&metrics, "pb_gateway_frames_sent_total{type=\"event\"}") >= published.len() as f64
    );
    assert_eq!(sample(&metrics, "pb_gateway_link_up"), 1.0);
}

#[tokio::test]
async fn fifty_concurrent_logins_and_logouts_keep_their_order_on_the_socket() {
    let w = World::start(2, &[]).await;
    let mut on_nats = w.nats.events().await;
    let mut tap = w.link.tap();
    let done = AtomicUsize::new(0);
    let logged: Vec<_> = w
        .driver
        .login_range(1101, 50, 50, "s", &done)
        .await
        .into_iter()
        .map(|r| r.expect("every login succeeds"))
        .collect();
    let failures = w.driver.logout_all(&logged, 50).await;
    assert!(failures.is_empty(), "{failures:?}");
    let frames = drain(&mut tap, QUIET).await;
    let published = on_nats.collect(QUIET).await;

    // Each destination's events in the order the services published them.
    let socket = by_destination(socket_events(&frames));
    assert_eq!(socket, by_destination(nats_events(&published)));
    assert!(
        socket.len() >= 150,
        "only {} destinations raised events",
        socket.len()
    );

    // A response before the events its command causes.
    let at = |wanted: &dyn Fn(&Read) -> bool| frames.iter().position(wanted);
    for agent in &logged {
        let logout = at(&|f: &Read| {
            f.is_response() && f.name() == "session.request.logout" && f.target() == agent.session
        })
        .expect("the logout's response is on the socket");
        for channel in &agent.channels {
            let t = channel.target.as_str();
            for (command, event) in [
                ("channel.request.activate", "channel.activated"),
                ("channel.request.ready", "channel.ready"),
            ] {
                let response =
                    at(&|f: &Read| f.is_response() && f.name() == command && f.target() == t)
                        .unwrap_or_else(|| panic!("no {command} response for {t}"));
                let raised = at(&|f: &Read| f.is_event() && f.name() == event && f.target() == t)
                    .unwrap_or_else(|| panic!("no {event} on {t}"));
                assert!(
                    response < raised,
                    "{event} on {t} before its {command}'s response"
                );
            }
            let deactivated = at(&|f: &Read| {
                f.is_event() && f.name() == "channel.deactivated" && f.target() == t
            })
            .unwrap_or_else(|| panic!("no channel.deactivated on {t}"));
            assert!(
                logout < deactivated,
                "channel.deactivated on {t} before the logout's response"
            );
        }
    }
}

#[tokio::test]
async fn the_bridge_restarts_and_finds_its_sessions_live() {
    let w = World::start(1, &[]).await;
    let logged = w.driver.login("1001", "pw-1001", "s-1001").await.unwrap();
    let channel = logged.channels[0].target.clone();
    let addr = w.link.local_addr().to_string();
    let gateway = w.stack.processes.len() - 1;

    // The bridge goes away; the agent changes state at the CTI meanwhile.
    w.link.close();
    let deadline = tokio::time::Instant::now() + WAIT;
    while sample(
        &w.stack.processes[gateway].1.metrics().await,
        "pb_gateway_link_up",
    ) != 0.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never saw the link close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Holding the lease without a link is not ready.
    let (status, body) =
        pb_testkit::http_get(&w.stack.processes[gateway].1.ops_addr(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not connected"), "{body}");
    w.nats
        .admin(&ForceState {
            agent_id: "1001".to_owned(),
            endpoint: logged.channels[0].endpoint.clone(),
            state: AgentState::NotReady,
            reason_code: Some("lunch".to_owned()),
        })
        .await
        .expect("the simulator acts");
    let deadline = tokio::time::Instant::now() + WAIT;
    while sample(
        &w.stack.processes[gateway].1.metrics().await,
        "pb_gateway_events_dropped_total",
    ) == 0.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events raised while down were not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The bridge comes back on the same address: the gateway reconnects; the session is
    // created again and found as it is now, without a replay of what was missed.
    let link = pb_bridge::link::TcpLink::listen(
        &addr,
        pb_bridge::link::TcpOptions::new(pb_protocol::Subjects::default(), common::control()),
    )
    .await
    .expect("listen again on the same address");
    let mut tap = link.tap();
    link.connected(WAIT).await.expect("the gateway reconnects");
    let driver = common::driver(&link);
    driver
        .create_session("1001", "pw-1001", "again", "s-1001")
        .await
        .expect("the kept session is created again");
    let init = driver
        .ok("channel.query.init", &channel, json!({}))
        .await
        .unwrap();
    assert_eq!(init["state"], "ACTIVE", "{init:?}");
    assert_eq!(init["agent-state"], "NOT_READY", "{init:?}");
    let replayed: Vec<_> = drain(&mut tap, QUIET)
        .await
        .into_iter()
        .filter(|f| f.is_event() && f.target() == channel)
        .collect();
    assert!(replayed.is_empty(), "events replayed: {replayed:?}");
    let metrics = w.stack.processes[gateway].1.metrics().await;
    assert!(
        sample(&metrics, "pb_gateway_reconnects_total") >= 1.0,
        "{metrics}"
    );
}
