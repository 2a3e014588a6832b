//! The commands of the service's four destination kinds, one module each, and what they
//! share: creating a child destination, answering with a CTI interaction's change, and
//! releasing a disposed destination.

mod channel;
mod conversation;
mod group;
mod interaction;

use pb_cti::{Act, Action, CtiReply, InteractionSnapshot};
use pb_protocol::{Body, Call, Command, CommandMessage, Event, Kind, Target};
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
        Err(e) => return Reply::from(e),
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

/// Create the destination `<parent>.<id>` of `kind` for the CTI resource `name` (recorded
/// by `insert`), answering on its subject before SUCCESS (contract §5.5). Made again for the
/// same resource, it changes nothing and succeeds; the same id for another resource fails.
/// A new one is refused with `unknown`, when the bridge cannot know the resource.
async fn create(
    groups: &Groups,
    ctx: &mut Unit,
    loaded: &mut Loaded<AgentTree>,
    (kind, parent): (Kind, &Target),
    (id, name): (&str, &str),
    unknown: Option<String>,
    insert: impl FnOnce(&mut AgentTree, Target),
) -> Reply {
    let target = match parent.child_within(id, ctx.limits()) {
        Ok(t) => t,
        Err(e) => return Reply::failure(e.to_string()),
    };
    match loaded.value.resource_at(kind, &target) {
        Some(existing) if existing != name => {
            return Reply::failure(format!(
                "destination `{target}` is already {} `{existing}`",
                kind.describe()
            ));
        }
        Some(_) => {}
        None => {
            if let Some(why) = unknown {
                return Reply::failure(why);
            }
            insert(&mut loaded.value, target.clone());
            let unit = ctx.name().to_owned();
            if let Err(e) = groups.store.save(&unit, loaded).await {
                return Reply::from(e);
            }
        }
    }
    match ctx.listen(kind, &target).await {
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
    C: Call<Reply = CtiReply<InteractionSnapshot>> + Sync,
{
    let snapshot = match groups.call(call).await {
        Ok(snapshot) => snapshot,
        Err(failure) => return failure,
    };
    let (_, events) = crate::events::interaction_changed(&mut loaded.value, &snapshot);
    let reply = events
        .into_iter()
        .fold(Reply::body(body(&snapshot)), Reply::with_event);
    pb_runtime::state::made_once(unit, groups.store.send(unit, loaded).await, reply)
}

/// Act on one of the agent's interactions, or one of its legs, at the CTI.
async fn act(
    groups: &Groups,
    unit: &str,
    loaded: &mut Loaded<AgentTree>,
    interaction: String,
    action: Action,
) -> Reply {
    let call = Act {
        agent_id: unit.to_owned(),
        interaction,
        action,
    };
    interaction_call(groups, unit, loaded, &call, |_| Body::new()).await
}

/// No longer answered for; answered, then the destination is released (`event`, if any,
/// raised in between). Its children are disposed by their own requests.
async fn dispose(
    groups: &Groups,
    ctx: &mut Unit,
    (kind, target): (Kind, &Target),
    event: Option<Event>,
) -> Reply {
    ctx.forget(kind, target).await;
    let store = groups.store.clone();
    let unit = ctx.name().to_owned();
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
