//! Re-synchronisation with the CTI: each owner re-reads the CTI's view of the units it
//! serves and raises the events for what differs from what the bridge was told.
//!
//! * When the link comes back, the control asks every registered replica of the owning
//!   services ([`resync_everywhere`], on their node subjects) and raises
//!   `cti.communicationrestored` once they all have answered, so the bridge hears the
//!   changes made during the outage before it hears that the link is back.
//! * When the adapter is a new incarnation (it restarted, and forgot), each replica hears it
//!   from the adapter's link event and re-reads by itself: nothing changed at the control.
//! * Periodically (`PB_RESYNC_MS`), each unit in turn, at even gaps.
//!
//! > At most [`RESYNCS_AT_ONCE`] units of one replica re-read the CTI at once: a link
//! > restored under many agents is no storm on the CTI.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{Client, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use pb_protocol::Subjects;

use super::{Inbox, Job, Owner, Shared, Unit, node_subject};
use crate::kv::{BucketError, Buckets, key, unkey};
use crate::serve::publish;

/// The header of a node message that asks for a re-sync of every unit served there.
pub(super) const RESYNC_HEADER: &str = "Pb-Resync";

/// Re-synchronisations with the CTI one replica runs at once.
pub(super) const RESYNCS_AT_ONCE: usize = 32;

/// How a request to re-synchronise everywhere went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resynced {
    /// Replicas that re-read the CTI for every unit they serve.
    pub done: usize,
    /// Registered replicas that did not answer within the time given (gone, or slow).
    pub unanswered: usize,
}

/// Ask every registered replica of each of `services` to re-read the CTI for the units it
/// serves, and wait until each has, at most `wait`.
pub async fn resync_everywhere(
    client: &Client,
    buckets: &Buckets,
    subjects: &Subjects,
    services: &[&str],
    wait: Duration,
) -> Result<Resynced, BucketError> {
    let members = buckets
        .open(crate::kv::buckets::MEMBERS, Duration::ZERO)
        .await?;
    let mut nodes = Vec::new();
    if let Ok(mut keys) = members.keys().await {
        while let Some(Ok(k)) = keys.next().await {
            if let Some(node) = services.iter().find_map(|service| {
                let replica = k.strip_prefix(&format!("{}.", key(&[service])))?;
                Some(node_subject(subjects, service, &unkey(replica)))
            }) {
                nodes.push(node);
            }
        }
    }
    let asked = nodes.iter().map(|node| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(RESYNC_HEADER, "1");
        let request = async_nats::Request::new()
            .headers(headers)
            .timeout(Some(wait));
        client.send_request(node.clone(), request)
    });
    let answers = futures::future::join_all(asked).await;
    let done = answers.iter().filter(|a| a.is_ok()).count();
    Ok(Resynced {
        done,
        unanswered: answers.len() - done,
    })
}

impl<H: Owner> Shared<H> {
    /// A re-sync asked on the node subject: every unit served here re-reads the CTI; the
    /// answer goes out once all have.
    pub(super) async fn resync_on_request(self: Arc<Self>, reply: Option<Subject>) {
        let units = self.resync_all().await;
        tracing::info!(units, "re-synchronised with the CTI on request");
        if let Some(reply) = reply {
            publish(&self.context.client, reply.to_string(), Bytes::new()).await;
        }
    }

    /// Every unit served here re-reads the CTI; returns once all have (or are gone): how
    /// many there were.
    async fn resync_all(&self) -> usize {
        let done: Vec<_> = self
            .inboxes()
            .into_iter()
            .filter_map(|inbox| {
                let (done, finished) = tokio::sync::oneshot::channel();
                inbox
                    .send(Inbox::Job(Job::Resync(Some(done))))
                    .ok()
                    .map(|_| finished)
            })
            .collect();
        let units = done.len();
        futures::future::join_all(done).await;
        units
    }

    /// Follow the CTI link for a new incarnation of the adapter (it restarted, and forgot):
    /// whatever the CTI did meanwhile was heard by nobody, so every unit served here
    /// re-reads it. (A link back after an outage is the control's to announce: it asks.)
    pub(super) async fn follow_link(self: Arc<Self>, mut links: Subscriber) {
        // The adapter's incarnation now, to know a restarted one when it announces itself.
        let cti = crate::CtiClient::new(self.context.client.clone(), self.context.subjects.clone());
        let status = cti
            .call(&pb_cti::GetLinkStatus {}, self.context.deadline)
            .await
            .ok();
        if let Some(status) = &status {
            self.link_down.store(!status.up, Ordering::Relaxed);
        }
        let mut incarnation = status.and_then(|link| link.incarnation);
        while let Some(message) = links.next().await {
            let Ok(link) = serde_json::from_slice::<pb_cti::LinkEvent>(&message.payload) else {
                tracing::warn!("unreadable CTI link event ignored");
                continue;
            };
            let restarted = matches!(
                (&incarnation, &link.incarnation),
                (Some(known), Some(new)) if known != new
            );
            self.link_down.store(!link.up, Ordering::Relaxed);
            if link.incarnation.is_some() {
                incarnation = link.incarnation.clone();
            }
            if link.up && restarted {
                tracing::info!("the CTI adapter restarted: re-synchronising");
                self.resync_all().await;
            }
        }
    }

    /// Every `period`, each unit served here re-reads the CTI's view, one after the other
    /// at even gaps (so the CTI sees a steady trickle, never a burst). Not while the link
    /// is down: nothing can be read, and the control asks for a re-sync when it is back.
    pub(super) async fn resync_periodically(self: Arc<Self>, period: Duration) {
        loop {
            let actors = self.inboxes();
            if actors.is_empty() {
                tokio::time::sleep(period).await;
                continue;
            }
            let gap = period / actors.len() as u32;
            for inbox in actors {
                if !self.link_down.load(Ordering::Relaxed) {
                    let _ = inbox.send(Inbox::Job(Job::Resync(None)));
                }
                tokio::time::sleep(gap).await;
            }
        }
    }

    /// Re-read the CTI's view of the unit and raise what differs, a bounded number of
    /// units at a time.
    pub(super) async fn resync(&self, ctx: &mut Unit) {
        let _permit = self.resyncs.acquire().await;
        let span = tracing::info_span!("resync", unit = %ctx.name);
        let events = crate::trace::within(span, None, self.handler.resync(ctx)).await;
        if !events.is_empty() {
            tracing::info!(unit = %ctx.name, events = events.len(), "re-synchronised with the CTI");
        }
        self.publish_events(events).await;
    }
}
