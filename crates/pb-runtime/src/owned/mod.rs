//! Ownership: every unit of work (an agent, for the session and channel-group services) is
//! handled by exactly one replica of a service at a time, its owner, so that everything done
//! for one agent is serialised and each destination's commands are taken in the order the
//! bridge sent them.
//!
//! * The owner subscribes to its units' destinations ([`Listening`]): the session service
//!   to each session's exact subject, the channel-group service once per kind per session
//!   (`P.channel.<session>.>`). NATS delivers one publisher's messages to one subscription in
//!   order, so nothing can overtake a command. A destination nobody has gets "no
//!   responders", or FAILURE (unknown destination) when its session's owner hears it
//!   (contract §5.6).
//! * CTI events (`P.cti.evt.agent.<unit>.<event>`) arrive on one subscription per replica
//!   and kind of change the service acts on, and go to the inbox of the unit's actor if the
//!   unit is owned here (a subscription per unit would cost a channel of its own, about
//!   6 KiB, per agent).
//! * Each owned unit is an actor: one task that takes one message at a time from its
//!   subscriptions and its inbox, handles it, publishes the response, then the events, then
//!   runs the follow-up work, before it takes the next.
//! * Internal requests (`P.int.<service>.<op>`, queue group) create units' destinations. The
//!   replica that receives one routes it to the unit's owner, recorded in the
//!   `<prefix>_owners` bucket (the first replica to see a unit claims it); a request for
//!   another replica's unit is forwarded on `P.node.<service>.<replica>`.
//! * Replicas register in the `<prefix>_members` bucket and ping one another on their node
//!   subjects. When one stops answering, a live replica takes over its units by
//!   compare-and-set and subscribes their destinations again from the stored state (written
//!   before every SUCCESS), so the bridge's retry of an unanswered command finds them.
//!
//! Here: the [`Owner`] trait, routing of internal requests and CTI events, the run loop.
//! `actor` is a unit's actor, `membership` registration, pings, fencing and take-over
//! (`fence` its pure timing), `resync` the re-reading of the CTI.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use std::time::Instant;

use async_nats::header::HeaderMap;
use async_nats::jetstream::kv;
use async_nats::{Client, Message, RequestErrorKind, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use pb_protocol::internal::{InternalReply, PAUSE, RELEASE, RESUME, SYNC, UnitRef};
use pb_protocol::{Command, Event, Kind, MessageType, Subjects, Target};
use tokio_stream::StreamMap;

use crate::Shutdown;
use crate::connect::is_connected;
use crate::discovery::{Endpoints, Listed};
use crate::kv::{BucketError, Buckets, key};
use crate::reply_cache::RETENTION;
use crate::serve::{BUSY, Context, NATS_STEP, Reply, publish};
use crate::state::StateError;
use mailbox::Refused;
use pb_cti::AgentEvent;

mod actor;
mod fence;
mod mailbox;
mod membership;
mod resync;

use fence::Suspect;
pub use resync::resync_everywhere;

const SUBJECT_HEADER: &str = "Pb-Subject";
const REPLY_HEADER: &str = "Pb-Reply";
const PING_HEADER: &str = "Pb-Ping";
const CHECK_HEADER: &str = "Pb-Check";
/// The fewest requests a unit remembers before it prunes the old ones.
const PRUNE_AT_LEAST: usize = 64;

/// What an owning service does. Everything but [`Owner::internal_unit`] and
/// [`Owner::units`] runs inside the unit's actor, one message at a time.
pub trait Owner: Send + Sync + 'static {
    /// The destinations the unit has now, to subscribe to when its actor starts here (read
    /// from the store, not from memory: another replica may have owned it meanwhile).
    fn destinations(
        &self,
        unit: &str,
    ) -> impl Future<Output = Result<Vec<(Kind, Target)>, StateError>> + Send;

    /// Answer a command to one of the unit's destinations.
    fn command(&self, unit: &mut Unit, command: Command) -> impl Future<Output = Reply> + Send;

    /// The unit an internal request (`P.int.<service>.<op>`) is for: by default its
    /// payload's `agent_id`, which every internal request of this project carries.
    fn internal_unit(&self, op: &str, payload: &[u8]) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct ForAgent {
            agent_id: String,
        }
        serde_json::from_slice::<ForAgent>(payload)
            .map(|r| r.agent_id)
            .map_err(|e| format!("malformed {op} request: {e}"))
    }

    /// Answer an internal request; the events are published after the reply.
    fn internal(
        &self,
        unit: &mut Unit,
        op: &str,
        payload: Bytes,
    ) -> impl Future<Output = (InternalReply, Vec<Event>)> + Send;

    /// React to a CTI event for the unit: the events to raise.
    fn cti_event(
        &self,
        unit: &mut Unit,
        event: AgentEvent,
    ) -> impl Future<Output = Vec<Event>> + Send;

    /// The unit is served here from its stored state after another replica (or this one,
    /// cut off) stopped serving it: what the CTI did meanwhile was heard by nobody. Read
    /// the CTI's view and return the events for what differs from what the bridge was told.
    fn resync(&self, unit: &mut Unit) -> impl Future<Output = Vec<Event>> + Send;

    /// Every unit that has state (each released when the control is disposed).
    fn units(&self) -> impl Future<Output = Result<Vec<String>, StateError>> + Send;
}

/// How an owning service subscribes to its units' destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// One subscription per destination, on its exact subject.
    PerDestination,
    /// One subscription per kind per session (`P.<kind>.<session>.>`), whatever the number
    /// of destinations below it: for a service with several destinations per agent (each
    /// subscription costs the client a channel of about 6 KiB, and the server an interest).
    /// A command for a destination the unit does not have is answered FAILURE (unknown
    /// destination, contract §5.6) unless it belongs to another agent's session.
    PerSession,
}

impl Listening {
    /// How the subscriptions are made, for service discovery.
    fn described(self) -> &'static str {
        match self {
            Self::PerDestination => "one per destination of an agent owned here",
            Self::PerSession => "one per kind per session of an agent owned here",
        }
    }
}

/// A unit as its handler sees it: its name, and the destinations it answers for.
#[derive(Debug)]
pub struct Unit {
    name: String,
    limits: pb_protocol::Limits,
    client: Client,
    subjects: Subjects,
    listening: Listening,
    /// Where the unit's subscriptions are listed for service discovery.
    endpoints: Endpoints,
    /// The destinations the unit answers for.
    served: std::collections::HashSet<(Kind, Target)>,
    /// The unit's subscriptions by subject.
    streams: StreamMap<String, Listed>,
    /// Commands that reached a subscription just ended, with its subject: answered after
    /// the current message (FAILURE, unknown destination).
    orphans: Vec<(String, Message)>,
    /// Commands taken off the subscriptions and not yet answered, oldest first (at most
    /// [`BACKLOG`]; see [`Shared::take_ready`]).
    backlog: std::collections::VecDeque<(String, Message)>,
    /// The requests seen in the last [`RETENTION`] (and some older ones until the next
    /// pruning), by a hash of target and `requestId`.
    seen: HashMap<u64, Instant>,
    /// How many entries `seen` may hold before its old ones are pruned: twice what the last
    /// pruning kept, so each request costs a constant share of the pruning.
    prune_at: usize,
    /// From when every request of the unit in the last [`RETENTION`] went through this
    /// actor: at once for a unit created here, [`RETENTION`] after a unit is taken over.
    /// From then on a `requestId` not in `seen` is new, and needs no claim in the reply cache.
    sole_witness_from: Instant,
}

impl Unit {
    /// What a command may carry, and a destination's target may be.
    pub fn limits(&self) -> &pb_protocol::Limits {
        &self.limits
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subscription that carries the commands to `target`.
    fn subject_for(&self, kind: Kind, target: &Target) -> String {
        match (self.listening, target.session_of(kind)) {
            (Listening::PerSession, Some(session)) if kind != Kind::Session => {
                self.subjects.commands_below(kind, &session)
            }
            _ => self.subjects.command(kind, target),
        }
    }

    /// Answer commands to `target` from now on: subscribed (and confirmed by the server)
    /// before this returns, so a create answered after it is answered truthfully (§5.5).
    /// Listening again is harmless, so a create that is repeated (after a failed attempt)
    /// always ends up listening.
    pub async fn listen(&mut self, kind: Kind, target: &Target) -> Result<(), String> {
        let subject = self.subject_for(kind, target);
        if !self.streams.contains_key(&subject) {
            let subscriber = self
                .endpoints
                .listed(
                    &self.client,
                    kind.token(),
                    subject.clone(),
                    || self.subjects.commands_of(kind),
                    Some(self.listening.described()),
                )
                .await
                .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
            self.client
                .flush()
                .await
                .map_err(|e| format!("cannot confirm the subscription to {subject}: {e}"))?;
            self.streams.insert(subject, subscriber);
        }
        if self.served.insert((kind, target.clone())) {
            crate::metrics::metrics().destinations(kind.token(), 1);
        }
        Ok(())
    }

    /// Stop answering for `target`: a command to it is answered FAILURE (unknown
    /// destination) from the next message on. A subscription that no longer carries any
    /// destination ends; the server learns it before anything this unit publishes next (one
    /// connection keeps its order), so once a dispose is answered the destination has no
    /// responder (§5.6); what the server delivered before it learnt it is answered once the
    /// current message is done.
    pub async fn forget(&mut self, kind: Kind, target: &Target) {
        if !self.served.remove(&(kind, target.clone())) {
            return;
        }
        crate::metrics::metrics().destinations(kind.token(), -1);
        let subject = self.subject_for(kind, target);
        if self
            .served
            .iter()
            .any(|(k, t)| self.subject_for(*k, t) == subject)
        {
            return;
        }
        if let Some(subscriber) = self.streams.remove(&subject) {
            let ended = drained(subscriber).await;
            self.orphans
                .extend(ended.into_iter().map(|m| (subject.clone(), m)));
        }
    }

    /// Whether `command` is a request whose `requestId` the unit has surely never seen.
    /// A hash collision, or an entry older than [`RETENTION`] not yet pruned, only sends a
    /// new request the longer way (a claim).
    fn first_sight(&mut self, command: &Command) -> bool {
        if command.message_type() != MessageType::Request {
            return false;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (command.target.as_str(), command.request_id.as_str()).hash(&mut hasher);
        let now = Instant::now();
        if self.seen.len() >= self.prune_at {
            self.seen
                .retain(|_, at| now.duration_since(*at) < RETENTION);
            self.prune_at = (2 * self.seen.len()).max(PRUNE_AT_LEAST);
        }
        let unseen = self.seen.insert(hasher.finish(), now).is_none();
        unseen && now >= self.sole_witness_from
    }

    /// How many destinations the unit answers for.
    fn destinations(&self) -> usize {
        self.served.len()
    }
}

/// Unsubscribe, and collect what the server sent before it learnt of it: a plain unsubscribe
/// would drop those on the client side, and a command among them would go unanswered.
async fn drained(mut subscriber: Listed) -> Vec<Message> {
    let mut rest = Vec::new();
    if subscriber.drain().await.is_err() {
        return rest;
    }
    while let Ok(Some(message)) = tokio::time::timeout(NATS_STEP, subscriber.next()).await {
        rest.push(message);
    }
    rest
}

/// An owning service could not run.
#[derive(Debug, thiserror::Error)]
pub enum OwnedError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("cannot subscribe to `{subject}`: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("cannot register this replica: {0}")]
    Register(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
}

fn subscribe_err(subject: &str) -> impl Fn(async_nats::SubscribeError) -> OwnedError + '_ {
    move |source| OwnedError::Subscribe {
        subject: subject.to_owned(),
        source,
    }
}

/// Settings of an owning service.
#[derive(Debug, Clone)]
pub struct OwnedConfig {
    /// Names the service in subjects and keys (`session`, `channelgroup`).
    pub service: &'static str,
    /// How often the replicas check on one another (`PB_OWNER_CHECK_MS`).
    pub check_every: Duration,
    /// How the units' destinations are subscribed.
    pub listening: Listening,
    /// The CTI changes the service acts on ([`pb_cti::AgentEvent::token`]s): a replica
    /// subscribes to these only, for every agent.
    pub agent_events: &'static [&'static str],
    /// How often every unit re-reads the CTI's view (`PB_RESYNC_MS`), spread evenly over
    /// the period; `None` (0) for never. A safety net for events lost on the way.
    pub resync_every: Option<Duration>,
}

impl OwnedConfig {
    /// The settings every owning service reads: `PB_OWNER_CHECK_MS` (default 1000) and
    /// `PB_RESYNC_MS` (default 300000, 0 for never).
    pub fn from_lookup(
        service: &'static str,
        listening: Listening,
        agent_events: &'static [&'static str],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let resync = crate::config::millis(&lookup, "PB_RESYNC_MS", 300_000)?;
        Ok(Self {
            service,
            check_every: crate::config::millis(&lookup, "PB_OWNER_CHECK_MS", 1000)?,
            listening,
            agent_events,
            resync_every: (!resync.is_zero()).then_some(resync),
        })
    }
}

/// Run an owning service until `shutdown`.
pub async fn run<H: Owner>(
    client: Client,
    config: &crate::Config,
    owned: OwnedConfig,
    handler: Arc<H>,
    mut shutdown: Shutdown,
) -> Result<(), OwnedError> {
    let subjects = config.subjects.clone();
    let buckets = Buckets::new(&client, config);
    let endpoints = Endpoints::default();
    // Unique per process start, so a restarted replica never inherits a dead one's units.
    let me = format!(
        "{}-{}",
        config.instance,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let shared = Arc::new(Shared {
        context: Context::new(
            client.clone(),
            config,
            crate::reply_cache::ReplyCache::open(&buckets, config.replies_max_bytes).await?,
        ),
        targets: crate::state::Targets::open(&buckets).await?,
        listening: owned.listening,
        owners: buckets
            .open(crate::kv::buckets::OWNERS, Duration::ZERO)
            .await?,
        members: buckets
            .open(crate::kv::buckets::MEMBERS, Duration::ZERO)
            .await?,
        service: owned.service,
        me,
        endpoints: endpoints.clone(),
        handler,
        actors: StdMutex::default(),
        fenced: Default::default(),
        resyncs: tokio::sync::Semaphore::new(resync::RESYNCS_AT_ONCE),
        known_peers: StdMutex::default(),
        sweep_due: Default::default(),
        link_down: Default::default(),
        stopping: Default::default(),
        suspects: StdMutex::default(),
        check_every: owned.check_every,
        internal_prefix: subjects.internal_request(owned.service, ""),
    });
    let queue = format!("pb-{}", owned.service);
    let internal_subject = format!("{}>", shared.internal_prefix);
    let mut internal = endpoints
        .subscribe(&client, "internal", internal_subject.clone(), Some(&queue))
        .await
        .map_err(subscribe_err(&internal_subject))?;
    let disposed_subject = subjects.internal_request(
        pb_protocol::internal::CONTROL_SERVICE,
        pb_protocol::internal::DISPOSED,
    );
    let mut disposed = endpoints
        .subscribe(&client, "disposed", disposed_subject.clone(), Some(&queue))
        .await
        .map_err(subscribe_err(&disposed_subject))?;
    let mut agent_events = Vec::new();
    for event in owned.agent_events {
        let subject = pb_cti::every_agent_event(&subjects, event);
        let name = match *event {
            AgentEvent::ALL => "cti-agent-events".to_owned(),
            event => format!("cti-agent-{event}"),
        };
        agent_events.push(
            endpoints
                .subscribe(&client, &name, subject.clone(), None)
                .await
                .map_err(subscribe_err(&subject))?,
        );
    }
    let agent_events = futures::stream::select_all(agent_events);
    // Every replica hears the link: when it comes back, each re-reads its own agents.
    let link_subject = pb_cti::link_events(&subjects);
    let links = endpoints
        .subscribe(&client, "cti-link", link_subject.clone(), None)
        .await
        .map_err(subscribe_err(&link_subject))?;
    let node_subject = shared.node_of(&shared.me);
    let mut node = endpoints
        .subscribe(&client, "node", node_subject.clone(), None)
        .await
        .map_err(subscribe_err(&node_subject))?;
    client
        .flush()
        .await
        .map_err(|e| OwnedError::Register(Box::new(e)))?;
    shared
        .members
        .put(shared.member_key(&shared.me), shared.me.clone().into())
        .await
        .map_err(|e| OwnedError::Register(Box::new(e)))?;
    // The operations port lives until the end of `run`: alive (and not ready) while draining.
    let ops = crate::ops::start(
        &client,
        &config.http_addr,
        &format!("pb-{}", owned.service),
        &shared.me,
        &endpoints,
    )
    .await?;
    tracing::info!(me = %shared.me, "{}: service ready", owned.service);

    // Until the units are stopped, so that the last changes reach a unit being finished.
    let routing = tokio::spawn(shared.clone().route_agent_events(agent_events));
    let following = tokio::spawn(shared.clone().follow_link(links));
    let resyncing = owned
        .resync_every
        .map(|every| tokio::spawn(shared.clone().resync_periodically(every)));
    let mut check = tokio::time::interval(owned.check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut guard = tokio::time::interval(fence::fence_check_every(owned.check_every));
    guard.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            message = internal.next() => match message {
                Some(message) => match shared.context.admit() {
                    Some(permit) => {
                        let handling = shared.clone().internal_message(message.subject.to_string(), message.reply, message.headers, message.payload, false);
                        tasks.spawn(async move {
                            handling.await;
                            drop(permit);
                        });
                    }
                    None => {
                        crate::metrics::metrics().refused("busy");
                        shared.internal_reply(message.reply.as_ref(), InternalReply::Again(BUSY.to_owned())).await;
                    }
                },
                // Drained (stopping): every internal request it had is being handled.
                None => break,
            },
            Some(message) = node.next() => {
                tasks.spawn(shared.clone().node_message(message));
            }
            Some(_) = disposed.next(), if !stopping => {
                tasks.spawn(shared.clone().release_everything());
            }
            _ = check.tick(), if !stopping => {
                tasks.spawn(shared.clone().check_members());
            }
            _ = guard.tick(), if !stopping => {
                tasks.spawn(shared.clone().guard());
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.requested(), if !stopping => {
                // Stop taking internal requests; those already received still run.
                stopping = true;
                ops.draining();
                if !is_connected(&client) || tokio::time::timeout(NATS_STEP, internal.drain()).await.is_err() {
                    break;
                }
            }
        }
    }
    // 1. Let the internal requests received so far reach their units. Pings are still
    //    answered meanwhile, so no peer takes a unit over while this replica finishes it.
    //    Each step is bounded: NATS may go away while this replica stops.
    let pinging = tokio::spawn(answer_pings(shared.clone(), node));
    let joined = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(config.deadline, joined).await.is_err() {
        tracing::warn!("internal requests still running at shutdown were abandoned");
    }
    // 2. From now on no unit starts here. Stop every unit: each finishes its inbox, then what
    //    its subscriptions hold.
    let actors: Vec<_> = {
        // Under the lock that starting a unit takes: no unit starts after this list is made.
        let mut actors = shared.actors.lock().expect("actors lock");
        shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        actors.drain().collect()
    };
    // All at once: a unit whose actor is done has no responder until a peer takes it over,
    // which starts when the last one is done.
    let finished: Vec<_> = actors
        .into_iter()
        .map(|(_, actor)| async move {
            let (done, finished) = tokio::sync::oneshot::channel();
            if actor.inbox.send(Inbox::Stop(done)).is_ok() {
                let _ = finished.await;
            }
        })
        .collect();
    let _ = tokio::time::timeout(config.deadline, futures::future::join_all(finished)).await;
    // 3. Go silent and ask the peers to take the units over now.
    routing.abort();
    following.abort();
    if let Some(resyncing) = resyncing {
        resyncing.abort();
    }
    pinging.abort();
    let _ = pinging.await;
    if is_connected(&client) {
        let _ = tokio::time::timeout(NATS_STEP, client.flush()).await;
        let _ = tokio::time::timeout(NATS_STEP, shared.nudge_peers()).await;
    }
    Ok(())
}

/// The node subject of `service`'s replica `replica`: pings, forwarded work, re-sync requests.
fn node_subject(subjects: &Subjects, service: &str, replica: &str) -> String {
    subjects.node(service, replica)
}

/// While stopping, answer pings (alive) and refuse forwarded work.
async fn answer_pings<H: Owner>(shared: Arc<Shared<H>>, mut node: Subscriber) {
    while let Some(message) = node.next().await {
        shared.clone().node_message(message).await;
    }
}

/// What every task of one replica shares.
struct Shared<H> {
    context: Context,
    /// Session target -> unit: whose a command brought by a wide subscription is.
    targets: crate::state::Targets,
    listening: Listening,
    owners: kv::Store,
    members: kv::Store,
    service: &'static str,
    me: String,
    /// This replica's subscriptions, for service discovery.
    endpoints: Endpoints,
    handler: Arc<H>,
    actors: StdMutex<HashMap<String, Actor>>,
    /// Set while this replica has fenced itself off (disconnected too long): it serves no
    /// agent until it is back on NATS and has checked its membership.
    fenced: std::sync::atomic::AtomicBool,
    /// Set while the CTI link is known to be down (from the adapter's link events).
    link_down: std::sync::atomic::AtomicBool,
    /// Set once the replica is stopping: no new unit starts here.
    stopping: std::sync::atomic::AtomicBool,
    /// The peers registered at the last check: one gone from it means an adoption began.
    known_peers: StdMutex<std::collections::HashSet<String>>,
    /// Set when a peer's record vanished: sweep for units nobody adopted at the next check
    /// that may reach verdicts.
    sweep_due: std::sync::atomic::AtomicBool,
    /// Bounds the re-synchronisations running at once.
    resyncs: tokio::sync::Semaphore,
    /// Peers found silent: how many checks in a row, and when last.
    suspects: StdMutex<HashMap<String, Suspect>>,
    check_every: Duration,
    internal_prefix: String,
}

/// How many commands wait in one unit's backlog at most ([`Shared::take_ready`]).
const BACKLOG: usize = 64;

/// A unit's actor, as the replica holds it.
struct Actor {
    /// Internal requests beyond [`mailbox::INTERNAL`] waiting are refused busy.
    inbox: mailbox::Sender,
    /// To end it at once, mid-work included, when the replica fences itself.
    task: tokio::task::AbortHandle,
}

/// What reaches a unit's actor from outside its subscriptions.
enum Inbox {
    Job(Job),
    /// Finish, then say so.
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// Work handed to a unit's actor from outside its subscriptions.
enum Job {
    /// A change at the CTI for the unit, with the trace context it carried.
    CtiEvent {
        /// Boxed: an inbox entry stays small whatever the event.
        event: Box<AgentEvent>,
        headers: Option<HeaderMap>,
    },
    Internal {
        op: String,
        payload: Bytes,
        reply: Option<Subject>,
        headers: Option<HeaderMap>,
    },
    /// Re-read the CTI's view of the unit ([`Owner::resync`]), and say when done.
    Resync(Option<tokio::sync::oneshot::Sender<()>>),
}

/// What an actor takes next.
enum Work {
    /// A command, with the subject of the subscription that brought it.
    Command(String, Message),
    Job(Job),
}

/// Whom a command is for, as a unit's actor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addressed {
    /// One of the unit's destinations.
    Here,
    /// A destination nobody has (never created, or disposed).
    Unknown,
    /// Another unit's, or brought twice to this unit (by its other subscription).
    Elsewhere,
}

enum Route {
    Mine,
    Theirs(String),
    /// Nobody owns the unit (asked without claiming it).
    Nobody,
}

/// Whether an internal operation is one the actor answers itself (and needs no claim).
fn actor_op(op: &str) -> bool {
    [PAUSE, RESUME, SYNC].contains(&op)
}

impl<H: Owner> Shared<H> {
    fn node_of(&self, replica: &str) -> String {
        node_subject(&self.context.subjects, self.service, replica)
    }

    fn owner_key(&self, unit: &str) -> String {
        key(&[self.service, unit])
    }

    /// The key of `replica`'s membership record.
    fn member_key(&self, replica: &str) -> String {
        key(&[self.service, replica])
    }

    /// Whether this replica's connection is too young for verdicts on its peers: right
    /// after a NATS restart, peers re-subscribe one after the other and would look gone.
    fn connection_young(&self) -> bool {
        crate::connect::connected_for(&self.context.client) < self.check_every * 3
    }

    /// The inboxes of the units served here now.
    fn inboxes(&self) -> Vec<mailbox::Sender> {
        let actors = self.actors.lock().expect("actors lock");
        actors.values().map(|a| a.inbox.clone()).collect()
    }

    /// Who owns `unit`; with `claim`, this replica claims it if nobody does.
    async fn route(&self, unit: &str, claim: bool) -> Result<Route, String> {
        // A unit with an actor here is this replica's (it learns otherwise when a write of
        // the unit's state is refused).
        if self.actors.lock().expect("actors lock").contains_key(unit) {
            return Ok(Route::Mine);
        }
        let key = self.owner_key(unit);
        if !claim {
            return Ok(
                match self.owners.get(&key).await.map_err(|e| e.to_string())? {
                    None => Route::Nobody,
                    Some(owner) if owner == self.me.as_bytes() => Route::Mine,
                    Some(owner) => Route::Theirs(String::from_utf8_lossy(&owner).into_owned()),
                },
            );
        }
        loop {
            // Claim first: most internal requests create a unit nobody owns yet.
            match self.owners.create(&key, self.me.clone().into()).await {
                Ok(_) => return Ok(Route::Mine),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.to_string()),
            }
            if let Some(owner) = self.owners.get(&key).await.map_err(|e| e.to_string())? {
                let owner = String::from_utf8_lossy(&owner).into_owned();
                return Ok(if owner == self.me {
                    Route::Mine
                } else {
                    Route::Theirs(owner)
                });
            }
        }
    }

    /// Hand `work` to the unit's actor on this replica, starting it if need be (the work is
    /// queued before the actor starts, so a new actor never finds its inbox empty).
    fn to_actor(self: &Arc<Self>, unit: &str, work: Option<Inbox>) -> Result<(), Refused> {
        let mut actors = self.actors.lock().expect("actors lock");
        if let Some(actor) = actors.get(unit).filter(|a| !a.inbox.is_closed()) {
            return match work {
                Some(work) => actor.inbox.send(work),
                None => Ok(()),
            };
        }
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed)
            || self.fenced.load(std::sync::atomic::Ordering::SeqCst)
        {
            // Units already here finish; none starts on a replica that is going.
            return work.map_or(Ok(()), |w| Err(Refused::Stopping(Box::new(w))));
        }
        // Started without work: taken over, or served again after a fence, from the stored
        // state, which the CTI may have moved past.
        let resync = work.is_none();
        let (tx, rx) = mailbox::mailbox();
        if let Some(work) = work {
            tx.send(work)?;
        }
        let task = tokio::spawn(self.clone().run_actor(unit.to_owned(), rx, resync)).abort_handle();
        actors.insert(unit.to_owned(), Actor { inbox: tx, task });
        Ok(())
    }

    /// An internal request, from the queue group or forwarded by a peer.
    async fn internal_message(
        self: Arc<Self>,
        subject: String,
        reply: Option<Subject>,
        headers: Option<HeaderMap>,
        payload: Bytes,
        forwarded: bool,
    ) {
        let Some(op) = subject
            .strip_prefix(&self.internal_prefix)
            .map(str::to_owned)
        else {
            tracing::warn!(%subject, "forwarded message for another subject ignored");
            return;
        };
        let unit = match self.handler.internal_unit(&op, &payload) {
            Ok(unit) => unit,
            Err(why) => {
                return self
                    .internal_reply(reply.as_ref(), InternalReply::Error(why))
                    .await;
            }
        };
        for _ in 0..3 {
            match self.route(&unit, !actor_op(&op)).await {
                Ok(Route::Nobody) => {
                    return self.internal_reply(reply.as_ref(), InternalReply::Ok).await;
                }
                Ok(Route::Mine) => {
                    let inbox = Inbox::Job(Job::Internal {
                        op,
                        payload,
                        reply,
                        headers,
                    });
                    if let Err(refused) = self.to_actor(&unit, Some(inbox)) {
                        let (why, work) = match refused {
                            Refused::Busy(work) => (format!("agent `{unit}`: {BUSY}"), work),
                            Refused::Stopping(work) => {
                                ("this replica is stopping".to_owned(), work)
                            }
                        };
                        if let Inbox::Job(Job::Internal { reply, .. }) = *work {
                            self.internal_reply(reply.as_ref(), InternalReply::Again(why))
                                .await;
                        }
                    }
                    return;
                }
                Ok(Route::Theirs(_)) if forwarded => {
                    let why = "the unit is moving between replicas".to_owned();
                    return self
                        .internal_reply(reply.as_ref(), InternalReply::Again(why))
                        .await;
                }
                Ok(Route::Theirs(owner)) => {
                    let mut headers = headers.clone().unwrap_or_default();
                    headers.insert(SUBJECT_HEADER, subject.as_str());
                    if let Some(reply) = &reply {
                        headers.insert(REPLY_HEADER, reply.as_str());
                    }
                    let request = async_nats::Request::new()
                        .headers(headers)
                        .payload(payload.clone())
                        .timeout(Some(self.context.deadline));
                    match self
                        .context
                        .client
                        .send_request(self.node_of(&owner), request)
                        .await
                    {
                        Ok(_) => return,
                        // One unanswered forward is no verdict: counted as a miss.
                        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                            if self.connection_young() || !self.missed(&owner) {
                                let why =
                                    format!("the replica owning agent `{unit}` is not answering");
                                return self
                                    .internal_reply(reply.as_ref(), InternalReply::Again(why))
                                    .await;
                            }
                            self.adopt(&self.member_key(&owner), &owner).await;
                        }
                        Err(e) => {
                            let why = format!(
                                "the replica owning agent `{unit}` did not take the request: {e}"
                            );
                            return self
                                .internal_reply(reply.as_ref(), InternalReply::Error(why))
                                .await;
                        }
                    }
                }
                Err(why) => {
                    return self
                        .internal_reply(reply.as_ref(), InternalReply::Error(why))
                        .await;
                }
            }
        }
        let why = format!("ownership of agent `{unit}` keeps moving");
        self.internal_reply(reply.as_ref(), InternalReply::Again(why))
            .await;
    }

    /// A message on this replica's node subject: a ping, or a forwarded internal request.
    async fn node_message(self: Arc<Self>, message: Message) {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.to_string())
        };
        if header(resync::RESYNC_HEADER).is_some() {
            // Answered once done, off the node loop: pings go on meanwhile.
            tokio::spawn(self.resync_on_request(message.reply));
            return;
        }
        if let Some(ack) = &message.reply {
            publish(&self.context.client, ack.to_string(), Bytes::new()).await;
        }
        if header(PING_HEADER).is_some() {
            return;
        }
        if header(CHECK_HEADER).is_some() {
            return self.check_members().await;
        }
        match header(SUBJECT_HEADER) {
            Some(subject) => {
                let reply = header(REPLY_HEADER).map(Subject::from);
                self.internal_message(
                    subject,
                    reply,
                    message.headers.clone(),
                    message.payload,
                    true,
                )
                .await;
            }
            None => tracing::warn!("node message without its subject ignored"),
        }
    }

    /// Hand every agent's CTI event to the actor of its unit, if the unit is owned here.
    async fn route_agent_events(
        self: Arc<Self>,
        mut events: futures::stream::SelectAll<Subscriber>,
    ) {
        while let Some(message) = events.next().await {
            let Some(unit) = pb_cti::agent_of(&self.context.subjects, &message.subject) else {
                tracing::warn!(subject = %message.subject, "CTI event for no agent ignored");
                continue;
            };
            let Some(inbox) = self
                .actors
                .lock()
                .expect("actors lock")
                .get(&unit)
                .map(|actor| actor.inbox.clone())
            else {
                continue;
            };
            match serde_json::from_slice::<AgentEvent>(&message.payload) {
                // Always taken: a CTI event is never dropped, nor held up by another unit.
                Ok(event) => {
                    let _ = inbox.send(Inbox::Job(Job::CtiEvent {
                        event: Box::new(event),
                        headers: message.headers,
                    }));
                }
                Err(e) => tracing::warn!(%unit, error = %e, "unreadable CTI event ignored"),
            }
        }
    }

    async fn internal_reply(&self, to: Option<&Subject>, reply: InternalReply) {
        if let Some(to) = to {
            let payload = serde_json::to_vec(&reply).unwrap_or_default();
            publish(&self.context.client, to.to_string(), payload.into()).await;
        }
    }

    /// The control was disposed: release every unit, each on its owner.
    async fn release_everything(self: Arc<Self>) {
        match self.handler.units().await {
            Ok(units) => {
                tracing::info!(
                    units = units.len(),
                    "control disposed: releasing every destination"
                );
                let subject = format!("{}{RELEASE}", self.internal_prefix);
                for unit in units {
                    let payload =
                        serde_json::to_vec(&UnitRef { agent_id: unit }).unwrap_or_default();
                    self.clone()
                        .internal_message(
                            subject.clone(),
                            None,
                            Some(crate::trace::headers()),
                            payload.into(),
                            false,
                        )
                        .await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list the destinations to release"),
        }
    }
}
