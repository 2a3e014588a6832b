//! The one way to make a typed call ([`pb_protocol::Call`]): a service calling the CTI
//! adapter ([`crate::cti`]), a service handing a request to another, a tool driving the
//! simulated CTI. [`call`] encodes the body, carries the trace context (and, for a change
//! made for a bridge request, its request key), sends under a timeout and reads the reply;
//! what went wrong is a [`CallError`] with a [`kind`](CallError::kind), its source kept.

use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use pb_protocol::{Call, Callee, Subjects};
use tracing::Instrument;

/// What went wrong with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorKind {
    /// Nobody subscribes to the call's subject: no replica of the callee runs.
    NoResponders,
    /// No reply within the timeout.
    TimedOut,
    /// NATS failed otherwise.
    Transport,
    /// The body could not be encoded.
    Encode,
    /// The reply is not of the call's reply type.
    BadReply,
}

/// A call got no reply it could read. The text names the callee and what to expect; it
/// never holds the body.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct CallError {
    kind: CallErrorKind,
    callee: Callee,
    subject: String,
    timeout: Duration,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CallError {
    pub fn kind(&self) -> CallErrorKind {
        self.kind
    }

    /// The subject the call was sent on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// How long the call waited.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn describe(&self) -> String {
        let callee = self.callee;
        let source = self
            .source
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        match self.kind {
            CallErrorKind::NoResponders => {
                format!("no {callee} is running (nobody answers {})", self.subject)
            }
            CallErrorKind::TimedOut => format!(
                "the {callee} did not answer within {} ms",
                self.timeout.as_nanos().div_ceil(1_000_000)
            ),
            CallErrorKind::Transport => format!("the call to the {callee} failed: {source}"),
            CallErrorKind::Encode => format!("cannot encode the call to the {callee}: {source}"),
            CallErrorKind::BadReply => format!("the {callee} sent an unreadable reply: {source}"),
        }
    }
}

/// Send `call` and wait at most `timeout` for its reply. A call to the CTI adapter runs in
/// a `cti.call` span; any other call is part of the caller's span.
pub async fn call<C: Call>(
    client: &Client,
    subjects: &Subjects,
    call: &C,
    timeout: Duration,
) -> Result<C::Reply, CallError> {
    let subject = subjects.call(C::CALLEE, C::OP);
    let error =
        |kind, subject: &str, source: Option<Box<dyn std::error::Error + Send + Sync>>| CallError {
            kind,
            callee: C::CALLEE,
            subject: subject.to_owned(),
            timeout,
            source,
        };
    let payload = serde_json::to_vec(call)
        .map_err(|e| error(CallErrorKind::Encode, &subject, Some(Box::new(e))))?;
    let span = match C::CALLEE {
        Callee::Cti => tracing::info_span!("cti.call", op = C::OP),
        _ => tracing::Span::none(),
    };
    let mut headers = HeaderMap::new();
    if C::CHANGES
        && let Some(key) = crate::request_key::next()
    {
        headers.insert(pb_cti::REQUEST_KEY_HEADER, key.as_str());
    }
    let request = span.in_scope(|| crate::trace::request(payload.into(), timeout, headers));
    let reply = client
        .send_request(subject.clone(), request)
        .instrument(span)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => error(CallErrorKind::NoResponders, &subject, None),
            RequestErrorKind::TimedOut => error(CallErrorKind::TimedOut, &subject, None),
            _ => error(CallErrorKind::Transport, &subject, Some(Box::new(e))),
        })?;
    serde_json::from_slice(&reply.payload)
        .map_err(|e| error(CallErrorKind::BadReply, &subject, Some(Box::new(e))))
}
