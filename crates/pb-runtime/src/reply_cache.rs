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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use pb_protocol::Target;

use crate::kv::{BucketError, Buckets, Sent, key};

/// How long an answer is kept (contract §5.3).
pub const RETENTION: Duration = Duration::from_secs(300);

const PENDING: &str = "~pending ";

/// A claim's marker is padded to this size: the answer that replaces it takes no more room
/// when it is no larger, so it is recorded even in a full bucket.
const CLAIM_BYTES: usize = 2048;

/// A claim's marker, made at `ms`.
fn marker(ms: u64) -> Bytes {
    let mut marker = format!("{PENDING}{ms}");
    let pad = CLAIM_BYTES.saturating_sub(marker.len());
    marker.extend(std::iter::repeat_n(' ', pad));
    Bytes::from(marker)
}

/// What went wrong with the reply cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheErrorKind {
    /// The bucket did not answer (NATS or JetStream down, a timeout).
    Unavailable,
    /// The bucket holds its `PB_REPLIES_MAX_BYTES`: no new request is taken until older
    /// answers expire.
    Full,
}

/// The reply cache failed; either way the request was not acted on, and the text tells the
/// bridge to retry it as is.
#[derive(Debug, thiserror::Error)]
#[error("{}; {retry}", match .kind {
    CacheErrorKind::Unavailable => format!("the reply cache is unavailable ({})", .source),
    CacheErrorKind::Full => "the reply cache is full (PB_REPLIES_MAX_BYTES): no new request \
        is taken until older answers expire (within 5 minutes)".to_owned(),
}, retry = crate::serve::RETRY_SAME)]
pub struct CacheError {
    kind: CacheErrorKind,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl CacheError {
    pub fn kind(&self) -> CacheErrorKind {
        self.kind
    }
}

fn cache_err(e: impl std::error::Error + Send + Sync + 'static) -> CacheError {
    let kind = if crate::kv::is_full(&e) {
        CacheErrorKind::Full
    } else {
        CacheErrorKind::Unavailable
    };
    CacheError {
        kind,
        source: Box::new(e),
    }
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
pub(crate) const RECORD_FOR: Duration = Duration::from_secs(60);

/// A cheap, cloneable handle on the reply cache bucket.
#[derive(Debug, Clone)]
pub struct ReplyCache {
    store: kv::Store,
    /// What answers are written through ([`crate::kv::send`]).
    js: jetstream::Context,
    /// Set while the bucket holds more than [`TAKE_UP_TO`] of its bytes: no new request is
    /// claimed, so that the answers of those already claimed always find room.
    filling: Arc<AtomicBool>,
}

/// The share of the bucket's bytes up to which new requests are claimed; the rest is kept
/// for the answers of requests claimed already (an answer is larger than its claim).
pub(crate) const TAKE_UP_TO: (u64, u64) = (7, 8);

/// How often a replica reads how full the bucket is.
const FILL_EVERY: Duration = Duration::from_secs(1);

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
        .trim_end()
        .parse()
        .ok()
}

impl ReplyCache {
    /// Open (or create, holding at most `max_bytes`) the deployment's `<prefix>_replies`
    /// bucket.
    pub async fn open(buckets: &Buckets, max_bytes: u64) -> Result<Self, BucketError> {
        let store = buckets
            .open_bounded(crate::kv::buckets::REPLIES, RETENTION, Some(max_bytes))
            .await?;
        let filling = Arc::new(AtomicBool::new(false));
        tokio::spawn(crate::trace::carry(watch_fill(
            store.stream.clone(),
            Arc::downgrade(&filling),
        )));
        let js = buckets.context().clone();
        Ok(Self { store, js, filling })
    }

    /// Whether new requests are refused for want of room.
    pub fn filling(&self) -> bool {
        self.filling.load(Ordering::Relaxed)
    }

    /// Refuse a request new to the cache while it is filling; one it knows (answered, or
    /// running) goes on as usual.
    async fn room_for(&self, key: &str) -> Result<(), CacheError> {
        if !self.filling() {
            return Ok(());
        }
        match self.store.entry(key).await.map_err(cache_err)? {
            Some(entry) if entry.operation == kv::Operation::Put => Ok(()),
            _ => Err(CacheError {
                kind: CacheErrorKind::Full,
                source: "the reply cache keeps its last bytes for answers".into(),
            }),
        }
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
            self.room_for(&key).await?;
            let claim = marker(now_ms());
            match self.store.create(&key, claim).await {
                Ok(revision) => return Ok(Claim::Fresh(Slot::claimed(key, revision))),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => {
                    let e = cache_err(e);
                    if e.kind() == CacheErrorKind::Full {
                        self.filling.store(true, Ordering::Relaxed);
                    }
                    return Err(e);
                }
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
            let claim = marker(now_ms());
            match self.store.update(&key, claim, entry.revision).await {
                Ok(revision) => return Ok(Claim::Fresh(Slot::claimed(key, revision))),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(cache_err(e)),
            }
        }
    }

    /// The right to act on a request that the caller knows to be new (an owner that has
    /// served the destination since it was created and never saw this `requestId`): no
    /// claim is made, the answer is only recorded.
    pub(crate) fn known_new(target: &Target, request_id: &str) -> Slot {
        Slot {
            key: key(&[target.as_str(), request_id]),
            claim: None,
        }
    }

    /// Record the answer to a claimed request; not if a retry has taken the request over
    /// since (it records its own).
    pub async fn complete(&self, slot: &Slot, answer: Bytes) -> Result<(), CacheError> {
        taken(slot, self.send(slot, answer).await).await
    }

    /// Send the write of the answer to a claimed request, and return without waiting for
    /// the bucket to take it: the answer, published after this on the same connection,
    /// reaches the server after its write. [`Recording::confirmed`] then waits for the
    /// bucket, before the next command of the destination is taken.
    pub async fn record(&self, slot: Slot, answer: Bytes) -> Recording {
        let sent = self.send(&slot, answer.clone()).await;
        Recording { slot, answer, sent }
    }

    /// The answer's write: replacing the claim, or new for a request known to be new.
    async fn send(&self, slot: &Slot, answer: Bytes) -> Result<Sent, kv::UpdateError> {
        crate::kv::send(&self.js, &self.store, &slot.key, answer, slot.claim).await
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

/// Whether the bucket took an answer's write; a claim a retry has taken over since counts as
/// taken (the retry records its own answer).
async fn taken(slot: &Slot, sent: Result<Sent, kv::UpdateError>) -> Result<(), CacheError> {
    let written = match sent {
        Ok(sent) => crate::kv::acknowledged(sent).await,
        Err(e) => Err(e),
    };
    match written {
        Ok(_) => Ok(()),
        Err(e) if slot.claim.is_some() && e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            tracing::warn!("a retry took this request over: its answer is recorded");
            Ok(())
        }
        Err(e) => Err(cache_err(e)),
    }
}

/// An answer whose write is sent ([`ReplyCache::record`]) and not yet taken by the bucket.
#[derive(Debug)]
#[must_use = "an answer's write is confirmed before the destination's next command"]
pub struct Recording {
    slot: Slot,
    answer: Bytes,
    sent: Result<Sent, kv::UpdateError>,
}

impl Recording {
    /// Wait for the bucket to take the answer. If it did not, the answer is still the
    /// answer, and its write is tried again in the background for up to [`RECORD_FOR`]
    /// ([`ReplyCache::complete_later`]; only then is `cache` cloned): only a retry of this
    /// very request is affected.
    pub async fn confirmed(self, cache: &ReplyCache) {
        if let Err(e) = taken(&self.slot, self.sent).await {
            tracing::error!(error = %e, "could not record the answer for retries yet: trying again");
            let later = cache.clone().complete_later(self.slot, self.answer);
            tokio::spawn(crate::trace::carry(later));
        }
    }
}

/// Keep `filling` set while the bucket holds more than [`TAKE_UP_TO`] of its bytes, for as
/// long as a handle on the cache lives.
async fn watch_fill(stream: async_nats::jetstream::stream::Stream, filling: Weak<AtomicBool>) {
    let mut every = tokio::time::interval(FILL_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(filling) = filling.upgrade() else {
            return;
        };
        // Unreadable: left as it was (a claim meets the store's own error anyway).
        if let Ok(info) = stream.get_info().await {
            let full = over_share(info.state.bytes, info.config.max_bytes);
            if filling.swap(full, Ordering::Relaxed) != full {
                if full {
                    tracing::error!(
                        bytes = info.state.bytes,
                        max_bytes = info.config.max_bytes,
                        "the reply cache is filling: new requests are refused until answers expire (raise PB_REPLIES_MAX_BYTES)"
                    );
                } else {
                    tracing::info!("the reply cache has room again");
                }
            }
        }
    }
}

/// Whether `bytes` of a bucket of `max_bytes` (negative: unbounded) pass [`TAKE_UP_TO`].
fn over_share(bytes: u64, max_bytes: i64) -> bool {
    let (up_to, of) = TAKE_UP_TO;
    u64::try_from(max_bytes).is_ok_and(|max| bytes.saturating_mul(of) > max.saturating_mul(up_to))
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
    fn new_requests_stop_at_seven_eighths() {
        assert!(!over_share(700, 800));
        assert!(over_share(701, 800));
        assert!(
            !over_share(u64::MAX / 2, -1),
            "an unbounded bucket never fills"
        );
    }

    #[test]
    fn only_a_marker_reads_as_pending() {
        assert_eq!(pending_since(b"~pending 42"), Some(42));
        assert_eq!(pending_since(&marker(42)), Some(42));
        assert_eq!(marker(42).len(), CLAIM_BYTES);
        assert_eq!(pending_since(br#"{"messageType":"RESPONSE"}"#), None);
        assert_eq!(pending_since(b"~pending soon"), None);
    }
}
