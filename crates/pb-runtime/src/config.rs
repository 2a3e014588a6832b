//! Configuration shared by every service, read from the environment (README, "Configuration").

use std::time::Duration;

use pb_protocol::{Subjects, Target};

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

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// `NATS_URL`, default `nats://127.0.0.1:4222`.
    pub nats_url: String,
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
            nats_url: text("NATS_URL", "nats://127.0.0.1:4222"),
            processor,
            control_target,
            subjects,
            deadline: millis(&lookup, "PB_DEADLINE_MS", 5000)?,
            connect_timeout: millis(&lookup, "PB_CONNECT_TIMEOUT_MS", 30_000)?,
            instance,
        })
    }
}

/// Read a positive number of milliseconds.
pub fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    number(lookup, var, default).and_then(|ms| {
        if ms == 0 {
            Err(ConfigError::Invalid {
                var,
                value: "0".into(),
                reason: "must be at least 1 millisecond".into(),
            })
        } else {
            Ok(Duration::from_millis(ms))
        }
    })
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
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.processor, "PB1");
        assert_eq!(c.subjects.prefix(), "pb");
        assert_eq!(c.deadline, Duration::from_secs(5));
        assert_eq!(c.control_target.as_str(), "PB1.CONTROL");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = with(&[("PB_DEADLINE_MS", "soon")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "PB_DEADLINE_MS=\"soon\" is invalid: expected a whole number"
        );
        let e = with(&[("PB_DEADLINE_MS", "0")]).unwrap_err().to_string();
        assert!(e.contains("at least 1 millisecond"), "{e}");
        let e = with(&[("PB_SUBJECT_PREFIX", "a b")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PB_SUBJECT_PREFIX=\"a b\" is invalid"), "{e}");
        let e = with(&[("PB_PROCESSOR", "")]).unwrap_err().to_string();
        assert!(e.starts_with("PB_PROCESSOR=\"\" is invalid"), "{e}");
    }

    #[test]
    fn processor_names_with_spaces_are_fine() {
        let c = with(&[("PB_PROCESSOR", "Main PB")]).unwrap();
        assert_eq!(c.control_target.as_str(), "Main PB.CONTROL");
    }
}
