//! The operations port (`PB_HTTP_ADDR`, default `0.0.0.0:8080`): `GET /livez` (the process
//! runs; independent of NATS), `GET /readyz` (connected to NATS, the state store answers, not
//! draining), `GET /metrics` (Prometheus text). Also the NATS service discovery registration
//! (`$SRV.PING`, `INFO`, `STATS`), so `nats micro ls`-style tools see every replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::Client;
use async_nats::service::ServiceExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Shutdown;
use crate::connect::is_connected;

/// A service's own condition for readiness: `Err` says why it is not ready.
pub(crate) type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What readiness depends on.
#[derive(Clone)]
pub struct Health {
    client: Client,
    draining: Arc<AtomicBool>,
    also: Arc<std::sync::OnceLock<Readiness>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("draining", &self.draining)
            .field("also", &self.also.get().is_some())
            .finish()
    }
}

impl Health {
    fn new(client: Client) -> Self {
        Self {
            client,
            draining: Arc::default(),
            also: Arc::default(),
        }
    }

    fn draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Ready: connected, not draining, and JetStream (the state store) answers.
    pub async fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining".into());
        }
        if !is_connected(&self.client) {
            return Err("not connected to NATS".into());
        }
        if let Some(also) = self.also.get() {
            also()?;
        }
        let js = async_nats::jetstream::new(self.client.clone());
        match tokio::time::timeout(Duration::from_secs(1), js.query_account()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the state store does not answer: {e}")),
            Err(_) => Err("the state store does not answer within 1 s".into()),
        }
    }
}

/// The operations port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on PB_HTTP_ADDR={addr}: {source}. Set PB_HTTP_ADDR to a free address")]
pub struct OpsError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// The running operations port: marks the process draining, and closes the port (and the
/// discovery registration) when dropped, at the very end of a service's `run`.
#[derive(Debug)]
pub struct Ops {
    health: Health,
    stop: crate::shutdown::Trigger,
    /// Where the port listens.
    pub addr: SocketAddr,
}

impl Ops {
    /// From now on the process is not ready (alive still: it drains before it exits).
    pub fn draining(&self) {
        self.health.draining();
    }

    /// Ready only while `condition` also holds (set once, by a service with a condition of
    /// its own).
    pub fn also_require(&self, condition: Readiness) {
        let _ = self.health.also.set(condition);
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        self.stop.fire();
    }
}

/// Open the operations port on `addr` and register `service` for service discovery.
pub async fn start(
    client: &Client,
    addr: &str,
    service: &str,
    instance: &str,
) -> Result<Ops, OpsError> {
    let health = Health::new(client.clone());
    let listener = TcpListener::bind(addr).await.map_err(|source| OpsError {
        addr: addr.to_owned(),
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| OpsError {
        addr: addr.to_owned(),
        source,
    })?;
    tracing::info!(addr = %bound, "operations port: /livez /readyz /metrics");
    let discovery = client
        .service_builder()
        .description("Processor Bridge client")
        .metadata([("instance".to_owned(), instance.to_owned())].into())
        .start(service, env!("CARGO_PKG_VERSION"))
        .await;
    if let Err(e) = &discovery {
        tracing::warn!(error = %e, "service discovery registration failed; continuing without it");
    }
    let (stop, mut shutdown) = Shutdown::new();
    let serving = health.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(answer(stream, serving.clone()));
                    }
                }
                _ = shutdown.requested() => break,
            }
        }
        if let Ok(service) = discovery {
            let _ = service.stop().await;
        }
    });
    Ok(Ops {
        health,
        stop,
        addr: bound,
    })
}

async fn answer(mut stream: tokio::net::TcpStream, health: Health) {
    let mut request = [0u8; 1024];
    let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await
    else {
        return;
    };
    let line = String::from_utf8_lossy(&request[..n]);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = match path {
        "/livez" => ("200 OK", "text/plain", "alive\n".to_owned()),
        "/readyz" => match health.ready().await {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_owned()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => (
            "200 OK",
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "try /livez, /readyz or /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}
