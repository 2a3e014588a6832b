//! `send`, `state`, `conversation`: one request at a time; `watch`: events; `init`: the
//! control's initialisation.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use pb_protocol::channel::ChannelCommand;
use pb_protocol::session::ReasonCode;
use pb_protocol::{CommandMessage, Kind};
use serde_json::{Value, json};

use crate::cli::{AgentStateArg, parse_json};
use crate::emulator::{Emulator, Show};
use crate::print::exit_code;

/// `send`: one command by name; with `json`, only the raw response envelope is printed.
pub(super) async fn send(
    bridge: &Emulator,
    name: &str,
    target: Option<String>,
    body: &str,
    request_id: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let body: Value = parse_json("--body", "JSON", body)?;
    let target = bridge.target_for(name, target)?;
    let show = if json { Show::Envelope } else { Show::Exchange };
    let response = bridge
        .exchange(name, &target, body, request_id, show)
        .await?;
    Ok(exit_code(&response))
}

/// `state`: ready, or not ready with a reason, on one channel.
pub(super) async fn state(
    bridge: &Emulator,
    target: String,
    state: AgentStateArg,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let request = match state {
        AgentStateArg::Ready => ChannelCommand::Ready,
        AgentStateArg::Notready => ChannelCommand::NotReady(ReasonCode {
            reason_code: reason,
        }),
    };
    exchanges(bridge, [(target, request.into())]).await
}

/// Send each request in turn, printing each exchange; stop at the first FAILURE (exit
/// code 1).
pub(super) async fn exchanges(
    bridge: &Emulator,
    requests: impl IntoIterator<Item = (String, CommandMessage)>,
) -> anyhow::Result<ExitCode> {
    for (target, request) in requests {
        let body = Value::Object(request.to_body());
        let response = bridge
            .exchange(request.name(), &target, body, None, Show::Exchange)
            .await?;
        if !response.outcome.is_success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `watch`: print events as they arrive, until `count` of them or `duration`.
pub(super) async fn watch(
    bridge: &Emulator,
    count: Option<usize>,
    duration: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let all = bridge.subjects.all_events();
    let mut events = bridge.driver().await?.events(all.clone()).await?;
    eprintln!("watching {all} (Ctrl-C to stop)");
    let started = Instant::now();
    let until = duration.map(|d| tokio::time::Instant::now() + d);
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let next = match until {
            Some(t) => match tokio::time::timeout_at(t, events.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => events.next().await,
        };
        let Some(message) = next else { break };
        let value: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        say!(
            "+{:>9.3}s  {:<32} {:<28} {}",
            started.elapsed().as_secs_f64(),
            value["header"]["name"].as_str().unwrap_or("?"),
            value["header"]["target"].as_str().unwrap_or("?"),
            value["body"]
        )?;
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// `init`: server status (and its event), then capabilities.
pub(super) async fn init(bridge: &Emulator) -> anyhow::Result<ExitCode> {
    let event_subject = bridge.subjects.event(Kind::Control, &bridge.control);
    let mut events = bridge.driver().await?.events(event_subject).await?;
    let target = bridge.control.as_str();
    let status = bridge
        .exchange(
            "cti.request.serverstatus",
            target,
            json!({}),
            None,
            Show::Exchange,
        )
        .await?;
    if !status.outcome.is_success() {
        return Ok(ExitCode::FAILURE);
    }
    let event = tokio::time::timeout(bridge.timeout, async {
        while let Some(message) = events.next().await {
            let value: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            if value["header"]["name"] == "cti.serverstatuschanged" {
                return Some(value);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .context("the client answered but raised no cti.serverstatuschanged")?;
    say!(
        "<- event cti.serverstatuschanged: status {}",
        event["body"]["status"]
    )?;
    let caps = bridge
        .exchange(
            "cti.query.capabilities",
            target,
            json!({}),
            None,
            Show::Exchange,
        )
        .await?;
    Ok(exit_code(&caps))
}
