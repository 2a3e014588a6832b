//! What the commands print: exchanges, taken interactions and their legs, outcomes and
//! exit codes. Standard output carries results; progress goes to standard error.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use pb_protocol::{Outcome, Response};
use serde::Serialize;
use serde_json::Value;

use crate::flow::FlowError;
use crate::interaction::{Leg, StepError, Taken};

/// How the protocol writes an enumeration's value (`ALERTING`, `primary`).
pub(crate) fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => e.to_string(),
    }
}

/// How a command made of several steps ended: shown on success; on FAILURE (or when the
/// system did not follow up), the reason and exit code 1; when it could not talk to the
/// system at all, an error (exit code 2).
pub(crate) fn conclude<T>(
    result: Result<T, StepError>,
    show: impl FnOnce(&T) -> std::io::Result<()>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(value) => {
            show(&value)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(StepError::Flow(
            e @ (FlowError::Timeout { .. } | FlowError::Transport { .. } | FlowError::Watch { .. }),
        )) => Err(e.into()),
        Err(e) => {
            say!("FAILURE: {e}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) fn print_taken(taken: &Taken) -> std::io::Result<()> {
    say!(
        "interaction {} (CTI {}): {}",
        taken.target,
        taken.name,
        wire(&taken.init.state)
    )?;
    if !taken.init.data.is_empty() {
        say!("  data: {}", Value::Object(taken.init.data.clone()))?;
    }
    taken.conversations.iter().try_for_each(print_leg)
}

pub(crate) fn print_leg(leg: &Leg) -> std::io::Result<()> {
    say!(
        "  conversation {} (CTI {}): {} {}, remote {}",
        leg.target,
        leg.name,
        wire(&leg.init.role),
        wire(&leg.init.state),
        leg.init.remote
    )
}

pub(crate) fn exit_code(response: &Response) -> ExitCode {
    if response.outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(crate) fn print_exchange(
    name: &str,
    target: &str,
    request_id: &str,
    response: &Response,
    took: Duration,
) -> std::io::Result<()> {
    say!("-> {name}  {target}  (requestId {request_id})")?;
    match &response.outcome {
        Outcome::Success(body) => {
            say!("<- SUCCESS in {:.1} ms", took.as_secs_f64() * 1000.0)?;
            if !body.is_empty() {
                say!("{}", serde_json::to_string_pretty(body).unwrap_or_default())?;
            }
        }
        Outcome::Failure(why) => {
            say!("<- FAILURE in {:.1} ms: {why}", took.as_secs_f64() * 1000.0)?;
        }
    }
    Ok(())
}
