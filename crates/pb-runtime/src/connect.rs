//! The NATS connection of a service.

use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions};

use crate::Config;

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

/// Connect to NATS, retrying until `config.connect_timeout`; once connected, the client
/// reconnects by itself.
pub async fn connect(config: &Config, service: &str) -> Result<Client, ConnectError> {
    let started = Instant::now();
    let name = format!("{service}/{}", config.instance);
    loop {
        let options = ConnectOptions::new()
            .name(name.clone())
            .connection_timeout(Duration::from_secs(2));
        let last_error = match options.connect(&config.nats_url).await {
            Ok(client) => return Ok(client),
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= config.connect_timeout {
            return Err(ConnectError {
                url: config.nats_url.clone(),
                waited: started.elapsed(),
                last_error,
            });
        }
        tracing::warn!(url = %config.nats_url, error = %last_error, "NATS not reachable yet, retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether the client is connected to a server right now.
pub fn is_connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}
