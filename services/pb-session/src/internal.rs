//! Internal requests: the control's hand-off of a new session, and releasing every session
//! of an agent (control disposed).

use bytes::Bytes;
use pb_cti::Login;
use pb_protocol::internal::{CREATE, InternalReply, RELEASE, SessionCreate};
use pb_protocol::{Event, Kind};
use pb_runtime::owned::Unit;

use crate::Sessions;
use crate::state::Session;

pub async fn handle(
    sessions: &Sessions,
    ctx: &mut Unit,
    op: &str,
    payload: Bytes,
) -> (InternalReply, Vec<Event>) {
    let reply = match op {
        CREATE => match serde_json::from_slice::<SessionCreate>(&payload) {
            Ok(create) => self::create(sessions, ctx, create).await,
            Err(e) => InternalReply::Error(format!("malformed create request: {e}")),
        },
        RELEASE => release(sessions, ctx).await,
        other => InternalReply::Error(format!(
            "the session service has no internal request `{other}`"
        )),
    };
    (reply, Vec::new())
}

/// Log the agent in at the CTI (checking its password; a reconnecting agent is already
/// logged in and stays so) and record the session before answering.
async fn create(sessions: &Sessions, ctx: &mut Unit, create: SessionCreate) -> InternalReply {
    let until = sessions.budget();
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let mut loaded = match sessions.store.load(unit).await {
        Ok(loaded) => loaded,
        Err(e) => return InternalReply::Error(e.to_string()),
    };
    // The agent's own session, kept from before: a bridge that lost its link (or
    // restarted) creates it again, perhaps with a new sessionId, and finds it as it was
    // (contract §8.8; reference §9.2, `session.query.init` after lost connectivity). The
    // agent is logged in at the CTI again all the same (the password checked; a login at
    // the same place changes nothing), since the CTI may have logged it out meanwhile.
    let kept = loaded.value.sessions.contains_key(&create.target);
    if !kept {
        match sessions.targets.unit(&create.target).await {
            Ok(Some(other)) if other != unit => {
                return InternalReply::Error(format!(
                    "destination `{}` is already in use",
                    create.target
                ));
            }
            Ok(_) => {}
            Err(e) => return InternalReply::Error(e.to_string()),
        }
    }
    let login = Login {
        agent_id: create.agent_id.clone(),
        password: create.agent_password,
        place: None,
    };
    let snapshot = match sessions.cti.call(&login, until.left()).await {
        Ok(snapshot) => snapshot,
        Err(e) => return InternalReply::Error(e.to_string()),
    };
    let session = loaded
        .value
        .sessions
        .entry(create.target.clone())
        .or_insert_with(|| Session {
            session_id: create.session_id.clone(),
            place: snapshot.place,
            initialised: false,
            group: None,
            logging_out: false,
            logged_out: false,
        });
    // Logged in (again): a later logout is news.
    let changed = !kept || session.session_id != create.session_id || session.logged_out;
    session.session_id = create.session_id;
    session.logged_out = false;
    if changed && let Err(e) = sessions.store.save(unit, &mut loaded).await {
        return InternalReply::Error(e.to_string());
    }
    if !kept && let Err(e) = sessions.targets.put(&create.target, unit).await {
        return InternalReply::Error(e.to_string());
    }
    ctx.listen(Kind::Session, &create.target).await.into()
}

async fn release(sessions: &Sessions, ctx: &mut Unit) -> InternalReply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let mut loaded = match sessions.store.load(unit).await {
        Ok(loaded) => loaded,
        Err(e) => return InternalReply::Error(e.to_string()),
    };
    let targets: Vec<_> = std::mem::take(&mut loaded.value.sessions)
        .into_keys()
        .collect();
    if let Err(e) = sessions.store.save(unit, &mut loaded).await {
        return InternalReply::Error(e.to_string());
    }
    for target in targets {
        ctx.forget(Kind::Session, &target).await;
        if let Err(e) = sessions.targets.delete(&target).await {
            tracing::error!(%target, error = %e, "could not forget a released session");
        }
    }
    InternalReply::Ok
}
