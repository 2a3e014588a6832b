//! `cti.request.validateagentcredentials`: checked by the CTI without side effects; a CTI
//! that cannot do that answers Unsupported, which becomes a FAILURE saying so.

use pb_cti::ValidateCredentials;
use pb_protocol::control::AgentCredentials;
use pb_runtime::Reply;

use super::cti_failure;
use crate::Control;

pub async fn handle(control: &Control, credentials: AgentCredentials) -> Reply {
    let call = ValidateCredentials {
        agent_id: credentials.agent_id,
        login: credentials.agent_login,
        password: credentials.agent_password,
    };
    match control.cti.call(&call, control.budget().left()).await {
        Ok(_) => Reply::success(),
        Err(e) => cti_failure(e),
    }
}
