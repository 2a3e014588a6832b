//! `cti.query.agentinfo`: an agent's information; the CTI checks the requesting agent's
//! credentials in the same call.

use pb_cti::GetAgentInfo;
use pb_protocol::control::AgentInfoQuery;
use pb_runtime::Reply;

use super::cti_failure;
use crate::Control;

pub async fn handle(control: &Control, query: AgentInfoQuery) -> Reply {
    let call = GetAgentInfo {
        agent_id: query.agent_id,
        requester_login: query.requesting_agent_login,
        requester_password: query.requesting_agent_password,
    };
    match control.cti.call(&call, control.budget().left()).await {
        Ok(info) => Reply::body(pb_protocol::to_body(&info)),
        Err(e) => cti_failure(e),
    }
}
