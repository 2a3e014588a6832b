//! Destination state in JetStream key-value buckets.
//!
//! * [`UnitStore`]: one JSON record per unit (agent), read and written by the unit's owner
//!   with compare-and-set, so a write from a replica that lost ownership fails instead of
//!   overwriting: a replica that starts to own a unit [takes](UnitStore::take) its record,
//!   which moves its revision past any the previous owner holds. The owner keeps the
//!   records of its units in memory as last read or written: a command reads no record
//!   from the bucket, a write that changes nothing is not made, and a write the store
//!   refused is kept and made with the next save;
//! * [`Targets`]: the index from a session's target to its unit, so that a target is one
//!   agent's at a time whichever replica creates it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use pb_protocol::Target;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Reply;
use crate::kv::{BucketError, Buckets, key};
use crate::serve::Settling;

type Source = Box<dyn std::error::Error + Send + Sync>;

/// The state store failed, or another replica wrote first.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state store is unavailable ({0})")]
    Unavailable(#[source] Source),
    #[error("the state of `{0}` was changed by another replica")]
    Conflict(String),
    /// The record would pass its limit (`PB_MAX_AGENT_RECORD_BYTES`): not written.
    #[error("the state of `{unit}` cannot grow further: {source}")]
    TooLarge {
        unit: String,
        #[source]
        source: pb_protocol::OverLimit,
    },
    #[error("the stored state of `{unit}` is unreadable: {source}")]
    Corrupt {
        unit: String,
        #[source]
        source: serde_json::Error,
    },
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Unavailable(Box::new(e))
}

/// The answer to a command that failed on the store before it changed anything: a store
/// that did not answer, or another replica that wrote first, is no final answer
/// ([`Reply::retry_same`]); an unreadable record is.
impl From<StateError> for Reply {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Unavailable(_) | StateError::Conflict(_) => Reply::retry_same(e),
            e => Reply::failure(e.to_string()),
        }
    }
}

/// The answer to a command whose change the CTI has made, once its record's save returned
/// `saved`: `reply`, whatever the save did, since the answer says what the CTI did. A save
/// the store refused is kept in memory and made with the next one. A record another
/// replica wrote means the unit is no longer served here: its new owner re-reads the CTI
/// and raises the events of the change, so none is raised here.
pub fn made(unit: &str, saved: Result<(), StateError>, reply: Reply) -> Reply {
    Reply {
        events: events_made(unit, saved, reply.events),
        ..reply
    }
}

/// The events of a change the CTI has made, once its record's save returned `saved` (see
/// [`made`]).
pub(crate) fn events_made(
    unit: &str,
    saved: Result<(), StateError>,
    events: Vec<pb_protocol::Event>,
) -> Vec<pb_protocol::Event> {
    match saved {
        Ok(()) => events,
        Err(StateError::Conflict(_)) => {
            tracing::warn!(%unit, "made at the CTI by a replica that no longer owns the agent: its new owner reports it");
            Vec::new()
        }
        Err(e) => {
            tracing::error!(%unit, error = %e, "made at the CTI; the record is written with the next save");
            events
        }
    }
}

/// [`made`] for a save that was only sent ([`UnitStore::send`]): the reply is published as
/// soon as the write is sent (after it, on the same connection), and its events once the
/// store has answered, as [`made`] has them; the destination's next message waits for that.
pub fn made_once(unit: &str, saving: Saving, reply: Reply) -> Reply {
    reply.settling(Settling {
        unit: unit.to_owned(),
        saving,
    })
}

/// A record's write sent by [`UnitStore::send`] and not yet answered by the store.
#[must_use = "a record's write is awaited before the unit's next message"]
pub struct Saving(Pin<Box<dyn Future<Output = Result<Option<u64>, StateError>> + Send>>);

impl std::fmt::Debug for Saving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Saving")
    }
}

impl Saving {
    fn ready(written: Result<Option<u64>, StateError>) -> Self {
        Self(Box::pin(std::future::ready(written)))
    }

    /// Wait for the store: the record's revision as written, or why it was not (as
    /// [`UnitStore::save`]: kept in memory to be written with the next save, or dropped from
    /// memory when another replica wrote first).
    pub async fn written(self) -> Result<Option<u64>, StateError> {
        self.0.await
    }
}

/// A record as loaded, with what is needed to write it back.
#[derive(Debug)]
pub struct Loaded<T> {
    pub value: T,
    revision: Option<u64>,
}

/// A record as last read or written here, as its JSON: one allocation per unit, however
/// many destinations its record holds (a record's maps, decoded, hold room for eleven
/// entries each).
#[derive(Debug)]
struct Kept {
    json: bytes::Bytes,
    revision: Option<u64>,
    /// Changed here, but the store refused the write: made with the next save.
    unsaved: bool,
}

/// Records by unit, as kept in memory: a cheap handle (an in-flight write holds one).
#[derive(Debug, Clone, Default)]
struct Records(Arc<Mutex<HashMap<String, Kept>>>);

impl Records {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.0.lock().expect("records cache")
    }

    /// Keep `json` (the record `T::default()` when `default`) as the unit's record at
    /// `revision`; an empty record that is saved is not kept.
    fn remember(
        &self,
        unit: &str,
        json: bytes::Bytes,
        default: bool,
        revision: Option<u64>,
        unsaved: bool,
    ) {
        let mut cache = self.lock();
        if default && !unsaved {
            cache.remove(unit);
        } else {
            let kept = Kept {
                json,
                revision,
                unsaved,
            };
            cache.insert(unit.to_owned(), kept);
        }
    }

    /// Keep in memory what a write of `json` (over the record at `previous`) leaves: the
    /// record as written; nothing when another replica wrote first (read afresh next time)
    /// or when it was too large (what is stored stays the record); else `json`, unsaved,
    /// to be written with the next save.
    fn settle(
        &self,
        unit: &str,
        json: bytes::Bytes,
        default: bool,
        previous: Option<u64>,
        written: Result<Option<u64>, StateError>,
    ) -> Result<Option<u64>, StateError> {
        match &written {
            Ok(revision) => self.remember(unit, json, default, *revision, false),
            Err(StateError::Conflict(_) | StateError::TooLarge { .. }) => {
                self.lock().remove(unit);
            }
            Err(_) => self.remember(unit, json, default, previous, true),
        }
        written
    }
}

/// One record per unit, of type `T` (a missing record reads as `T::default()`).
#[derive(Debug, Clone)]
pub struct UnitStore<T> {
    store: kv::Store,
    /// What records are written through ([`crate::kv::send`]).
    js: jetstream::Context,
    /// The largest record written, in bytes of JSON.
    max_record: usize,
    /// The records as last read or written here, with their revisions. The owner is a
    /// record's only writer, so while it owns the unit the copy here is the record.
    cache: Records,
    record: std::marker::PhantomData<fn() -> T>,
}

/// `value` as JSON, holding no spare room.
fn json_of<T: Serialize>(value: &T) -> Result<bytes::Bytes, StateError> {
    let mut json = serde_json::to_vec(value).map_err(unavailable)?;
    json.shrink_to_fit();
    Ok(json.into())
}

impl<T: Serialize + DeserializeOwned + Default + PartialEq + Clone + Send + 'static> UnitStore<T> {
    /// Open the bucket `name` (one of [`crate::kv::buckets`]), whose records may have up to
    /// `max_record` bytes.
    pub async fn open(
        buckets: &Buckets,
        name: &str,
        max_record: usize,
    ) -> Result<Self, BucketError> {
        Ok(Self {
            store: buckets.open(name, Duration::ZERO).await?,
            js: buckets.context().clone(),
            max_record,
            cache: Records::default(),
            record: std::marker::PhantomData,
        })
    }

    /// The unit's record: the copy in memory, else read from the bucket.
    pub async fn load(&self, unit: &str) -> Result<Loaded<T>, StateError> {
        let kept = self
            .cache
            .lock()
            .get(unit)
            .map(|kept| (kept.json.clone(), kept.revision));
        if let Some((json, revision)) = kept {
            return Ok(Loaded {
                value: self.decode(unit, &json)?,
                revision,
            });
        }
        let (loaded, json) = self.read(unit).await?;
        self.cache.remember(
            unit,
            json,
            loaded.value == T::default(),
            loaded.revision,
            false,
        );
        Ok(loaded)
    }

    /// The unit's record read from the bucket, whatever is in memory, for a unit this
    /// replica starts to own (another replica may have written it since); an existing
    /// record is written back unchanged, so that a save by any replica that owned it before
    /// fails from now on.
    pub async fn take(&self, unit: &str) -> Result<Loaded<T>, StateError> {
        self.cache.lock().remove(unit);
        let (mut loaded, json) = self.read(unit).await?;
        let default = loaded.value == T::default();
        if loaded.revision.is_some() && !default {
            self.write(unit, &mut loaded).await?;
        }
        self.cache
            .remember(unit, json, default, loaded.revision, false);
        Ok(loaded)
    }

    fn decode(&self, unit: &str, json: &[u8]) -> Result<T, StateError> {
        serde_json::from_slice(json).map_err(|source| StateError::Corrupt {
            unit: unit.to_owned(),
            source,
        })
    }

    /// The unit's record in the bucket, and its JSON (copied out of the message, which
    /// may share a larger buffer).
    async fn read(&self, unit: &str) -> Result<(Loaded<T>, bytes::Bytes), StateError> {
        let entry = self.store.entry(key(&[unit])).await.map_err(unavailable)?;
        let revision = entry.as_ref().map(|e| e.revision);
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let value = self.decode(unit, &entry.value)?;
                let json = bytes::Bytes::copy_from_slice(&entry.value);
                Ok((Loaded { value, revision }, json))
            }
            // The empty record: kept in memory only unsaved, never as read.
            _ => Ok((
                Loaded {
                    value: T::default(),
                    revision,
                },
                bytes::Bytes::new(),
            )),
        }
    }

    /// Write a loaded record back; fails with [`StateError::Conflict`] if it changed since.
    /// An empty record (the default) is deleted, so [`UnitStore::units`] lists live units only.
    /// A record equal to the one in memory at the same revision is not written again. A
    /// write the store refused stays in memory, to be made by the next save.
    pub async fn save(&self, unit: &str, loaded: &mut Loaded<T>) -> Result<(), StateError> {
        loaded.revision = self.send(unit, loaded).await.written().await?;
        Ok(())
    }

    /// [`UnitStore::save`], returning once the write is sent: whatever the client publishes
    /// next reaches the server after it. The store's answer is [`Saving::written`], which
    /// the caller awaits before the unit's record is loaded or saved again. Meanwhile the
    /// record in memory is the one sent. A new record, and a deletion, are written before
    /// this returns (an agent's first record and its last).
    pub async fn send(&self, unit: &str, loaded: &Loaded<T>) -> Saving {
        let json = match json_of(&loaded.value) {
            Ok(json) => json,
            Err(e) => return Saving::ready(Err(e)),
        };
        let unchanged = self.cache.lock().get(unit).is_some_and(|kept| {
            !kept.unsaved && kept.revision == loaded.revision && kept.json == json
        });
        if unchanged {
            return Saving::ready(Ok(loaded.revision));
        }
        let previous = loaded.revision;
        let default = loaded.value == T::default();
        let Some(revision) = previous.filter(|_| !default) else {
            let mut written = Loaded {
                value: loaded.value.clone(),
                revision: previous,
            };
            let result = self.write(unit, &mut written).await;
            let result = result.map(|()| written.revision);
            return Saving::ready(self.cache.settle(unit, json, default, previous, result));
        };
        if let Err(e) = self.fits(unit, &json) {
            return Saving::ready(self.cache.settle(unit, json, false, previous, Err(e)));
        }
        let key = key(&[unit]);
        let sent = match crate::kv::send(&self.js, &self.store, &key, json.clone(), Some(revision))
            .await
        {
            Ok(sent) => sent,
            Err(e) => {
                let e = update_err(unit, e);
                return Saving::ready(self.cache.settle(unit, json, false, previous, Err(e)));
            }
        };
        self.cache
            .remember(unit, json.clone(), false, previous, true);
        let records = self.cache.clone();
        let unit = unit.to_owned();
        Saving(Box::pin(async move {
            let written = crate::kv::acknowledged(sent)
                .await
                .map(Some)
                .map_err(|e| update_err(&unit, e));
            records.settle(&unit, json, false, previous, written)
        }))
    }

    /// Whether a record's JSON is within its limit.
    fn fits(&self, unit: &str, json: &[u8]) -> Result<(), StateError> {
        if json.len() > self.max_record {
            return Err(StateError::TooLarge {
                unit: unit.to_owned(),
                source: pb_protocol::OverLimit {
                    limit: pb_protocol::Limit::Record,
                    found: json.len(),
                    max: self.max_record,
                },
            });
        }
        Ok(())
    }

    async fn write(&self, unit: &str, loaded: &mut Loaded<T>) -> Result<(), StateError> {
        let key = key(&[unit]);
        if loaded.value == T::default() {
            let Some(revision) = loaded.revision else {
                return Ok(()); // never written: nothing to delete
            };
            return match self
                .store
                .delete_expect_revision(&key, Some(revision))
                .await
            {
                Ok(()) => {
                    // The delete marker is the record's new revision.
                    loaded.revision = self
                        .store
                        .entry(&key)
                        .await
                        .ok()
                        .flatten()
                        .map(|e| e.revision);
                    Ok(())
                }
                Err(e) => Err(update_err(unit, e)),
            };
        }
        let payload = json_of(&loaded.value)?;
        self.fits(unit, &payload)?;
        let revision = match loaded.revision {
            Some(revision) => self
                .store
                .update(&key, payload, revision)
                .await
                .map_err(|e| update_err(unit, e))?,
            None => self
                .store
                .create(&key, payload)
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => StateError::Conflict(unit.to_owned()),
                    _ => unavailable(e),
                })?,
        };
        loaded.revision = Some(revision);
        Ok(())
    }

    /// Every unit that has a record.
    pub async fn units(&self) -> Result<Vec<String>, StateError> {
        let mut keys = self.store.keys().await.map_err(unavailable)?;
        let mut units = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(unavailable)?;
            units.push(crate::kv::unkey(&k));
        }
        Ok(units)
    }
}

/// A failed compare-and-set write (an update or a delete) of `unit`'s record.
fn update_err(unit: &str, e: kv::UpdateError) -> StateError {
    match e.kind() {
        kv::UpdateErrorKind::WrongLastRevision => StateError::Conflict(unit.to_owned()),
        _ => unavailable(e),
    }
}

/// Target -> unit, shared by every replica (cached; a cached entry is dropped on delete).
#[derive(Debug, Clone)]
pub struct Targets {
    store: kv::Store,
    cache: Arc<Mutex<HashMap<Target, String>>>,
}

impl Targets {
    pub async fn open(buckets: &Buckets) -> Result<Self, BucketError> {
        Ok(Self {
            store: buckets
                .open(crate::kv::buckets::TARGETS, Duration::ZERO)
                .await?,
            cache: Arc::default(),
        })
    }

    /// The unit `target` belongs to, if the destination exists. Not cached when absent.
    pub async fn unit(&self, target: &Target) -> Result<Option<String>, StateError> {
        if let Some(unit) = self.cache.lock().expect("targets cache").get(target) {
            return Ok(Some(unit.clone()));
        }
        let found = self
            .store
            .get(key(&[target.as_str()]))
            .await
            .map_err(unavailable)?;
        Ok(found.map(|unit| {
            let unit = String::from_utf8_lossy(&unit).into_owned();
            self.cache
                .lock()
                .expect("targets cache")
                .insert(target.clone(), unit.clone());
            unit
        }))
    }

    /// Record that `target` exists and belongs to `unit`.
    pub async fn put(&self, target: &Target, unit: &str) -> Result<(), StateError> {
        self.store
            .put(key(&[target.as_str()]), unit.to_owned().into())
            .await
            .map_err(unavailable)?;
        self.cache
            .lock()
            .expect("targets cache")
            .insert(target.clone(), unit.to_owned());
        Ok(())
    }

    /// Record that `target` no longer exists. Other replicas' caches may still map it; the
    /// unit's owner, which checks its own record, has the last word.
    pub async fn delete(&self, target: &Target) -> Result<(), StateError> {
        self.cache.lock().expect("targets cache").remove(target);
        self.store
            .delete(key(&[target.as_str()]))
            .await
            .map_err(unavailable)
    }
}
