//! Configuration shared by every service, read from the environment (README, "Configuration").

use std::path::PathBuf;
use std::time::Duration;

use pb_protocol::{Limit, Limits, Secret, Subjects, Target};

/// Why the configuration cannot be used, naming the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// How to reach NATS: where, as whom, over what.
#[derive(Debug, Clone, Default)]
pub struct NatsSettings {
    /// `NATS_URL`, default `nats://127.0.0.1:4222` (`tls://` requires TLS); several servers
    /// of one cluster separated by commas.
    pub url: String,
    pub auth: NatsAuth,
    /// `NATS_TLS_CA`: the CA bundle that signed the server's certificate; setting it
    /// requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// `NATS_TLS_CERT` and `NATS_TLS_KEY`: a client certificate, for servers that verify it.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// The identity presented to NATS.
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    /// `NATS_USER` and `NATS_PASSWORD`.
    UserPassword { user: String, password: Secret },
    /// `NATS_CREDS`: a `.creds` file (JWT and nkey seed).
    Creds(PathBuf),
    /// `NATS_NKEY`: an nkey seed.
    NKey(Secret),
}

impl NatsSettings {
    /// Read `NATS_*` through `lookup`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let invalid = |var: &'static str, reason: &str| ConfigError::Invalid {
            var,
            value: String::from("(set)"),
            reason: reason.to_owned(),
        };
        let user = lookup("NATS_USER");
        let password = lookup("NATS_PASSWORD");
        let creds = lookup("NATS_CREDS");
        let nkey = lookup("NATS_NKEY");
        let given = [user.is_some(), creds.is_some(), nkey.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(invalid(
                "NATS_USER",
                "set one of NATS_USER/NATS_PASSWORD, NATS_CREDS or NATS_NKEY, not several",
            ));
        }
        let auth = match (user, password, creds, nkey) {
            (Some(user), Some(password), None, None) => NatsAuth::UserPassword {
                user,
                password: Secret::new(password),
            },
            (Some(_), None, _, _) => {
                return Err(invalid("NATS_PASSWORD", "NATS_USER needs NATS_PASSWORD"));
            }
            (None, Some(_), _, _) => {
                return Err(invalid("NATS_USER", "NATS_PASSWORD needs NATS_USER"));
            }
            (None, None, Some(path), None) => NatsAuth::Creds(PathBuf::from(path)),
            (None, None, None, Some(seed)) => NatsAuth::NKey(Secret::new(seed)),
            _ => NatsAuth::None,
        };
        let tls_client = match (lookup("NATS_TLS_CERT"), lookup("NATS_TLS_KEY")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "NATS_TLS_CERT",
                    "NATS_TLS_CERT and NATS_TLS_KEY go together",
                ));
            }
        };
        Ok(Self {
            url: lookup("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
            auth,
            tls_ca: lookup("NATS_TLS_CA").map(PathBuf::from),
            tls_client,
        })
    }
}

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// `NATS_URL`, `NATS_USER`/`NATS_PASSWORD`, `NATS_CREDS`, `NATS_NKEY`, `NATS_TLS_*`.
    pub nats: NatsSettings,
    /// `PB_PROCESSOR`, default `PB1`: the processor whose `{name}.CONTROL` this deployment serves.
    pub processor: String,
    /// The control destination's target, `{PB_PROCESSOR}.CONTROL`.
    pub control_target: Target,
    /// `PB_SUBJECT_PREFIX`, default `pb`.
    pub subjects: Subjects,
    /// `PB_DEADLINE_MS`, default 5000: every command is answered within this time.
    pub deadline: Duration,
    /// `PB_CONNECT_TIMEOUT_MS`, default 30000: how long to keep trying to reach NATS at start.
    pub connect_timeout: Duration,
    /// `PB_INSTANCE`, default `<host>-<pid>`: this replica's name in logs and peer lists.
    pub instance: String,
    /// `PB_HTTP_ADDR`, default `0.0.0.0:8080`: the operations port (health, metrics).
    pub http_addr: String,
    /// `PB_KV_REPLICAS`, default 1 (1 to 5): copies of each key-value bucket the NATS cluster
    /// keeps, set when the buckets are first created. Three on a three-node cluster.
    pub kv_replicas: usize,
    /// `PB_SUBSCRIPTION_CAPACITY`, default 65,536: the messages the NATS client buffers per
    /// subscription before it drops them as a slow consumer (logged and counted). Work is
    /// taken off the buffer at once (a command past `PB_MAX_IN_FLIGHT` is answered busy), so
    /// the buffer fills only when the process cannot keep up even with that; it must hold a
    /// burst on the widest subscriptions (the CTI adapter's requests during a re-sync of
    /// every agent, the control's commands in a login storm), where a drop is a command
    /// unanswered until retried.
    pub subscription_capacity: usize,
    /// `PB_MAX_IN_FLIGHT`, default 256: commands and internal requests this process works on
    /// at once; one more is answered FAILURE "busy" ([`crate::serve::BUSY`]) at once.
    pub max_in_flight: usize,
    /// `PB_MAX_*_BYTES` and `PB_MAX_TARGET_SEGMENTS` ([`Limit::var`]): what a command may
    /// carry; defaults in [`Limits::default`].
    pub limits: Limits,
    /// `PB_REPLIES_MAX_BYTES`, default 256 MiB: the reply cache bucket's storage; when it is
    /// full, requests are answered FAILURE until old answers expire.
    pub replies_max_bytes: u64,
}

impl Config {
    /// Read the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Read settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = |var: &str, default: &str| lookup(var).unwrap_or_else(|| default.to_owned());
        let processor = text("PB_PROCESSOR", "PB1");
        let control_target = Target::control(&processor).map_err(|e| ConfigError::Invalid {
            var: "PB_PROCESSOR",
            value: processor.clone(),
            reason: format!("`{processor}.CONTROL` is not a valid target ({e})"),
        })?;
        let prefix = text("PB_SUBJECT_PREFIX", "pb");
        let subjects = Subjects::new(prefix.clone()).map_err(|e| ConfigError::Invalid {
            var: "PB_SUBJECT_PREFIX",
            value: prefix,
            reason: e.to_string(),
        })?;
        let instance = lookup("PB_INSTANCE").unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "host".into());
            format!("{host}-{}", std::process::id())
        });
        Ok(Self {
            nats: NatsSettings::from_lookup(&lookup)?,
            processor,
            control_target,
            deadline: millis(&lookup, "PB_DEADLINE_MS", 5000)?,
            connect_timeout: millis(&lookup, "PB_CONNECT_TIMEOUT_MS", 30_000)?,
            instance,
            http_addr: text("PB_HTTP_ADDR", "0.0.0.0:8080"),
            kv_replicas: match number(&lookup, "PB_KV_REPLICAS", 1)? {
                n @ 1..=5 => n as usize,
                n => {
                    return Err(ConfigError::Invalid {
                        var: "PB_KV_REPLICAS",
                        value: n.to_string(),
                        reason: "JetStream keeps 1 to 5 replicas of a stream".into(),
                    });
                }
            },
            subscription_capacity: positive(&lookup, "PB_SUBSCRIPTION_CAPACITY", 65_536)? as usize,
            max_in_flight: positive(&lookup, "PB_MAX_IN_FLIGHT", 256)? as usize,
            limits: limits(&lookup, &subjects)?,
            replies_max_bytes: positive(&lookup, "PB_REPLIES_MAX_BYTES", 256 * 1024 * 1024)?,
            subjects,
        })
    }
}

/// Read the limits, and check that what the state store derives from input within them
/// stays within what the NATS server accepts ([`crate::kv::key_fits`]).
fn limits(
    lookup: &impl Fn(&str) -> Option<String>,
    subjects: &Subjects,
) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    for limit in Limit::ALL {
        let value = positive(lookup, limit.var(), limits.get(limit) as u64)?;
        limits.set(limit, usize::try_from(value).unwrap_or(usize::MAX));
    }
    if limits.payload > crate::kv::MAX_PAYLOAD {
        return Err(ConfigError::Invalid {
            var: Limit::Payload.var(),
            value: limits.payload.to_string(),
            reason: format!(
                "NATS carries at most {} bytes in a message by default (and a response echoes \
                 the command's header)",
                crate::kv::MAX_PAYLOAD
            ),
        });
    }
    if limits.record > crate::kv::MAX_PAYLOAD {
        return Err(ConfigError::Invalid {
            var: Limit::Record.var(),
            value: limits.record.to_string(),
            reason: format!(
                "a record is saved as one NATS message, at most {} bytes",
                crate::kv::MAX_PAYLOAD
            ),
        });
    }
    if !crate::kv::key_fits(subjects, &limits) {
        return Err(ConfigError::Invalid {
            var: Limit::Target.var(),
            value: limits.target.to_string(),
            reason: format!(
                "with {}={}, a reply-cache key could pass the {} bytes the NATS server allows \
                 in a subject; lower either",
                Limit::RequestId.var(),
                limits.request_id,
                crate::kv::MAX_SUBJECT
            ),
        });
    }
    Ok(limits)
}

/// Read a positive number of milliseconds.
pub fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    positive(lookup, var, default).map(Duration::from_millis)
}

/// Read a whole number of at least 1.
pub(crate) fn positive(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match number(lookup, var, default)? {
        0 => Err(ConfigError::Invalid {
            var,
            value: "0".into(),
            reason: "must be at least 1".into(),
        }),
        n => Ok(n),
    }
}

/// Read a whole number.
pub fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match lookup(var) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
            var,
            value,
            reason: "expected a whole number".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert!(matches!(c.nats.auth, NatsAuth::None));
        assert_eq!(c.processor, "PB1");
        assert_eq!(c.subjects.prefix(), "pb");
        assert_eq!(c.deadline, Duration::from_secs(5));
        assert_eq!(c.control_target.as_str(), "PB1.CONTROL");
        assert_eq!(c.kv_replicas, 1);
        assert_eq!(with(&[("PB_KV_REPLICAS", "3")]).unwrap().kv_replicas, 3);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = with(&[("PB_DEADLINE_MS", "soon")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "PB_DEADLINE_MS=\"soon\" is invalid: expected a whole number"
        );
        let e = with(&[("PB_DEADLINE_MS", "0")]).unwrap_err().to_string();
        assert!(e.contains("must be at least 1"), "{e}");
        let e = with(&[("PB_SUBJECT_PREFIX", "a b")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PB_SUBJECT_PREFIX=\"a b\" is invalid"), "{e}");
        let e = with(&[("PB_PROCESSOR", "")]).unwrap_err().to_string();
        assert!(e.starts_with("PB_PROCESSOR=\"\" is invalid"), "{e}");
        let e = with(&[("PB_KV_REPLICAS", "0")]).unwrap_err().to_string();
        assert!(e.contains("1 to 5 replicas"), "{e}");
    }

    #[test]
    fn nats_identity_and_tls() {
        let c = with(&[("NATS_USER", "pb-control"), ("NATS_PASSWORD", "s3cret")]).unwrap();
        assert!(
            matches!(&c.nats.auth, NatsAuth::UserPassword { user, .. } if user == "pb-control")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the password is not shown"
        );
        let c = with(&[("NATS_CREDS", "/run/pb.creds"), ("NATS_TLS_CA", "/ca.pem")]).unwrap();
        assert!(matches!(c.nats.auth, NatsAuth::Creds(_)));
        assert_eq!(
            c.nats.tls_ca.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        for bad in [
            vec![("NATS_USER", "u")],
            vec![("NATS_PASSWORD", "p")],
            vec![
                ("NATS_USER", "u"),
                ("NATS_PASSWORD", "p"),
                ("NATS_CREDS", "/c"),
            ],
            vec![("NATS_TLS_CERT", "/c.pem")],
        ] {
            let e = with(&bad).unwrap_err().to_string();
            assert!(!e.contains("\"p\""), "{e}");
        }
    }

    #[test]
    fn limits_are_read_and_checked_against_what_nats_accepts() {
        let c = with(&[]).unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.max_in_flight, 256);
        let c = with(&[("PB_MAX_REQUEST_ID_BYTES", "64"), ("PB_MAX_IN_FLIGHT", "8")]).unwrap();
        assert_eq!(c.limits.request_id, 64);
        assert_eq!(c.max_in_flight, 8);
        let e = with(&[("PB_MAX_TARGET_BYTES", "2000")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("PB_MAX_TARGET_BYTES=\"2000\" is invalid"),
            "{e}"
        );
        assert!(e.contains("PB_MAX_REQUEST_ID_BYTES"), "{e}");
        let e = with(&[("PB_MAX_PAYLOAD_BYTES", "2000000")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PB_MAX_PAYLOAD_BYTES="), "{e}");
        let e = with(&[("PB_MAX_AGENT_RECORD_BYTES", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
    }

    #[test]
    fn processor_names_with_spaces_are_fine() {
        let c = with(&[("PB_PROCESSOR", "Main PB")]).unwrap();
        assert_eq!(c.control_target.as_str(), "Main PB.CONTROL");
    }
}
