//! One module per group of commands: single exchanges and events ([`exchange`]), agents
//! logged in and out, one by one or in numbers ([`agents`]), interactions
//! ([`interaction`]) and the simulated CTI ([`sim`]).

mod agents;
mod exchange;
mod interaction;
pub mod sim;

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Cli, Command};
use crate::emulator::Emulator;

/// Run the CLI; the exit code is 1 when the system answered FAILURE.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let bridge = Emulator::new(&cli)?;
    match cli.command {
        Command::Send {
            name,
            target,
            body,
            request_id,
            json,
        } => exchange::send(&bridge, &name, target, &body, request_id, json).await,
        Command::Watch { count, for_ms } => {
            exchange::watch(&bridge, count, for_ms.map(Duration::from_millis)).await
        }
        Command::Init => exchange::init(&bridge).await,
        Command::State {
            target,
            state,
            reason,
        } => exchange::state(&bridge, target, state, reason).await,
        Command::Conversation(verb) => {
            let (target, request) = verb.request();
            exchange::exchanges(&bridge, [(target, request.into())]).await
        }
        Command::Login {
            agent_id,
            password,
            session,
        } => agents::login(&bridge, &agent_id, password, session).await,
        Command::Logout { session } => agents::logout(&bridge, &session).await,
        Command::Storm {
            agents,
            concurrency,
            first,
            keep,
        } => agents::storm(&bridge, agents, concurrency, first, keep).await,
        Command::Desk {
            agents,
            first,
            talk_ms,
            disposition,
            for_s,
        } => {
            let config = crate::desk::DeskConfig {
                first,
                agents,
                talk: Duration::from_millis(talk_ms),
                disposition,
                run_for: for_s.map(Duration::from_secs),
                progress: true,
            };
            agents::desk(&bridge, &config).await
        }
        Command::Interaction(verb) => interaction::run(&bridge, verb).await,
        Command::Sim(command) => sim::run(&bridge, command).await,
    }
}
