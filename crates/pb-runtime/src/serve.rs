//! The command loop: what every destination service does with a message on its subject.
//!
//! For each message: decode it (a bad one is answered FAILURE naming the problem, contract
//! §5.2); for a request, consult the [`ReplyCache`] (§5.3); run the [`Handler`] under the
//! deadline (§5.1); record the answer; publish the response; then publish the events the
//! command caused, in order, and only then run its follow-up work (§5.4). On shutdown the
//! subscription is drained: messages already received are still answered.
//!
//! > The writes a command makes go out before its response on the same connection, so the
//! > server has them before the bridge has the answer; the store's acknowledgement of a
//! > record's write and of the answer's is awaited after the response is published and
//! > before the events, and before the destination's next command is taken.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use pb_protocol::limits::Excerpt;
use pb_protocol::{BadCommand, Body, Command, Event, Limits, MessageType, Outcome, Subjects};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::connect::is_connected;
use crate::reply_cache::{Claim, ReplyCache, Slot};
use crate::state::Saving;
use crate::{Config, Shutdown};

/// Work to run after the response and the events are out (for example, releasing CTI
/// resources after a dispose was answered).
pub(crate) type FollowUp = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a handler answers: the outcome, the events the command caused, and follow-up work.
#[must_use]
pub struct Reply {
    pub outcome: Outcome,
    pub events: Vec<Event>,
    pub follow_up: Option<FollowUp>,
    /// No final answer ([`Reply::retry_same`]): not recorded, so that the same requestId
    /// sent again is acted on again.
    pub again: bool,
    /// A record's write sent and not yet answered ([`crate::state::made_once`]).
    pub(crate) settling: Option<Settling>,
}

/// A write of a unit's record the response does not wait for; the events do.
#[derive(Debug)]
pub(crate) struct Settling {
    pub(crate) unit: String,
    pub(crate) saving: Saving,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("outcome", &self.outcome)
            .field("events", &self.events)
            .field("follow_up", &self.follow_up.is_some())
            .field("again", &self.again)
            .field("settling", &self.settling)
            .finish()
    }
}

impl Reply {
    pub fn success() -> Self {
        Self::from(Outcome::success())
    }

    pub fn body(body: Body) -> Self {
        Self::from(Outcome::Success(body))
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::from(Outcome::failure(message))
    }

    /// FAILURE without a final answer: what was done is not known (a CTI change that got
    /// no reply, a handler cut off by the deadline). Not recorded; the message ends with
    /// [`RETRY_SAME`], and the same requestId sent again is acted on again, its CTI changes
    /// with the same keys, which the adapter answers as it did the first time.
    pub fn retry_same(why: impl std::fmt::Display) -> Self {
        Self {
            again: true,
            ..Self::failure(format!("{why}; {RETRY_SAME}"))
        }
    }

    /// Publish `event` after the response.
    pub fn with_event(mut self, event: Event) -> Self {
        self.events.push(event);
        self
    }

    /// Run `work` after the response and the events.
    pub fn then(mut self, work: impl Future<Output = ()> + Send + 'static) -> Self {
        self.follow_up = Some(Box::pin(work));
        self
    }

    pub(crate) fn settling(self, settling: Settling) -> Self {
        Self {
            settling: Some(settling),
            ..self
        }
    }
}

impl Settling {
    /// The events of the change, once the record's write is answered: as
    /// [`crate::state::made`] has them (none if another replica wrote first).
    async fn settled(settling: Option<Self>, events: Vec<Event>) -> Vec<Event> {
        match settling {
            Some(Self { unit, saving }) => {
                let written = saving.written().await.map(|_| ());
                crate::state::events_made(&unit, written, events)
            }
            None => events,
        }
    }
}

impl From<Outcome> for Reply {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            events: Vec::new(),
            follow_up: None,
            again: false,
            settling: None,
        }
    }
}

/// A destination's behaviour: one answer per decoded command.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, command: Command) -> impl Future<Output = Reply> + Send;
}

/// The loop could not run.
#[derive(Debug, thiserror::Error)]
#[error("NATS failed while serving `{subject}`: {source}")]
pub struct ServeError {
    pub subject: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// What the loop needs besides the handler. Cheap to clone; clones share one bound on the
/// work in flight.
#[derive(Debug, Clone)]
pub struct Context {
    pub client: Client,
    pub subjects: Subjects,
    pub replies: ReplyCache,
    pub deadline: Duration,
    pub limits: Limits,
    /// Permits for the work this process does at once ([`Config::max_in_flight`]).
    pub in_flight: Arc<Semaphore>,
}

impl Context {
    pub fn new(client: Client, config: &Config, replies: ReplyCache) -> Self {
        Self {
            client,
            subjects: config.subjects.clone(),
            replies,
            deadline: config.deadline,
            limits: config.limits,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        }
    }

    /// A permit for one more piece of work, or `None` when the process is at its bound
    /// (the caller answers [`BUSY`]).
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }
}

/// How a command refused for the work already in flight is answered; it did nothing, so
/// it may be sent again as is.
pub(crate) const BUSY: &str = "busy: this replica is working on as many commands as it takes at \
     once (PB_MAX_IN_FLIGHT)";

/// Answer every command arriving on `subscriber` until shutdown, then drain.
pub async fn serve<H: Handler>(
    mut subscriber: Subscriber,
    context: Context,
    handler: Arc<H>,
    mut shutdown: Shutdown,
) -> Result<(), ServeError> {
    // Shared, not cloned, per message: a clone copies clients and names (allocations).
    let context = Arc::new(context);
    let mut tasks = JoinSet::new();
    let mut draining = false;
    loop {
        tokio::select! {
            message = subscriber.next() => match message {
                Some(message) => match context.admit() {
                    Some(permit) => {
                        let answering = answer(context.clone(), handler.clone(), message);
                        tasks.spawn(async move {
                            answering.await;
                            drop(permit);
                        });
                    }
                    None => busy(&context, message).await,
                },
                None => break,
            },
            _ = shutdown.requested(), if !draining => {
                draining = true;
                if !is_connected(&context.client) {
                    tracing::warn!("NATS is unreachable: stopping without draining");
                    break;
                }
                // Unsubscribe; what is already buffered still arrives, then `next` ends.
                // Bounded: with NATS gone, draining cannot complete and must not hang.
                match tokio::time::timeout(NATS_STEP, subscriber.drain()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "draining the subscription failed");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!("draining the subscription timed out (NATS unreachable?)");
                        break;
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    if !is_connected(&context.client) {
        return Ok(());
    }
    match tokio::time::timeout(NATS_STEP, context.client.flush()).await {
        Ok(result) => result.map_err(|e| ServeError {
            subject: "(flush)".into(),
            source: Box::new(e),
        }),
        Err(_) => {
            tracing::warn!("final flush timed out: NATS is unreachable, unsent replies are lost");
            Ok(())
        }
    }
}

/// How every FAILURE that did nothing, and whose request may be sent again with the same
/// requestId, ends (the first attempt still running, a store that did not answer): a
/// bridge that sees it retries as is; no other FAILURE ends so.
pub const RETRY_SAME: &str = "retry with the same requestId";

/// How long one NATS step of a shutdown may take before it is given up.
pub const NATS_STEP: Duration = Duration::from_secs(3);

/// Answer `message` [`BUSY`] without acting on it.
pub async fn busy(context: &Context, message: async_nats::Message) {
    if let Some((command, reply_to)) = decode(
        context,
        &message.subject,
        message.reply.as_ref(),
        &message.payload,
    )
    .await
    {
        refuse_busy(context, &command, reply_to).await;
    }
}

/// Answer a command [`BUSY`] (counted) without acting on it.
pub(crate) async fn refuse_busy(context: &Context, command: &Command, reply_to: Subject) {
    crate::metrics::metrics().refused("busy");
    refuse(context, command, reply_to, format!("{BUSY}; {RETRY_SAME}")).await;
}

async fn answer<H: Handler>(context: Arc<Context>, handler: Arc<H>, message: async_nats::Message) {
    let Some((command, reply_to)) = decode(
        &context,
        &message.subject,
        message.reply.as_ref(),
        &message.payload,
    )
    .await
    else {
        return;
    };
    let headers = message.headers.as_ref();
    respond(&context, command, reply_to, headers, false, |command| {
        handler.handle(command)
    })
    .await;
}

/// Decode a command for answering. A message without a reply subject is logged; a bad
/// command is answered FAILURE naming the problem (contract §5.2). Either way `None`.
pub async fn decode(
    context: &Context,
    subject: &str,
    reply: Option<&Subject>,
    payload: &[u8],
) -> Option<(Command, Subject)> {
    match read(context, subject, reply, payload)? {
        (Ok(command), reply_to) => Some((command, reply_to)),
        (Err(bad), reply_to) => {
            reject(context, subject, &bad, reply_to).await;
            None
        }
    }
}

/// A message as a command, or why it is none, with where to answer; `None` (logged) when
/// it has no reply subject and cannot be answered.
pub fn read(
    context: &Context,
    subject: &str,
    reply: Option<&Subject>,
    payload: &[u8],
) -> Option<(Result<Command, Box<BadCommand>>, Subject)> {
    let Some(reply_to) = reply.cloned() else {
        tracing::warn!(
            subject = %Excerpt(subject),
            "a command without a reply subject cannot be answered; send it as a NATS request"
        );
        return None;
    };
    Some((
        Command::decode(&context.subjects, subject, payload, &context.limits),
        reply_to,
    ))
}

/// Answer a bad command FAILURE naming the problem (contract §5.2).
pub async fn reject(context: &Context, subject: &str, bad: &BadCommand, reply_to: Subject) {
    if matches!(bad.error, pb_protocol::DecodeError::OverLimit(_)) {
        crate::metrics::metrics().refused("limit");
    }
    // Excerpts only: a log line never carries a payload, nor a field in full.
    tracing::warn!(
        subject = %Excerpt(subject),
        name = %Excerpt(&bad.name),
        request_id = %Excerpt(&bad.request_id),
        error = %bad.error,
        "bad command answered FAILURE"
    );
    publish(
        &context.client,
        reply_to.to_string(),
        bad.response().encode().into(),
    )
    .await;
}

/// Answer a decoded command: consult the reply cache (requests; not when the caller knows
/// the `requestId` is `new`), run `handle` under the deadline, record the answer, publish
/// the response, then the events, then run the follow-up work. Everything happens before
/// this returns, so a caller holding a lock keeps the order of responses and events of
/// everything done under it.
pub async fn respond<F, Fut>(
    context: &Context,
    command: Command,
    reply_to: Subject,
    headers: Option<&async_nats::HeaderMap>,
    new: bool,
    handle: F,
) where
    F: FnOnce(Command) -> Fut,
    Fut: Future<Output = Reply>,
{
    // Attributes: the message name, target and requestId (never a body: no password).
    let span = tracing::info_span!(
        "command",
        pb.message = command.name(),
        pb.target = %command.target,
        pb.request_id = %command.request_id,
    );
    let started = std::time::Instant::now();
    // One deadline for the whole answer, a wait for a first attempt included.
    let until = tokio::time::Instant::now() + context.deadline;
    crate::trace::within(span, headers, async move {
        let slot = if command.message_type() != MessageType::Request {
            None
        } else if new {
            Some(ReplyCache::known_new(&command.target, &command.request_id))
        } else {
            match context
                .replies
                .claim(
                    &command.target,
                    &command.request_id,
                    until,
                    context.deadline,
                )
                .await
            {
                Ok(Claim::Fresh(slot)) => Some(slot),
                Ok(Claim::Answered(answer)) => {
                    tracing::info!("repeated requestId answered again, not acted on");
                    publish(&context.client, reply_to.to_string(), answer).await;
                    return;
                }
                Ok(Claim::Running) => {
                    let why = format!(
                        "the first attempt with requestId `{}` is still running; {RETRY_SAME}",
                        command.request_id
                    );
                    refuse(context, &command, reply_to, why).await;
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the reply cache took no claim: refused");
                    refuse(context, &command, reply_to, e.to_string()).await;
                    return;
                }
            }
        };
        let name = command.name();
        let handling = crate::request_key::scope(
            command.target.as_str(),
            &command.request_id,
            handle(command.clone()),
        );
        tokio::pin!(handling);
        let reply = tokio::select! {
            reply = &mut handling => reply,
            () = tokio::time::sleep_until(until) => {
                let late = Reply::retry_same(format!(
                    "{name} was not answered within the deadline of {} ms",
                    context.deadline.as_millis()
                ));
                return late_answer(context, &command, reply_to, late, handling, slot).await;
            }
        };
        match &reply.outcome {
            Outcome::Success(_) => tracing::debug!("SUCCESS"),
            Outcome::Failure(why) => tracing::debug!(error = %why, "FAILURE"),
        }
        let success = reply.outcome.is_success();
        let Reply {
            outcome,
            events,
            follow_up,
            again,
            settling,
        } = reply;
        let response: Bytes = command.respond(outcome).encode().into();
        let recording = match slot {
            Some(slot) if again => {
                context.replies.release(slot).await;
                None
            }
            Some(slot) => Some(context.replies.record(slot, response.clone()).await),
            None => None,
        };
        publish(&context.client, reply_to.to_string(), response).await;
        crate::metrics::metrics().command(name, success, started.elapsed());
        let events = Settling::settled(settling, events).await;
        if let Some(recording) = recording {
            recording.confirmed(&context.replies).await;
        }
        announce(context, events, follow_up).await;
    })
    .await
}

/// After the response: publish a reply's events, then run its follow-up work.
async fn announce(context: &Context, events: Vec<Event>, follow_up: Option<FollowUp>) {
    for event in events {
        publish_event(&context.client, &context.subjects, &event).await;
    }
    if let Some(work) = follow_up {
        work.await;
    }
}

/// The deadline passed before `handling` answered: answer `late` (no final answer) now,
/// then let the handler run to its end (a deadline more at most), so that what it changed
/// is announced rather than saved unannounced; then give the claim up, so that the same
/// requestId sent again is acted on again (its CTI changes answered as the first time).
async fn late_answer(
    context: &Context,
    command: &Command,
    reply_to: Subject,
    late: Reply,
    handling: impl Future<Output = Reply>,
    slot: Option<Slot>,
) {
    tracing::debug!("FAILURE: not answered within the deadline");
    let response = command.respond(late.outcome).encode().into();
    publish(&context.client, reply_to.to_string(), response).await;
    crate::metrics::metrics().command(command.name(), false, context.deadline);
    match tokio::time::timeout(context.deadline, handling).await {
        Ok(finished) => {
            let events = Settling::settled(finished.settling, finished.events).await;
            announce(context, events, finished.follow_up).await;
        }
        Err(_) => tracing::error!("the handler did not finish within a second deadline: abandoned"),
    }
    if let Some(slot) = slot {
        context.replies.release(slot).await;
    }
}

/// Answer a command FAILURE without running it.
pub async fn refuse(context: &Context, command: &Command, reply_to: Subject, why: String) {
    let response = command.respond(Outcome::failure(why));
    publish(
        &context.client,
        reply_to.to_string(),
        response.encode().into(),
    )
    .await;
}

/// Publish an event on its subject.
pub async fn publish_event(client: &Client, subjects: &Subjects, event: &Event) {
    tracing::debug!(name = event.name(), target = %event.target, "event");
    crate::metrics::metrics().event(event.name());
    let subject = event.subject(subjects);
    let payload: Bytes = event.encode().into();
    if let Err(e) = client
        .publish_with_headers(subject.clone(), crate::trace::headers(), payload)
        .await
    {
        tracing::error!(%subject, error = %e, "publish failed");
    }
}

/// Publish, logging (not failing on) an error: the caller has no one else to tell.
pub async fn publish(client: &Client, subject: String, payload: Bytes) {
    if let Err(e) = client.publish(subject.clone(), payload).await {
        tracing::error!(%subject, error = %e, "publish failed");
    }
}
