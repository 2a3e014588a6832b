//! The hand-offs between services (`P.int.<service>.<op>`, request-reply): control to the
//! session service, the session service to the channel-group service. One function
//! encodes the body, carries the trace context, sends under a timeout and reads the
//! [`InternalReply`]; what went wrong is a [`HandoffError`] with a kind, its source kept.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use pb_protocol::internal::InternalReply;
use serde::Serialize;

/// What went wrong with a hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffErrorKind {
    /// Nobody subscribes to the subject: no replica of the service runs.
    NoService,
    /// No reply within the timeout.
    TimedOut,
    /// NATS failed otherwise.
    Transport,
    /// The body could not be encoded.
    Encode,
    /// The reply is not an [`InternalReply`].
    BadReply,
}

/// A hand-off got no [`InternalReply`]. The text names the service and, for the bridge's
/// `errorMessage`, what to expect.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct HandoffError {
    kind: HandoffErrorKind,
    /// The service as a reader names it (`session`, `channel-group`).
    service: &'static str,
    subject: String,
    timeout: Duration,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl HandoffError {
    pub fn kind(&self) -> HandoffErrorKind {
        self.kind
    }

    fn describe(&self) -> String {
        let service = self.service;
        let source = || {
            self.source
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        match self.kind {
            HandoffErrorKind::NoService => format!(
                "no {service} service is running (nobody answers {})",
                self.subject
            ),
            HandoffErrorKind::TimedOut => format!(
                "the {service} service did not answer within {} ms",
                self.timeout.as_millis()
            ),
            HandoffErrorKind::Transport => {
                format!("the hand-off to the {service} service failed: {}", source())
            }
            HandoffErrorKind::Encode => format!(
                "cannot encode the hand-off to the {service} service: {}",
                source()
            ),
            HandoffErrorKind::BadReply => format!(
                "the {service} service sent an unreadable reply: {}",
                source()
            ),
        }
    }
}

/// Send `body` to `subject`, a hand-off to `service` (named for messages), and wait at most
/// `timeout` for its reply.
pub async fn request(
    client: &Client,
    service: &'static str,
    subject: String,
    body: &impl Serialize,
    timeout: Duration,
) -> Result<InternalReply, HandoffError> {
    let error = |kind, source: Option<Box<dyn std::error::Error + Send + Sync>>| HandoffError {
        kind,
        service,
        subject: subject.clone(),
        timeout,
        source,
    };
    let payload =
        serde_json::to_vec(body).map_err(|e| error(HandoffErrorKind::Encode, Some(Box::new(e))))?;
    let request = crate::trace::request(payload.into(), timeout);
    let reply = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => error(HandoffErrorKind::NoService, None),
            RequestErrorKind::TimedOut => error(HandoffErrorKind::TimedOut, None),
            _ => error(HandoffErrorKind::Transport, Some(Box::new(e))),
        })?;
    serde_json::from_slice(&reply.payload)
        .map_err(|e| error(HandoffErrorKind::BadReply, Some(Box::new(e))))
}
