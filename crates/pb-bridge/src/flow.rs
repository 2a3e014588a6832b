//! The bridge's side of an agent's life, as one call each: log in through the whole chain
//! (session, channel group, every channel initialised, activated and ready), change state,
//! log out and dispose. Used by the CLI's commands and load runs, and by the tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pb_protocol::channel::ChannelType;
use pb_protocol::channel_group::ChannelGroupInit;
use pb_protocol::session::{LogoutAnswer, SessionInit};
use pb_protocol::{Body, CommandMessage, Kind, Outcome, Response, Subjects, Target};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::link::{Events, Link, LinkErrorKind};

/// Why a step did not go through.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{name} on {target} failed: {message}")]
    Failure {
        name: String,
        target: String,
        message: String,
    },
    #[error("{name} on {target}: no response within {timeout:?}")]
    Timeout {
        name: String,
        target: String,
        timeout: Duration,
    },
    #[error("{name} on {target}: {message}")]
    Transport {
        name: String,
        target: String,
        kind: LinkErrorKind,
        message: String,
    },
    #[error("{name} on {target}: {message}")]
    Invalid {
        name: String,
        target: String,
        message: String,
    },
    #[error("cannot watch events on {subject}: {message}")]
    Watch { subject: String, message: String },
    #[error(
        "the logout of {session} waits at the CTI for the agent's interactions to end: finish \
         them (release the calls) and session.loggedout follows; the destinations are left as they are"
    )]
    LogoutPending { session: String },
}

/// Response times by message name.
pub type Latencies = HashMap<&'static str, Vec<Duration>>;

/// Sends commands as the bridge does; cheap to clone.
#[derive(Debug, Clone)]
pub struct Driver {
    link: Link,
    subjects: Subjects,
    control: Target,
    timeout: Duration,
    latencies: Option<Arc<Mutex<Latencies>>>,
    retry: Retry,
}

/// What a [`Driver`] sends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Never,
    /// Commands nobody received (no responders), with the same requestId.
    Unrouted(Duration),
    /// Also unanswered commands (same requestId) and FAILUREs (a new requestId, but for
    /// those that ask for the same one again: [`pb_runtime::serve::RETRY_SAME`]).
    Everything(Duration),
}

/// A channel as logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChannel {
    pub target: String,
    pub endpoint: String,
    pub media: ChannelType,
}

/// An agent logged in through the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub agent_id: String,
    pub session: String,
    pub group: String,
    pub channels: Vec<LoggedChannel>,
}

impl Driver {
    /// A driver over `link` (a NATS client, or a [`crate::link::TcpLink`]).
    pub fn new(
        link: impl Into<Link>,
        subjects: Subjects,
        control: Target,
        timeout: Duration,
    ) -> Self {
        Self {
            link: link.into(),
            subjects,
            control,
            timeout,
            latencies: None,
            retry: Retry::Never,
        }
    }

    /// Behave as a bridge that retries during a failover, for up to `budget` per step: an
    /// unanswered command (timeout, no responders) is sent again with the same requestId,
    /// and so is a FAILURE that asks for it ([`pb_runtime::serve::RETRY_SAME`]); another
    /// FAILURE is retried with a new one.
    pub fn retrying(mut self, budget: Duration) -> Self {
        self.retry = Retry::Everything(budget);
        self
    }

    /// Send again, with the same requestId, only what nobody received (no responders, as
    /// while a destination moves between replicas), for up to `budget` per step; a command
    /// that was received but not answered is an error.
    pub fn retrying_unrouted(mut self, budget: Duration) -> Self {
        self.retry = Retry::Unrouted(budget);
        self
    }

    /// Record every response time, by message name.
    pub fn recording(mut self) -> Self {
        self.latencies = Some(Arc::default());
        self
    }

    /// The response times recorded so far.
    pub fn latencies(&self) -> Latencies {
        self.latencies
            .as_ref()
            .map(|l| l.lock().expect("latencies lock").clone())
            .unwrap_or_default()
    }

    /// The subjects of the deployment it talks to.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// How long it waits for each response.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The transport it sends on.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Start receiving the events published on `subject` (a pattern such as `P.evt.>`);
    /// none that comes after this returns is missed.
    pub async fn events(&self, subject: String) -> Result<Events, FlowError> {
        self.link
            .events(&subject)
            .await
            .map_err(|e| FlowError::Watch {
                subject,
                message: e.to_string(),
            })
    }

    /// Send a typed command and require SUCCESS; its body.
    pub async fn act(
        &self,
        target: &str,
        message: impl Into<CommandMessage>,
    ) -> Result<Body, FlowError> {
        let message = message.into();
        self.ok(message.name(), target, Value::Object(message.to_body()))
            .await
    }

    /// Send `name` to `target` with `body` and a fresh requestId; the response as it came.
    pub async fn send(
        &self,
        name: &'static str,
        target: &str,
        body: Value,
    ) -> Result<Response, FlowError> {
        self.send_with_id(name, target, body, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Send with a given requestId (to retry).
    pub async fn send_with_id(
        &self,
        name: &str,
        target: &str,
        body: Value,
        request_id: &str,
    ) -> Result<Response, FlowError> {
        let invalid = |message: String| FlowError::Invalid {
            name: name.to_owned(),
            target: target.to_owned(),
            message,
        };
        let transport = |kind: LinkErrorKind, message: String| FlowError::Transport {
            name: name.to_owned(),
            target: target.to_owned(),
            kind,
            message,
        };
        let kind =
            Kind::of_name(name).ok_or_else(|| invalid("names no destination kind".into()))?;
        let parsed = Target::new(target).map_err(|e| invalid(e.to_string()))?;
        let subject = self.subjects.command(kind, &parsed);
        let payload = pb_protocol::envelope::raw_command(name, target, request_id, body);
        // The bridge's span for this command; its context travels in the request's headers.
        let span = tracing::info_span!(
            "bridge",
            pb.message = name,
            pb.target = target,
            pb.request_id = request_id
        );
        let headers = span.in_scope(pb_runtime::trace::headers);
        let request = self
            .link
            .request(subject, request_id, payload.into(), headers, self.timeout);
        let started = Instant::now();
        let timeout = || FlowError::Timeout {
            name: name.to_owned(),
            target: target.to_owned(),
            timeout: self.timeout,
        };
        let reply = tokio::time::timeout(self.timeout, request.instrument(span))
            .await
            .map_err(|_| timeout())?
            .map_err(|e| match e.kind() {
                LinkErrorKind::NoResponders => transport(
                    e.kind(),
                    format!("no responders: {}", unknown_destination(kind)),
                ),
                LinkErrorKind::TimedOut => timeout(),
                other => transport(other, e.to_string()),
            })?;
        // Recorded by the protocol's own name (a name it does not know is not recorded).
        let known = pb_protocol::CommandMessage::names(kind)
            .iter()
            .find(|n| **n == name);
        if let (Some(latencies), Some(name)) = (&self.latencies, known) {
            latencies
                .lock()
                .expect("latencies lock")
                .entry(name)
                .or_default()
                .push(started.elapsed());
        }
        Response::decode(&reply).map_err(|e| invalid(format!("unreadable response: {e}")))
    }

    /// Send and require SUCCESS; its body. With [`Driver::retrying`] or
    /// [`Driver::retrying_unrouted`], retry as such a bridge does.
    pub async fn ok(
        &self,
        name: &'static str,
        target: &str,
        body: Value,
    ) -> Result<Body, FlowError> {
        let give_up = match self.retry {
            Retry::Never => None,
            Retry::Unrouted(budget) | Retry::Everything(budget) => Some(Instant::now() + budget),
        };
        let mut request_id = uuid::Uuid::new_v4().to_string();
        loop {
            let result = self
                .send_with_id(name, target, body.clone(), &request_id)
                .await;
            let (error, retry) = match result {
                Ok(Response {
                    outcome: Outcome::Success(body),
                    ..
                }) => return Ok(body),
                Ok(Response {
                    outcome: Outcome::Failure(message),
                    ..
                }) => {
                    // Refused without acting: sent again as is, else as a new request.
                    if !message.ends_with(pb_runtime::serve::RETRY_SAME) {
                        request_id = uuid::Uuid::new_v4().to_string();
                    }
                    let failure = FlowError::Failure {
                        name: name.to_owned(),
                        target: target.to_owned(),
                        message,
                    };
                    (
                        failure,
                        self.retry == Retry::Never || matches!(self.retry, Retry::Everything(_)),
                    )
                }
                Err(
                    e @ FlowError::Transport {
                        kind: LinkErrorKind::NoResponders,
                        ..
                    },
                ) => (e, true),
                Err(e) => (e, matches!(self.retry, Retry::Everything(_))),
            };
            match give_up {
                Some(deadline) if retry && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// An agent logged in earlier, checked after a fault: its phone answers its init from
    /// the stored state (ACTIVE) and takes a change (not ready, with `reason`).
    pub async fn still_served(&self, agent: &LoggedIn, reason: &str) -> Result<(), FlowError> {
        let phone = &agent.channels[0].target;
        let init = self.ok("channel.query.init", phone, json!({})).await?;
        if init.get("state") != Some(&json!("ACTIVE")) {
            return Err(FlowError::Invalid {
                name: "channel.query.init".to_owned(),
                target: phone.clone(),
                message: format!("state {:?} after the fault, not ACTIVE", init.get("state")),
            });
        }
        self.ok(
            "channel.request.notready",
            phone,
            json!({"reasonCode": reason}),
        )
        .await
        .map(|_| ())
    }

    /// Log `agent_id` in through the whole chain at session target `session`: session,
    /// its channel group, and every channel created, initialised, activated and made ready.
    pub async fn login(
        &self,
        agent_id: &str,
        password: &str,
        session: &str,
    ) -> Result<LoggedIn, FlowError> {
        let span = tracing::info_span!("login", agent_id, session);
        self.login_steps(agent_id, password, session)
            .instrument(span)
            .await
    }

    async fn login_steps(
        &self,
        agent_id: &str,
        password: &str,
        session: &str,
    ) -> Result<LoggedIn, FlowError> {
        self.create_session(agent_id, password, session, session)
            .await?;
        let init: SessionInit = read(
            "session.query.init",
            self.ok("session.query.init", session, json!({})).await?,
            session,
        )?;
        let group_name = init
            .channel_groups
            .first()
            .map(|g| g.name.clone())
            .unwrap_or_default();
        self.ok(
            "session.request.createchannelgroup",
            session,
            json!({"id": "g1", "name": group_name}),
        )
        .await?;
        let group = format!("{session}.g1");
        let init: ChannelGroupInit = read(
            "channelgroup.query.init",
            self.ok("channelgroup.query.init", &group, json!({}))
                .await?,
            &group,
        )?;
        let mut channels = Vec::new();
        for (i, channel) in init.channels.iter().enumerate() {
            let id = format!("c{}", i + 1);
            self.ok(
                "channelgroup.request.createchannel",
                &group,
                json!({"id": id, "name": channel.end_point, "type": channel.channel_type}),
            )
            .await?;
            let target = format!("{group}.{id}");
            self.ok("channel.query.init", &target, json!({})).await?;
            self.ok("channel.request.activate", &target, json!({}))
                .await?;
            self.ok("channel.request.ready", &target, json!({})).await?;
            channels.push(LoggedChannel {
                target,
                endpoint: channel.end_point.clone(),
                media: channel.channel_type,
            });
        }
        Ok(LoggedIn {
            agent_id: agent_id.to_owned(),
            session: session.to_owned(),
            group,
            channels,
        })
    }

    /// `cti.request.createsession` on the control: log `agent_id` in at the CTI as session
    /// `session_id` on destination `destination` (a kept destination is created again).
    pub async fn create_session(
        &self,
        agent_id: &str,
        password: &str,
        session_id: &str,
        destination: &str,
    ) -> Result<Body, FlowError> {
        let control = self.control.as_str().to_owned();
        self.ok(
            "cti.request.createsession",
            &control,
            json!({"agentId": agent_id, "agentPassword": password, "sessionId": session_id, "destination": destination}),
        )
        .await
    }

    /// Log agents `first..first+count` in (password `pw-<id>`, session `<prefix>-<id>`),
    /// `concurrency` at a time, counting each finished login in `done`.
    pub async fn login_range(
        &self,
        first: u64,
        count: usize,
        concurrency: usize,
        prefix: &str,
        done: &AtomicUsize,
    ) -> Vec<Result<LoggedIn, FlowError>> {
        futures::stream::iter(first..first + count as u64)
            .map(|id| async move {
                let id = id.to_string();
                let result = self
                    .login(&id, &format!("pw-{id}"), &format!("{prefix}-{id}"))
                    .await;
                done.fetch_add(1, Ordering::Relaxed);
                result
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }

    /// Log every agent of `logged` out ([`Driver::logout`]), `concurrency` at a time; the
    /// failures, by agent id.
    pub async fn logout_all(
        &self,
        logged: &[LoggedIn],
        concurrency: usize,
    ) -> Vec<(String, FlowError)> {
        futures::stream::iter(logged)
            .map(|l| async move { self.logout(l).await.err().map(|e| (l.agent_id.clone(), e)) })
            .buffer_unordered(concurrency.max(1))
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// `session.request.logout`: done, or an error when it waits for interactions to end
    /// (the destinations are then left for the bridge to use until it happens).
    async fn log_out(&self, session: &str) -> Result<(), FlowError> {
        let name = "session.request.logout";
        let answer = self.ok(name, session, json!({})).await?;
        let answer: LogoutAnswer = read(name, answer, session)?;
        if answer.pending {
            return Err(FlowError::LogoutPending {
                session: session.to_owned(),
            });
        }
        Ok(())
    }

    /// Log a session out, then dispose the destinations `login` creates under it
    /// (`<session>.g1`, `<session>.g1.c1` upward, as long as they are there: the first that
    /// has no responder, or is answered FAILURE, ends the channels). Returns them.
    pub(crate) async fn logout_session(&self, session: &str) -> Result<Vec<String>, FlowError> {
        self.log_out(session).await?;
        let group = format!("{session}.g1");
        let mut disposed = Vec::new();
        for i in 1.. {
            let channel = format!("{group}.c{i}");
            match self
                .send("channel.request.dispose", &channel, json!({}))
                .await
            {
                Ok(Response {
                    outcome: Outcome::Success(_),
                    ..
                }) => disposed.push(channel),
                // Not there: nobody answers it (NATS), or the gateway or its session's owner
                // says so.
                Ok(_)
                | Err(FlowError::Transport {
                    kind: LinkErrorKind::NoResponders,
                    ..
                }) => break,
                Err(e) => return Err(e),
            }
        }
        self.ok("channelgroup.request.dispose", &group, json!({}))
            .await?;
        self.ok("session.request.dispose", session, json!({}))
            .await?;
        disposed.push(group);
        disposed.push(session.to_owned());
        Ok(disposed)
    }

    /// Log out at the CTI, then dispose every channel, the group and the session.
    pub async fn logout(&self, logged: &LoggedIn) -> Result<(), FlowError> {
        self.log_out(&logged.session).await?;
        for channel in &logged.channels {
            self.ok("channel.request.dispose", &channel.target, json!({}))
                .await?;
        }
        self.ok("channelgroup.request.dispose", &logged.group, json!({}))
            .await?;
        self.ok("session.request.dispose", &logged.session, json!({}))
            .await?;
        Ok(())
    }
}

/// Why nobody answers a command to a destination of `kind`, and what to check.
pub(crate) fn unknown_destination(kind: Kind) -> String {
    format!(
        "no such {} destination (never created, or disposed), or its service is not running",
        kind.describe()
    )
}

/// Read the body of `name`'s answer from `target` as `T`.
pub(crate) fn read<T: serde::de::DeserializeOwned>(
    name: &str,
    body: Body,
    target: &str,
) -> Result<T, FlowError> {
    pb_protocol::from_body(body).map_err(|message| FlowError::Invalid {
        name: name.to_owned(),
        target: target.to_owned(),
        message: format!("unreadable answer: {message}"),
    })
}
