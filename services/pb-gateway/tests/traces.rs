//! Traces through the gateway (contract §8.10): the bridge sends no trace context, so the
//! gateway starts a trace for each command frame, and that trace runs through every
//! process the command touches. With export off the context still travels: every event
//! carries a `traceparent`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pb_testkit::{OtlpReceiver, ReceivedSpan};
use serde_json::json;

use common::World;

/// The processes a channel activation touches: the gateway, the channel group's owner and
/// the CTI.
const ACTIVATE: [&str; 3] = ["pb-gateway", "pb-channel-group", "pb-cti-sim"];
/// A session's creation runs through control, session and the CTI.
const CREATE_SESSION: [&str; 4] = ["pb-gateway", "pb-control", "pb-session", "pb-cti-sim"];

#[tokio::test]
async fn each_command_frame_is_one_trace_from_the_gateway_through_every_process() {
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let w = World::start(
        1,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let logged = w.driver.login("1001", "pw-1001", "s-1001").await.unwrap();

    // Each command's gateway span is a root, in a trace of its own.
    let started = Instant::now();
    let traces = loop {
        let spans = otlp.spans();
        let roots: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| s.service == "pb-gateway" && s.name == "gateway")
            .collect();
        let trace_of = |message: &str, target: &str| {
            roots
                .iter()
                .find(|s| {
                    s.attribute("pb.message") == Some(message)
                        && s.attribute("pb.target") == Some(target)
                })
                .map(|s| s.trace_id.clone())
        };
        let services_in = |trace: &str| -> BTreeSet<String> {
            spans
                .iter()
                .filter(|s| s.trace_id == trace)
                .map(|s| s.service.clone())
                .collect()
        };
        let create = trace_of("cti.request.createsession", "PB1.CONTROL");
        let activate = trace_of("channel.request.activate", &logged.channels[0].target);
        if let (Some(create), Some(activate)) = (create, activate) {
            let (c, a) = (services_in(&create), services_in(&activate));
            if CREATE_SESSION.iter().all(|s| c.contains(*s))
                && ACTIVATE.iter().all(|s| a.contains(*s))
            {
                let mut by_trace: BTreeMap<String, usize> = BTreeMap::new();
                for root in &roots {
                    *by_trace.entry(root.trace_id.clone()).or_default() += 1;
                    assert_eq!(root.parent_span_id, "", "the gateway's span is a root");
                }
                break by_trace;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no complete traces from the gateway: {:#?}",
            spans
                .iter()
                .map(|s| (&s.service, &s.name, &s.trace_id, s.attribute("pb.message")))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One trace per command frame: no two commands share one.
    assert!(traces.len() >= 8, "only {} traces", traces.len());
    assert!(traces.values().all(|n| *n == 1), "{traces:?}");

    // A logout's channel events come from the CTI's logout events, through the channel
    // group: they continue the logout's trace.
    let mut events = w.nats.client.subscribe("pb.evt.>").await.unwrap();
    w.nats.client.flush().await.unwrap();
    w.driver
        .ok("session.request.logout", &logged.session, json!({}))
        .await
        .unwrap();
    let mut deactivated = BTreeSet::new();
    let mut seen = 0;
    while seen < logged.channels.len() {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("the logout's channel events")
            .unwrap();
        if event
            .payload
            .windows(19)
            .any(|w| w == b"channel.deactivated")
        {
            deactivated.insert(trace_id(&event));
            seen += 1;
        }
    }
    let started = Instant::now();
    let logout = loop {
        let found = otlp.spans().into_iter().find(|s| {
            s.service == "pb-gateway" && s.attribute("pb.message") == Some("session.request.logout")
        });
        if let Some(span) = found {
            break span.trace_id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no span of the logout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(deactivated, BTreeSet::from([logout]));
}

/// The trace id of a message's `traceparent` (which every event carries).
fn trace_id(message: &async_nats::Message) -> String {
    let traceparent = message
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .unwrap_or_else(|| panic!("no traceparent on {}", message.subject))
        .as_str()
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert!(
        parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16,
        "not a W3C traceparent: {traceparent}"
    );
    parts[1].to_owned()
}

#[tokio::test]
async fn with_export_off_every_event_still_carries_a_trace_context() {
    let w = World::start(1, &[]).await;
    let mut events = w.nats.client.subscribe("pb.evt.>").await.unwrap();
    w.nats.client.flush().await.unwrap();
    let logged = w.driver.login("1001", "pw-1001", "s-1001").await.unwrap();
    w.driver
        .ok(
            "channel.request.notready",
            &logged.channels[0].target,
            json!({"reasonCode": "x"}),
        )
        .await
        .unwrap();
    w.driver.logout(&logged).await.unwrap();
    let mut seen = 0;
    let mut traces = BTreeSet::new();
    let mut logout = BTreeSet::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), events.next()).await
    {
        let trace = trace_id(&event);
        traces.insert(trace.clone());
        if event.subject.starts_with("pb.evt.channel.")
            && event
                .payload
                .windows(19)
                .any(|w| w == b"channel.deactivated")
        {
            logout.insert(trace);
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} events");
    // The events of different commands are in different traces.
    assert!(
        traces.len() >= 5,
        "{} traces for {seen} events",
        traces.len()
    );
    // The logout's context went from the gateway through the session service to the
    // channel group: its channels' events share its one trace.
    assert_eq!(
        logout.len(),
        1,
        "channel.deactivated in {} traces",
        logout.len()
    );
}
