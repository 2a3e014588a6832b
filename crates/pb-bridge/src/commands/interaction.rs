//! `interaction`: take, dial, consult, complete and the single requests to an interaction.

use std::io::Write;
use std::process::ExitCode;

use pb_protocol::interaction::InteractionCommand;

use super::exchange::exchanges;
use crate::cli::InteractionVerb;
use crate::emulator::Emulator;
use crate::interaction::{StepError, id_of, set_disposition};
use crate::print::{conclude, print_leg, print_taken};

pub(super) async fn run(bridge: &Emulator, verb: InteractionVerb) -> anyhow::Result<ExitCode> {
    use InteractionCommand as C;
    let driver = bridge.driver().await?;
    let one = |target, command: C| exchanges(bridge, [(target, command.into())]);
    match verb {
        InteractionVerb::Take { channel, name, id } => {
            let id = id.unwrap_or_else(|| id_of(&name));
            let taken = driver.take(&channel, &name, &id).await;
            conclude(taken.map_err(StepError::from), print_taken)
        }
        InteractionVerb::Dial {
            channel,
            destination,
            id,
        } => {
            let taken = driver.dial(&channel, &destination, id.as_deref()).await;
            conclude(taken.map_err(StepError::from), print_taken)
        }
        InteractionVerb::Consult {
            target,
            destination,
        } => conclude(driver.consult(&target, &destination).await, |leg| {
            say!("interaction {target}: consulting {destination}")?;
            print_leg(leg)
        }),
        InteractionVerb::Complete {
            target,
            disposition,
        } => {
            let data = disposition.map(|d| (target.clone(), set_disposition(&d).into()));
            let complete = (target, C::Complete.into());
            exchanges(bridge, data.into_iter().chain([complete])).await
        }
        InteractionVerb::Accept { target } => one(target, C::Accept).await,
        InteractionVerb::Reject { target } => one(target, C::Reject).await,
        InteractionVerb::Transfer { target } => one(target, C::Transfer).await,
        InteractionVerb::Conference { target } => one(target, C::Conference).await,
        InteractionVerb::Alternate { target } => one(target, C::Alternate).await,
        InteractionVerb::Dispose { target } => one(target, C::Dispose).await,
    }
}
