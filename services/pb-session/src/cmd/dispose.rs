//! `session.request.dispose`: answered, then the session is released. The agent stays
//! logged in at the CTI (a desktop that reconnects finds it so); `session.request.logout`
//! is how a desktop logs out.

use pb_protocol::Target;
use pb_runtime::Reply;
use pb_runtime::state::Loaded;

use crate::Sessions;
use crate::state::AgentSessions;

pub fn handle(
    sessions: &Sessions,
    unit: &str,
    target: &Target,
    mut loaded: Loaded<AgentSessions>,
) -> Reply {
    let store = sessions.store.clone();
    let targets = sessions.targets.clone();
    let unit = unit.to_owned();
    let target = target.clone();
    Reply::success().then(async move {
        loaded.value.sessions.remove(&target);
        if let Err(e) = store.save(&unit, &mut loaded).await {
            tracing::error!(%target, error = %e, "could not release the session");
            return;
        }
        if let Err(e) = targets.delete(&target).await {
            tracing::error!(%target, error = %e, "could not forget the session's target");
        }
    })
}
