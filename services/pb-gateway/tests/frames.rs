//! Frames as a Processor Bridge may really send them (contract §8.2, §8.3, §8.6, §8.7): a
//! raw TCP listener with the project's frame codec, writing bad, empty, oversized and
//! truncated frames, or not reading at all; the gateway in front of the whole system.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use pb_framing::{ByteOrder, Frame, FrameCodec};
use pb_testkit::{Bridge, Stack, sample};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use common::WAIT;

/// A bridge at the byte level: one accepted gateway connection.
struct RawBridge {
    framed: Framed<TcpStream, FrameCodec>,
}

impl RawBridge {
    /// A listener on a free port.
    async fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    /// Wait for the gateway to connect.
    async fn accept(listener: &TcpListener, order: ByteOrder) -> Self {
        let (socket, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the gateway connects")
            .unwrap();
        Self {
            framed: Framed::new(socket, FrameCodec::new(order, 64 << 20)),
        }
    }

    async fn send(&mut self, frame: impl Into<Bytes>) {
        self.framed.send(frame.into()).await.unwrap();
    }

    /// Write bytes as they are, no framing.
    async fn raw(&mut self, bytes: &[u8]) {
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    /// The next response (events are skipped).
    async fn response(&mut self) -> Value {
        self.try_response()
            .await
            .expect("a response within the wait, on a link that stays up")
    }

    /// The next response, or `None` if the connection ends first. (Frames of more than
    /// 64 KiB are a flood's events: not worth decoding.)
    async fn try_response(&mut self) -> Option<Value> {
        let wait = async {
            loop {
                match self.framed.next().await? {
                    Ok(Frame::Message(bytes)) if bytes.len() <= 64 * 1024 => {
                        let json: Value = serde_json::from_slice(&bytes).ok()?;
                        if json["header"]["type"] == "cti.response" {
                            return Some(json);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        };
        tokio::time::timeout(WAIT, wait).await.ok().flatten()
    }
}

fn command(name: &str, target: &str, id: &str) -> Vec<u8> {
    pb_protocol::envelope::raw_command(name, target, id, json!({}))
}

fn serverstatus(id: &str) -> Vec<u8> {
    command("cti.request.serverstatus", "PB1.CONTROL", id)
}

/// The response's (requestId, result, errorMessage).
fn outcome(response: &Value) -> (String, String, String) {
    let h = &response["header"];
    let text = |k: &str| h[k].as_str().unwrap_or_default().to_owned();
    (text("requestId"), text("result"), text("errorMessage"))
}

async fn gateway_metrics(stack: &Stack) -> String {
    stack.processes.last().unwrap().1.metrics().await
}

#[tokio::test]
async fn every_bad_frame_is_answered_failure_or_skipped_and_the_link_stays_up() {
    let listener = RawBridge::listener().await;
    let mut stack = Stack::start(1, &[]).await;
    stack
        .gateway("gw-0", &listener.local_addr().unwrap().to_string(), &[])
        .await;
    let mut bridge = RawBridge::accept(&listener, ByteOrder::Big).await;

    // Frames that cannot be routed: one FAILURE each, requestId echoed when readable.
    let header = |h: Value| json!({"header": h, "body": {}}).to_string().into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not UTF-8", vec![0xff, 0xfe, 0x7b, 0x00, 0x80], ""),
        ("not JSON", b"hello bridge".to_vec(), ""),
        ("no header", br#"{"body": {}}"#.to_vec(), ""),
        (
            "unknown type",
            header(
                json!({"type": "cti.bogus", "name": "cti.request.serverstatus", "target": "PB1.CONTROL", "requestId": "r-type"}),
            ),
            "r-type",
        ),
        (
            "a name of no kind",
            header(
                json!({"type": "cti.request", "name": "nothing.request.x", "target": "PB1.CONTROL", "requestId": "r-kind"}),
            ),
            "r-kind",
        ),
        (
            "a bad target",
            header(
                json!({"type": "cti.request", "name": "session.request.logout", "target": "a..b", "requestId": "r-target"}),
            ),
            "r-target",
        ),
        (
            "no target",
            header(
                json!({"type": "cti.query", "name": "session.query.init", "requestId": "r-none"}),
            ),
            "r-none",
        ),
    ];
    for (what, frame, id) in &cases {
        bridge.send(frame.clone()).await;
        let (request_id, result, message) = outcome(&bridge.response().await);
        assert_eq!(
            (request_id.as_str(), result.as_str()),
            (*id, "FAILURE"),
            "{what}"
        );
        assert!(!message.is_empty(), "{what}: no errorMessage");
    }

    // A zero-length frame, and the bridge's own kinds of message, are read and ignored: the
    // next response is the next command's.
    bridge.raw(&[0, 0, 0, 0]).await;
    let foreign = |t: &str| {
        header(
            json!({"type": t, "name": "cti.serverstatuschanged", "target": "PB1.CONTROL", "requestId": "x"}),
        )
    };
    bridge.send(foreign("cti.response")).await;
    bridge.send(foreign("cti.event")).await;
    bridge.send(serverstatus("r-ok-1")).await;
    assert_eq!(outcome(&bridge.response().await).0, "r-ok-1");

    // Over the maximum (1 MiB): answered when the header comes first, skipped otherwise,
    // and in neither case buffered whole; the frames after it are read as before.
    let pad = "x".repeat(3 << 20);
    let header_first = format!(
        r#"{{"header":{{"type":"cti.request","name":"cti.request.serverstatus","target":"PB1.CONTROL","requestId":"big-1"}},"body":{{"pad":"{pad}"}}}}"#
    );
    bridge.send(header_first).await;
    let (id, result, message) = outcome(&bridge.response().await);
    assert_eq!((id.as_str(), result.as_str()), ("big-1", "FAILURE"));
    assert!(message.contains("PB_BRIDGE_MAX_FRAME"), "{message}");
    let body_first = format!(
        r#"{{"body":{{"pad":"{pad}"}},"header":{{"type":"cti.request","name":"cti.request.serverstatus","target":"PB1.CONTROL","requestId":"big-2"}}}}"#
    );
    bridge.send(body_first).await;
    bridge.send(serverstatus("r-ok-2")).await;
    assert_eq!(outcome(&bridge.response().await).0, "r-ok-2");

    let m = gateway_metrics(&stack).await;
    let count = |series: &str| sample(&m, series);
    for (series, expected) in [
        (
            r#"pb_gateway_answered_total{reason="unroutable"}"#,
            cases.len(),
        ),
        (r#"pb_gateway_answered_total{reason="too_long"}"#, 1),
        (r#"pb_gateway_ignored_frames_total{reason="empty"}"#, 1),
        (r#"pb_gateway_ignored_frames_total{reason="too_long"}"#, 1),
        (
            r#"pb_gateway_ignored_frames_total{reason="not_a_command"}"#,
            2,
        ),
        // The link stayed up.
        ("pb_gateway_connects_total", 1),
    ] {
        assert_eq!(count(series), expected as f64, "{series}\n{m}");
    }
    // The gateway never held the 3 MiB frames.
    let rss = stack.processes.last().unwrap().1.resident_kib().unwrap();
    assert!(rss < 60 * 1024, "gateway resident memory {rss} KiB");
}

#[tokio::test]
async fn no_responders_and_no_answer_in_time_each_get_one_failure() {
    let listener = RawBridge::listener().await;
    let mut stack = Stack::start(
        1,
        &[("PB_DEADLINE_MS", "1000"), ("PB_GATEWAY_MARGIN_MS", "200")],
    )
    .await;
    stack
        .gateway("gw-0", &listener.local_addr().unwrap().to_string(), &[])
        .await;
    let mut bridge = RawBridge::accept(&listener, ByteOrder::Big).await;

    // A destination nobody serves.
    bridge
        .send(command("session.query.init", "nobody-here", "r-none"))
        .await;
    let (id, result, message) = outcome(&bridge.response().await);
    assert_eq!((id.as_str(), result.as_str()), ("r-none", "FAILURE"));
    assert!(
        message.contains("no responders") || message.contains("nobody"),
        "{message}"
    );

    // A destination whose subscriber never answers: the gateway answers at the deadline
    // plus its margin, once, and a late answer would not be written.
    let nats = Bridge::new(stack.nats.client().await);
    let silent = nats
        .client
        .subscribe(nats.subject_of("session.query.init", "silent"))
        .await
        .unwrap();
    nats.client.flush().await.unwrap();
    let started = std::time::Instant::now();
    bridge
        .send(command("session.query.init", "silent", "r-late"))
        .await;
    let (id, result, message) = outcome(&bridge.response().await);
    let waited = started.elapsed();
    assert_eq!((id.as_str(), result.as_str()), ("r-late", "FAILURE"));
    assert!(
        message.contains("1200 ms") || message.contains("within"),
        "{message}"
    );
    assert!(
        waited >= Duration::from_millis(1150) && waited < Duration::from_millis(3000),
        "answered after {waited:?}"
    );
    drop(silent);
    // Nothing more comes for either command.
    bridge.send(serverstatus("r-after")).await;
    assert_eq!(outcome(&bridge.response().await).0, "r-after");
    let m = gateway_metrics(&stack).await;
    assert_eq!(
        sample(&m, r#"pb_gateway_answered_total{reason="no_responders"}"#),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"pb_gateway_answered_total{reason="timeout"}"#),
        1.0
    );
}

#[tokio::test]
async fn little_endian_frames_when_configured() {
    let listener = RawBridge::listener().await;
    let mut stack = Stack::start(1, &[]).await;
    stack
        .gateway(
            "gw-0",
            &listener.local_addr().unwrap().to_string(),
            &[("PB_BRIDGE_BYTE_ORDER", "little".into())],
        )
        .await;
    let mut bridge = RawBridge::accept(&listener, ByteOrder::Little).await;
    bridge.send(serverstatus("r-le")).await;
    let (id, result, _) = outcome(&bridge.response().await);
    assert_eq!((id.as_str(), result.as_str()), ("r-le", "SUCCESS"));
}

#[tokio::test]
async fn a_bridge_that_drops_mid_frame_is_reconnected() {
    let listener = RawBridge::listener().await;
    let mut stack = Stack::start(1, &[]).await;
    stack
        .gateway("gw-0", &listener.local_addr().unwrap().to_string(), &[])
        .await;
    let mut bridge = RawBridge::accept(&listener, ByteOrder::Big).await;
    // Half a frame, then the connection goes.
    let frame = serverstatus("r-half");
    let mut partial = (frame.len() as u32).to_be_bytes().to_vec();
    partial.extend_from_slice(&frame[..frame.len() / 2]);
    bridge.raw(&partial).await;
    drop(bridge);
    let mut bridge = RawBridge::accept(&listener, ByteOrder::Big).await;
    bridge.send(serverstatus("r-again")).await;
    assert_eq!(outcome(&bridge.response().await).1, "SUCCESS");
    let m = gateway_metrics(&stack).await;
    assert_eq!(sample(&m, "pb_gateway_connects_total"), 2.0, "{m}");
    assert_eq!(sample(&m, "pb_gateway_reconnects_total"), 1.0);
    let closed = sample(&m, r#"pb_gateway_link_closed_total{reason="read_error"}"#)
        + sample(
            &m,
            r#"pb_gateway_link_closed_total{reason="bridge_closed"}"#,
        );
    assert_eq!(closed, 1.0, "{m}");
}

#[tokio::test]
async fn a_bridge_that_stops_reading_is_cut_off_not_buffered_for() {
    let listener = RawBridge::listener().await;
    let mut stack = Stack::start(1, &[]).await;
    stack
        .gateway(
            "gw-0",
            &listener.local_addr().unwrap().to_string(),
            &[("PB_BRIDGE_QUEUE_BYTES", (1 << 20).to_string())],
        )
        .await;
    let bridge = RawBridge::accept(&listener, ByteOrder::Big).await;
    let gateway = &stack.processes.last().unwrap().1;
    let before = gateway.resident_kib().unwrap();

    // The bridge reads nothing while 40 MiB of events are raised.
    let nats = stack.nats.client().await;
    let pad = "e".repeat(100 * 1024);
    for i in 0..400 {
        let event = json!({
            "header": {"type": "cti.event", "name": "cti.serverstatuschanged", "target": "PB1.CONTROL"},
            "body": {"n": i, "pad": pad},
        });
        nats.publish("pb.evt.control.PB1.CONTROL", event.to_string().into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = gateway.metrics().await;
        if sample(&m, r#"pb_gateway_link_closed_total{reason="queue_full"}"#) >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link was never closed:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = gateway.resident_kib().unwrap();
    assert!(
        after < before + 24 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    drop(bridge);
    // It connects again, and works. (What is left of the flood comes on the new link: a
    // link closed again meanwhile, because this test reads slower than the gateway
    // writes, is followed by another.)
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut bridge = RawBridge::accept(&listener, ByteOrder::Big).await;
        bridge.send(serverstatus("r-back")).await;
        if let Some(response) = bridge.try_response().await {
            assert_eq!(outcome(&response).1, "SUCCESS");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no working link again"
        );
    }
    assert!(sample(&gateway.metrics().await, "pb_gateway_reconnects_total") >= 1.0);
}
