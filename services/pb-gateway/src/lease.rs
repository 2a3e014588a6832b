//! One link per processor (contract §8.9): the replica that holds the processor's lease in
//! the `<prefix>_gateway` bucket holds the link; the others stand by.
//!
//! The bucket's entries expire `ttl` after they were written (the server's clock), and the
//! holder renews its entry every sixth of it. A holder that could not renew for half of
//! it gives the link up at once, so it is off the link before its entry can expire and a
//! standby can take the lease: the two are never connected at the same time. A holder
//! that stops gracefully deletes its entry, and a standby takes over at its next try.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// The lease of one processor's link.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    store: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
}

/// The lease, held.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    revision: u64,
    /// When the last write that succeeded was sent.
    renewed: Instant,
}

/// Whether a holder whose last successful renewal was sent at `renewed` must give the link
/// up at `now`: after half the lease, well before its entry can expire.
pub(crate) fn must_give_up(renewed: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(renewed) >= ttl / 2
}

impl Lease {
    /// The lease of `processor` in `store` (whose entries expire after `ttl`), taken as `holder`.
    pub fn new(store: kv::Store, processor: &str, holder: &str, ttl: Duration) -> Self {
        Self {
            store,
            key: pb_runtime::kv::key(&[processor]),
            holder: holder.to_owned(),
            ttl,
        }
    }

    /// How often a standby tries to take the lease.
    fn retry_every(&self) -> Duration {
        (self.ttl / 6).max(Duration::from_millis(50))
    }

    /// Wait until this replica holds the lease.
    pub async fn acquire(&self) -> Held {
        let mut waiting_since = None;
        loop {
            let sent = Instant::now();
            match self
                .store
                .create(&self.key, Bytes::from(self.holder.clone()))
                .await
            {
                Ok(revision) => {
                    return Held {
                        revision,
                        renewed: sent,
                    };
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if waiting_since.is_none() {
                        let holder = self.holder_now().await;
                        tracing::info!(
                            holder = holder.as_deref().unwrap_or("?"),
                            "standing by: another replica holds the bridge link"
                        );
                        waiting_since = Some(sent);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot take the link's lease; retrying"),
            }
            tokio::time::sleep(self.retry_every()).await;
        }
    }

    async fn holder_now(&self) -> Option<String> {
        let value = self.store.get(&self.key).await.ok()??;
        Some(String::from_utf8_lossy(&value).into_owned())
    }

    /// Renew `held` until the lease is lost (renewals failing for half of it, or the
    /// entry changed by someone else) or `stop` fires; `lost` is cancelled when it is lost.
    /// The last `Held`, to release.
    pub async fn keep(
        &self,
        mut held: Held,
        lost: CancellationToken,
        stop: CancellationToken,
    ) -> Held {
        let every = self.ttl / 6;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return held,
            }
            let sent = Instant::now();
            let renewal = tokio::time::timeout(
                every,
                self.store
                    .update(&self.key, Bytes::from(self.holder.clone()), held.revision),
            )
            .await;
            match renewal {
                Ok(Ok(revision)) => {
                    held = Held {
                        revision,
                        renewed: sent,
                    };
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::error!("the link's lease was taken over: giving the link up");
                    lost.cancel();
                    return held;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the link's lease"),
                Err(_) => tracing::warn!("renewing the link's lease timed out"),
            }
            if must_give_up(held.renewed, Instant::now(), self.ttl) {
                tracing::error!(
                    "the link's lease could not be renewed for half its time: giving the link up"
                );
                lost.cancel();
                return held;
            }
        }
    }

    /// Give the lease up, so a standby takes over at once (unless it changed hands).
    pub async fn release(&self, held: Held) {
        let _ = self
            .store
            .delete_expect_revision(&self.key, Some(held.revision))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_gives_up_well_before_its_entry_can_expire() {
        let ttl = Duration::from_secs(3);
        let t0 = Instant::now();
        assert!(!must_give_up(t0, t0 + Duration::from_millis(1499), ttl));
        assert!(must_give_up(t0, t0 + Duration::from_millis(1500), ttl));
        // The server starts counting later than the holder (when the write arrives).
        assert!(must_give_up(t0, t0 + ttl, ttl));
    }
}
