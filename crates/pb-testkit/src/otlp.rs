//! A real OTLP/HTTP trace receiver: it decodes what the processes export (`POST /v1/traces`,
//! protobuf) with the protocol's own types, and answers a subset of Jaeger's query API over
//! what it holds, so that a check written against it runs against Jaeger too:
//!
//! * `GET /api/traces/{traceID}`: that trace, as Jaeger's `{"data": [trace]}`;
//! * `GET /api/traces?service=S`: every trace with a span of service `S`;
//! * `GET /status`: 200 (the health check of Jaeger's port 13133).
//!
//! The `pb-otlp-sink` binary runs it in a container, standing in for Jaeger (whose image
//! cannot be pulled here).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The most spans a receiver holds; the oldest go first.
const MAX_SPANS: usize = 500_000;

/// A span as an OTLP receiver got it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// The `host.name` of the machine (a container's own) it ran on, if it said.
    pub host: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The span as Jaeger's query API shows it (its process id is the service and host).
    fn to_jaeger(&self) -> Json {
        let references = if self.parent_span_id.is_empty() {
            Vec::new()
        } else {
            vec![
                json!({"refType": "CHILD_OF", "traceID": self.trace_id, "spanID": self.parent_span_id}),
            ]
        };
        let tags: Vec<Json> = self
            .attributes
            .iter()
            .map(|(k, v)| json!({"key": k, "type": "string", "value": v}))
            .collect();
        json!({
            "traceID": self.trace_id,
            "spanID": self.span_id,
            "operationName": self.name,
            "references": references,
            "tags": tags,
            "processID": self.process_id(),
        })
    }

    fn process_id(&self) -> String {
        format!("{}@{}", self.service, self.host)
    }
}

/// The spans of one trace, as Jaeger's query API shows a trace.
fn jaeger_trace(trace_id: &str, spans: &[&ReceivedSpan]) -> Json {
    let processes: BTreeMap<String, Json> = spans
        .iter()
        .map(|s| {
            let tags = json!([{"key": "host.name", "type": "string", "value": s.host}]);
            (
                s.process_id(),
                json!({"serviceName": s.service, "tags": tags}),
            )
        })
        .collect();
    let spans: Vec<Json> = spans.iter().map(|s| s.to_jaeger()).collect();
    json!({"traceID": trace_id, "spans": spans, "processes": processes})
}

/// Spans a receiver holds, shared by its connections.
type Store = Arc<Mutex<Vec<ReceivedSpan>>>;

/// A real OTLP/HTTP trace receiver ([module documentation](self)).
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    port: u16,
    spans: Store,
}

impl OtlpReceiver {
    /// A receiver on a loopback port of its own.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        Self::serve(vec![listener])
    }

    /// A receiver answering on each of `listeners` (the same spans on all).
    pub fn serve(listeners: Vec<TcpListener>) -> Self {
        let port = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or_default();
        let spans = Store::default();
        for listener in listeners {
            let sink = spans.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, sink.clone()));
                }
            });
        }
        Self { port, spans }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans lock").clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A string attribute's value (other kinds in their debug form).
fn text(value: Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value) {
        Some(Value::StringValue(s)) => s,
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn resource_attribute(attributes: &[KeyValue], key: &str) -> String {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.clone()))
        .unwrap_or_default()
}

/// The spans of one export request.
fn received(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let attributes = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        let service = resource_attribute(&attributes, "service.name");
        let host = resource_attribute(&attributes, "host.name");
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(ReceivedSpan {
                service: service.clone(),
                host: host.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: span
                    .attributes
                    .into_iter()
                    .map(|kv| (kv.key, text(kv.value)))
                    .collect(),
            });
        }
    }
    received
}

/// What a query asks for: `(status, content type, body)`.
fn query(path: &str, spans: &Store) -> (u16, &'static str, Vec<u8>) {
    let spans = spans.lock().expect("spans lock");
    let (route, params) = path.split_once('?').unwrap_or((path, ""));
    let traces: Vec<Json> = if let Some(id) = route.strip_prefix("/api/traces/") {
        let of: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == id).collect();
        if of.is_empty() {
            return (
                404,
                "application/json",
                br#"{"data":[],"errors":[{"code":404,"msg":"trace not found"}]}"#.to_vec(),
            );
        }
        vec![jaeger_trace(id, &of)]
    } else if route == "/api/traces" {
        let service = params
            .split('&')
            .find_map(|p| p.strip_prefix("service="))
            .unwrap_or_default();
        let mut ids: Vec<&str> = spans
            .iter()
            .filter(|s| s.service == service)
            .map(|s| s.trace_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .map(|id| {
                let of: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == *id).collect();
                jaeger_trace(id, &of)
            })
            .collect()
    } else if route == "/status" {
        return (200, "text/plain", b"ok".to_vec());
    } else {
        return (404, "text/plain", b"not found".to_vec());
    };
    let body = json!({"data": traces}).to_string().into_bytes();
    (200, "application/json", body)
}

/// Keep what one export request carried, within [`MAX_SPANS`].
fn keep(body: &[u8], spans: &Store) -> (u16, &'static str, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (
            400,
            "text/plain",
            b"not an OTLP trace export (protobuf)".to_vec(),
        );
    };
    let mut spans = spans.lock().expect("spans lock");
    spans.extend(received(request));
    let over = spans.len().saturating_sub(MAX_SPANS);
    spans.drain(..over);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    (200, "application/x-protobuf", answer)
}

/// Answer HTTP/1.1 requests on one connection (kept alive) until it closes.
async fn serve(stream: tokio::net::TcpStream, spans: Store) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut request_line = String::new();
        let mut close = false;
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if request_line.is_empty() {
                request_line = line.trim_end().to_owned();
                continue;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("connection")
                && value.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut words = request_line.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, kind, answer) = match method {
            "POST" => keep(&body, &spans),
            _ => query(path, &spans),
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{}\r\n",
            if status == 200 { "OK" } else { "Error" },
            answer.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let stream = reader.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&answer).await.is_err()
            || close
        {
            return;
        }
    }
}
