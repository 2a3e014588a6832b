//! `session.request.createchannelgroup`: the session's one channel group, which must be the
//! agent's place; created by the channel-group service (`P.int.channelgroup.create`) before
//! the SUCCESS, so the group answers on its subject by then (contract §5.5).

use pb_protocol::Target;
use pb_protocol::internal::{GroupCreate, InternalReply};
use pb_protocol::session::CreateChild;
use pb_runtime::Reply;
use pb_runtime::state::Loaded;

use crate::Sessions;
use crate::state::AgentSessions;

pub async fn handle(
    sessions: &Sessions,
    (unit, limits): (&str, &pb_protocol::Limits),
    target: &Target,
    loaded: &mut Loaded<AgentSessions>,
    child: CreateChild,
) -> Reply {
    let until = sessions.budget();
    let Some(session) = loaded.value.sessions.get(target) else {
        return Reply::failure("the session vanished");
    };
    if !session.initialised {
        return Reply::failure(
            "session.query.init has not been answered yet: a channel group comes after it",
        );
    }
    if child.name != session.place {
        return Reply::failure(format!(
            "channel group `{}` is not this agent's: its channel group is `{}`",
            child.name, session.place
        ));
    }
    let group = match target.child_within(&child.id, limits) {
        Ok(group) => group,
        Err(e) => return Reply::failure(e.to_string()),
    };
    match &session.group {
        // The same create again (a retry whose first answer was lost, perhaps with the
        // replica that made it): made again, which changes nothing, and answered SUCCESS.
        Some(existing) if *existing == group => {}
        Some(existing) => {
            return Reply::failure(format!(
                "the session already has its channel group `{existing}`; a session has exactly one"
            ));
        }
        None => {}
    }
    let create = GroupCreate {
        target: group.clone(),
        agent_id: unit.to_owned(),
        place: session.place.clone(),
    };
    match pb_runtime::call(&sessions.client, &sessions.subjects, &create, until.left()).await {
        Ok(InternalReply::Ok) => {}
        Ok(InternalReply::Error(why)) => return Reply::failure(why),
        Ok(InternalReply::Again(why)) => return Reply::retry_same(why),
        Err(e) => return Reply::failure(e.to_string()),
    }
    if let Some(session) = loaded.value.sessions.get_mut(target) {
        session.group = Some(group);
    }
    match sessions.store.save(unit, loaded).await {
        Ok(()) => Reply::success(),
        Err(e) => crate::state_failure(e),
    }
}
