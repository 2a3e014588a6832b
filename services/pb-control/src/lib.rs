//! The control service: serves the processor control destination
//! `P.control.{Processor_Name}.CONTROL` (reference §9.1, contract §6 and §7).
//!
//! * [`cmd`]: one module per control command;
//! * [`status`]: the shared service status (key-value bucket, compare-and-set);
//! * [`link`]: follows the CTI link (adapter events and polling) and raises
//!   `cti.communicationlost` / `cti.communicationrestored` and the status changes;
//! * [`run`]: subscriptions, the command loop, and the graceful stop that reports
//!   `stopping-service` when the last replica goes.

mod cmd;
mod link;
mod status;

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use pb_protocol::control::{Capabilities, ControlEvent, ServerStatusChanged};
use pb_protocol::{Event, Kind, Subjects, Target};
use pb_runtime::config::{ConfigError, millis};
use pb_runtime::connect::is_connected;
use pb_runtime::cti::Budget;
use pb_runtime::discovery::Endpoints;
use pb_runtime::kv::{BucketError, Buckets};
use pb_runtime::reply_cache::ReplyCache;
use pb_runtime::serve::{Context, NATS_STEP, ServeError, publish_event, serve};
use pb_runtime::{Config, CtiClient, Shutdown};
use tokio::sync::RwLock;

use crate::status::{ControlRecord, StatusStore, StoreError};

/// The queue group of the control replicas.
pub const QUEUE_GROUP: &str = "pb-control";

/// The control service's settings.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub common: Config,
    /// `PB_LINK_POLL_MS`, default 2000: how often to ask the adapter for the link state
    /// (catches a dead adapter, which cannot report its own death).
    pub link_poll: Duration,
    /// `PB_LINK_POLL_TIMEOUT_MS`, default 2000: how long the adapter has to answer a poll;
    /// no answer in that time counts as the link down.
    pub link_poll_timeout: Duration,
    /// `PB_RESYNC_WAIT_MS`, default 10000: when the link is back, how long the owning
    /// replicas have to re-read the CTI before `cti.communicationrestored` is raised anyway.
    pub resync_wait: Duration,
    /// `PB_DRAIN_GRACE_MS`, default 2000: after SIGTERM, how long existing work keeps being
    /// served (new sessions refused) before the subscriptions drain.
    pub drain_grace: Duration,
}

impl ControlConfig {
    pub fn from_lookup(
        common: Config,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            common,
            link_poll: millis(&lookup, "PB_LINK_POLL_MS", 2000)?,
            link_poll_timeout: millis(&lookup, "PB_LINK_POLL_TIMEOUT_MS", 2000)?,
            resync_wait: millis(&lookup, "PB_RESYNC_WAIT_MS", 10_000)?,
            drain_grace: millis(&lookup, "PB_DRAIN_GRACE_MS", 2000)?,
        })
    }
}

/// The control service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot subscribe to `{subject}`: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("cannot flush the subscriptions to NATS: {0}")]
    Flush(#[source] async_nats::client::FlushError),
    #[error("the command loop failed: {0}")]
    CommandLoop(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Ops(#[from] pb_runtime::ops::OpsError),
}

/// One control replica's view of the destination.
#[derive(Debug)]
pub struct Control {
    client: Client,
    subjects: Subjects,
    target: Target,
    cti: CtiClient,
    store: StatusStore,
    buckets: Buckets,
    deadline: Duration,
    limits: pb_protocol::Limits,
    resync_wait: Duration,
    capabilities: RwLock<Option<Capabilities>>,
}

impl Control {
    /// The time left for the calls of a command starting now.
    fn budget(&self) -> Budget {
        Budget::start(self.deadline)
    }

    fn event(&self, message: ControlEvent) -> Event {
        Event::new(self.target.clone(), message)
    }

    fn status_event(&self, record: &ControlRecord) -> Event {
        self.event(ControlEvent::ServerStatusChanged(ServerStatusChanged {
            status: record.status(),
        }))
    }

    async fn publish(&self, event: &Event) {
        publish_event(&self.client, &self.subjects, event).await;
    }
}

impl Control {
    /// At start: a replica coming up ends a stop, and learns the link state.
    async fn resume(&self) -> Result<(), StoreError> {
        let (before, after) = self.store.update(|r| r.stopping = false).await?;
        if before != after && after.reported {
            self.publish(&self.status_event(&after)).await;
        }
        link::check(self, Duration::from_millis(500)).await;
        Ok(())
    }

    /// At shutdown: if no other replica of this processor answers, report stopping-service.
    async fn stop_if_last(&self, peers_subject: &str) {
        let others = match self
            .client
            .request(peers_subject.to_owned(), "".into())
            .await
        {
            Ok(reply) => Some(String::from_utf8_lossy(&reply.payload).into_owned()),
            Err(_) => None, // no responders: this is the last replica
        };
        if let Some(other) = others {
            tracing::info!(%other, "another control replica serves on; not stopping the processor");
            return;
        }
        match self.store.update(|r| r.stopping = true).await {
            Ok((before, after)) if before != after && after.reported => {
                self.publish(&self.status_event(&after)).await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not record stopping-service"),
        }
    }
}

/// Serve the control destination until `shutdown`, then stop gracefully.
pub async fn run(
    client: Client,
    config: ControlConfig,
    mut shutdown: Shutdown,
) -> Result<(), ControlError> {
    let common = &config.common;
    let subjects = common.subjects.clone();
    let buckets = Buckets::new(&client, common);
    let replies = ReplyCache::open(&buckets, common.replies_max_bytes).await?;
    let store = StatusStore::open(&buckets, &common.processor).await?;
    let target = common.control_target.clone();
    let endpoints = Endpoints::default();
    let subscribe = |name: &'static str, subject: String, queue: Option<&'static str>| {
        let (client, endpoints) = (client.clone(), endpoints.clone());
        async move {
            endpoints
                .subscribe(&client, name, subject.clone(), queue)
                .await
                .map_err(|source| ControlError::Subscribe { subject, source })
        }
    };
    let commands = subscribe(
        "commands",
        subjects.command(Kind::Control, &target),
        Some(QUEUE_GROUP),
    )
    .await?;
    let links = subscribe(
        "cti-link",
        pb_cti::link_events(&subjects),
        Some(QUEUE_GROUP),
    )
    .await?;
    let peers_subject = peers_subject(&subjects, &common.processor);
    let mut peers = subscribe("peers", peers_subject.clone(), None).await?;
    client.flush().await.map_err(ControlError::Flush)?;

    let control = Arc::new(Control {
        client: client.clone(),
        subjects: subjects.clone(),
        target: target.clone(),
        cti: CtiClient::new(client.clone(), subjects.clone()),
        store,
        buckets: buckets.clone(),
        deadline: common.deadline,
        resync_wait: config.resync_wait,
        limits: common.limits,
        capabilities: RwLock::new(None),
    });
    control.resume().await?;
    // The operations port lives until the end of `run`: alive (and not ready) while draining.
    let ops = pb_runtime::ops::start(
        &client,
        &common.http_addr,
        "pb-control",
        &common.instance,
        &endpoints,
    )
    .await?;
    tracing::info!(target = %target, instance = %common.instance, "control: service ready");

    let (stop_serving, serving) = Shutdown::new();
    let context = Context::new(client.clone(), common, replies);
    let server = tokio::spawn(serve(commands, context, control.clone(), serving.clone()));
    let watcher = tokio::spawn(link::follow(
        control.clone(),
        links,
        config.link_poll,
        config.link_poll_timeout,
        serving.clone(),
    ));
    let instance = common.instance.clone();
    let peer_client = client.clone();
    let answering = tokio::spawn(async move {
        while let Some(message) = peers.next().await {
            if let Some(reply) = message.reply {
                let _ = peer_client.publish(reply, instance.clone().into()).await;
            }
        }
    });

    shutdown.requested().await;
    ops.draining();
    // Stop answering peers (dropping the subscription unsubscribes), then ask for others.
    answering.abort();
    let _ = answering.await;
    if is_connected(&client) {
        let _ = tokio::time::timeout(NATS_STEP, client.flush()).await;
        if tokio::time::timeout(NATS_STEP, control.stop_if_last(&peers_subject))
            .await
            .is_err()
        {
            tracing::warn!("could not settle the stop with the other replicas in time");
        }
    } else {
        tracing::warn!("NATS is unreachable: stopping without reporting stopping-service");
    }
    tokio::time::sleep(config.drain_grace).await;
    stop_serving.fire();
    let served = server.await;
    // The link follower holds no work that must finish.
    watcher.abort();
    match served {
        Ok(result) => result.map_err(ControlError::from),
        Err(e) => Err(ControlError::CommandLoop(e)),
    }
}

/// `P.int.control.peers.<processor>`: every live control replica answers here.
fn peers_subject(subjects: &Subjects, processor: &str) -> String {
    use pb_protocol::internal::{CONTROL_SERVICE, PEERS};
    let processor = pb_protocol::target::encode_token(processor);
    subjects.internal_request(CONTROL_SERVICE, &format!("{PEERS}.{processor}"))
}
