//! The control destination end to end: a real nats-server, the simulated CTI and the
//! control service as real processes, the bridge played by the test.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pb_protocol::{Outcome, Response};
use pb_sim_admin::{RejectAgent, SetDelay, SetLink};
use pb_testkit::{Bridge, NatsServer, Process};
use serde_json::{Value, json};

const TARGET: &str = "PB1.CONTROL";
const SECOND: Duration = Duration::from_secs(1);
/// A password that must never show up in a log.
const CANARY: &str = "Canary-Pw-7c1f";

struct System {
    nats: NatsServer,
    sim: Option<Process>,
    controls: Vec<Process>,
    bridge: Bridge,
}

fn env(nats: &NatsServer, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("NATS_URL", nats.url()),
        ("PB_PROCESSOR", "PB1".to_owned()),
        ("PB_LINK_POLL_MS", "200".to_owned()),
        ("PB_DRAIN_GRACE_MS", "200".to_owned()),
        ("SIM_AGENTS", "10".to_owned()),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k, v.to_string()));
    }
    env
}

async fn system(replicas: usize, extra: &[(&'static str, &str)]) -> System {
    let nats = NatsServer::start();
    let sim = Process::spawn("pb-cti-sim", &env(&nats, extra))
        .ready()
        .await;
    let mut controls = Vec::new();
    for i in 0..replicas {
        let instance = format!("control-{i}");
        let mut e = env(&nats, extra);
        e.push(("PB_INSTANCE", instance));
        controls.push(Process::spawn("pb-control", &e).ready().await);
    }
    let bridge = Bridge::new(nats.client().await);
    System {
        nats,
        sim: Some(sim),
        controls,
        bridge,
    }
}

impl System {
    async fn send(&self, name: &str, body: Value) -> Response {
        self.bridge.send(name, TARGET, body).await
    }

    async fn report_status(&self) {
        let r = self.send("cti.request.serverstatus", json!({})).await;
        assert!(r.outcome.is_success(), "{r:?}");
    }

    fn logs(&self) -> String {
        let mut all = self
            .controls
            .iter()
            .map(Process::logs)
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(sim) = &self.sim {
            all.push_str(&sim.logs());
        }
        all
    }
}

fn failure(r: &Response) -> &str {
    match &r.outcome {
        Outcome::Failure(why) => why,
        Outcome::Success(body) => panic!("expected FAILURE, got SUCCESS {body:?} for {}", r.name),
    }
}

fn success(r: &Response) -> &pb_protocol::Body {
    match &r.outcome {
        Outcome::Success(body) => body,
        Outcome::Failure(why) => panic!("expected SUCCESS for {}, got FAILURE: {why}", r.name),
    }
}

fn session_request(password: &str) -> Value {
    json!({"agentId": "1001", "agentPassword": password, "sessionId": "s-1", "destination": "s-1"})
}

#[tokio::test]
async fn initialisation_answers_status_before_its_event_then_capabilities() {
    let sys = system(1, &[]).await;
    let mut tap = sys.bridge.tap().await;
    sys.bridge
        .send_tapped(
            &tap,
            "cti.request.serverstatus",
            TARGET,
            json!({}),
            "{init-1}",
        )
        .await;
    let seen = tap.collect(SECOND).await;
    let order: Vec<(&str, &str)> = seen.iter().map(|s| (s.kind(), s.name())).collect();
    assert_eq!(
        order,
        [
            ("cti.response", "cti.request.serverstatus"),
            ("cti.event", "cti.serverstatuschanged")
        ]
    );
    let response = &seen[0].json["header"];
    assert_eq!(response["requestId"], "{init-1}");
    assert_eq!(response["target"], TARGET);
    assert_eq!(response["result"], "SUCCESS");
    assert!(response.get("errorMessage").is_none());
    let event = &seen[1].json;
    assert_eq!(event["header"]["target"], TARGET);
    assert_eq!(event["body"]["status"], "in-service");
    assert_eq!(seen[1].subject, "pb.evt.control.PB1.CONTROL");

    let caps = sys.send("cti.query.capabilities", json!({})).await;
    let body = success(&caps);
    assert_eq!(body["channel-groups-supported"], true);
    assert_eq!(body["channel-groups-max-per-agent"], 1);
    assert_eq!(body["channel-groups-media-types"], "TELEPHONY,EMAIL,CHAT");
    assert_eq!(caps.name, "cti.query.capabilities");
}

#[tokio::test]
async fn agent_info_and_credential_validation() {
    let sys = system(1, &[]).await;
    let info = sys
        .send(
            "cti.query.agentinfo",
            json!({"agentId": "1002", "requestingAgentLogin": "1001", "requestingAgentPassword": "pw-1001"}),
        )
        .await;
    let body = success(&info);
    assert_eq!(body["switch-agent-id"], "sw-1002");
    assert!(body["first-name"].is_string() && body["last-name"].is_string());
    assert_eq!(body["cti-specific"]["place"], "place-1002");

    let wrong = sys
        .send(
            "cti.query.agentinfo",
            json!({"agentId": "1002", "requestingAgentLogin": "1001", "requestingAgentPassword": CANARY}),
        )
        .await;
    assert_eq!(
        failure(&wrong),
        "wrong login or password for requesting agent `1001`"
    );

    let ok = sys
        .send(
            "cti.request.validateagentcredentials",
            json!({"agentId": "1003", "agentLogin": "1003", "agentPassword": "pw-1003"}),
        )
        .await;
    success(&ok);
    let bad = sys
        .send(
            "cti.request.validateagentcredentials",
            json!({"agentId": "1003", "agentLogin": "1003", "agentPassword": CANARY}),
        )
        .await;
    assert_eq!(failure(&bad), "wrong login or password for agent `1003`");
    let unknown = sys
        .send(
            "cti.request.validateagentcredentials",
            json!({"agentId": "9999", "agentLogin": "9999", "agentPassword": "x"}),
        )
        .await;
    assert_eq!(failure(&unknown), "the CTI knows no agent `9999`");
    // Rejected by the CTI (fault injection).
    sys.bridge
        .admin(&RejectAgent {
            agent_id: "1003".into(),
            rejected: true,
        })
        .await
        .expect("the simulator acts");
    let rejected = sys
        .send(
            "cti.request.validateagentcredentials",
            json!({"agentId": "1003", "agentLogin": "1003", "agentPassword": "pw-1003"}),
        )
        .await;
    assert_eq!(failure(&rejected), "the CTI rejects agent `1003`");
}

#[tokio::test]
async fn create_session_is_refused_before_in_service_on_bad_credentials_and_while_pausing() {
    let sys = system(1, &[]).await;
    let before = sys
        .send("cti.request.createsession", session_request("pw-1001"))
        .await;
    assert!(
        failure(&before).contains("has not reported in-service yet"),
        "{before:?}"
    );

    let mut events = sys.bridge.events().await;
    sys.report_status().await;
    events.expect("cti.serverstatuschanged", SECOND).await;

    let bad = sys
        .send("cti.request.createsession", session_request(CANARY))
        .await;
    assert_eq!(failure(&bad), "wrong login or password for agent `1001`");
    let bad_target = sys
        .send(
            "cti.request.createsession",
            json!({"agentId": "1001", "agentPassword": "pw-1001", "sessionId": "s", "destination": "a..b"}),
        )
        .await;
    assert!(failure(&bad_target).starts_with("destination `a..b` cannot be a session target"));

    // In service with good credentials, control hands off to the session service; with none
    // running, the FAILURE says so (the hand-off itself is the session service's test).
    let handed = sys
        .send("cti.request.createsession", session_request("pw-1001"))
        .await;
    assert_eq!(
        failure(&handed),
        "no session service is running (nobody answers pb.int.session.create)"
    );

    sys.bridge
        .admin(&SetLink::down("switch maintenance"))
        .await
        .expect("the simulator acts");
    let lost = events.expect("cti.communicationlost", SECOND * 3).await;
    assert_eq!(lost.body["reason"], "switch maintenance");
    let status = events.expect("cti.serverstatuschanged", SECOND).await;
    assert_eq!(status.body["status"], "pausing-service");
    let paused = sys
        .send("cti.request.createsession", session_request("pw-1001"))
        .await;
    assert_eq!(
        failure(&paused),
        "cannot create a session while the client is pausing-service: switch maintenance"
    );
    // Queries keep being served while pausing; CTI calls say the link is down.
    let caps = sys.send("cti.query.capabilities", json!({})).await;
    success(&caps);
    let info = sys
        .send(
            "cti.query.agentinfo",
            json!({"agentId": "1002", "requestingAgentLogin": "1001", "requestingAgentPassword": "pw-1001"}),
        )
        .await;
    assert_eq!(failure(&info), "the CTI link is down (switch maintenance)");

    sys.bridge
        .admin(&SetLink::up())
        .await
        .expect("the simulator acts");
    let restored = events.expect("cti.communicationrestored", SECOND * 3).await;
    assert_eq!(restored.target, TARGET);
    let status = events.expect("cti.serverstatuschanged", SECOND).await;
    assert_eq!(status.body["status"], "in-service");
    let again = sys
        .send("cti.request.createsession", session_request("pw-1001"))
        .await;
    assert!(failure(&again).starts_with("no session service is running"));
}

#[tokio::test]
async fn create_session_is_refused_while_stopping() {
    let mut sys = system(1, &[("PB_DRAIN_GRACE_MS", "3000")]).await;
    let mut events = sys.bridge.events().await;
    sys.report_status().await;
    events.expect("cti.serverstatuschanged", SECOND).await;
    sys.controls[0].signal("TERM");
    let stopping = events.expect("cti.serverstatuschanged", SECOND * 2).await;
    assert_eq!(stopping.body["status"], "stopping-service");
    let refused = sys
        .send("cti.request.createsession", session_request("pw-1001"))
        .await;
    assert_eq!(
        failure(&refused),
        "cannot create a session while the client is stopping-service"
    );
    // Existing work is still served during the grace period, then the replica exits cleanly.
    success(&sys.send("cti.query.capabilities", json!({})).await);
    let status = sys.controls[0].wait_exit(SECOND * 10).await;
    assert!(status.success(), "{status:?}");

    // A replica coming back ends the stop.
    let mut e = env(&sys.nats, &[]);
    e.push(("PB_INSTANCE", "control-back".to_owned()));
    sys.controls
        .push(Process::spawn("pb-control", &e).ready().await);
    let back = events.expect("cti.serverstatuschanged", SECOND * 3).await;
    assert_eq!(back.body["status"], "in-service");
}

#[tokio::test]
async fn one_replica_stopping_does_not_stop_the_processor() {
    let mut sys = system(2, &[]).await;
    let mut events = sys.bridge.events().await;
    sys.report_status().await;
    events.expect("cti.serverstatuschanged", SECOND).await;
    sys.controls[0].signal("TERM");
    sys.controls[0].wait_exit(SECOND * 10).await;
    let after = events.collect(SECOND).await;
    assert!(
        after.is_empty(),
        "no status change while a replica remains: {after:?}"
    );
    assert!(
        sys.controls[0]
            .logs()
            .contains("another control replica serves on")
    );
    success(&sys.send("cti.query.capabilities", json!({})).await);
}

#[tokio::test]
async fn sigterm_exits_promptly_even_when_nats_is_gone() {
    let mut sys = system(1, &[]).await;
    sys.report_status().await;
    drop(std::mem::replace(&mut sys.nats, NatsServer::start()));
    sys.controls[0].signal("TERM");
    let status = sys.controls[0].wait_exit(SECOND * 15).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_input_of_every_kind_is_answered_failure_and_the_service_keeps_serving() {
    let sys = system(1, &[]).await;
    let subject = "pb.control.PB1.CONTROL";
    let h = |name: &str, target: &str| {
        json!({"type": if name.contains(".query.") {"cti.query"} else {"cti.request"},
               "name": name, "target": target, "requestId": "{bad-1}"})
    };
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"not json at all".to_vec(), "payload is not JSON", ""),
        (br#"{"body":{}}"#.to_vec(), "envelope lacks `header`", ""),
        (json!({"header": h("cti.query.capabilities", TARGET)}).to_string().into_bytes(), "envelope lacks `body`", "{bad-1}"),
        (json!({"header": {"type": "cti.event", "name": "cti.query.capabilities", "target": TARGET, "requestId": "{bad-1}"}, "body": {}}).to_string().into_bytes(),
            "header type `cti.event` does not fit `cti.query.capabilities`", "{bad-1}"),
        (json!({"header": h("cti.query.weather", TARGET), "body": {}}).to_string().into_bytes(),
            "`cti.query.weather` is not a message a control destination accepts", "{bad-1}"),
        (json!({"header": h("session.query.init", TARGET), "body": {}}).to_string().into_bytes(),
            "`session.query.init` is not a message a control destination accepts (it is a session message)", "{bad-1}"),
        (json!({"header": h("cti.query.capabilities", "PB9.CONTROL"), "body": {}}).to_string().into_bytes(),
            "header target `PB9.CONTROL` does not match the subject's target `PB1.CONTROL`", "{bad-1}"),
        (json!({"header": h("cti.query.agentinfo", TARGET), "body": {"agentId": "1001"}}).to_string().into_bytes(),
            "body of `cti.query.agentinfo` is invalid: missing field `requestingAgentLogin`", "{bad-1}"),
        (json!({"header": h("cti.request.createsession", TARGET),
                "body": {"agentId": "1001", "agentPassword": 12345, "sessionId": "s", "destination": "s"}}).to_string().into_bytes(),
            "body of `cti.request.createsession` is invalid: a secret must be a string", "{bad-1}"),
    ];
    for (payload, want, request_id) in cases {
        let r = sys.bridge.send_raw(subject, payload).await;
        let why = failure(&r);
        assert!(why.contains(want), "{why:?} should contain {want:?}");
        assert_eq!(r.request_id, request_id);
    }
    // A command without a reply subject cannot be answered; it is logged, not fatal.
    sys.bridge
        .client
        .publish(subject, "{}".into())
        .await
        .unwrap();
    success(&sys.send("cti.query.capabilities", json!({})).await);
    sys.controls[0]
        .wait_for_log(
            "a command without a reply subject cannot be answered",
            SECOND,
        )
        .await;
    assert!(
        !sys.logs().contains("12345"),
        "a mistyped password reached a log"
    );
}

#[tokio::test]
async fn a_repeated_request_id_is_answered_again_without_acting_twice() {
    let sys = system(2, &[]).await;
    let mut tap = sys.bridge.tap().await;
    for _ in 0..4 {
        sys.bridge
            .send_tapped(
                &tap,
                "cti.request.serverstatus",
                TARGET,
                json!({}),
                "{same}",
            )
            .await;
    }
    let seen = tap.collect(SECOND * 2).await;
    let responses: Vec<_> = seen.iter().filter(|s| s.kind() == "cti.response").collect();
    let events: Vec<_> = seen.iter().filter(|s| s.kind() == "cti.event").collect();
    assert_eq!(responses.len(), 4, "every copy is answered: {seen:?}");
    assert!(
        responses.iter().all(|r| r.json == responses[0].json),
        "with the same answer"
    );
    assert_eq!(events.len(), 1, "but acted on once: {events:?}");
    // A fresh requestId acts again.
    sys.bridge
        .send_tapped(
            &tap,
            "cti.request.serverstatus",
            TARGET,
            json!({}),
            "{other}",
        )
        .await;
    let seen = tap.collect(SECOND).await;
    assert_eq!(seen.iter().filter(|s| s.kind() == "cti.event").count(), 1);
}

#[tokio::test]
async fn two_replicas_answer_each_command_once_and_raise_each_event_once() {
    let sys = system(2, &[]).await;
    let mut tap = sys.bridge.tap().await;
    let n = 60;
    for i in 0..n {
        sys.bridge
            .send_tapped(
                &tap,
                "cti.query.capabilities",
                TARGET,
                json!({}),
                &format!("q-{i}"),
            )
            .await;
    }
    sys.bridge
        .send_tapped(
            &tap,
            "cti.request.serverstatus",
            TARGET,
            json!({}),
            "status-1",
        )
        .await;
    let seen = tap.collect(SECOND * 2).await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for s in seen.iter().filter(|s| s.kind() == "cti.response") {
        *per_id
            .entry(s.json["header"]["requestId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), n + 1);
    assert!(per_id.values().all(|&c| c == 1), "{per_id:?}");
    assert_eq!(seen.iter().filter(|s| s.kind() == "cti.event").count(), 1);
    for control in &sys.controls {
        assert!(control.logs().contains("SUCCESS"), "both replicas serve");
    }

    // A link drop seen by both replicas (events and polling) is raised once.
    sys.bridge
        .admin(&SetLink::down("fibre cut"))
        .await
        .expect("the simulator acts");
    let seen = tap.collect(SECOND * 2).await;
    let names: Vec<&str> = seen.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["cti.communicationlost", "cti.serverstatuschanged"]);
    sys.bridge
        .admin(&SetLink::up())
        .await
        .expect("the simulator acts");
    let seen = tap.collect(SECOND * 2).await;
    let names: Vec<&str> = seen.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        ["cti.communicationrestored", "cti.serverstatuschanged"]
    );
}

#[tokio::test]
async fn a_slow_cti_beyond_the_deadline_is_a_failure_within_the_deadline() {
    let sys = system(1, &[("PB_DEADLINE_MS", "1000")]).await;
    sys.bridge
        .admin(&SetDelay { ms: 3000 })
        .await
        .expect("the simulator acts");
    let started = Instant::now();
    let r = sys
        .send(
            "cti.request.validateagentcredentials",
            json!({"agentId": "1001", "agentLogin": "1001", "agentPassword": "pw-1001"}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(failure(&r), "the CTI did not answer within 900 ms");
    assert!(
        took < Duration::from_millis(1000),
        "answered after {took:?}"
    );
    sys.bridge
        .admin(&SetDelay { ms: 0 })
        .await
        .expect("the simulator acts");
    success(
        &sys.send(
            "cti.request.validateagentcredentials",
            json!({"agentId": "1001", "agentLogin": "1001", "agentPassword": "pw-1001"}),
        )
        .await,
    );
}

#[tokio::test]
async fn a_dead_cti_adapter_is_a_lost_link_and_its_return_restores_it() {
    let mut sys = system(1, &[]).await;
    let mut events = sys.bridge.events().await;
    sys.report_status().await;
    events.expect("cti.serverstatuschanged", SECOND).await;
    sys.sim.take().unwrap().signal("KILL");
    let lost = events.expect("cti.communicationlost", SECOND * 3).await;
    assert!(
        lost.body["reason"]
            .as_str()
            .unwrap()
            .starts_with("the CTI adapter does not answer")
    );
    assert_eq!(
        events.expect("cti.serverstatuschanged", SECOND).await.body["status"],
        "pausing-service"
    );
    let sim = Process::spawn("pb-cti-sim", &env(&sys.nats, &[]))
        .ready()
        .await;
    sys.sim = Some(sim);
    events.expect("cti.communicationrestored", SECOND * 3).await;
    assert_eq!(
        events.expect("cti.serverstatuschanged", SECOND).await.body["status"],
        "in-service"
    );
}

#[tokio::test]
async fn passwords_never_reach_a_log_line() {
    let sys = system(1, &[("PB_LOG", "trace,async_nats=debug")]).await;
    sys.report_status().await;
    for (name, body) in [
        (
            "cti.query.agentinfo",
            json!({"agentId": "1002", "requestingAgentLogin": "1001", "requestingAgentPassword": CANARY}),
        ),
        (
            "cti.request.validateagentcredentials",
            json!({"agentId": "1001", "agentLogin": "1001", "agentPassword": CANARY}),
        ),
        ("cti.request.createsession", session_request(CANARY)),
        ("cti.request.createsession", session_request("pw-1001")),
        (
            "cti.query.agentinfo",
            json!({"agentId": "1002", "requestingAgentLogin": "1001", "requestingAgentPassword": "pw-1001"}),
        ),
    ] {
        sys.send(name, body).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = sys.logs();
    assert!(
        logs.contains("cti.request.createsession"),
        "the logs were captured"
    );
    assert!(!logs.contains(CANARY), "a wrong password reached a log");
    assert!(!logs.contains("pw-1001"), "a right password reached a log");
}

#[tokio::test]
async fn a_store_that_refuses_writes_is_reported_not_retried_in_a_loop() {
    let mut s = system(1, &[]).await;
    s.report_status().await;
    // The control bucket's stream sealed: reads work, every write is refused.
    let js = async_nats::jetstream::new(s.nats.client().await);
    let mut stream = js.get_stream("KV_pb_control").await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.sealed = true;
    js.update_stream(config).await.unwrap();

    // The adapter goes away: each poll's write fails and is logged, the next poll tries
    // again (the old loop retried at once, forever, and never logged).
    s.sim.take();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logs = s.logs();
    let failures = logs.matches("could not record the CTI link state").count();
    assert!(
        (1..=15).contains(&failures),
        "{failures} failed writes logged in 2 s of 200 ms polls:\n{logs}"
    );
    // Commands are still answered at once.
    let started = Instant::now();
    let r = s.send("cti.query.capabilities", json!({})).await;
    assert!(started.elapsed() < SECOND, "{r:?}");
}
