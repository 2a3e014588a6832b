//! Traces across processes: W3C trace context (`traceparent`, `tracestate`) travels in NATS
//! headers on every command, internal request-reply, CTI call and event (contract §3), so
//! one bridge command is one trace across every process it touches.
//!
//! * With export on ([`crate::logging::init`], `OTEL_EXPORTER_OTLP_ENDPOINT`), whoever
//!   receives a message makes its span a child of the context it carries ([`within`]), and
//!   whoever sends adds the current span's context ([`headers`]).
//! * With export off no span leaves the process, but the context still travels: what a
//!   message carried is passed on, as it came, by everything its handling sends; a message
//!   that carried none gets a new context, so the events it causes still share one trace.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Called once tracing is exported.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A W3C trace context as it travels: the header values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Carried {
    traceparent: String,
    tracestate: Option<String>,
}

impl Carried {
    /// The context `headers` carry, if any.
    fn of(headers: Option<&HeaderMap>) -> Option<Self> {
        let headers = headers?;
        let traceparent = headers.get(TRACEPARENT)?.as_str().to_owned();
        Some(Self {
            traceparent,
            tracestate: headers.get(TRACESTATE).map(|v| v.as_str().to_owned()),
        })
    }

    /// A new trace: random trace and span ids, sampled (so that a process downstream that
    /// exports records it).
    fn fresh() -> Self {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        Self {
            traceparent: format!("00-{trace}-{span}-01"),
            tracestate: None,
        }
    }

    fn add_to(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent.as_str());
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE, state.as_str());
        }
    }
}

tokio::task_local! {
    /// With export off: the context of the message being handled.
    static INCOMING: Carried;
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
        [TRACEPARENT, TRACESTATE]
            .into_iter()
            .filter(|k| self.0.get(*k).is_some())
            .collect()
    }
}

/// Add the current trace context to `headers`: the current span's with export on, else
/// the one the message being handled carried, else a new one.
pub(crate) fn inject(headers: &mut HeaderMap) {
    if enabled() {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut Inject(headers))
        });
        if headers.get(TRACEPARENT).is_some() {
            return;
        }
    }
    INCOMING
        .try_with(Carried::clone)
        .unwrap_or_else(|_| Carried::fresh())
        .add_to(headers);
}

/// Headers carrying the current trace context ([`inject`]).
pub fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    headers
}

/// A NATS request of `payload` with `headers` that gives up after `timeout`, carrying the
/// current trace context: how every call ([`crate::call`]) is sent.
pub(crate) fn request(
    payload: bytes::Bytes,
    timeout: std::time::Duration,
    mut headers: HeaderMap,
) -> async_nats::Request {
    inject(&mut headers);
    async_nats::Request::new()
        .payload(payload)
        .timeout(Some(timeout))
        .headers(headers)
}

/// Run `work`, the handling of a message that carried `headers`, in `span`: with export on
/// the span becomes a child of their context; with export off their context (or a new one)
/// is what everything sent meanwhile carries.
pub fn within<F: Future>(
    span: tracing::Span,
    headers: Option<&HeaderMap>,
    work: F,
) -> impl Future<Output = F::Output> + use<F> {
    let carried = Carried::of(headers);
    if enabled()
        && let Some(headers) = headers.filter(|_| carried.is_some())
    {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)));
        let _ = span.set_parent(cx);
    }
    let carried = carried.unwrap_or_else(Carried::fresh);
    INCOMING.scope(carried, work.instrument(span))
}

/// `work` to be spawned, made to carry the current span and trace context (a timer that
/// fires later on behalf of the message being handled now).
pub fn carry<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let carried = INCOMING
        .try_with(Carried::clone)
        .unwrap_or_else(|_| Carried::fresh());
    INCOMING.scope(carried, work.instrument(tracing::Span::current()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traceparent(headers: &HeaderMap) -> String {
        headers.get(TRACEPARENT).unwrap().as_str().to_owned()
    }

    #[tokio::test]
    async fn with_export_off_the_context_is_passed_on_as_it_came() {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        incoming.insert(TRACESTATE, "k=v");
        let sent = within(tracing::info_span!("x"), Some(&incoming), async {
            let spawned = tokio::spawn(carry(async { headers() })).await.unwrap();
            (headers(), spawned)
        })
        .await;
        for headers in [&sent.0, &sent.1] {
            assert_eq!(traceparent(headers), traceparent(&incoming));
            assert_eq!(headers.get(TRACESTATE).unwrap().as_str(), "k=v");
        }
    }

    #[tokio::test]
    async fn without_a_context_each_message_starts_a_trace() {
        let (a, b) = within(tracing::info_span!("x"), None, async {
            (headers(), headers())
        })
        .await;
        assert_eq!(traceparent(&a), traceparent(&b), "one trace per message");
        let other = traceparent(&headers());
        assert_ne!(other, traceparent(&a));
        let parts: Vec<&str> = other.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [2, 32, 16, 2]
        );
    }
}
