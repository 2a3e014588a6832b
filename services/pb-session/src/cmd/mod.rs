//! One module per session command.

mod create_channel_group;
mod dispose;
mod init;
mod logout;

use pb_protocol::session::SessionCommand;
use pb_protocol::{Command, CommandMessage};
use pb_runtime::Reply;
use pb_runtime::owned::Unit;

use crate::Sessions;

pub async fn handle(sessions: &Sessions, ctx: &mut Unit, command: Command) -> Reply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let CommandMessage::Session(message) = command.message else {
        return Reply::failure(format!(
            "{} is not a session command",
            command.message.name()
        ));
    };
    let mut loaded = match sessions.store.load(unit).await {
        Ok(loaded) => loaded,
        Err(e) => return crate::state_failure(e),
    };
    if !loaded.value.sessions.contains_key(&command.target) {
        // The index still knew it, the owner's record does not: disposed a moment ago.
        return Reply::failure(format!(
            "unknown session destination `{}`: it has been disposed",
            command.target
        ));
    }
    let target = command.target;
    match message {
        SessionCommand::Init(_) => init::handle(sessions, unit, &target, &mut loaded).await,
        SessionCommand::CreateChannelGroup(child) => {
            let limits = *ctx.limits();
            create_channel_group::handle(sessions, (unit, &limits), &target, &mut loaded, child)
                .await
        }
        SessionCommand::Logout(reason) => {
            logout::handle(sessions, unit, &target, &mut loaded, reason).await
        }
        SessionCommand::Dispose => {
            ctx.forget(pb_protocol::Kind::Session, &target).await;
            dispose::handle(sessions, unit, &target, loaded)
        }
    }
}
