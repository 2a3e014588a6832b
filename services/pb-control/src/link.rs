//! Following the CTI link: the adapter's link events (queue group, so one replica handles
//! each) and a periodic poll (which also notices an adapter that died without a word).
//! A change is applied to the shared record by compare-and-set; the replica whose write
//! changed the link raises `cti.communicationlost` or `cti.communicationrestored`, then
//! `cti.serverstatuschanged` (contract §7), once the status has been reported. A link
//! back after an outage is announced once every owning replica has re-read the CTI for
//! its agents (or `PB_RESYNC_WAIT_MS` has passed), so that the changes made meanwhile
//! come first.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use futures::StreamExt;
use pb_cti::{GetCapabilities, GetLinkStatus, LinkEvent};
use pb_protocol::control::{CommunicationLost, ControlEvent};
use pb_runtime::{CallErrorKind, Shutdown};

use crate::Control;

/// Follow link events and poll the adapter every `poll` (giving it `timeout` to answer)
/// until `shutdown`.
pub async fn follow(
    control: Arc<Control>,
    mut events: Subscriber,
    poll: Duration,
    timeout: Duration,
    mut shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(message) = events.next() => match serde_json::from_slice::<LinkEvent>(&message.payload) {
                Ok(link) => apply(&control, link).await,
                Err(e) => tracing::warn!(error = %e, "unreadable link event from the CTI adapter ignored"),
            },
            _ = ticker.tick() => check(&control, timeout).await,
            _ = shutdown.requested() => return,
        }
    }
}

/// Ask the adapter for the link state and apply it. An adapter that does not answer means
/// the link is down as far as the client can tell.
pub async fn check(control: &Control, timeout: Duration) {
    let link = match control.cti.call(&GetLinkStatus {}, timeout).await {
        Ok(link) => link,
        Err(e)
            if matches!(
                e.kind(),
                Some(CallErrorKind::NoResponders | CallErrorKind::TimedOut)
            ) =>
        {
            LinkEvent {
                up: false,
                reason: Some(format!("the CTI adapter does not answer: {e}")),
                incarnation: None,
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "link status check failed");
            return;
        }
    };
    apply(control, link).await;
}

/// Record a link state; raise the events if this replica's write changed it.
pub async fn apply(control: &Control, link: LinkEvent) {
    let up = link.up;
    let (before, after) = match control
        .store
        .update(|r| {
            // Keep the first reason of an outage rather than rewriting it on every poll.
            if r.link.as_ref().map(|l| l.up) != Some(up) {
                r.link = Some(link.clone());
            }
        })
        .await
    {
        Ok(change) => change,
        Err(e) => {
            tracing::error!(error = %e, "could not record the CTI link state");
            return;
        }
    };
    if before == after {
        return;
    }
    tracing::info!(up, reason = ?after.link.as_ref().and_then(|l| l.reason.as_deref()), "CTI link changed");
    if up {
        if let Ok(caps) = control
            .cti
            .call(&GetCapabilities {}, Duration::from_secs(1))
            .await
        {
            *control.capabilities.write().await = Some(caps);
        }
    }
    let outage_over = up && before.link.as_ref().is_some_and(|l| !l.up);
    if outage_over {
        resync(control).await;
    }
    if !after.reported {
        return;
    }
    match (&before.link, up) {
        (_, false) => {
            let reason = link.reason.unwrap_or_else(|| "the CTI link dropped".into());
            control
                .publish(
                    &control.event(ControlEvent::CommunicationLost(CommunicationLost {
                        reason,
                    })),
                )
                .await;
        }
        (Some(old), true) if !old.up => {
            control
                .publish(&control.event(ControlEvent::CommunicationRestored))
                .await;
        }
        _ => {}
    }
    control.publish(&control.status_event(&after)).await;
}

/// Ask every owning replica to re-read the CTI for its agents, and wait until they have.
async fn resync(control: &Control) {
    use pb_protocol::internal::{CHANNEL_GROUP_SERVICE, SESSION_SERVICE};
    match pb_runtime::owned::resync_everywhere(
        &control.client,
        &control.buckets,
        &control.subjects,
        &[SESSION_SERVICE, CHANNEL_GROUP_SERVICE],
        control.resync_wait,
    )
    .await
    {
        Ok(resynced) if resynced.unanswered > 0 => tracing::warn!(
            done = resynced.done,
            unanswered = resynced.unanswered,
            "some replicas did not re-read the CTI in time; announcing the link anyway"
        ),
        Ok(resynced) => tracing::info!(replicas = resynced.done, "re-synchronised with the CTI"),
        Err(e) => tracing::error!(error = %e, "cannot ask the replicas to re-read the CTI"),
    }
}
