//! JetStream key-value helpers shared by the services' state stores.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use pb_protocol::Subjects;

/// The project's buckets (before the deployment's prefix is put in front).
pub mod buckets {
    /// Answers by target and requestId ([`crate::reply_cache`]).
    pub(crate) const REPLIES: &str = "replies";
    /// The control destination's state, one record per processor.
    pub const CONTROL: &str = "control";
    /// The session service's records, one per agent.
    pub const SESSIONS: &str = "sessions";
    /// The channel-group service's records, one per agent.
    pub const CHANNELS: &str = "channels";
    /// Target -> agent ([`crate::state::Targets`]).
    pub(crate) const TARGETS: &str = "targets";
    /// `<service>.<agent>` -> owner replica ([`crate::owned`]).
    pub const OWNERS: &str = "owners";
    /// The live replicas of each owned service ([`crate::owned`]).
    pub(crate) const MEMBERS: &str = "members";
    /// Processor -> the gateway replica holding its TCP link (a lease: entries expire).
    pub const GATEWAY: &str = "gateway";
}

/// A bucket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open key-value bucket `{bucket}`: {source}. Is JetStream enabled on the NATS \
     server (nats-server -js)?"
)]
pub struct BucketError {
    pub bucket: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where the deployment's buckets live: the JetStream context, the subject prefix that
/// names them, and how many copies the cluster keeps of each. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Buckets {
    js: jetstream::Context,
    subjects: Subjects,
    replicas: usize,
}

impl Buckets {
    pub fn new(client: &async_nats::Client, config: &crate::Config) -> Self {
        Self {
            js: jetstream::new(client.clone()),
            subjects: config.subjects.clone(),
            replicas: config.kv_replicas,
        }
    }

    /// The JetStream context the buckets are reached through (a write [`send`] goes on it).
    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Open the bucket `name` (one of [`buckets`]), creating it with the configured number of
    /// replicas if it does not exist. `max_age` zero keeps entries forever. An existing
    /// bucket is used as it is: changing its replicas is a `nats stream edit`.
    pub async fn open(&self, name: &str, max_age: Duration) -> Result<kv::Store, BucketError> {
        self.open_bounded(name, max_age, None).await
    }

    /// [`Buckets::open`], a bucket created here holding at most `max_bytes`: when it is
    /// full, a write of a new key fails ([`is_full`]) rather than anything being dropped.
    pub(crate) async fn open_bounded(
        &self,
        name: &str,
        max_age: Duration,
        max_bytes: Option<u64>,
    ) -> Result<kv::Store, BucketError> {
        let bucket = bucket_name(&self.subjects, name);
        let err = |e: Box<dyn std::error::Error + Send + Sync>| BucketError {
            bucket: bucket.clone(),
            source: e,
        };
        match self.js.get_key_value(&bucket).await {
            Ok(store) => Ok(store),
            Err(_) => match self
                .js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: self.replicas,
                    max_bytes: max_bytes.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
                    ..Default::default()
                })
                .await
            {
                Ok(store) => Ok(store),
                // Another replica may have created it in the meantime.
                Err(e) => self
                    .js
                    .get_key_value(&bucket)
                    .await
                    .map_err(|_| err(Box::new(e))),
            },
        }
    }
}

/// The largest message the NATS server carries by default (`max_payload`, 1 MiB).
pub(crate) const MAX_PAYLOAD: usize = 1024 * 1024;

/// The longest protocol line the NATS server reads by default (`max_control_line`, 4 KiB):
/// a subject is part of such a line, and a longer one closes the connection.
pub const MAX_CONTROL_LINE: usize = 4096;

/// The longest subject a key goes into, with room on its line for the rest: the command,
/// a reply inbox and the sizes. The longest such subject is a watcher's consumer creation,
/// `$JS.API.CONSUMER.CREATE.KV_<bucket>.<name>.$KV.<bucket>.<key>`.
pub(crate) const MAX_SUBJECT: usize = MAX_CONTROL_LINE - 256;

/// The longest subject that carries a key of `key_len` bytes in the bucket `name`.
fn longest_key_subject(subjects: &Subjects, name: &str, key_len: usize) -> usize {
    let bucket = bucket_name(subjects, name);
    // `$JS.API.CONSUMER.CREATE.KV_` + bucket + `.` + 22-byte consumer name + `.$KV.` +
    // bucket + `.` + key
    "$JS.API.CONSUMER.CREATE.KV_".len()
        + bucket.len()
        + 1
        + 22
        + ".$KV.".len()
        + bucket.len()
        + 1
        + key_len
}

/// The longest reply-cache key requests within `limits` can make: every byte of the target
/// and the requestId written `=XX`, and the `.` between them.
pub fn longest_reply_key(limits: &pb_protocol::Limits) -> usize {
    3 * limits.target + 1 + 3 * limits.request_id
}

/// Whether every key that input within `limits` can make fits the server's subjects.
pub fn key_fits(subjects: &Subjects, limits: &pb_protocol::Limits) -> bool {
    longest_key_subject(subjects, buckets::REPLIES, longest_reply_key(limits)) <= MAX_SUBJECT
}

/// A key-value write sent on the client's connection and not yet acknowledged. Whatever the
/// client publishes after it reaches the server after it: NATS takes one connection's
/// messages in order.
pub(crate) type Sent = jetstream::context::PublishAckFuture;

/// Send a write of `value` to `key` without waiting for the bucket to acknowledge it; with
/// `revision`, conditioned as [`kv::Store::update`] is on the key's last revision (the
/// acknowledgement is then [`kv::UpdateErrorKind::WrongLastRevision`] if it has moved).
/// [`Buckets`] reaches JetStream with its default API prefix, so a key's subject is the
/// bucket's put prefix and the key.
pub(crate) async fn send(
    js: &jetstream::Context,
    store: &kv::Store,
    key: &str,
    value: bytes::Bytes,
    revision: Option<u64>,
) -> Result<Sent, kv::UpdateError> {
    debug_assert!(!store.use_jetstream_prefix, "no JetStream domain is used");
    let prefix = store.put_prefix.as_ref().unwrap_or(&store.prefix);
    let mut headers = async_nats::HeaderMap::new();
    if let Some(revision) = revision {
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            revision.to_string().as_str(),
        );
    }
    js.publish_with_headers(format!("{prefix}{key}"), headers, value)
        .await
        .map_err(kv::UpdateError::from)
}

/// The revision a sent write got, once the bucket acknowledges it.
pub(crate) async fn acknowledged(sent: Sent) -> Result<u64, kv::UpdateError> {
    sent.await
        .map(|ack| ack.sequence)
        .map_err(kv::UpdateError::from)
}

/// Whether a key-value write failed because the bucket is full (its `max_bytes`): JetStream
/// refuses new messages with error code 10077 ("maximum bytes exceeded" is error code
/// `JSStreamStoreFailedF` on a stream with `discard: new`).
pub(crate) fn is_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(js) = e.downcast_ref::<jetstream::Error>() {
            return js.error_code() == jetstream::ErrorCode::STREAM_STORE_FAILED;
        }
        source = e.source();
    }
    false
}

/// Make a valid key from parts: each part's bytes outside `[A-Za-z0-9-]` are written `=XX`,
/// an empty part is `_`, and parts are joined by `.`. Distinct part lists give distinct keys.
pub fn key(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if part.is_empty() {
            out.push('_');
        }
        for byte in part.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("={byte:02X}"));
            }
        }
    }
    out
}

/// The parts of a key made by [`key`], joined by `.` again (for one-part keys: the part).
pub fn unkey(key: &str) -> String {
    let mut out = Vec::with_capacity(key.len());
    let bytes = key.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            // `_` only ever stands for an empty part (a literal `_` is written `=5F`).
            b'_' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name of a deployment's bucket: the subject prefix (non-alphanumerics as `_`), then
/// `_`, then `name`; so deployments with different prefixes share an account safely.
pub fn bucket_name(subjects: &Subjects, name: &str) -> String {
    let prefix: String = subjects
        .prefix()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}_{name}")
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn keys_are_valid_and_distinct() {
        assert_eq!(key(&["PB1"]), "PB1");
        assert_eq!(key(&["Main PB", "r.1"]), "Main=20PB.r=2E1");
        assert_eq!(key(&["a", ""]), "a._");
        assert_ne!(key(&["a.b"]), key(&["a", "b"]));
        assert_ne!(key(&["_"]), key(&[""]));
        for part in ["1001", "Main PB", "é*>%.x", "", "_", "a=b"] {
            assert_eq!(super::unkey(&key(&[part])), part);
        }
        let acme = pb_protocol::Subjects::new("acme.pb").unwrap();
        assert_eq!(super::bucket_name(&acme, "replies"), "acme_pb_replies");
        assert!(
            key(&["é*>%", "{GUID}"])
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b))
        );
    }
}
