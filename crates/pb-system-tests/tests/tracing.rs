//! One trace per bridge command, across every process: a whole login through the CLI,
//! exported over OTLP to a real receiver that decodes the protocol's protobuf.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use pb_testkit::{OtlpReceiver, ReceivedSpan, Stack};

/// Commands of the end of a login, whose spans arrive last.
const LAST_COMMANDS: [&str; 4] = [
    "session.query.init",
    "channelgroup.request.createchannel",
    "channel.request.activate",
    "channel.request.ready",
];

const SERVICES: [&str; 5] = [
    "pb-bridge",
    "pb-control",
    "pb-session",
    "pb-channel-group",
    "pb-cti-sim",
];

async fn cli(stack: &Stack, otlp: &OtlpReceiver, args: &[&str]) {
    let out = pb_system_tests::cli()
        .args(args)
        .env("NATS_URL", stack.nats.url())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_login_through_the_cli_is_one_trace_across_every_process() {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let stack = Stack::start(
        1,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    cli(&stack, &otlp, &["init"]).await;
    cli(&stack, &otlp, &["login", "1001"]).await;

    // Wait until the login's trace holds spans of all five processes.
    let started = Instant::now();
    let (login, trace) = loop {
        let spans = otlp.spans();
        if let Some(login) = spans
            .iter()
            .find(|s| s.name == "login" && s.service == "pb-bridge")
        {
            let trace: Vec<ReceivedSpan> = spans
                .iter()
                .filter(|s| s.trace_id == login.trace_id)
                .cloned()
                .collect();
            let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
            // The services' command spans (the bridge's own spans carry the names too).
            let commands: BTreeSet<&str> = trace
                .iter()
                .filter(|s| s.name == "command")
                .filter_map(|s| s.attribute("pb.message"))
                .collect();
            // Each process exports in its own batches: a child can arrive before its parent.
            // Wait for the last commands of the login, and for every parent to be there.
            let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
            let complete = trace
                .iter()
                .all(|s| s.parent_span_id.is_empty() || ids.contains(s.parent_span_id.as_str()));
            if complete
                && SERVICES.iter().all(|s| services.contains(s))
                && LAST_COMMANDS.iter().all(|c| commands.contains(c))
            {
                break (login.clone(), trace);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the login's trace never held spans of every process: {:#?}",
            otlp.spans()
                .iter()
                .map(|s| (&s.service, &s.name, &s.trace_id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // One root, and every other span's parent is in the same trace.
    assert_eq!(login.parent_span_id, "", "the login is the root");
    let by_id: HashMap<&str, &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for span in &trace {
        if span.span_id != login.span_id {
            assert!(
                by_id.contains_key(span.parent_span_id.as_str()),
                "{} `{}` has a parent outside the trace",
                span.service,
                span.name
            );
        }
    }
    let parent = |span: &ReceivedSpan| by_id[span.parent_span_id.as_str()].clone();
    let chain = |span: &ReceivedSpan| {
        let mut names = vec![format!("{}:{}", span.service, span.name)];
        let mut at = span.clone();
        while !at.parent_span_id.is_empty() {
            at = parent(&at);
            names.push(format!("{}:{}", at.service, at.name));
        }
        names
    };
    // The session's creation: bridge -> control -> (CTI validate) and -> session -> CTI login.
    let created = trace
        .iter()
        .find(|s| {
            s.service == "pb-control"
                && s.name == "command"
                && s.attribute("pb.message") == Some("cti.request.createsession")
        })
        .expect("control's createsession span");
    assert_eq!(
        chain(created),
        ["pb-control:command", "pb-bridge:bridge", "pb-bridge:login"]
    );
    assert_eq!(created.attribute("pb.target"), Some("PB1.CONTROL"));
    assert!(
        created
            .attribute("pb.request_id")
            .is_some_and(|id| !id.is_empty())
    );
    let session_login = trace
        .iter()
        .find(|s| s.service == "pb-cti-sim" && s.attribute("op") == Some("login"))
        .expect("the CTI's login span");
    assert_eq!(
        chain(session_login),
        [
            "pb-cti-sim:cti",
            "pb-session:cti.call",
            "pb-session:internal",
            "pb-control:command",
            "pb-bridge:bridge",
            "pb-bridge:login"
        ]
    );
    // The channel group's creation hops session -> channel group.
    let group = trace
        .iter()
        .find(|s| s.service == "pb-channel-group" && s.name == "internal")
        .expect("the channel-group hand-off");
    assert_eq!(chain(group)[1], "pb-session:command");
    // Every command of the login is in the trace, and no password anywhere.
    let commands: BTreeSet<&str> = trace
        .iter()
        .filter(|s| s.name == "command")
        .filter_map(|s| s.attribute("pb.message"))
        .collect();
    for name in LAST_COMMANDS {
        assert!(commands.contains(name), "{name} missing: {commands:?}");
    }
    for span in &trace {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains("pw-1001"),
                "a password in {key} of {} `{}`",
                span.service,
                span.name
            );
        }
    }
}
