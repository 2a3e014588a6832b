//! The gateway's settings, read from the environment (README, "Configuration").

use std::path::PathBuf;
use std::time::Duration;

use pb_framing::ByteOrder;
use pb_runtime::config::{ConfigError, millis, number};

/// Where the Processor Bridge listens, and how to talk to it.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `PB_BRIDGE_ADDR`, default `127.0.0.1:9100`: the bridge's `host:port`.
    pub bridge_addr: String,
    /// The host part of [`GatewayConfig::bridge_addr`] (brackets of an IPv6 address removed).
    pub bridge_host: String,
    /// TLS towards the bridge, when configured.
    pub tls: Option<TlsSettings>,
    /// `PB_BRIDGE_BYTE_ORDER`, `big` (default) or `little`: of the frames' length field.
    pub byte_order: ByteOrder,
    /// `PB_BRIDGE_MAX_FRAME`, default 1 MiB: the longest frame read from the bridge (never
    /// more than the NATS server's `max_payload`: lowered to it at start if need be).
    pub max_frame: usize,
    /// Whether `PB_BRIDGE_MAX_FRAME` was set (lowering a set value is worth a warning).
    pub max_frame_set: bool,
    /// `PB_BRIDGE_QUEUE_BYTES`, default 8 MiB: what may wait to be written to the bridge;
    /// when a bridge that does not read lets it fill, the link is closed and opened again.
    pub queue_bytes: usize,
    /// `PB_BRIDGE_BACKOFF_MIN_MS` (default 100) and `PB_BRIDGE_BACKOFF_MAX_MS` (default
    /// 5000): the bounds of the exponential back-off, with jitter, between connection
    /// attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// `PB_BRIDGE_CONNECT_TIMEOUT_MS`, default 5000: one connection attempt, TLS included.
    pub connect_timeout: Duration,
    /// `PB_GATEWAY_LEASE_MS`, default 3000: how long the link's lease lasts without being
    /// renewed; a standby replica takes the link over within about this time of the
    /// active one's death.
    pub lease: Duration,
    /// `PB_GATEWAY_MARGIN_MS`, default 500 (at most 1000): how long after the services'
    /// deadline (`PB_DEADLINE_MS`) the gateway answers an unanswered command itself.
    pub margin: Duration,
    /// `PB_GATEWAY_MAX_IN_FLIGHT`, default 1024: commands sent on and not yet answered;
    /// beyond it the gateway stops reading the socket until answers come.
    pub max_in_flight: usize,
}

/// TLS towards the bridge: on when `PB_BRIDGE_TLS` is `true` or any `PB_BRIDGE_TLS_*` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `PB_BRIDGE_TLS_CA`: the CA bundle (PEM) that signed the bridge's certificate; the
    /// system's roots when unset.
    pub ca: Option<PathBuf>,
    /// `PB_BRIDGE_TLS_CERT` and `PB_BRIDGE_TLS_KEY`: a client certificate (PEM), for a
    /// bridge that verifies its clients.
    pub client: Option<(PathBuf, PathBuf)>,
    /// `PB_BRIDGE_TLS_SERVER_NAME`: the name to verify the certificate against; the host of
    /// `PB_BRIDGE_ADDR` when unset.
    pub server_name: Option<String>,
}

const KIB: u64 = 1024;

impl GatewayConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let invalid = |var: &'static str, value: &str, reason: &str| ConfigError::Invalid {
            var,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let bridge_addr = lookup("PB_BRIDGE_ADDR").unwrap_or_else(|| "127.0.0.1:9100".into());
        let bridge_host = host_of(&bridge_addr).ok_or_else(|| {
            invalid(
                "PB_BRIDGE_ADDR",
                &bridge_addr,
                "expected host:port, for example pb.example.com:9100 or [::1]:9100",
            )
        })?;
        let byte_order = match lookup("PB_BRIDGE_BYTE_ORDER") {
            None => ByteOrder::Big,
            Some(text) => ByteOrder::parse(&text).ok_or_else(|| {
                invalid("PB_BRIDGE_BYTE_ORDER", &text, "expected `big` or `little`")
            })?,
        };
        let max_frame = number(&lookup, "PB_BRIDGE_MAX_FRAME", 1024 * KIB)?;
        if max_frame < KIB || max_frame > u64::from(u32::MAX) {
            return Err(invalid(
                "PB_BRIDGE_MAX_FRAME",
                &max_frame.to_string(),
                "expected 1024 bytes to 4 GiB (the length field's reach)",
            ));
        }
        let queue_bytes = number(&lookup, "PB_BRIDGE_QUEUE_BYTES", 8 * 1024 * KIB)?;
        if queue_bytes < max_frame {
            return Err(invalid(
                "PB_BRIDGE_QUEUE_BYTES",
                &queue_bytes.to_string(),
                "must hold at least one frame of PB_BRIDGE_MAX_FRAME bytes",
            ));
        }
        let backoff_min = millis(&lookup, "PB_BRIDGE_BACKOFF_MIN_MS", 100)?;
        let backoff_max = millis(&lookup, "PB_BRIDGE_BACKOFF_MAX_MS", 5000)?;
        if backoff_max < backoff_min {
            return Err(invalid(
                "PB_BRIDGE_BACKOFF_MAX_MS",
                &backoff_max.as_millis().to_string(),
                "must be at least PB_BRIDGE_BACKOFF_MIN_MS",
            ));
        }
        let margin = millis(&lookup, "PB_GATEWAY_MARGIN_MS", 500)?;
        if margin > Duration::from_secs(1) {
            return Err(invalid(
                "PB_GATEWAY_MARGIN_MS",
                &margin.as_millis().to_string(),
                "at most 1000 (contract §8.3)",
            ));
        }
        let max_in_flight = number(&lookup, "PB_GATEWAY_MAX_IN_FLIGHT", 1024)?;
        if max_in_flight == 0 {
            return Err(invalid(
                "PB_GATEWAY_MAX_IN_FLIGHT",
                "0",
                "must be at least 1",
            ));
        }
        Ok(Self {
            tls: tls_settings(&lookup)?,
            bridge_addr,
            bridge_host,
            byte_order,
            max_frame: max_frame as usize,
            max_frame_set: lookup("PB_BRIDGE_MAX_FRAME").is_some(),
            queue_bytes: queue_bytes as usize,
            backoff_min,
            backoff_max,
            connect_timeout: millis(&lookup, "PB_BRIDGE_CONNECT_TIMEOUT_MS", 5000)?,
            lease: millis(&lookup, "PB_GATEWAY_LEASE_MS", 3000)?,
            margin,
            max_in_flight: max_in_flight as usize,
        })
    }
}

fn tls_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let invalid = |var: &'static str, reason: &str| ConfigError::Invalid {
        var,
        value: "(set)".into(),
        reason: reason.to_owned(),
    };
    let client = match (lookup("PB_BRIDGE_TLS_CERT"), lookup("PB_BRIDGE_TLS_KEY")) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "PB_BRIDGE_TLS_CERT",
                "PB_BRIDGE_TLS_CERT and PB_BRIDGE_TLS_KEY go together",
            ));
        }
    };
    let settings = TlsSettings {
        ca: lookup("PB_BRIDGE_TLS_CA").map(PathBuf::from),
        client,
        server_name: lookup("PB_BRIDGE_TLS_SERVER_NAME"),
    };
    let asked = settings != TlsSettings::default();
    match lookup("PB_BRIDGE_TLS").as_deref().map(str::trim) {
        None => Ok(asked.then_some(settings)),
        Some("1" | "true" | "on" | "yes") => Ok(Some(settings)),
        Some("0" | "false" | "off" | "no") if !asked => Ok(None),
        Some("0" | "false" | "off" | "no") => Err(invalid(
            "PB_BRIDGE_TLS",
            "TLS is off but PB_BRIDGE_TLS_* are set: unset them or set PB_BRIDGE_TLS=true",
        )),
        Some(_) => Err(invalid("PB_BRIDGE_TLS", "expected true or false")),
    }
}

/// The host of `host:port` (`[v6]:port` too), if the port is a number.
fn host_of(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6,
        None if !host.contains(':') => host,
        None => return None,
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GatewayConfig::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.bridge_addr, "127.0.0.1:9100");
        assert_eq!(c.bridge_host, "127.0.0.1");
        assert_eq!(c.byte_order, ByteOrder::Big);
        assert_eq!(c.max_frame, 1 << 20);
        assert_eq!(c.queue_bytes, 8 << 20);
        assert_eq!(c.tls, None);
        assert_eq!(c.margin, Duration::from_millis(500));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            with(&[("PB_BRIDGE_ADDR", "[::1]:9")]).unwrap().bridge_host,
            "::1"
        );
        assert_eq!(
            with(&[("PB_BRIDGE_ADDR", "pb.example.com:9100")])
                .unwrap()
                .bridge_host,
            "pb.example.com"
        );
        for bad in [
            "pb.example.com",
            ":9100",
            "host:port",
            "::1:9100",
            "h:70000",
        ] {
            let e = with(&[("PB_BRIDGE_ADDR", bad)]).unwrap_err().to_string();
            assert!(e.starts_with("PB_BRIDGE_ADDR="), "{bad}: {e}");
        }
    }

    #[test]
    fn tls_is_on_when_asked_for_or_configured() {
        let c = with(&[("PB_BRIDGE_TLS", "true")]).unwrap();
        assert_eq!(c.tls, Some(TlsSettings::default()));
        let c = with(&[("PB_BRIDGE_TLS_CA", "/ca.pem")]).unwrap();
        assert_eq!(c.tls.unwrap().ca.unwrap(), PathBuf::from("/ca.pem"));
        for bad in [
            vec![("PB_BRIDGE_TLS_CERT", "/c.pem")],
            vec![("PB_BRIDGE_TLS", "false"), ("PB_BRIDGE_TLS_CA", "/ca.pem")],
            vec![("PB_BRIDGE_TLS", "maybe")],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bounds_are_checked() {
        for bad in [
            vec![("PB_BRIDGE_BYTE_ORDER", "middle")],
            vec![("PB_BRIDGE_MAX_FRAME", "10")],
            vec![("PB_BRIDGE_QUEUE_BYTES", "2048")],
            vec![
                ("PB_BRIDGE_BACKOFF_MIN_MS", "900"),
                ("PB_BRIDGE_BACKOFF_MAX_MS", "800"),
            ],
            vec![("PB_GATEWAY_MARGIN_MS", "1500")],
            vec![("PB_GATEWAY_MAX_IN_FLIGHT", "0")],
        ] {
            let e = with(&bad).unwrap_err().to_string();
            assert!(e.starts_with(bad.last().unwrap().0), "{bad:?}: {e}");
        }
        let c = with(&[("PB_BRIDGE_BYTE_ORDER", "little")]).unwrap();
        assert_eq!(c.byte_order, ByteOrder::Little);
    }
}
