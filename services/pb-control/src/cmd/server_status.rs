//! `cti.request.serverstatus`: answered, then `cti.serverstatuschanged` carries the status
//! (reference §6.3). From now on the control destination may raise events.

use pb_runtime::Reply;

use crate::Control;

pub async fn handle(control: &Control) -> Reply {
    match control.store.update(|r| r.reported = true).await {
        Ok((_, record)) => Reply::success().with_event(control.status_event(&record)),
        Err(e) => Reply::failure(e.to_string()),
    }
}
