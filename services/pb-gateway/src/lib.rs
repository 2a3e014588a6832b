//! The gateway: holds the TCP link to a real Processor Bridge and carries it onto NATS
//! (contract §8), so that every rule of §5 holds as the bridge sees it on its socket.
//!
//! * [`config`]: the settings (`PB_BRIDGE_*`, `PB_GATEWAY_*`);
//! * [`connect`]: TCP with keep-alive, then TLS (rustls) when configured;
//! * [`lease`]: one link per processor: the replica holding the lease holds the link;
//! * [`link`]: one link's life: frames read and sent on as NATS requests, a writer task;
//! * [`deliver`]: responses and events, from one subscription, written in the order the
//!   services published them; deadlines answered;
//! * [`pending`]: the commands in flight; [`outgoing`]: the bounded queue to the bridge;
//! * [`metrics`]: the gateway's numbers.
//!
//! [`run`] stands by until it holds the lease, then connects (exponential back-off with
//! jitter between attempts), serves the link, and connects again when it ends, until the
//! lease is lost or the process stops.

mod config;
mod connect;
mod deliver;
mod lease;
mod link;
mod metrics;
mod outgoing;
mod pending;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::Client;
use backon::BackoffBuilder;
use pb_framing::ByteOrder;
use pb_protocol::Subjects;
use pb_runtime::discovery::Endpoints;
use pb_runtime::kv::{BucketError, Buckets, buckets};
use pb_runtime::{Config, Shutdown};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::GatewayConfig;

use crate::connect::{Connector, TlsError};
use crate::lease::Lease;
use crate::link::Stops;
use crate::metrics::{Closed, metrics};
use crate::pending::Pending;

/// The gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("cannot subscribe to `{subject}`: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error(transparent)]
    Ops(#[from] pb_runtime::ops::OpsError),
}

/// Where the link stands, for readiness.
#[derive(Debug, Default)]
struct LinkState(AtomicU8);

const STANDING_BY: u8 = 0;
const DOWN: u8 = 1;
const UP: u8 = 2;

impl LinkState {
    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
        metrics().link_up.set(i64::from(state == UP));
    }
}

/// What the link's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    client: Client,
    subjects: Subjects,
    /// The root of this replica's reply subjects (a token per command follows).
    replies: String,
    /// The services' deadline plus the margin: then the gateway answers itself.
    timeout: Duration,
    byte_order: ByteOrder,
    max_frame: usize,
    queue_bytes: usize,
    max_in_flight: usize,
    pending: Mutex<Pending>,
    /// Told when a command is added to an empty [`Pending`]: the delivering task then
    /// waits for its deadline (it waits for none while nothing is in flight).
    first_pending: tokio::sync::Notify,
    state: LinkState,
    /// The subscription while the lease is held, for service discovery.
    endpoints: Endpoints,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Room the NATS headers of a command take beside its frame.
const HEADER_ROOM: usize = 1024;

/// Serve the processor's bridge link until `shutdown`.
pub async fn run(
    client: Client,
    config: Config,
    gateway: GatewayConfig,
    shutdown: Shutdown,
) -> Result<(), GatewayError> {
    let connector = Connector::new(&gateway)?;
    let me = format!(
        "{}-{}",
        config.instance,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let store = Buckets::new(&client, &config)
        .open(buckets::GATEWAY, gateway.lease)
        .await?;
    let lease = Lease::new(store, &config.processor, &me, gateway.lease);
    let max_payload = client.server_info().max_payload;
    let max_frame = if gateway.max_frame + HEADER_ROOM > max_payload {
        let lowered = max_payload.saturating_sub(HEADER_ROOM);
        if gateway.max_frame_set {
            tracing::warn!(
                configured = gateway.max_frame,
                max_payload,
                lowered,
                "PB_BRIDGE_MAX_FRAME is above what the NATS server carries: lowered"
            );
        }
        lowered
    } else {
        gateway.max_frame
    };
    let shared = Arc::new(Shared {
        client: client.clone(),
        subjects: config.subjects.clone(),
        replies: config.subjects.gateway_replies(&me),
        timeout: config.deadline + gateway.margin,
        byte_order: gateway.byte_order,
        max_frame,
        // Room for at least one of the longest messages NATS carries.
        queue_bytes: gateway.queue_bytes.max(max_payload),
        max_in_flight: gateway.max_in_flight,
        pending: Mutex::default(),
        first_pending: tokio::sync::Notify::new(),
        state: LinkState::default(),
        endpoints: Endpoints::default(),
    });
    let ops = pb_runtime::ops::start(
        &client,
        &config.http_addr,
        "pb-gateway",
        &me,
        &shared.endpoints,
    )
    .await?;
    let readiness = shared.clone();
    let addr = gateway.bridge_addr.clone();
    ops.also_require(Arc::new(move || {
        match readiness.state.0.load(Ordering::Relaxed) {
            DOWN => Err(format!(
                "holding the link, but the bridge at {addr} is not connected"
            )),
            _ => Ok(()),
        }
    }));
    tracing::info!(
        me = %me,
        bridge = %gateway.bridge_addr,
        tls = connector.tls(),
        max_frame,
        "pb-gateway: service ready"
    );
    let stopping = CancellationToken::new();
    let mut watch = shutdown.clone();
    let trigger = stopping.clone();
    tokio::spawn(async move {
        watch.requested().await;
        trigger.cancel();
    });
    loop {
        let held = tokio::select! {
            held = lease.acquire() => held,
            () = stopping.cancelled() => break,
        };
        tracing::info!("holding the bridge link's lease: connecting to the bridge");
        metrics().active.set(1);
        shared.state.set(DOWN);
        let stops = Stops {
            lost: CancellationToken::new(),
            shutdown: stopping.clone(),
        };
        let keeping = CancellationToken::new();
        let keeper = tokio::spawn({
            let lease = lease.clone();
            let (lost, keeping) = (stops.lost.clone(), keeping.clone());
            async move { lease.keep(held, lost, keeping).await }
        });
        let result = active(&shared, &connector, &gateway, &stops).await;
        keeping.cancel();
        let held = keeper.await.unwrap_or(held);
        shared.state.set(STANDING_BY);
        metrics().active.set(0);
        if stopping.is_cancelled() {
            if !stops.lost.is_cancelled() {
                lease.release(held).await;
            }
            result?;
            break;
        }
        result?;
        tracing::warn!("the link's lease was lost: standing by");
    }
    ops.draining();
    if pb_runtime::connect::is_connected(&client) {
        let _ = tokio::time::timeout(pb_runtime::serve::NATS_STEP, client.flush()).await;
    }
    Ok(())
}

/// While holding the lease: subscribe to responses and events, and keep a link up.
async fn active(
    shared: &Arc<Shared>,
    connector: &Connector,
    gateway: &GatewayConfig,
    stops: &Stops,
) -> Result<(), GatewayError> {
    let pattern = shared.subjects.events_and_gateway_replies();
    let subscription = shared
        .endpoints
        .listed(
            &shared.client,
            "responses-and-events",
            pattern.clone(),
            || pattern.clone(),
            None,
        )
        .await
        .map_err(|source| GatewayError::Subscribe {
            subject: pattern,
            source,
        })?;
    let (control, receiver) = mpsc::unbounded_channel();
    let delivering = tokio::spawn(deliver::deliver(shared.clone(), subscription, receiver));
    let backoff = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(gateway.backoff_min)
            .with_max_delay(gateway.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    let mut failing = false;
    loop {
        let attempt = tokio::select! {
            attempt = connector.connect() => attempt,
            () = stops.lost.cancelled() => break,
            () = stops.shutdown.cancelled() => break,
        };
        match attempt {
            Ok(stream) => {
                failing = false;
                if metrics().connects.get() > 0 {
                    metrics().reconnects.inc();
                }
                metrics().connects.inc();
                tracing::info!(bridge = %connector.addr(), "link to the bridge up");
                shared.state.set(UP);
                let up = Instant::now();
                let closed = link::serve(shared, stream, &control, stops).await;
                shared.state.set(DOWN);
                metrics().closed(closed);
                tracing::warn!(reason = ?closed, after = ?up.elapsed(), "link to the bridge closed");
                if matches!(closed, Closed::shutdown | Closed::lease_lost) {
                    break;
                }
                // A link that lasted starts the back-off afresh.
                if up.elapsed() >= gateway.backoff_max {
                    delays = backoff();
                }
            }
            Err(e) => {
                metrics().connect_failed(e.reason());
                if failing {
                    tracing::debug!(error = %e, "cannot reach the bridge");
                } else {
                    failing = true;
                    tracing::warn!(error = %e, "cannot reach the bridge; retrying with back-off");
                }
            }
        }
        let delay = delays.next().unwrap_or(gateway.backoff_max);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stops.lost.cancelled() => break,
            () = stops.shutdown.cancelled() => break,
        }
    }
    drop(control);
    let _ = delivering.await;
    Ok(())
}
