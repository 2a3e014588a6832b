//! `cti.request.dispose`: the bridge ends service. Answered first; then every session of
//! the processor is released (the session service listens on `P.int.control.disposed`) and
//! the status counts as unreported until the next `cti.request.serverstatus`.

use pb_protocol::internal::{CONTROL_SERVICE, DISPOSED};
use pb_runtime::Reply;

use crate::Control;

pub async fn handle(control: &Control) -> Reply {
    let client = control.client.clone();
    let subject = control.subjects.internal_request(CONTROL_SERVICE, DISPOSED);
    let processor_target = control.target.as_str().to_owned();
    let store = control.store.clone();
    Reply::success().then(async move {
        if let Err(e) = store.update(|r| r.reported = false).await {
            tracing::error!(error = %e, "could not record the dispose");
        }
        if let Err(e) = client.publish(subject, processor_target.into()).await {
            tracing::error!(error = %e, "could not announce the dispose to the session service");
        }
    })
}
