//! `sim`: drive the simulated CTI's admin interface (fault injection and changes made at
//! the CTI); each command is one [`pb_sim_admin`] operation, its answer printed as JSON.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use pb_cti::CtiReply;
use pb_protocol::channel::AgentState;
use pb_protocol::{Call, Subjects};
use pb_sim_admin as admin;
use serde::Serialize;

use crate::cli::{AgentStateArg, SimCommand, parse_json};
use crate::emulator::Emulator;

pub(super) async fn run(bridge: &Emulator, command: SimCommand) -> anyhow::Result<ExitCode> {
    match command {
        SimCommand::LinkDown {
            reason,
            switch_runs,
        } => {
            let op = admin::SetLink {
                up: false,
                reason,
                switch_runs,
            };
            show(bridge, &op).await
        }
        SimCommand::LinkUp => show(bridge, &admin::SetLink::up()).await,
        SimCommand::LoseEvents { off } => show(bridge, &admin::LoseEvents { lose: !off }).await,
        SimCommand::Delay { ms } => show(bridge, &admin::SetDelay { ms }).await,
        SimCommand::Reject { agent_id } => {
            let op = admin::RejectAgent {
                agent_id,
                rejected: true,
            };
            show(bridge, &op).await
        }
        SimCommand::Accept { agent_id } => {
            let op = admin::RejectAgent {
                agent_id,
                rejected: false,
            };
            show(bridge, &op).await
        }
        SimCommand::SetState {
            agent_id,
            endpoint,
            state,
            reason,
        } => {
            let op = admin::ForceState {
                agent_id,
                endpoint,
                state: match state {
                    AgentStateArg::Ready => AgentState::Ready,
                    AgentStateArg::Notready => AgentState::NotReady,
                },
                reason_code: reason,
            };
            show(bridge, &op).await
        }
        SimCommand::Logout { agent_id, reason } => {
            let op = admin::ForceLogout {
                agent_id,
                reason_code: reason,
            };
            show(bridge, &op).await
        }
        SimCommand::AddChannel {
            place,
            endpoint,
            media,
        } => {
            let op = admin::AddChannel {
                place,
                endpoint,
                media,
            };
            show(bridge, &op).await
        }
        SimCommand::RemoveChannel { place, endpoint } => {
            show(bridge, &admin::RemoveChannel { place, endpoint }).await
        }
        SimCommand::Offer {
            media,
            data,
            from,
            agent,
        } => {
            let op = admin::Offer {
                media: media.into(),
                data: parse_json("--data", "a JSON object", &data)?,
                from,
                agent_id: agent,
            };
            show(bridge, &op).await
        }
        SimCommand::Hangup { interaction } => show(bridge, &admin::Hangup { interaction }).await,
        SimCommand::Traffic {
            calls,
            chats,
            emails,
        } => {
            let op = admin::Traffic {
                calls,
                chats,
                emails,
            };
            show(bridge, &op).await
        }
        SimCommand::Interactions => show(bridge, &admin::GetInteractions {}).await,
        SimCommand::Status => show(bridge, &admin::GetStatus {}).await,
    }
}

/// Make `op` and print its answer.
async fn show<C, T>(bridge: &Emulator, op: &C) -> anyhow::Result<ExitCode>
where
    C: Call<Reply = CtiReply<T>>,
    T: Serialize,
{
    let answer = sim_admin(bridge.nats().await?, &bridge.subjects, bridge.timeout, op).await?;
    say!("{}", serde_json::to_string_pretty(&answer)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Call the simulated CTI's admin interface (`P.sim.<op>`) within `timeout`: its answer,
/// or an error saying what to check.
pub async fn sim_admin<C, T>(
    client: &async_nats::Client,
    subjects: &Subjects,
    timeout: Duration,
    op: &C,
) -> anyhow::Result<T>
where
    C: Call<Reply = CtiReply<T>>,
{
    match pb_runtime::call(client, subjects, op, timeout).await? {
        CtiReply::Ok(value) => Ok(value),
        CtiReply::Error(e) => bail!("the simulator refused {}: {}", C::OP, e.message),
    }
}
