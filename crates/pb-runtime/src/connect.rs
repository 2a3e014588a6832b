//! The NATS connection of a service.

use std::time::{Duration, Instant};

use async_nats::{Client, ConnectErrorKind, ConnectOptions};

use crate::Config;
use crate::config::{NatsAuth, NatsSettings};

/// NATS could not be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach NATS at {url} after {waited:?}: {last_error}. Start a nats-server \
     (scripts/dev starts one) or point NATS_URL at a running one"
)]
pub struct ConnectError {
    pub url: String,
    pub waited: Duration,
    pub last_error: String,
}

/// The connection options of `process` (its binary name, which is also its NATS user) for
/// `settings`: identity, TLS, and the process's own inbox prefix, the only one its user may
/// subscribe ([`crate::permissions::inbox_prefix`]; JetStream requests use it too).
pub async fn options(settings: &NatsSettings, process: &str) -> Result<ConnectOptions, String> {
    let mut options =
        ConnectOptions::new().custom_inbox_prefix(crate::permissions::inbox_prefix(process));
    options = match &settings.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::Creds(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| format!("cannot read NATS_CREDS {}: {e}", path.display()))?,
        NatsAuth::NKey(seed) => options.nkey(seed.expose().to_owned()),
    };
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &settings.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if servers(&settings.url)
        .iter()
        .any(|u| u.starts_with("tls://"))
    {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// The servers of a `NATS_URL`: one URL, or several separated by commas (the members of a
/// cluster, any of which will do; the client moves to another when one is lost).
pub fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// Connect `service` (its binary name, also its NATS user: [`options`]) to NATS, retrying
/// until `config.connect_timeout`; once connected, the client reconnects by itself.
pub async fn connect(config: &Config, service: &str) -> Result<Client, ConnectError> {
    let started = Instant::now();
    let name = format!("{service}/{}", config.instance);
    let url = config.nats.url.clone();
    loop {
        // A wrong identity or TLS setup will not heal by waiting: say so at once.
        let attempt = async {
            let options = options(&config.nats, service)
                .await
                .map_err(|e| (true, e))?
                .name(name.clone())
                .connection_timeout(Duration::from_secs(2))
                .subscription_capacity(config.subscription_capacity)
                .event_callback(|event| async move {
                    match event {
                        async_nats::Event::Connected => note(&CONNECTED_AT),
                        async_nats::Event::Disconnected => note(&DISCONNECTED_AT),
                        async_nats::Event::SlowConsumer(sid) => {
                            crate::metrics::metrics().slow_consumer();
                            tracing::warn!(
                                sid,
                                "slow consumer: a subscription's buffer was full and NATS \
                                 messages were dropped (commands among them go unanswered \
                                 until retried); see PB_SUBSCRIPTION_CAPACITY"
                            );
                        }
                        _ => {}
                    }
                });
            options
                .connect(servers(&url).as_slice())
                .await
                .map_err(|e| {
                    let fatal = matches!(
                        e.kind(),
                        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Tls
                    );
                    (fatal, e.to_string())
                })
        };
        let last_error = match attempt.await {
            Ok(client) => {
                note(&CONNECTED_AT);
                return Ok(client);
            }
            Err((true, last_error)) => {
                return Err(ConnectError {
                    url,
                    waited: started.elapsed(),
                    last_error: format!(
                        "{last_error} (check NATS_USER/NATS_PASSWORD, NATS_CREDS, NATS_NKEY and NATS_TLS_*)"
                    ),
                });
            }
            Err((false, e)) => e,
        };
        if started.elapsed() >= config.connect_timeout {
            return Err(ConnectError {
                url,
                waited: started.elapsed(),
                last_error,
            });
        }
        tracing::warn!(%url, error = %last_error, "NATS not reachable yet, retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// When this process's NATS connection was last (re)established, and last lost.
static CONNECTED_AT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
static DISCONNECTED_AT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// How long the connection has been up without interruption (zero while disconnected).
pub(crate) fn connected_for(client: &Client) -> Duration {
    if is_connected(client) {
        since(&CONNECTED_AT)
    } else {
        Duration::ZERO
    }
}

/// How long the connection has been down (zero while connected).
pub(crate) fn disconnected_for(client: &Client) -> Duration {
    if is_connected(client) {
        Duration::ZERO
    } else {
        since(&DISCONNECTED_AT)
    }
}

fn since(at: &std::sync::Mutex<Option<Instant>>) -> Duration {
    at.lock()
        .ok()
        .and_then(|at| *at)
        .map(|at| at.elapsed())
        .unwrap_or_default()
}

fn note(at: &std::sync::Mutex<Option<Instant>>) {
    if let Ok(mut at) = at.lock() {
        *at = Some(Instant::now());
    }
}

/// Whether the client is connected to a server right now.
pub fn is_connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}
