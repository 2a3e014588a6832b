//! The control destination's shared state: whether the service status was reported to the
//! bridge, what is known of the CTI link, and whether the processor is stopping. It lives
//! in the `<prefix>_control` key-value bucket, one key per processor, so every replica sees
//! the same status; changes are compare-and-set, so when two replicas observe the same
//! change only one of them raises its events.

use async_nats::jetstream::kv;
use pb_cti::LinkEvent;
use pb_protocol::control::ServerStatus;
use pb_runtime::kv::{BucketError, Buckets, key};
use serde::{Deserialize, Serialize};

/// The control destination's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ControlRecord {
    /// The bridge asked for the status (`cti.request.serverstatus`) and was answered;
    /// events may be raised from then on. Cleared by `cti.request.dispose`.
    pub reported: bool,
    /// The CTI link as last seen; `None` until a first answer from the adapter.
    pub link: Option<LinkEvent>,
    /// The last control replica is shutting down.
    pub stopping: bool,
}

impl ControlRecord {
    /// The service status this state means (reference §10.2).
    pub fn status(&self) -> ServerStatus {
        match &self.link {
            _ if self.stopping => ServerStatus::StoppingService,
            None => ServerStatus::StartingService,
            Some(link) if !link.up => ServerStatus::PausingService,
            Some(_) => ServerStatus::InService,
        }
    }

    /// Why a session cannot be created now, if it cannot (contract §5.7).
    pub(crate) fn refuse_sessions(&self) -> Option<String> {
        if !self.reported {
            return Some(
                "cannot create a session: the client has not reported in-service yet \
                 (the bridge sends cti.request.serverstatus first)"
                    .into(),
            );
        }
        match (self.status(), &self.link) {
            (ServerStatus::InService, _) => None,
            (ServerStatus::PausingService, Some(link)) => Some(format!(
                "cannot create a session while the client is pausing-service: {}",
                link.reason.as_deref().unwrap_or("the CTI link is down")
            )),
            (status, _) => Some(format!(
                "cannot create a session while the client is {}",
                status.as_str()
            )),
        }
    }
}

/// The state store failed.
#[derive(Debug, thiserror::Error)]
#[error("the control state store is unavailable: {0}")]
pub struct StoreError(String);

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A cheap handle on one processor's record.
#[derive(Debug, Clone)]
pub(crate) struct StatusStore {
    store: kv::Store,
    key: String,
}

impl StatusStore {
    pub async fn open(buckets: &Buckets, processor: &str) -> Result<Self, BucketError> {
        let store = buckets
            .open(pb_runtime::kv::buckets::CONTROL, Default::default())
            .await?;
        Ok(Self {
            store,
            key: key(&[processor]),
        })
    }

    pub async fn get(&self) -> Result<ControlRecord, StoreError> {
        Ok(self.read().await?.0)
    }

    async fn read(&self) -> Result<(ControlRecord, Option<u64>), StoreError> {
        match self.store.entry(&self.key).await.map_err(store_err)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let record = serde_json::from_slice(&entry.value).map_err(store_err)?;
                Ok((record, Some(entry.revision)))
            }
            Some(entry) => Ok((ControlRecord::default(), Some(entry.revision))),
            None => Ok((ControlRecord::default(), None)),
        }
    }

    /// Apply `change` atomically; returns the record before and after. When the change
    /// alters nothing, nothing is written. A write that loses to another replica's is
    /// done again on the new record, after a short back-off that grows; a write the store
    /// refuses for any other reason is an error at once (the caller tries again later),
    /// never a loop against a failing store.
    pub async fn update(
        &self,
        change: impl Fn(&mut ControlRecord),
    ) -> Result<(ControlRecord, ControlRecord), StoreError> {
        let mut delays = conflict_backoff();
        loop {
            let (before, revision) = self.read().await?;
            let mut after = before.clone();
            change(&mut after);
            if after == before {
                return Ok((before, after));
            }
            let value = serde_json::to_vec(&after).map_err(store_err)?.into();
            let lost = match revision {
                Some(revision) => match self.store.update(&self.key, value, revision).await {
                    Ok(_) => false,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => true,
                    Err(e) => return Err(store_err(e)),
                },
                None => match self.store.create(&self.key, value).await {
                    Ok(_) => false,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => true,
                    Err(e) => return Err(store_err(e)),
                },
            };
            if !lost {
                return Ok((before, after));
            }
            // Another replica wrote in between: read again and re-apply, a little later.
            match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    return Err(StoreError(
                        "the control record keeps changing under this replica".into(),
                    ));
                }
            }
        }
    }
}

/// Between attempts of a write that lost to another replica's: 5 ms doubling to 200 ms,
/// with jitter, 20 attempts at most.
fn conflict_backoff() -> impl Iterator<Item = std::time::Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(5))
        .with_max_delay(std::time::Duration::from_millis(200))
        .with_jitter()
        .with_max_times(20)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(up: bool) -> Option<LinkEvent> {
        Some(LinkEvent {
            up,
            reason: (!up).then(|| "cable cut".into()),
            incarnation: None,
        })
    }

    #[test]
    fn status_follows_link_and_stopping() {
        let mut r = ControlRecord::default();
        assert_eq!(r.status(), ServerStatus::StartingService);
        r.link = link(true);
        assert_eq!(r.status(), ServerStatus::InService);
        r.link = link(false);
        assert_eq!(r.status(), ServerStatus::PausingService);
        r.stopping = true;
        assert_eq!(r.status(), ServerStatus::StoppingService);
    }

    #[test]
    fn sessions_need_a_reported_in_service_status() {
        let mut r = ControlRecord {
            link: link(true),
            ..Default::default()
        };
        assert!(
            r.refuse_sessions()
                .unwrap()
                .contains("not reported in-service")
        );
        r.reported = true;
        assert_eq!(r.refuse_sessions(), None);
        r.link = link(false);
        assert!(
            r.refuse_sessions()
                .unwrap()
                .contains("pausing-service: cable cut")
        );
        r.link = link(true);
        r.stopping = true;
        assert!(r.refuse_sessions().unwrap().contains("stopping-service"));
        r.stopping = false;
        r.link = None;
        assert!(r.refuse_sessions().unwrap().contains("starting-service"));
    }
}
