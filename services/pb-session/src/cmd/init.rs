//! `session.query.init`: the agent's one channel group (its CTI place). From now on the
//! session may raise events.

use pb_protocol::Target;
use pb_protocol::session::{NamedGroup, SessionInit};
use pb_runtime::Reply;
use pb_runtime::state::Loaded;

use crate::Sessions;
use crate::state::AgentSessions;

pub async fn handle(
    sessions: &Sessions,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentSessions>,
) -> Reply {
    let Some(session) = loaded.value.sessions.get_mut(target) else {
        return Reply::failure("the session vanished");
    };
    let body = pb_protocol::to_body(&SessionInit {
        channel_groups: vec![NamedGroup {
            name: session.place.clone(),
        }],
    });
    if !session.initialised {
        session.initialised = true;
        if let Err(e) = sessions.store.save(unit, loaded).await {
            return crate::state_failure(e);
        }
    }
    Reply::body(body)
}
