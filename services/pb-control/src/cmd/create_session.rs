//! `cti.request.createsession`: refused unless the client reported in-service (contract
//! §5.7), the destination is a valid target and the CTI accepts the credentials; then handed
//! to the session service by request-reply (`P.int.session.create`), which answers once the
//! session destination answers on its subject (contract §5.5).

use pb_cti::ValidateCredentials;
use pb_protocol::Target;
use pb_protocol::control::CreateSession;
use pb_protocol::internal::{InternalReply, SessionCreate};
use pb_runtime::Reply;

use super::cti_failure;
use crate::Control;

pub async fn handle(control: &Control, request: CreateSession) -> Reply {
    let until = control.budget();
    match control.store.get().await {
        Ok(record) => {
            if let Some(why) = record.refuse_sessions() {
                return Reply::failure(why);
            }
        }
        Err(e) => return Reply::failure(e.to_string()),
    }
    let target = match Target::new(request.destination.clone()).and_then(|target| {
        control.limits.check_target(&target)?;
        Ok(target)
    }) {
        Ok(target) => target,
        Err(e) => {
            return Reply::failure(format!(
                "destination `{}` cannot be a session target: {e}",
                pb_protocol::limits::Excerpt(&request.destination)
            ));
        }
    };
    // The agent's id names its records and subjects, as a target segment does.
    if let Err(e) = control
        .limits
        .check(pb_protocol::Limit::Segment, request.agent_id.len())
    {
        return Reply::failure(format!("agentId refused: {e}"));
    }
    if target == control.target {
        return Reply::failure("destination cannot be the control target itself");
    }
    let credentials = ValidateCredentials {
        agent_id: request.agent_id.clone(),
        login: request.agent_id.clone(),
        password: request.agent_password.clone(),
    };
    if let Err(e) = control.cti.call(&credentials, until.left()).await {
        return cti_failure(e);
    }
    let handoff = SessionCreate {
        target,
        session_id: request.session_id,
        agent_id: request.agent_id,
        agent_password: request.agent_password,
    };
    match pb_runtime::call(&control.client, &control.subjects, &handoff, until.left()).await {
        Ok(InternalReply::Ok) => Reply::success(),
        Ok(InternalReply::Error(why)) => Reply::failure(why),
        Ok(InternalReply::Again(why)) => Reply::retry_same(why),
        Err(e) => Reply::failure(e.to_string()),
    }
}
