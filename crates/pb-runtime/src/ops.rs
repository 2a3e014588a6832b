//! The operations port (`PB_HTTP_ADDR`, default `0.0.0.0:8080`), HTTP/1.1 with keep-alive
//! (hyper): `GET /livez` (the process runs; independent of NATS), `GET /readyz` (connected to
//! NATS, the state store answers, not draining), `GET /metrics` (the Prometheus text format,
//! or OpenMetrics when the `Accept` header asks for it). `HEAD` is answered as `GET`
//! without the body; another method is 405, another path 404. The NATS service discovery
//! ([`crate::discovery`]) is answered for as long as the port is open.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::Client;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::Shutdown;
use crate::connect::is_connected;
use crate::discovery::Endpoints;

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

/// The running operations port: marks the process draining, and closes the port (and ends
/// the discovery answers) when dropped, at the very end of a service's `run`.
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

/// Open the operations port on `addr`, and answer service discovery as `service`'s replica
/// `instance`, with its `endpoints`.
pub async fn start(
    client: &Client,
    addr: &str,
    service: &str,
    instance: &str,
    endpoints: &Endpoints,
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
    let (stop, shutdown) = Shutdown::new();
    let discovery = crate::discovery::answer(
        client,
        service,
        instance,
        endpoints.clone(),
        shutdown.clone(),
    );
    if let Err(e) = discovery.await {
        tracing::warn!(error = %e, "service discovery registration failed; continuing without it");
    }
    tokio::spawn(listen(listener, health.clone(), shutdown));
    Ok(Ops {
        health,
        stop,
        addr: bound,
    })
}

/// How long a connection may take to send a request's head, and stay idle between two
/// requests.
const IDLE: Duration = Duration::from_secs(30);

/// How long the answers under way may take to finish once the port closes.
const CLOSING: Duration = Duration::from_secs(2);

/// Serve connections until `shutdown`; then stop listening, close the idle connections and
/// let those with a request under way answer it.
async fn listen(listener: TcpListener, health: Health, mut shutdown: Shutdown) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(connection(stream, health.clone(), shutdown.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.requested() => break,
        }
    }
    drop(listener);
    let closed = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(CLOSING, closed).await;
}

/// One connection: requests one after the other until the client closes it, it stays idle
/// past [`IDLE`], or the port closes.
async fn connection(stream: TcpStream, health: Health, mut shutdown: Shutdown) {
    let answering = service_fn(move |request| {
        let health = health.clone();
        async move { Ok::<_, Infallible>(answer(&request, &health).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE)
        .serve_connection(TokioIo::new(stream), answering);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = shutdown.requested() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// The answer to one request.
async fn answer<B>(request: &Request<B>, health: &Health) -> Response<String> {
    let path = request.uri().path();
    if !matches!(path, "/livez" | "/readyz" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "try /livez, /readyz or /metrics\n".to_owned(),
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers GET and HEAD only\n"),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/livez" => text(StatusCode::OK, "alive\n".to_owned()),
        "/readyz" => match health.ready().await {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => {
            let accept = request
                .headers()
                .get_all(ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",");
            let format = crate::metrics::Format::negotiate(&accept);
            with_type(
                StatusCode::OK,
                format.content_type(),
                crate::metrics::render(format),
            )
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<String> {
    with_type(status, "text/plain; charset=utf-8", body)
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
