//! Ownership: every unit of work (an agent, for the session and channel-group services) is
//! handled by exactly one replica of a service at a time, its owner, so that everything done
//! for one agent (commands, internal requests, CTI events) is serialised, and the events of
//! each destination leave in the order in which things happened, whichever replica NATS
//! delivered a message to.
//!
//! * The owner of a unit is recorded in the `<prefix>_owners` key-value bucket under
//!   `<service>.<unit>`; the first replica to see a unit claims it (create).
//! * A replica that receives a message for a unit it does not own forwards it to the owner
//!   on `P.node.<service>.<replica>` as a request carrying the original subject and reply
//!   subject in headers; the owner acknowledges receipt, then answers the bridge directly, so
//!   its response and events leave from one connection in order.
//! * If the owner does not answer (no responders: its process is gone), the forwarder takes
//!   the unit over by compare-and-set and handles the message itself. State lives in the
//!   key-value store, written before any SUCCESS, so the new owner carries on.
//! * On the owner, a per-unit lock is held while a message is handled, its response, events
//!   and follow-up work published.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, kv};
use async_nats::{RequestErrorKind, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use pb_protocol::internal::InternalReply;
use pb_protocol::target::{decode_token, encode_token};
use pb_protocol::{Command, Event, Outcome, Subjects};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinSet;

use crate::Shutdown;
use crate::connect::is_connected;
use crate::kv::{BucketError, bucket_name, key, open_bucket};
use crate::serve::{Context, NATS_STEP, Reply, decode, publish, publish_event, respond};

const SUBJECT_HEADER: &str = "Pb-Subject";
const REPLY_HEADER: &str = "Pb-Reply";

/// What an owning service does; every method but [`Owner::unit_of`] and
/// [`Owner::internal_unit`] runs on the unit's owner, with the unit locked.
pub trait Owner: Send + Sync + 'static {
    /// The unit a command's destination belongs to; `Ok(None)` when there is no such
    /// destination (never created, or disposed).
    fn unit_of(&self, command: &Command) -> impl Future<Output = Result<Option<String>, String>> + Send;

    /// Answer a command.
    fn command(&self, unit: &str, command: Command) -> impl Future<Output = Reply> + Send;

    /// The unit an internal request (`P.int.<service>.<op>`) is for.
    fn internal_unit(&self, op: &str, payload: &[u8]) -> Result<String, String>;

    /// Answer an internal request; the events are published after the reply.
    fn internal(&self, unit: &str, op: &str, payload: Bytes) -> impl Future<Output = (InternalReply, Vec<Event>)> + Send;

    /// React to a CTI event for the unit (`P.cti.evt.agent.<unit>`): the events to raise.
    fn cti_event(&self, unit: &str, payload: Bytes) -> impl Future<Output = Vec<Event>> + Send;

    /// Every unit that has state (released one by one when the control is disposed).
    fn units(&self) -> impl Future<Output = Result<Vec<String>, String>> + Send;
}

/// An owning service could not run.
#[derive(Debug, thiserror::Error)]
pub enum OwnedError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("cannot subscribe to `{subject}`: {reason}")]
    Subscribe { subject: String, reason: String },
}

/// Run an owning service: `service` names it in subjects (`session`, `channelgroup`);
/// it serves the commands of `kinds`, its internal requests, the CTI's agent events and the
/// control's dispose, until `shutdown`.
pub async fn run<H: Owner>(
    client: async_nats::Client,
    config: &crate::Config,
    service: &str,
    kinds: &[pb_protocol::Kind],
    handler: Arc<H>,
    shutdown: Shutdown,
) -> Result<(), OwnedError> {
    let subjects = config.subjects.clone();
    let js = jetstream::new(client.clone());
    // Unique per process start, so a restarted replica never inherits a dead one's units.
    let me = format!("{}-{}", config.instance, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let owners = Owners::open(&js, &subjects, service, &me).await?;
    let context = Context {
        client: client.clone(),
        replies: crate::reply_cache::ReplyCache::open(&js, &subjects).await?,
        subjects: subjects.clone(),
        deadline: config.deadline,
    };
    let owned = OwnedService::new(context, owners, service, handler);
    let queue = format!("pb-{service}");
    let subscribe = |subject: String, queued: bool| {
        let client = client.clone();
        let queue = queue.clone();
        async move {
            let result = if queued {
                client.queue_subscribe(subject.clone(), queue).await
            } else {
                client.subscribe(subject.clone()).await
            };
            result.map_err(|e| OwnedError::Subscribe {
                subject,
                reason: e.to_string(),
            })
        }
    };
    let mut queued = Vec::new();
    for kind in kinds {
        queued.push(subscribe(subjects.commands_of(*kind), true).await?);
    }
    queued.push(subscribe(owned.internal_subjects(), true).await?);
    queued.push(subscribe(pb_cti::all_agent_events(&subjects), true).await?);
    let disposed = subscribe(subjects.internal(pb_protocol::internal::CONTROL_DISPOSED), true).await?;
    let node = subscribe(owned.node_subject(), false).await?;
    client.flush().await.map_err(|e| OwnedError::Subscribe {
        subject: "(flush)".into(),
        reason: e.to_string(),
    })?;
    tracing::info!(%me, "{service}: service ready");
    let fan_out = tokio::spawn(owned.clone().release_on_dispose(disposed));
    owned.serve(queued, node, shutdown).await;
    fan_out.abort();
    Ok(())
}


/// Where a unit is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Mine,
    Theirs(String),
}

/// The owner registry failed.
#[derive(Debug, thiserror::Error)]
#[error("the owner registry is unavailable: {0}")]
pub struct OwnerError(String);

fn owner_err(e: impl std::fmt::Display) -> OwnerError {
    OwnerError(e.to_string())
}

/// Who owns which unit; a cheap handle.
#[derive(Debug, Clone)]
pub struct Owners {
    store: kv::Store,
    service: String,
    me: String,
    cache: Arc<StdMutex<HashMap<String, String>>>,
}

impl Owners {
    pub async fn open(
        js: &jetstream::Context,
        subjects: &Subjects,
        service: &str,
        me: &str,
    ) -> Result<Self, BucketError> {
        Ok(Self {
            store: open_bucket(js, &bucket_name(subjects, "owners"), Duration::ZERO).await?,
            service: service.to_owned(),
            me: me.to_owned(),
            cache: Arc::default(),
        })
    }

    /// This replica's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    fn remember(&self, unit: &str, owner: &str) -> Route {
        self.cache
            .lock()
            .expect("owner cache lock")
            .insert(unit.to_owned(), owner.to_owned());
        if owner == self.me {
            Route::Mine
        } else {
            Route::Theirs(owner.to_owned())
        }
    }

    /// Who handles `unit`: its recorded owner, or this replica if it has none yet.
    pub async fn route(&self, unit: &str) -> Result<Route, OwnerError> {
        if let Some(owner) = self.cache.lock().expect("owner cache lock").get(unit).cloned() {
            return Ok(if owner == self.me {
                Route::Mine
            } else {
                Route::Theirs(owner)
            });
        }
        let key = key(&[&self.service, unit]);
        loop {
            if let Some(owner) = self.store.get(&key).await.map_err(owner_err)? {
                return Ok(self.remember(unit, &String::from_utf8_lossy(&owner)));
            }
            match self.store.create(&key, self.me.clone().into()).await {
                Ok(_) => return Ok(self.remember(unit, &self.me.clone())),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(owner_err(e)),
            }
        }
    }

    /// `dead` did not answer for `unit`: take the unit over, unless someone already has.
    pub async fn take_over(&self, unit: &str, dead: &str) -> Result<Route, OwnerError> {
        let key = key(&[&self.service, unit]);
        self.cache.lock().expect("owner cache lock").remove(unit);
        let entry = self.store.entry(&key).await.map_err(owner_err)?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put && entry.value == dead.as_bytes() => {
                match self.store.update(&key, self.me.clone().into(), entry.revision).await {
                    Ok(_) => {
                        tracing::warn!(%unit, %dead, "owner gone: unit taken over");
                        Ok(self.remember(unit, &self.me.clone()))
                    }
                    Err(_) => self.route(unit).await,
                }
            }
            _ => self.route(unit).await,
        }
    }
}

/// Per-unit locks, removed when nobody holds or waits for them.
#[derive(Debug, Default)]
struct Locks(StdMutex<HashMap<String, Arc<Mutex<()>>>>);

struct Held {
    guard: Option<OwnedMutexGuard<()>>,
    locks: Arc<Locks>,
    unit: String,
}

impl Locks {
    async fn lock(self: &Arc<Self>, unit: &str) -> Held {
        let mutex = self
            .0
            .lock()
            .expect("locks lock")
            .entry(unit.to_owned())
            .or_default()
            .clone();
        Held {
            guard: Some(mutex.lock_owned().await),
            locks: self.clone(),
            unit: unit.to_owned(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.0.lock().expect("locks lock");
        if map.get(&self.unit).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.unit);
        }
    }
}

/// An owning service's loop: subscriptions, routing, locks.
#[derive(Debug)]
pub struct OwnedService<H> {
    context: Context,
    owners: Owners,
    locks: Arc<Locks>,
    handler: Arc<H>,
    internal_prefix: String,
    agent_events_prefix: String,
    node_prefix: String,
}

/// A message as received, or as it was before being forwarded.
struct Incoming {
    subject: String,
    reply: Option<Subject>,
    payload: Bytes,
    /// Forwarded by another replica: acknowledge on this subject, never forward again.
    ack: Option<Subject>,
}

impl<H: Owner> OwnedService<H> {
    /// `service` names the service in subjects and keys (`session`, `channelgroup`).
    pub fn new(context: Context, owners: Owners, service: &str, handler: Arc<H>) -> Arc<Self> {
        let subjects = &context.subjects;
        Arc::new(Self {
            internal_prefix: subjects.internal(&format!("int.{service}.")),
            agent_events_prefix: subjects.internal("cti.evt.agent."),
            node_prefix: subjects.internal(&format!("node.{service}.")),
            context,
            owners,
            locks: Arc::default(),
            handler,
        })
    }

    /// `P.int.<service>.>`: the internal requests this service answers (queue group).
    pub fn internal_subjects(&self) -> String {
        format!("{}>", self.internal_prefix)
    }

    /// `P.node.<service>.<me>`: where other replicas forward this replica's units.
    pub fn node_subject(&self) -> String {
        self.node_of(self.owners.me())
    }

    fn node_of(&self, owner: &str) -> String {
        format!("{}{}", self.node_prefix, encode_token(owner))
    }

    /// Serve `queued` (the queue-group subscriptions) and `node` until `shutdown`, then drain.
    pub async fn serve(self: Arc<Self>, queued: Vec<Subscriber>, mut node: Subscriber, mut shutdown: Shutdown) {
        let mut queued = futures::stream::select_all(queued);
        let mut tasks = JoinSet::new();
        let mut draining = false;
        loop {
            tokio::select! {
                Some(message) = queued.next() => {
                    let incoming = Incoming {
                        subject: message.subject.to_string(),
                        reply: message.reply,
                        payload: message.payload,
                        ack: None,
                    };
                    tasks.spawn(self.clone().dispatch(incoming));
                }
                Some(message) = node.next() => {
                    let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
                    let Some(subject) = header(SUBJECT_HEADER) else {
                        tracing::warn!("forwarded message without its subject ignored");
                        continue;
                    };
                    let incoming = Incoming {
                        subject,
                        reply: header(REPLY_HEADER).map(Subject::from),
                        payload: message.payload,
                        ack: message.reply,
                    };
                    tasks.spawn(self.clone().dispatch(incoming));
                }
                _ = shutdown.requested(), if !draining => {
                    draining = true;
                    if !is_connected(&self.context.client) {
                        break;
                    }
                    for sub in queued.iter_mut() {
                        let _ = tokio::time::timeout(NATS_STEP, sub.drain()).await;
                    }
                    let _ = tokio::time::timeout(NATS_STEP, node.drain()).await;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                else => break,
            }
        }
        while tasks.join_next().await.is_some() {}
        if is_connected(&self.context.client) {
            let _ = tokio::time::timeout(NATS_STEP, self.context.client.flush()).await;
        }
    }

    /// Run an internal request for `unit` as if it had arrived on `P.int.<service>.<op>`
    /// (routed to the unit's owner); for work a replica fans out, such as releasing every
    /// session.
    pub async fn internal_for(self: &Arc<Self>, op: &str, payload: Bytes) {
        let incoming = Incoming {
            subject: format!("{}{op}", self.internal_prefix),
            reply: None,
            payload,
            ack: None,
        };
        self.clone().dispatch(incoming).await;
    }

    /// On the control's dispose, release every unit (each on its owner).
    async fn release_on_dispose(self: Arc<Self>, mut disposed: Subscriber) {
        while disposed.next().await.is_some() {
            match self.handler.units().await {
                Ok(units) => {
                    tracing::info!(units = units.len(), "control disposed: releasing every destination");
                    for unit in units {
                        let payload = serde_json::to_vec(&pb_protocol::internal::ReleaseUnit { agent_id: unit })
                            .unwrap_or_default();
                        self.internal_for(pb_protocol::internal::RELEASE, payload.into()).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list the destinations to release"),
            }
        }
    }

    async fn dispatch(self: Arc<Self>, incoming: Incoming) {
        if let Some(ack) = &incoming.ack {
            publish(&self.context.client, ack.to_string(), Bytes::new()).await;
        }
        let work = if let Some(op) = incoming.subject.strip_prefix(&self.internal_prefix) {
            match self.handler.internal_unit(op, &incoming.payload) {
                Ok(unit) => Work::Internal {
                    op: op.to_owned(),
                    unit,
                    payload: incoming.payload.clone(),
                    reply: incoming.reply.clone(),
                },
                Err(why) => {
                    self.internal_reply(incoming.reply.as_ref(), InternalReply::Error(why))
                        .await;
                    return;
                }
            }
        } else if let Some(token) = incoming.subject.strip_prefix(&self.agent_events_prefix) {
            match decode_token(token) {
                Ok(unit) => Work::CtiEvent {
                    unit,
                    payload: incoming.payload.clone(),
                },
                Err(e) => {
                    tracing::warn!(subject = %incoming.subject, error = %e, "CTI event for an unreadable agent id ignored");
                    return;
                }
            }
        } else {
            let Some((command, reply_to)) =
                decode(&self.context, &incoming.subject, incoming.reply.as_ref(), &incoming.payload).await
            else {
                return;
            };
            match self.handler.unit_of(&command).await {
                Ok(Some(unit)) => Work::Command(Box::new(command), reply_to, unit),
                Ok(None) => {
                    let why = format!(
                        "unknown {} destination `{}`: it was never created or has been disposed",
                        command.kind().describe(),
                        command.target
                    );
                    self.fail(&command, reply_to, why).await;
                    return;
                }
                Err(why) => {
                    self.fail(&command, reply_to, why).await;
                    return;
                }
            }
        };
        self.route(incoming, work).await;
    }

    async fn route(&self, incoming: Incoming, work: Work) {
        let unit = work.unit().to_owned();
        let mut route = self.owners.route(&unit).await;
        for _ in 0..3 {
            match route {
                Ok(Route::Mine) => return self.run_here(&unit, work).await,
                Ok(Route::Theirs(owner)) => match self.forward(&owner, &incoming).await {
                    Forwarded::Done => return,
                    Forwarded::OwnerGone => route = self.owners.take_over(&unit, &owner).await,
                    Forwarded::Failed(why) => return self.give_up(work, why).await,
                },
                Err(e) => return self.give_up(work, e.to_string()).await,
            }
        }
        self.give_up(work, format!("ownership of `{unit}` keeps moving; retry")).await;
    }

    async fn forward(&self, owner: &str, incoming: &Incoming) -> Forwarded {
        if incoming.ack.is_some() {
            // Already forwarded once: the registry changed under us; never loop.
            return Forwarded::Failed("the destination is moving between replicas; retry with the same requestId".into());
        }
        let mut headers = HeaderMap::new();
        headers.insert(SUBJECT_HEADER, incoming.subject.as_str());
        if let Some(reply) = &incoming.reply {
            headers.insert(REPLY_HEADER, reply.as_str());
        }
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(incoming.payload.clone())
            .timeout(Some(self.context.deadline));
        match self.context.client.send_request(self.node_of(owner), request).await {
            Ok(_) => Forwarded::Done,
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Forwarded::OwnerGone,
            Err(e) => Forwarded::Failed(format!("the replica owning this destination did not take the request: {e}")),
        }
    }

    async fn run_here(&self, unit: &str, work: Work) {
        let _held = self.locks.lock(unit).await;
        match work {
            Work::Command(command, reply_to, unit) => {
                respond(&self.context, *command, reply_to, |command| {
                    self.handler.command(&unit, command)
                })
                .await;
            }
            Work::Internal {
                op,
                unit,
                payload,
                reply,
            } => {
                let (answer, events) = self.handler.internal(&unit, &op, payload).await;
                self.internal_reply(reply.as_ref(), answer).await;
                self.publish_events(events).await;
            }
            Work::CtiEvent { unit, payload } => {
                let events = self.handler.cti_event(&unit, payload).await;
                self.publish_events(events).await;
            }
        }
    }

    async fn fail(&self, command: &Command, reply_to: Subject, why: String) {
        let response = command.respond(Outcome::failure(why));
        publish(&self.context.client, reply_to.to_string(), response.encode().into()).await;
    }

    async fn internal_reply(&self, to: Option<&Subject>, reply: InternalReply) {
        if let Some(to) = to {
            let payload = serde_json::to_vec(&reply).unwrap_or_default();
            publish(&self.context.client, to.to_string(), payload.into()).await;
        }
    }

    async fn give_up(&self, work: Work, why: String) {
        tracing::error!(error = %why, "message could not be handled");
        match work {
            Work::Command(command, reply_to, _) => self.fail(&command, reply_to, why).await,
            Work::Internal { reply, .. } => {
                self.internal_reply(reply.as_ref(), InternalReply::Error(why))
                    .await
            }
            Work::CtiEvent { unit, .. } => {
                tracing::error!(%unit, "a CTI event was lost; the next change or init resynchronises");
            }
        }
    }

    async fn publish_events(&self, events: Vec<Event>) {
        for event in &events {
            publish_event(&self.context.client, &self.context.subjects, event).await;
        }
    }
}

enum Work {
    Command(Box<Command>, Subject, String),
    Internal {
        op: String,
        unit: String,
        payload: Bytes,
        reply: Option<Subject>,
    },
    CtiEvent {
        unit: String,
        payload: Bytes,
    },
}

impl Work {
    fn unit(&self) -> &str {
        match self {
            Work::Command(_, _, unit) | Work::Internal { unit, .. } | Work::CtiEvent { unit, .. } => {
                unit
            }
        }
    }
}

enum Forwarded {
    Done,
    OwnerGone,
    Failed(String),
}
