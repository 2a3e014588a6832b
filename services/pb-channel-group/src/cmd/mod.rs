//! The commands of the service's four destination kinds, one module each, and what they
//! share: creating a child destination, answering with a CTI interaction's change, and
//! releasing a disposed destination.

mod channel;
mod conversation;
mod group;
mod interaction;

use pb_cti::{CtiCall, InteractionSnapshot};
use pb_protocol::{Body, Command, CommandMessage, Event, Kind, Target};
use pb_runtime::Reply;
use pb_runtime::owned::Unit;
use pb_runtime::state::Loaded;

use crate::Groups;
use crate::state::AgentTree;

pub async fn handle(groups: &Groups, ctx: &mut Unit, command: Command) -> Reply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let mut loaded = match groups.store.load(unit).await {
        Ok(loaded) => loaded,
        Err(e) => return Reply::failure(e.to_string()),
    };
    let target = command.target;
    let tree = &loaded.value;
    match command.message {
        CommandMessage::ChannelGroup(message) if tree.groups.contains_key(&target) => {
            group::handle(groups, ctx, &target, &mut loaded, message).await
        }
        CommandMessage::Channel(message) if tree.channels.contains_key(&target) => {
            channel::handle(groups, ctx, &target, &mut loaded, message).await
        }
        CommandMessage::Interaction(message) if tree.interactions.contains_key(&target) => {
            interaction::handle(groups, ctx, &target, &mut loaded, message).await
        }
        CommandMessage::Conversation(message) if tree.conversations.contains_key(&target) => {
            conversation::handle(groups, ctx, &target, &mut loaded, message).await
        }
        other => Reply::failure(format!(
            "unknown {} destination `{target}`: it was never created or has been disposed",
            other.kind().describe()
        )),
    }
}

/// What a create request finds at the new destination's target.
enum Existing {
    /// Nothing: create it.
    None,
    /// The same CTI resource: created before (a retry), listen again.
    Same,
    /// Another resource: refuse, saying why.
    Other(String),
}

/// Create the destination `target` of `kind` (recorded by `insert`), answering on its
/// subject before SUCCESS (contract §5.5); made again, it changes nothing.
async fn create(
    groups: &Groups,
    ctx: &mut Unit,
    loaded: &mut Loaded<AgentTree>,
    (kind, target): (Kind, &Target),
    existing: Existing,
    insert: impl FnOnce(&mut AgentTree),
) -> Reply {
    match existing {
        Existing::Other(why) => return Reply::failure(why),
        Existing::Same => {}
        Existing::None => {
            insert(&mut loaded.value);
            let unit = ctx.name().to_owned();
            if let Err(e) = groups.store.save(&unit, loaded).await {
                return Reply::failure(e.to_string());
            }
        }
    }
    match ctx.listen(kind, target).await {
        Ok(()) => Reply::success(),
        Err(why) => Reply::failure(why),
    }
}

/// Make a CTI call that changes one of the agent's interactions, record what the bridge
/// will now know of it, answer with `body`, then raise the events of the change.
async fn interaction_call<C>(
    groups: &Groups,
    unit: &str,
    loaded: &mut Loaded<AgentTree>,
    call: &C,
    body: impl FnOnce(&InteractionSnapshot) -> Body,
) -> Reply
where
    C: CtiCall<Reply = InteractionSnapshot> + Sync,
{
    let snapshot = match groups.call(call).await {
        Ok(snapshot) => snapshot,
        Err(failure) => return failure,
    };
    let (_, events) = crate::events::interaction_changed(&mut loaded.value, &snapshot);
    if let Err(e) = groups.store.save(unit, loaded).await {
        return Reply::failure(e.to_string());
    }
    events
        .into_iter()
        .fold(Reply::body(body(&snapshot)), Reply::with_event)
}

/// Answered, then the destination is released (`event`, if any, raised in between). Its
/// children are disposed by their own requests.
fn dispose(
    groups: &Groups,
    unit: &str,
    (kind, target): (Kind, &Target),
    event: Option<Event>,
) -> Reply {
    let store = groups.store.clone();
    let unit = unit.to_owned();
    let released = target.clone();
    let reply = Reply::success().then(async move {
        let release = async {
            let mut loaded = store.load(&unit).await?;
            loaded.value.remove(kind, &released);
            store.save(&unit, &mut loaded).await
        };
        if let Err(e) = release.await {
            tracing::error!(target = %released, error = %e, "could not release the {}", kind.describe());
        }
    });
    event.into_iter().fold(reply, Reply::with_event)
}
