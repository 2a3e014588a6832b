//! `session.request.logout`: log the agent out of the CTI on every channel. The channels
//! report `channel.deactivated`; the session raises no `session.loggedout`, since the desktop
//! asked for it. While the agent is on an interaction the CTI keeps the logout pending until
//! it ends: the answer says `"pending": true`, and `session.loggedout` tells the bridge when
//! it takes effect.

use pb_cti::Logout;
use pb_protocol::Target;
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
