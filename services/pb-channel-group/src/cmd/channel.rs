//! The channel commands: init, activate / deactivate, ready / not ready, dial,
//! createinteraction, dispose. A state change is made at the CTI, recorded, answered, and
//! followed by the events that take the bridge to the new state, all in the agent's actor,
//! so concurrent requests on one channel are applied one after the other. A state change
//! asked for while the channel has a live interaction waits at the CTI for it to end
//! (`pending-agent-state`); its event comes when it takes effect.

use pb_cti::{Activate, ChannelSnapshot, CtiReply, Deactivate, SetAgentState};
use pb_protocol::channel::{
    AgentState, ChannelCommand, ChannelEvent, ChannelInit, ChannelType, InteractionRef,
};
use pb_protocol::interaction::InteractionState;
use pb_protocol::session::CreateChild;
use pb_protocol::{Call, Event, Kind, Target};
use pb_runtime::Reply;
use pb_runtime::owned::Unit;
use pb_runtime::state::Loaded;

use crate::Groups;
use crate::state::{AgentTree, Interaction, Reported};

pub async fn handle(
    groups: &Groups,
    ctx: &mut Unit,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    message: ChannelCommand,
) -> Reply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let Some(channel) = loaded.value.channels.get(target) else {
        return Reply::failure("the channel vanished");
    };
    let endpoint = channel.endpoint.clone();
    let agent_id = unit.to_owned();
    let state = |state, reason_code| SetAgentState {
        agent_id: agent_id.clone(),
        endpoint: endpoint.clone(),
        state,
        reason_code,
    };
    match message {
        ChannelCommand::Init => init(groups, unit, target, loaded).await,
        ChannelCommand::Dispose => {
            let disposed = channel
                .initialised()
                .then(|| Event::new(target.clone(), ChannelEvent::Disposed));
            super::dispose(groups, ctx, (Kind::Channel, target), disposed).await
        }
        _ if channel.unsupported => Reply::failure(format!(
            "channel `{endpoint}` was created UNSUPPORTED: it answers only channel.query.init and channel.request.dispose"
        )),
        _ if !channel.initialised() => {
            Reply::failure("channel.query.init has not been answered yet")
        }
        ChannelCommand::Activate => {
            let call = Activate { agent_id, endpoint };
            change(groups, unit, target, loaded, &call).await
        }
        ChannelCommand::Deactivate => {
            let call = Deactivate { agent_id, endpoint };
            change(groups, unit, target, loaded, &call).await
        }
        ChannelCommand::Ready => {
            let call = state(AgentState::Ready, None);
            change(groups, unit, target, loaded, &call).await
        }
        ChannelCommand::NotReady(reason) => {
            let call = state(AgentState::NotReady, reason.reason_code);
            change(groups, unit, target, loaded, &call).await
        }
        ChannelCommand::Dial(_) if channel.media != ChannelType::Telephony => {
            Reply::failure(format!(
                "channel `{endpoint}` is {}: only TELEPHONY channels dial",
                channel.media.as_str()
            ))
        }
        ChannelCommand::Dial(dial) => {
            let call = pb_cti::Dial {
                agent_id,
                endpoint,
                destination: dial.destination,
            };
            super::interaction_call(groups, unit, loaded, &call, |new| {
                pb_protocol::to_body(&InteractionRef {
                    name: new.name.clone(),
                    media: new.media,
                })
            })
            .await
        }
        ChannelCommand::CreateInteraction(child) => {
            create_interaction(groups, ctx, target, loaded, child).await
        }
    }
}

/// The channel's state as the CTI has it now.
async fn init(
    groups: &Groups,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
) -> Reply {
    let snapshot = match groups.snapshot(unit).await {
        Ok(snapshot) => snapshot,
        Err(failure) => return failure,
    };
    let Some(channel) = loaded.value.channels.get_mut(target) else {
        return Reply::failure("the channel vanished");
    };
    let Some(cti) = snapshot.channel(&channel.endpoint) else {
        return Reply::failure(format!(
            "channel `{}` is not in place `{}` where agent `{unit}` is",
            channel.endpoint, snapshot.place
        ));
    };
    let now = Reported::of(unit, cti);
    channel.revision = cti.revision;
    // Every interaction on the channel that is not COMPLETED: the bridge may create them.
    let live: Vec<_> = snapshot
        .interactions
        .iter()
        .filter(|i| i.endpoint == channel.endpoint && i.state != InteractionState::Completed)
        .collect();
    if !channel.unsupported {
        for interaction in &live {
            channel.track(interaction);
        }
    }
    let interactions: Vec<InteractionRef> = live
        .iter()
        .map(|i| InteractionRef {
            name: i.name.clone(),
            media: i.media,
        })
        .collect();
    let body = pb_protocol::to_body(&ChannelInit {
        state: now.state,
        agent_state: now.agent_state,
        reason_code: now.reason_code.clone(),
        pending_agent_state: now.pending,
        interactions: (!channel.unsupported).then_some(interactions),
    });
    channel.reported = Some(now);
    match groups.store.save(unit, loaded).await {
        Ok(()) => Reply::body(body),
        Err(e) => Reply::from(e),
    }
}

/// Make a change at the CTI, record what the bridge will now know, answer, then raise the
/// events from the old state to the new one.
async fn change<C>(
    groups: &Groups,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    call: &C,
) -> Reply
where
    C: Call<Reply = CtiReply<ChannelSnapshot>> + Sync,
{
    let snapshot = match groups.call(call).await {
        Ok(snapshot) => snapshot,
        Err(failure) => return failure,
    };
    let Some(channel) = loaded.value.channels.get_mut(target) else {
        return Reply::failure("the channel vanished");
    };
    let events = channel.apply(unit, &snapshot).unwrap_or_default();
    let reply = events.into_iter().fold(Reply::success(), |reply, e| {
        reply.with_event(Event::new(target.clone(), e))
    });
    pb_runtime::state::made_once(unit, groups.store.send(unit, loaded).await, reply)
}

/// The interaction destination `<channel>.<id>` for one of the channel's interactions the
/// bridge was told of.
async fn create_interaction(
    groups: &Groups,
    ctx: &mut Unit,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    child: CreateChild,
) -> Reply {
    let Some(channel) = loaded.value.channels.get(target) else {
        return Reply::failure("the channel vanished");
    };
    let unknown = (!channel.offers(&child.name)).then(|| {
        format!(
            "channel `{}` has no interaction `{}` (an interaction is created after channel.interaction.added or channel.query.init names it, until it is COMPLETED)",
            channel.endpoint, child.name
        )
    });
    let interaction = Interaction {
        name: child.name.clone(),
        media: channel.media,
        reported: None,
        revision: 0,
    };
    let at = (Kind::Interaction, target);
    super::create(
        groups,
        ctx,
        loaded,
        at,
        (&child.id, &child.name),
        unknown,
        |tree, t| {
            tree.interactions.insert(t, interaction);
        },
    )
    .await
}
