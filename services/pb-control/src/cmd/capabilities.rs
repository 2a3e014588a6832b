//! `cti.query.capabilities`: the CTI's capabilities, cached after the first answer (and
//! refreshed when the link comes back), so the query usually needs no CTI call.

use pb_cti::GetCapabilities;
use pb_runtime::Reply;

use super::cti_failure;
use crate::Control;

pub async fn handle(control: &Control) -> Reply {
    if let Some(caps) = control.capabilities.read().await.as_ref() {
        return Reply::body(pb_protocol::to_body(caps));
    }
    match control
        .cti
        .call(&GetCapabilities {}, control.budget().left())
        .await
    {
        Ok(caps) => {
            let body = pb_protocol::to_body(&caps);
            *control.capabilities.write().await = Some(caps);
            Reply::body(body)
        }
        Err(e) => cti_failure(e),
    }
}
