//! A unit's actor: it subscribes the unit's destinations and takes one message at a time
//! (commands, internal requests, CTI events, re-syncs) until the unit has no destination
//! left or the replica stops.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Message;
use futures::{FutureExt, StreamExt};
use pb_protocol::internal::{InternalReply, PAUSE, RESUME};
use pb_protocol::{Event, Kind, MessageType, Target};
use tokio_stream::StreamMap;

use super::{
    Addressed, BACKLOG, Inbox, Job, Owner, PRUNE_AT_LEAST, Shared, Unit, Work, actor_op, drained,
    mailbox,
};
use crate::reply_cache::RETENTION;
use crate::serve::{publish, publish_event, read, refuse, refuse_busy, reject, respond};
use crate::state::StateError;

impl<H: Owner> Shared<H> {
    /// A unit's actor: subscribe its destinations, then take one message at a time until it
    /// has no destinations left or is stopped. Between messages it holds only its unit: the
    /// work on each is a boxed future, so an idle actor does not keep the largest handler's
    /// state (kilobytes) for every agent.
    pub(super) async fn run_actor(
        self: Arc<Self>,
        unit: String,
        mut inbox: mailbox::Receiver,
        resync: bool,
    ) {
        let mut ctx = Unit {
            name: unit.clone(),
            limits: self.context.limits,
            client: self.context.client.clone(),
            subjects: self.context.subjects.clone(),
            listening: self.listening,
            endpoints: self.endpoints.clone(),
            served: Default::default(),
            streams: StreamMap::new(),
            orphans: Vec::new(),
            backlog: VecDeque::new(),
            seen: HashMap::new(),
            prune_at: PRUNE_AT_LEAST,
            sole_witness_from: Instant::now() + RETENTION,
        };
        Box::pin(self.start(&mut ctx)).await;
        if resync {
            Box::pin(self.resync(&mut ctx)).await;
        }
        // Stop when the unit has no destination left and nothing waits in the inbox.
        while ctx.destinations() > 0 || !inbox.is_empty() || !ctx.backlog.is_empty() {
            Box::pin(self.take_ready(&mut ctx)).await;
            if let Some((subscription, message)) = ctx.backlog.pop_front() {
                if ctx.backlog.is_empty() {
                    // Caught up: an idle unit keeps no room for a backlog.
                    ctx.backlog = VecDeque::new();
                }
                Box::pin(self.work(&mut ctx, Work::Command(subscription, message))).await;
                continue;
            }
            let work = tokio::select! {
                Some((subscription, message)) = ctx.streams.next() => Work::Command(subscription, message),
                item = inbox.recv() => match item {
                    Some(Inbox::Job(Job::Internal { op, reply, .. })) if op == PAUSE => {
                        Box::pin(self.internal_reply(reply.as_ref(), InternalReply::Ok)).await;
                        let (held, stop) = Box::pin(self.paused(&mut inbox)).await;
                        for job in held {
                            Box::pin(self.work(&mut ctx, Work::Job(job))).await;
                        }
                        if let Some(done) = stop {
                            Box::pin(self.finish(&mut ctx)).await;
                            let _ = done.send(());
                            return;
                        }
                        continue;
                    }
                    Some(Inbox::Job(job)) => Work::Job(job),
                    Some(Inbox::Stop(done)) => {
                        Box::pin(self.finish(&mut ctx)).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            };
            Box::pin(self.work(&mut ctx, work)).await;
        }
        Box::pin(self.release(&unit, inbox)).await;
    }

    /// Paused ([`PAUSE`]): hold every job, and take no command, until [`RESUME`] (answered)
    /// or the deadline. The jobs held, in order, and a stop that came meanwhile.
    pub(super) async fn paused(
        &self,
        inbox: &mut mailbox::Receiver,
    ) -> (Vec<Job>, Option<tokio::sync::oneshot::Sender<()>>) {
        let until = tokio::time::Instant::now() + self.context.deadline;
        let mut held = Vec::new();
        loop {
            let item = tokio::select! {
                item = inbox.recv() => item,
                () = tokio::time::sleep_until(until) => {
                    tracing::warn!("paused unit not resumed within the deadline: resuming");
                    return (held, None);
                }
            };
            match item {
                Some(Inbox::Job(Job::Internal {
                    op,
                    reply,
                    payload,
                    headers,
                })) if op == RESUME => {
                    self.internal_reply(reply.as_ref(), InternalReply::Ok).await;
                    // What the caller's CTI reply said comes first: it happened before
                    // anything held could.
                    let told = serde_json::from_slice::<pb_protocol::internal::Resume>(&payload)
                        .map(|r| r.cti_events)
                        .unwrap_or_default();
                    let mut jobs: Vec<Job> = told
                        .into_iter()
                        .filter_map(|event| match serde_json::from_value(event) {
                            Ok(event) => Some(Job::CtiEvent {
                                event: Box::new(event),
                                headers: headers.clone(),
                            }),
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable CTI event ignored");
                                None
                            }
                        })
                        .collect();
                    jobs.append(&mut held);
                    return (jobs, None);
                }
                Some(Inbox::Job(job)) => held.push(job),
                Some(Inbox::Stop(done)) => return (held, Some(done)),
                None => return (held, None),
            }
        }
    }

    /// Subscribe the destinations the unit has. Until the store gives them, tried again
    /// (backing off): an actor that started with none would end at once, and its agent
    /// would be served by nobody.
    pub(super) async fn start(&self, ctx: &mut Unit) {
        let unit = ctx.name.clone();
        let mut wait = Duration::from_millis(100);
        let destinations = loop {
            match self.handler.destinations(&unit).await {
                Ok(destinations) => break destinations,
                Err(e @ (StateError::Unavailable(_) | StateError::Conflict(_))) => {
                    tracing::error!(%unit, error = %e, "cannot read the unit's destinations yet: trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(%unit, error = %e, "cannot read the unit's destinations: serving none");
                    break Vec::new();
                }
            }
        };
        if destinations.is_empty() {
            // A new unit: nobody else has answered for it.
            ctx.sole_witness_from = Instant::now();
        }
        for (kind, target) in destinations {
            if let Err(e) = ctx.listen(kind, &target).await {
                tracing::error!(%unit, error = %e, "cannot answer for a destination");
            }
        }
    }

    /// One message for the unit, then the commands its destinations left unanswered.
    pub(super) async fn work(&self, ctx: &mut Unit, work: Work) {
        match work {
            Work::Command(subscription, message) => {
                self.command(ctx, &subscription, message, false).await;
            }
            Work::Job(Job::Resync(done)) => {
                self.resync(ctx).await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Work::Job(Job::CtiEvent { event, headers }) => {
                let span = tracing::info_span!("cti-event", unit = %ctx.name);
                crate::trace::within(span, headers.as_ref(), async {
                    let events = self.handler.cti_event(ctx, *event).await;
                    self.publish_events(events).await;
                })
                .await;
            }
            // Nothing to pause: the actor has finished what it was doing.
            Work::Job(Job::Internal { op, reply, .. }) if actor_op(&op) => {
                self.internal_reply(reply.as_ref(), InternalReply::Ok).await;
            }
            Work::Job(Job::Internal {
                op,
                payload,
                reply,
                headers,
            }) => {
                let span = tracing::info_span!("internal", op = %op, unit = %ctx.name);
                crate::trace::within(span, headers.as_ref(), async {
                    let (answer, events) = self.handler.internal(ctx, &op, payload).await;
                    self.internal_reply(reply.as_ref(), answer).await;
                    self.publish_events(events).await;
                })
                .await;
            }
        }
        for (subscription, message) in std::mem::take(&mut ctx.orphans) {
            self.command(ctx, &subscription, message, false).await;
        }
    }

    /// No destinations left: let the unit go.
    pub(super) async fn release(&self, unit: &str, mut inbox: mailbox::Receiver) {
        self.actors.lock().expect("actors lock").remove(unit);
        inbox.close();
        while let Some(item) = inbox.try_recv() {
            if let Inbox::Job(Job::Internal { reply, .. }) = item {
                let why = "the unit was just released".to_owned();
                self.internal_reply(reply.as_ref(), InternalReply::Again(why))
                    .await;
            }
        }
        let key = self.owner_key(unit);
        if let Ok(Some(entry)) = self.owners.entry(&key).await
            && entry.value == self.me.as_bytes()
        {
            let _ = self
                .owners
                .delete_expect_revision(&key, Some(entry.revision))
                .await;
        }
    }

    /// The replica is stopping: stop receiving for the unit, then answer everything it had
    /// already received, so no command that reached this replica is lost.
    pub(super) async fn finish(&self, ctx: &mut Unit) {
        let mut pending: Vec<_> = std::mem::take(&mut ctx.backlog).into();
        let subjects: Vec<String> = ctx.streams.keys().cloned().collect();
        for subject in subjects {
            if let Some(subscriber) = ctx.streams.remove(&subject) {
                let ended = drained(subscriber).await;
                pending.extend(ended.into_iter().map(|m| (subject.clone(), m)));
            }
        }
        for (subscription, message) in pending {
            self.command(ctx, &subscription, message, false).await;
        }
    }

    /// Whom a command to `target` that `subscription` brought is for.
    pub(super) async fn addressed(
        &self,
        ctx: &Unit,
        subscription: &str,
        kind: Kind,
        target: &Target,
    ) -> Addressed {
        let exact = ctx.subject_for(kind, target);
        if exact == subscription {
            return if ctx.served.contains(&(kind, target.clone())) {
                Addressed::Here
            } else {
                Addressed::Unknown
            };
        }
        // Brought by a wider subscription than the one its session has (a session whose
        // target extends one of this unit's): this unit's own, or another agent's.
        if ctx.streams.contains_key(&exact) {
            return Addressed::Elsewhere;
        }
        match target.session_of(kind) {
            Some(session) => match self.targets.unit(&session).await {
                Ok(Some(owner)) if owner != ctx.name => Addressed::Elsewhere,
                Ok(_) => Addressed::Unknown,
                Err(e) => {
                    tracing::warn!(%session, error = %e, "cannot tell whose session this is");
                    Addressed::Elsewhere
                }
            },
            None => Addressed::Unknown,
        }
    }

    /// Take the commands that have arrived off the unit's subscriptions, into its backlog
    /// of at most [`BACKLOG`]; those past it are answered busy at once (a few rounds of the
    /// backlog at a time, so that the backlog still moves under a flood). So a flood of
    /// commands to one unit waits in this process's memory only as far as its backlog.
    pub(super) async fn take_ready(&self, ctx: &mut Unit) {
        let mut refused = 0;
        while refused < 4 * BACKLOG {
            let Some(Some((subscription, message))) = ctx.streams.next().now_or_never() else {
                return;
            };
            if ctx.backlog.len() < BACKLOG {
                ctx.backlog.push_back((subscription, message));
            } else {
                self.command(ctx, &subscription, message, true).await;
                refused += 1;
            }
        }
    }

    /// A command that `subscription` brought: answered if it is for one of the unit's
    /// destinations (with `busy`, answered [`crate::serve::BUSY`] without being acted on), FAILURE if
    /// for a destination nobody has, left alone if another unit's.
    pub(super) async fn command(
        &self,
        ctx: &mut Unit,
        subscription: &str,
        message: Message,
        busy: bool,
    ) {
        let Some((read, reply_to)) = read(
            &self.context,
            &message.subject,
            message.reply.as_ref(),
            &message.payload,
        ) else {
            return;
        };
        let addressed = match &read {
            Ok(command) => {
                self.addressed(ctx, subscription, command.kind(), &command.target)
                    .await
            }
            // Bad input is answered FAILURE, naming the problem, unless it is another unit's.
            Err(_) => match self.context.subjects.parse_command(&message.subject) {
                Ok((kind, target)) => self.addressed(ctx, subscription, kind, &target).await,
                Err(_) => Addressed::Here,
            },
        };
        let command = match (addressed, read) {
            (Addressed::Elsewhere, _) => return,
            (_, Err(bad)) => {
                return reject(&self.context, &message.subject, &bad, reply_to).await;
            }
            (_, Ok(command)) => command,
        };
        if addressed == Addressed::Unknown {
            // A retry of a request answered before the destination went (its dispose, say)
            // gets that answer again.
            if command.message_type() == MessageType::Request
                && let Ok(Some(answer)) = self
                    .context
                    .replies
                    .answered(&command.target, &command.request_id)
                    .await
            {
                return publish(&self.context.client, reply_to.to_string(), answer).await;
            }
            let why = format!(
                "unknown {} destination `{}`: it does not exist, or has been disposed",
                command.kind().describe(),
                command.target
            );
            return refuse(&self.context, &command, reply_to, why).await;
        }
        if busy {
            return refuse_busy(&self.context, &command, reply_to).await;
        }
        let new = ctx.first_sight(&command);
        respond(
            &self.context,
            command,
            reply_to,
            message.headers.as_ref(),
            new,
            |command| self.handler.command(ctx, command),
        )
        .await;
    }

    pub(super) async fn publish_events(&self, events: Vec<Event>) {
        for event in &events {
            publish_event(&self.context.client, &self.context.subjects, event).await;
        }
    }
}
