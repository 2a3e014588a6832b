//! The channel group and channel commands.

mod channel;
mod group;

use pb_protocol::{Command, CommandMessage};
use pb_runtime::Reply;
use pb_runtime::owned::Unit;

use crate::Groups;

pub async fn handle(groups: &Groups, ctx: &mut Unit, command: Command) -> Reply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let mut loaded = match groups.store.load(unit).await {
        Ok(loaded) => loaded,
        Err(e) => return Reply::failure(e.to_string()),
    };
    let target = command.target;
    match command.message {
        CommandMessage::ChannelGroup(message) if loaded.value.groups.contains_key(&target) => {
            group::handle(groups, ctx, &target, &mut loaded, message).await
        }
        CommandMessage::Channel(message) if loaded.value.channels.contains_key(&target) => {
            channel::handle(groups, ctx, &target, &mut loaded, message).await
        }
        other => Reply::failure(format!(
            "unknown {} destination `{target}`: it was never created or has been disposed",
            other.kind().describe()
        )),
    }
}
