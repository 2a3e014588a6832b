//! The reply cache (contract §5.3): the answer to every request, by target and `requestId`,
//! kept five minutes in a JetStream key-value bucket shared by all replicas. A repeated
//! `requestId` is answered with the first answer again and not acted on twice, whichever
//! replica receives it; a retry that arrives while the first attempt is still running waits
//! for its answer, within its own deadline.
//!
//! > A first attempt ends within its deadline of its claim, answer recorded. A retry takes
//! > a request over only once its claim is twice the deadline old by the server's clock, so
//! > that a clock of one replica a whole deadline off another's still cannot make two
//! > attempts of one request run at once; and a first attempt records its answer only if
//! > its claim still stands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use pb_protocol::Target;

use crate::kv::{BucketError, Buckets, key};

/// How long an answer is kept (contract §5.3).
pub const RETENTION: Duration = Duration::from_secs(300);

const PENDING: &str = "~pending ";

/// The state store failed; the text tells the bridge to retry.
#[derive(Debug, thiserror::Error)]
#[error("the reply cache is unavailable ({0}); {retry}", retry = crate::serve::RETRY_SAME)]
pub struct CacheError(#[source] Box<dyn std::error::Error + Send + Sync>);

fn cache_err(e: impl std::error::Error + Send + Sync + 'static) -> CacheError {
    CacheError(Box::new(e))
}

/// Where a request stands.
#[derive(Debug)]
pub enum Claim {
    /// First time seen: this replica acts on it and then calls [`ReplyCache::complete`].
    Fresh(Slot),
    /// Answered before: send this answer again.
    Answered(Bytes),
    /// A first attempt is still running and did not answer within this one's deadline.
    Running,
}

/// The right to act on one request, held by the replica that claimed it.
#[derive(Debug)]
pub struct Slot {
    key: String,
    /// The revision of the claim, when one was made: the answer replaces only that.
    claim: Option<u64>,
}

impl Slot {
    fn claimed(key: String, claim: u64) -> Self {
        Self {
            key,
            claim: Some(claim),
        }
    }
}

/// How long an answer whose recording failed is tried again ([`ReplyCache::complete_later`]).
pub const RECORD_FOR: Duration = Duration::from_secs(60);

/// A cheap, cloneable handle on the reply cache bucket.
#[derive(Debug, Clone)]
pub struct ReplyCache {
    store: kv::Store,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// When a claim was made, by the server's clock (the claimant's own, if the server's is
/// not readable).
fn claimed_ms(entry: &kv::Entry) -> u64 {
    u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .or_else(|| pending_since(&entry.value))
        .unwrap_or_default()
}

/// How long until a claim made at `claimed` (ms) may be taken over, at `now` (ms): twice
/// the deadline after it was made.
fn stale_in(claimed: u64, now: u64, deadline: Duration) -> Duration {
    let stale_at = claimed.saturating_add(2 * deadline.as_millis() as u64);
    Duration::from_millis(stale_at.saturating_sub(now))
}

/// The answer an entry holds: a value that is no claim's marker.
fn recorded(entry: kv::Entry) -> Option<Bytes> {
    (entry.operation == kv::Operation::Put && pending_since(&entry.value).is_none())
        .then_some(entry.value)
}

fn pending_since(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value)
        .ok()?
        .strip_prefix(PENDING)?
        .parse()
        .ok()
}

impl ReplyCache {
    /// Open (or create) the deployment's `<prefix>_replies` bucket.
    pub async fn open(buckets: &Buckets) -> Result<Self, BucketError> {
        let store = buckets.open(crate::kv::buckets::REPLIES, RETENTION).await?;
        Ok(Self { store })
    }

    /// The answer recorded for a request, if it has one (a claim still running has none).
    pub async fn answered(
        &self,
        target: &Target,
        request_id: &str,
    ) -> Result<Option<Bytes>, CacheError> {
        let key = key(&[target.as_str(), request_id]);
        let entry = self.store.entry(&key).await.map_err(cache_err)?;
        Ok(entry.and_then(recorded))
    }

    /// Claim a request, or learn its answer, by `until` (the command's deadline);
    /// `deadline` is how long a first attempt may run.
    pub async fn claim(
        &self,
        target: &Target,
        request_id: &str,
        until: Instant,
        deadline: Duration,
    ) -> Result<Claim, CacheError> {
        let key = key(&[target.as_str(), request_id]);
        loop {
            let marker = Bytes::from(format!("{PENDING}{}", now_ms()));
            match self.store.create(&key, marker).await {
                Ok(revision) => return Ok(Claim::Fresh(Slot::claimed(key, revision))),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(cache_err(e)),
            }
            let Some(entry) = self.store.entry(&key).await.map_err(cache_err)? else {
                continue; // expired or purged between create and read: claim again
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            if pending_since(&entry.value).is_none() {
                return Ok(Claim::Answered(entry.value));
            }
            // In flight elsewhere: wait for its answer, at most until this deadline.
            let stale_in = stale_in(claimed_ms(&entry), now_ms(), deadline);
            let now = Instant::now();
            let wait = stale_in.min(until.saturating_duration_since(now));
            if let Some(answer) = self.wait_answer(&key, entry.revision, wait).await? {
                return Ok(Claim::Answered(answer));
            }
            if Instant::now() < now + stale_in {
                return Ok(Claim::Running);
            }
            // Twice the deadline without an answer: the first attempt's replica is gone.
            let marker = Bytes::from(format!("{PENDING}{}", now_ms()));
            match self.store.update(&key, marker, entry.revision).await {
                Ok(revision) => return Ok(Claim::Fresh(Slot::claimed(key, revision))),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(cache_err(e)),
            }
        }
    }

    /// The right to act on a request that the caller knows to be new (an owner that has
    /// served the destination since it was created and never saw this `requestId`): no
    /// claim is made, the answer is only recorded.
    pub fn known_new(target: &Target, request_id: &str) -> Slot {
        Slot {
            key: key(&[target.as_str(), request_id]),
            claim: None,
        }
    }

    /// Record the answer to a claimed request, before it is published; not if a retry has
    /// taken the request over since (it records its own).
    pub async fn complete(&self, slot: &Slot, answer: Bytes) -> Result<(), CacheError> {
        match slot.claim {
            Some(claim) => match self.store.update(&slot.key, answer, claim).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!("a retry took this request over: its answer is recorded");
                    Ok(())
                }
                Err(e) => Err(cache_err(e)),
            },
            None => self
                .store
                .put(&slot.key, answer)
                .await
                .map(|_| ())
                .map_err(cache_err),
        }
    }

    /// Give a claimed request up without an answer ([`crate::Reply::retry_same`]): the same
    /// requestId sent again is claimed afresh. (A claim that cannot be deleted now is taken
    /// over by a retry after twice the deadline.)
    pub async fn release(&self, slot: Slot) {
        if let Some(claim) = slot.claim
            && let Err(e) = self
                .store
                .delete_expect_revision(&slot.key, Some(claim))
                .await
        {
            tracing::warn!(error = %e, "could not release the claim: a retry waits for it to age");
        }
    }

    /// Keep trying to record `answer`, whose first [`ReplyCache::complete`] failed, for up
    /// to [`RECORD_FOR`], backing off: a retry of the request meanwhile waits on the claim,
    /// and finds the answer once it is written (a bucket that is back within the claim's
    /// life loses nothing of the guarantee).
    pub async fn complete_later(self, slot: Slot, answer: Bytes) {
        let give_up = tokio::time::Instant::now() + RECORD_FOR;
        let mut wait = Duration::from_millis(100);
        loop {
            tokio::time::sleep(wait).await;
            match self.complete(&slot, answer.clone()).await {
                Ok(()) => {
                    tracing::info!("the answer is recorded after all");
                    return;
                }
                Err(e) if tokio::time::Instant::now() >= give_up => {
                    tracing::error!(error = %e, "the answer could not be recorded: a retry of this requestId would be acted on again");
                    return;
                }
                Err(_) => wait = (wait * 2).min(Duration::from_secs(2)),
            }
        }
    }

    /// Wait up to `wait` for the entry after `revision` to hold an answer.
    async fn wait_answer(
        &self,
        key: &str,
        revision: u64,
        wait: Duration,
    ) -> Result<Option<Bytes>, CacheError> {
        let mut watch = self
            .store
            .watch_from_revision(key, revision + 1)
            .await
            .map_err(cache_err)?;
        let answer = tokio::time::timeout(wait, async {
            while let Some(entry) = watch.next().await {
                let entry = entry.map_err(cache_err)?;
                if entry.operation == kv::Operation::Put && pending_since(&entry.value).is_none() {
                    return Ok(Some(entry.value));
                }
            }
            Ok(None)
        })
        .await;
        answer.unwrap_or(Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[test]
    fn a_claim_is_taken_over_only_twice_the_deadline_after_it_was_made() {
        assert_eq!(stale_in(1_000, 1_000, DEADLINE), 2 * DEADLINE);
        assert_eq!(stale_in(1_000, 6_000, DEADLINE), DEADLINE);
        assert_eq!(stale_in(1_000, 11_000, DEADLINE), Duration::ZERO);
        assert_eq!(stale_in(1_000, 60_000, DEADLINE), Duration::ZERO);
    }

    #[test]
    fn a_clock_a_deadline_ahead_still_waits_a_first_attempt_out() {
        // Claimed at 1 000 by the server; the retry's clock reads a deadline ahead the
        // moment the first attempt ends (its deadline after the claim).
        let first_attempt_ends = 1_000 + DEADLINE.as_millis() as u64;
        let skewed_now = first_attempt_ends + DEADLINE.as_millis() as u64 - 1;
        assert!(stale_in(1_000, skewed_now, DEADLINE) > Duration::ZERO);
    }

    #[test]
    fn only_a_marker_reads_as_pending() {
        assert_eq!(pending_since(b"~pending 42"), Some(42));
        assert_eq!(pending_since(br#"{"messageType":"RESPONSE"}"#), None);
        assert_eq!(pending_since(b"~pending soon"), None);
    }
}
