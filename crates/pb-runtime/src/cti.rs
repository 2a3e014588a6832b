//! The client side of the CTI adapter contract ([`pb_cti`]): typed calls with a timeout,
//! each counted in the metrics by outcome.

use std::time::Duration;

use async_nats::Client;
use pb_cti::{CtiError, CtiReply};
use pb_protocol::{Call, Subjects};

use crate::Reply;
use crate::call::{CallError, CallErrorKind};

/// Why a CTI call did not give a result. The `Display` text is meant for the bridge's
/// `errorMessage`: it says what happened and never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum CtiCallError {
    /// The adapter got the call and refused it.
    #[error("{0}")]
    Refused(#[from] CtiError),
    /// No reply could be read ([`CallError::kind`] says why).
    #[error("{}", describe(.0))]
    Call(#[from] CallError),
}

/// A call that got no reply as the CTI's clients read it: the adapter's name for the
/// bridge is "the CTI".
fn describe(error: &CallError) -> String {
    match error.kind() {
        CallErrorKind::TimedOut => format!(
            "the CTI did not answer within {} ms",
            error.timeout().as_nanos().div_ceil(1_000_000)
        ),
        _ => error.to_string(),
    }
}

impl CtiCallError {
    /// Why no reply could be read, if none could.
    pub fn kind(&self) -> Option<CallErrorKind> {
        match self {
            CtiCallError::Refused(_) => None,
            CtiCallError::Call(e) => Some(e.kind()),
        }
    }
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
    pub async fn call<C, T>(&self, call: &C, timeout: Duration) -> Result<T, CtiCallError>
    where
        C: Call<Reply = CtiReply<T>>,
    {
        let result = crate::call::call(&self.client, &self.subjects, call, timeout)
            .await
            .map_err(CtiCallError::Call)
            .and_then(|reply| Result::from(reply).map_err(CtiCallError::Refused));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CtiCallError::Refused(e)) => e.code.as_str(),
            Err(CtiCallError::Call(e)) => match e.kind() {
                CallErrorKind::TimedOut => "timeout",
                CallErrorKind::NoResponders => "no-adapter",
                _ => "error",
            },
        };
        crate::metrics::metrics().cti_call(C::OP, outcome);
        result
    }
}

/// The answer to a command whose call `C` failed: FAILURE saying why, except a change
/// that got no reply, which may have been made: [`Reply::retry_same`].
pub fn failed<C: Call>(error: CtiCallError) -> Reply {
    match error {
        CtiCallError::Call(ref e) if C::CHANGES && e.kind() == CallErrorKind::TimedOut => {
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
