//! The client side of the CTI adapter contract ([`pb_cti`]): typed calls with a timeout.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use pb_cti::{CtiCall, CtiError, CtiReply, call_subject};
use pb_protocol::Subjects;

use crate::Reply;
use tracing::Instrument;

/// Why a CTI call did not give a result. The `Display` text is meant for the bridge's
/// `errorMessage`: it says what happened and never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum CtiCallError {
    #[error("the CTI did not answer within {} ms", .0.as_nanos().div_ceil(1_000_000))]
    Timeout(Duration),
    #[error("no CTI adapter is running (nobody answers {0})")]
    NoAdapter(String),
    #[error("{0}")]
    Refused(#[from] CtiError),
    #[error("the CTI call failed: {0}")]
    Transport(#[source] async_nats::RequestError),
    #[error("the CTI call could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the CTI adapter sent an unreadable reply: {0}")]
    BadReply(#[source] serde_json::Error),
}

/// A cheap, cloneable handle for calling the CTI adapter.
#[derive(Debug, Clone)]
pub struct CtiClient {
    client: Client,
    subjects: Subjects,
}

impl CtiClient {
    pub fn new(client: Client, subjects: Subjects) -> Self {
        Self { client, subjects }
    }

    /// Call the adapter and wait at most `timeout` for its reply.
    pub async fn call<C: CtiCall>(
        &self,
        call: &C,
        timeout: Duration,
    ) -> Result<C::Reply, CtiCallError> {
        let subject = call_subject(&self.subjects, C::OP);
        let payload = serde_json::to_vec(call).map_err(CtiCallError::Encode)?;
        let span = tracing::info_span!("cti.call", op = C::OP);
        let mut headers = async_nats::HeaderMap::new();
        if let Some(key) = crate::request_key::next().filter(|_| C::CHANGES) {
            headers.insert(pb_cti::REQUEST_KEY_HEADER, key.as_str());
        }
        let request =
            span.in_scope(|| crate::trace::request_with(payload.into(), timeout, headers));
        let sent = self
            .client
            .send_request(subject.clone(), request)
            .instrument(span)
            .await;
        let result = match sent {
            Ok(message) => serde_json::from_slice::<CtiReply<C::Reply>>(&message.payload)
                .map_err(CtiCallError::BadReply)
                .and_then(|reply| Result::from(reply).map_err(CtiCallError::Refused)),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::TimedOut => CtiCallError::Timeout(timeout),
                RequestErrorKind::NoResponders => CtiCallError::NoAdapter(subject),
                _ => CtiCallError::Transport(e),
            }),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CtiCallError::Refused(e)) => e.code.as_str(),
            Err(CtiCallError::Timeout(_)) => "timeout",
            Err(CtiCallError::NoAdapter(_)) => "no-adapter",
            Err(_) => "error",
        };
        crate::metrics::metrics().cti_call(C::OP, outcome);
        result
    }
}

/// The answer to a command whose call `C` failed: FAILURE saying why, except a change
/// that got no reply, which may have been made: [`Reply::retry_same`].
pub fn failed<C: CtiCall>(error: CtiCallError) -> Reply {
    match error {
        CtiCallError::Timeout(_) if C::CHANGES => {
            Reply::retry_same(format_args!("{error}: whether it acted is not known"))
        }
        error => Reply::failure(error.to_string()),
    }
}

/// The time the calls of one command may take in all: the command's deadline less a margin
/// (10%, at least 20 ms), so that a late call is still answered FAILURE within the deadline.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    until: std::time::Instant,
}

impl Budget {
    /// Start the budget of a command whose deadline is `deadline`.
    pub fn start(deadline: Duration) -> Self {
        let margin = (deadline / 10).max(Duration::from_millis(20));
        Self {
            until: std::time::Instant::now() + deadline.saturating_sub(margin),
        }
    }

    /// What is left of it (at least a millisecond, so a call still gets a chance to fail).
    pub fn left(&self) -> Duration {
        self.until
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_millis(1))
    }
}
