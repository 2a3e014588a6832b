//! Traces across processes: W3C trace context (`traceparent`, `tracestate`) travels in NATS
//! headers on every command, internal request-reply, CTI call and event (contract §3), so one
//! bridge command is one trace across every service it touches. Off (no headers, no spans
//! exported) unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`crate::logging::init`]).

use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Called once tracing is exported.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are exported (and context propagated).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        ["traceparent", "tracestate"]
            .into_iter()
            .filter(|k| self.0.get(*k).is_some())
            .collect()
    }
}

/// Add the current span's context to `headers` (nothing when tracing is off).
pub fn inject(headers: &mut HeaderMap) {
    if enabled() {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut Inject(headers))
        });
    }
}

/// Headers carrying the current span's context, or `None` when tracing is off.
pub fn headers() -> Option<HeaderMap> {
    enabled().then(|| {
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        headers
    })
}

/// A NATS request of `payload` that gives up after `timeout`, carrying the current span's
/// context when tracing is on: how every command, hand-off and CTI call is sent.
pub fn request(payload: bytes::Bytes, timeout: std::time::Duration) -> async_nats::Request {
    let request = async_nats::Request::new()
        .payload(payload)
        .timeout(Some(timeout));
    match headers() {
        Some(headers) => request.headers(headers),
        None => request,
    }
}

/// Make `span` a child of the context `headers` carry, if they carry one.
pub fn follow(span: &tracing::Span, headers: Option<&HeaderMap>) {
    if let Some(headers) = headers.filter(|_| enabled())
        && headers.get("traceparent").is_some()
    {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)));
        let _ = span.set_parent(cx);
    }
}
