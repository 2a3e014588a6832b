//! `session.request.logout`: log the agent out of the CTI on every channel. The channels
//! report `channel.deactivated`; the session raises no `session.loggedout`, since the desktop
//! asked for it. While the agent is on an interaction the CTI keeps the logout pending until
//! it ends: the answer says `"pending": true`, and `session.loggedout` tells the bridge when
//! it takes effect.

use pb_cti::Logout;
use pb_protocol::Target;
use pb_protocol::internal::{PAUSE, RESUME};
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
    let paused = has_group
        && match sessions.tell_channels(PAUSE, unit, until.left()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%unit, error = %e, "cannot hold the channels' events");
                false
            }
        };
    let reply = log_out(sessions, unit, target, loaded, reason, &until).await;
    if !paused {
        return reply;
    }
    let sessions = sessions.clone();
    let unit = unit.to_owned();
    reply.then(async move {
        if let Err(e) = sessions
            .tell_channels(RESUME, &unit, sessions.deadline)
            .await
        {
            tracing::warn!(%unit, error = %e, "cannot release the channels' events");
        }
    })
}

async fn log_out(
    sessions: &Sessions,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentSessions>,
    reason: ReasonCode,
    until: &pb_runtime::cti::Budget,
) -> Reply {
    let logout = Logout {
        agent_id: unit.to_owned(),
        reason_code: reason.reason_code,
    };
    match sessions.cti.call(&logout, until.left()).await {
        Ok(snapshot) if snapshot.logout_pending => {
            if let Some(session) = loaded.value.sessions.get_mut(target) {
                session.logging_out = false;
            }
            if let Err(e) = sessions.store.save(unit, loaded).await {
                return crate::state_failure(e);
            }
            Reply::body(pb_protocol::to_body(&LogoutAnswer { pending: true }))
        }
        Ok(_) => Reply::success(),
        Err(e) => Reply::failure(e.to_string()),
    }
}
