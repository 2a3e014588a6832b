//! `session.request.logout`: log the agent out of the CTI on every channel. The channels
//! report `channel.deactivated`; the session raises no `session.loggedout`, since the desktop
//! asked for it. While the agent is on an interaction the CTI keeps the logout pending until
//! it ends: the answer says `"pending": true`, and `session.loggedout` tells the bridge when
//! it takes effect.

use pb_cti::{AgentEvent, AgentSnapshot, Logout};
use pb_protocol::Target;
use pb_protocol::internal::{Pause, Resume, UnitRef};
use pb_protocol::session::{LogoutAnswer, ReasonCode};
use pb_runtime::Reply;
use pb_runtime::state::Loaded;

use crate::Sessions;
use crate::state::AgentSessions;

pub async fn handle(
    sessions: &Sessions,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentSessions>,
    reason: ReasonCode,
) -> Reply {
    let until = sessions.budget();
    if let Some(session) = loaded.value.sessions.get_mut(target) {
        session.logging_out = true;
    }
    if let Err(e) = sessions.store.save(unit, loaded).await {
        return crate::state_failure(e);
    }
    // The channels' `channel.deactivated` events come from the channel-group service: it
    // holds them until this response is out (contract §5.4).
    let has_group = loaded.value.sessions.values().any(|s| s.group.is_some());
    let pause = Pause(UnitRef {
        agent_id: unit.to_owned(),
    });
    let paused = has_group
        && match sessions.tell_channels(&pause, until.left()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%unit, error = %e, "cannot hold the channels' events");
                false
            }
        };
    let (reply, snapshot) = log_out(sessions, unit, target, loaded, reason, &until).await;
    if !paused {
        return reply;
    }
    // The channels learn what the CTI answered from this resume, whenever its own events
    // reach them.
    let resume = Resume {
        agent_id: unit.to_owned(),
        cti_events: snapshot.map(channel_changes).unwrap_or_default(),
    };
    let sessions = sessions.clone();
    reply.then(async move {
        if let Err(e) = sessions
            .tell_channels(&resume, sessions.deadline)
            .await
        {
            tracing::warn!(unit = %resume.agent_id, error = %e, "cannot release the channels' events");
        }
    })
}

/// Each channel of `snapshot` as the CTI's change event for it.
fn channel_changes(snapshot: AgentSnapshot) -> Vec<serde_json::Value> {
    snapshot
        .channels
        .into_iter()
        .filter_map(|channel| {
            serde_json::to_value(AgentEvent::ChannelChanged {
                agent_id: snapshot.agent_id.clone(),
                place: snapshot.place.clone(),
                channel,
            })
            .ok()
        })
        .collect()
}

async fn log_out(
    sessions: &Sessions,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentSessions>,
    reason: ReasonCode,
    until: &pb_runtime::cti::Budget,
) -> (Reply, Option<AgentSnapshot>) {
    let logout = Logout {
        agent_id: unit.to_owned(),
        reason_code: reason.reason_code,
    };
    match sessions.cti.call(&logout, until.left()).await {
        Ok(snapshot) if snapshot.logout_pending => {
            if let Some(session) = loaded.value.sessions.get_mut(target) {
                session.logging_out = false;
            }
            let answer = Reply::body(pb_protocol::to_body(&LogoutAnswer { pending: true }));
            let saved = sessions.store.save(unit, loaded).await;
            (pb_runtime::state::made(unit, saved, answer), Some(snapshot))
        }
        Ok(snapshot) => (Reply::success(), Some(snapshot)),
        Err(e) => (pb_runtime::cti::failed::<Logout>(e), None),
    }
}
