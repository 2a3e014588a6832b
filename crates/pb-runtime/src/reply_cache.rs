//! The reply cache (contract §5.3): the answer to every request, by target and `requestId`,
//! kept five minutes in a JetStream key-value bucket shared by all replicas. A repeated
//! `requestId` is answered with the first answer again and not acted on twice, whichever
//! replica receives it; a retry that arrives while the first attempt is still running waits
//! for its answer. If the replica running the first attempt died, the retry takes the
//! request over once that attempt's deadline has passed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
#[error("the reply cache is unavailable ({0}); retry the request with the same requestId")]
pub struct CacheError(String);

fn cache_err(e: impl std::fmt::Display) -> CacheError {
    CacheError(e.to_string())
}

/// Where a request stands.
#[derive(Debug)]
pub enum Claim {
    /// First time seen: this replica acts on it and then calls [`ReplyCache::complete`].
    Fresh(Slot),
    /// Answered before: send this answer again.
    Answered(Bytes),
}

/// The right to act on one request, held by the replica that claimed it.
#[derive(Debug)]
pub struct Slot {
    key: String,
}

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

    /// Claim a request, or learn its answer. `deadline` is how long a first attempt may run:
    /// a retry waits that long for the first answer, then takes the request over.
    pub async fn claim(
        &self,
        target: &Target,
        request_id: &str,
        deadline: Duration,
    ) -> Result<Claim, CacheError> {
        let key = key(&[target.as_str(), request_id]);
        let give_up = tokio::time::Instant::now() + deadline * 2;
        loop {
            let marker = Bytes::from(format!("{PENDING}{}", now_ms()));
            match self.store.create(&key, marker).await {
                Ok(_) => return Ok(Claim::Fresh(Slot { key })),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(cache_err(e)),
            }
            let Some(entry) = self.store.entry(&key).await.map_err(cache_err)? else {
                continue; // expired or purged between create and read: claim again
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let Some(started) = pending_since(&entry.value) else {
                return Ok(Claim::Answered(entry.value));
            };
            // In flight elsewhere: wait for its answer, or for its deadline to pass.
            let stale_at = started + deadline.as_millis() as u64;
            let wait = Duration::from_millis(stale_at.saturating_sub(now_ms()));
            if let Some(answer) = self.wait_answer(&key, entry.revision, wait).await? {
                return Ok(Claim::Answered(answer));
            }
            // The first attempt's deadline passed without an answer: its replica is gone.
            let marker = Bytes::from(format!("{PENDING}{}", now_ms()));
            match self.store.update(&key, marker, entry.revision).await {
                Ok(_) => return Ok(Claim::Fresh(Slot { key })),
                Err(_) if tokio::time::Instant::now() < give_up => continue,
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
        }
    }

    /// Record the answer to a claimed request, before it is published.
    pub async fn complete(&self, slot: Slot, answer: Bytes) -> Result<(), CacheError> {
        self.store
            .put(&slot.key, answer)
            .await
            .map(|_| ())
            .map_err(cache_err)
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
