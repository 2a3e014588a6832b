//! The channel commands: init, activate / deactivate, ready / not ready, dial,
//! createinteraction, dispose. A state change is made at the CTI, recorded, answered, and
//! followed by the events that take the bridge to the new state, all under the agent's lock,
//! so concurrent requests on one channel are applied one after the other.

use pb_cti::{Activate, ChannelSnapshot, CtiCall, Deactivate, SetAgentState};
use pb_protocol::channel::{AgentState, ChannelCommand, ChannelEvent, ChannelInit, ChannelType};
use pb_protocol::{Event, Kind, Target};
use pb_runtime::owned::Unit;
use pb_runtime::state::Loaded;
use pb_runtime::{CtiCallError, Reply};

use crate::Groups;
use crate::state::{AgentTree, Reported};

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
    match message {
        ChannelCommand::Init => return init(groups, unit, target, loaded).await,
        ChannelCommand::Dispose => {
            let initialised = channel.initialised();
            ctx.forget(Kind::Channel, target).await;
            return dispose(groups, unit, target, initialised);
        }
        _ if channel.unsupported => {
            return Reply::failure(format!(
                "channel `{endpoint}` was created UNSUPPORTED: it answers only channel.query.init and channel.request.dispose"
            ));
        }
        _ if !channel.initialised() => {
            return Reply::failure("channel.query.init has not been answered yet");
        }
        _ => {}
    }
    match message {
        ChannelCommand::Activate => {
            change(
                groups,
                unit,
                target,
                loaded,
                &Activate { agent_id, endpoint },
            )
            .await
        }
        ChannelCommand::Deactivate => {
            change(
                groups,
                unit,
                target,
                loaded,
                &Deactivate { agent_id, endpoint },
            )
            .await
        }
        ChannelCommand::Ready => {
            let call = SetAgentState {
                agent_id,
                endpoint,
                state: AgentState::Ready,
                reason_code: None,
            };
            change(groups, unit, target, loaded, &call).await
        }
        ChannelCommand::NotReady(reason) => {
            let call = SetAgentState {
                agent_id,
                endpoint,
                state: AgentState::NotReady,
                reason_code: reason.reason_code,
            };
            change(groups, unit, target, loaded, &call).await
        }
        ChannelCommand::Dial(_) if channel.media != ChannelType::Telephony => {
            Reply::failure(format!(
                "channel `{endpoint}` is {}: only TELEPHONY channels dial",
                channel.media.as_str()
            ))
        }
        ChannelCommand::Dial(_) => Reply::failure(
            "this client does not place outbound calls yet (the interaction destinations are not built)",
        ),
        ChannelCommand::CreateInteraction(child) => Reply::failure(format!(
            "channel `{endpoint}` has no interaction `{}`",
            child.name
        )),
        ChannelCommand::Init | ChannelCommand::Dispose => Reply::failure("handled above"),
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
    let body = pb_protocol::to_body(&ChannelInit {
        state: now.state,
        agent_state: now.agent_state,
        reason_code: now.reason_code.clone(),
        pending_agent_state: None,
        interactions: (!channel.unsupported).then(Vec::new),
    });
    channel.reported = Some(now);
    match groups.store.save(unit, loaded).await {
        Ok(()) => Reply::body(body),
        Err(e) => Reply::failure(e.to_string()),
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
    C: CtiCall<Reply = ChannelSnapshot> + Sync,
{
    let until = groups.budget();
    let snapshot = match groups.cti.call(call, until.left()).await {
        Ok(snapshot) => snapshot,
        Err(CtiCallError::Refused(e)) => return Reply::failure(e.message),
        Err(e) => return Reply::failure(e.to_string()),
    };
    let Some(channel) = loaded.value.channels.get_mut(target) else {
        return Reply::failure("the channel vanished");
    };
    let events = channel.apply(unit, &snapshot).unwrap_or_default();
    if let Err(e) = groups.store.save(unit, loaded).await {
        return Reply::failure(e.to_string());
    }
    events.into_iter().fold(Reply::success(), |reply, e| {
        reply.with_event(Event::new(target.clone(), e))
    })
}

/// Answered, `channel.disposed` raised (if the bridge knows the channel), then released.
fn dispose(groups: &Groups, unit: &str, target: &Target, initialised: bool) -> Reply {
    let store = groups.store.clone();
    let unit = unit.to_owned();
    let released = target.clone();
    let reply = Reply::success().then(async move {
        let release = async {
            let mut loaded = store.load(&unit).await?;
            loaded.value.channels.remove(&released);
            store.save(&unit, &mut loaded).await
        };
        if let Err(e) = release.await {
            tracing::error!(target = %released, error = %e, "could not release the channel");
        }
    });
    if initialised {
        reply.with_event(Event::new(target.clone(), ChannelEvent::Disposed))
    } else {
        reply
    }
}
