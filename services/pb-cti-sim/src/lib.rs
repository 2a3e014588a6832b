//! The simulated CTI: a real, stateful lab CTI platform behind the CTI adapter contract
//! ([`pb_cti`]), so the whole system runs on one machine with nothing else.
//!
//! * [`roster`]: the agents (generated from `SIM_AGENTS`, or a roster file);
//! * [`lab`]: the platform's state machine (pure);
//! * [`admin`]: fault injection and changes made at the CTI, on `P.sim.<op>`;
//! * [`run`]: serves `P.cti.req.>` and `P.sim.>` and publishes link and agent events.

pub mod admin;
pub mod lab;
pub mod roster;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, Message, Subject};
use futures::StreamExt;
use pb_cti::{CtiCall, CtiError, CtiErrorCode, CtiReply, Done};
use pb_protocol::Subjects;
use pb_runtime::Shutdown;
use pb_runtime::config::{ConfigError, number};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::admin::AdminOp;
use crate::lab::{Lab, Outgoing};

/// The simulator's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub subjects: Subjects,
    /// The operations port and replica name, from the shared configuration.
    pub http_addr: String,
    pub instance: String,
    /// `SIM_AGENTS`, default 100: how many agents to generate.
    pub agents: usize,
    /// `SIM_ROSTER`: a roster file that replaces the generated agents.
    pub roster: Option<PathBuf>,
    /// `SIM_DELAY_MS`, default 0: how long every CTI call takes.
    pub delay: Duration,
}

impl SimConfig {
    /// Read `SIM_*` through `lookup`; the rest comes from the shared configuration.
    pub fn from_lookup(
        common: &pb_runtime::Config,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            subjects: common.subjects.clone(),
            http_addr: common.http_addr.clone(),
            instance: common.instance.clone(),
            agents: number(&lookup, "SIM_AGENTS", 100)? as usize,
            roster: lookup("SIM_ROSTER").map(PathBuf::from),
            delay: Duration::from_millis(number(&lookup, "SIM_DELAY_MS", 0)?),
        })
    }
}

/// The simulator could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Roster(#[from] roster::RosterError),
    #[error("NATS failed: {0}")]
    Nats(String),
    #[error(transparent)]
    Ops(#[from] pb_runtime::ops::OpsError),
}

struct Sim {
    client: Client,
    subjects: Subjects,
    lab: Mutex<Lab>,
    delay_ms: AtomicU64,
}

/// Serve until `shutdown`.
pub async fn run(
    client: Client,
    config: SimConfig,
    mut shutdown: Shutdown,
) -> Result<(), SimError> {
    let roster = match &config.roster {
        Some(path) => roster::load(path)?,
        None => roster::generate(config.agents),
    };
    let nats = |e: &dyn std::fmt::Display| SimError::Nats(e.to_string());
    let mut calls = client
        .queue_subscribe(
            pb_cti::all_calls(&config.subjects),
            pb_cti::QUEUE_GROUP.into(),
        )
        .await
        .map_err(|e| nats(&e))?;
    let mut admin = client
        .subscribe(admin::subject(&config.subjects, ">"))
        .await
        .map_err(|e| nats(&e))?;
    let sim = Arc::new(Sim {
        client: client.clone(),
        subjects: config.subjects.clone(),
        lab: Mutex::new(Lab::new(roster)),
        delay_ms: AtomicU64::new(config.delay.as_millis() as u64),
    });
    // Tell the services the link is up (they may have started first).
    let link = sim.lab.lock().await.link();
    sim.publish(pb_cti::link_events(&sim.subjects), &link).await;
    client.flush().await.map_err(|e| nats(&e))?;
    let ops =
        pb_runtime::ops::start(&client, &config.http_addr, "pb-cti-sim", &config.instance).await?;
    tracing::info!(
        agents = sim.lab.lock().await.agent_count(),
        "simulated CTI: service ready"
    );
    loop {
        tokio::select! {
            Some(message) = calls.next() => {
                let op = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
                let span = tracing::info_span!("cti", op = %op);
                pb_runtime::trace::follow(&span, message.headers.as_ref());
                tokio::spawn(sim.clone().call(message).instrument(span));
            }
            Some(message) = admin.next() => sim.admin(message).await,
            _ = shutdown.requested() => break,
        }
    }
    drop(ops);
    match tokio::time::timeout(pb_runtime::serve::NATS_STEP, client.flush()).await {
        Ok(flushed) => flushed.map_err(|e| nats(&e)),
        Err(_) => Ok(()), // NATS is gone: nothing left to deliver to
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CtiError> {
    serde_json::from_slice(payload)
        .map_err(|e| CtiError::new(CtiErrorCode::BadRequest, format!("malformed call: {e}")))
}

impl Sim {
    async fn publish<T: Serialize>(&self, subject: String, value: &T) {
        let payload = serde_json::to_vec(value).unwrap_or_default();
        if let Err(e) = self.client.publish(subject.clone(), payload.into()).await {
            tracing::error!(%subject, error = %e, "publish failed");
        }
    }

    /// Answer, then publish the agent events the operation caused.
    async fn reply_then_events(&self, reply: Subject, body: Vec<u8>, events: Vec<Outgoing>) {
        if let Err(e) = self.client.publish(reply, body.into()).await {
            tracing::error!(error = %e, "reply failed");
        }
        for event in events {
            self.publish(pb_cti::agent_event_subject(&self.subjects, &event), &event)
                .await;
        }
    }

    /// One CTI call: wait the configured delay, act, reply, then publish its events, all
    /// under the lab's lock so that events keep the order of the changes.
    async fn call(self: Arc<Self>, message: Message) {
        let Some(reply) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "CTI call without a reply subject ignored");
            return;
        };
        let delay = self.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let op = message
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let payload = &message.payload;
        let mut lab = self.lab.lock().await;
        let (body, events) = match op.as_str() {
            pb_cti::GetCapabilities::OP => act(payload, |_: pb_cti::GetCapabilities| {
                lab.capabilities().map(|c| (c, vec![]))
            }),
            pb_cti::GetLinkStatus::OP => {
                act(payload, |_: pb_cti::GetLinkStatus| Ok((lab.link(), vec![])))
            }
            pb_cti::GetAgentInfo::OP => act(payload, |c: pb_cti::GetAgentInfo| {
                lab.agent_info(
                    &c.agent_id,
                    &c.requester_login,
                    c.requester_password.expose(),
                )
                .map(|i| (i, vec![]))
            }),
            pb_cti::ValidateCredentials::OP => act(payload, |c: pb_cti::ValidateCredentials| {
                lab.validate(&c.agent_id, &c.login, c.password.expose())
                    .map(|d| (d, vec![]))
            }),
            pb_cti::GetSnapshot::OP => act(payload, |c: pb_cti::GetSnapshot| {
                lab.snapshot(&c.agent_id).map(|s| (s, vec![]))
            }),
            pb_cti::Login::OP => act(payload, |c: pb_cti::Login| {
                lab.login(&c.agent_id, c.password.expose(), c.place.as_deref())
            }),
            pb_cti::Activate::OP => act(payload, |c: pb_cti::Activate| {
                lab.activate(&c.agent_id, &c.endpoint)
            }),
            pb_cti::Deactivate::OP => act(payload, |c: pb_cti::Deactivate| {
                lab.deactivate(&c.agent_id, &c.endpoint)
            }),
            pb_cti::Logout::OP => act(payload, |c: pb_cti::Logout| {
                lab.logout(&c.agent_id, c.reason_code)
            }),
            pb_cti::SetAgentState::OP => act(payload, |c: pb_cti::SetAgentState| {
                lab.set_state(&c.agent_id, &c.endpoint, c.state, c.reason_code)
            }),
            other => unsupported(format!("the simulated CTI has no operation `{other}`")),
        };
        tracing::debug!(op, "CTI call answered");
        self.reply_then_events(reply, body, events).await;
        drop(lab);
    }

    async fn admin(&self, message: Message) {
        let Some(reply) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "admin message without a reply subject ignored");
            return;
        };
        let op = message
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let payload = &message.payload;
        let mut lab = self.lab.lock().await;
        let mut link_changed = None;
        let (body, events) = match op.as_str() {
            admin::SetLink::OP => act(payload, |c: admin::SetLink| {
                if lab.set_link(c.up, c.reason) {
                    link_changed = Some(lab.link());
                }
                Ok((lab.link(), vec![]))
            }),
            admin::SetDelay::OP => act(payload, |c: admin::SetDelay| {
                self.delay_ms.store(c.ms, Ordering::Relaxed);
                Ok((Done {}, vec![]))
            }),
            admin::RejectAgent::OP => act(payload, |c: admin::RejectAgent| {
                lab.set_rejected(&c.agent_id, c.rejected)
                    .map(|()| (Done {}, vec![]))
            }),
            admin::ForceState::OP => act(payload, |c: admin::ForceState| {
                lab.set_state(&c.agent_id, &c.endpoint, c.state, c.reason_code)
                    .map(|(_, e)| (Done {}, e))
            }),
            admin::ForceLogout::OP => act(payload, |c: admin::ForceLogout| {
                lab.logout(&c.agent_id, c.reason_code)
                    .map(|(_, e)| (Done {}, e))
            }),
            admin::AddChannel::OP => act(payload, |c: admin::AddChannel| {
                lab.add_channel(&c.place, &c.endpoint, c.media)
            }),
            admin::RemoveChannel::OP => act(payload, |c: admin::RemoveChannel| {
                lab.remove_channel(&c.place, &c.endpoint)
            }),
            admin::GetStatus::OP => act(payload, |_: admin::GetStatus| {
                Ok((
                    admin::SimStatus {
                        link: lab.link(),
                        delay_ms: self.delay_ms.load(Ordering::Relaxed),
                        agents: lab.agent_count(),
                        logged_in: lab.logged_in_count(),
                    },
                    vec![],
                ))
            }),
            other => unsupported(format!("the simulator has no admin operation `{other}`")),
        };
        tracing::info!(op, "admin operation");
        self.reply_then_events(reply, body, events).await;
        if let Some(link) = link_changed {
            tracing::info!(up = link.up, "CTI link changed");
            self.publish(pb_cti::link_events(&self.subjects), &link)
                .await;
        }
    }
}

/// Decode a call or an admin operation, act on it, encode the reply.
fn act<T: DeserializeOwned, R: Serialize>(
    payload: &[u8],
    act: impl FnOnce(T) -> lab::Outcome<R>,
) -> (Vec<u8>, Vec<Outgoing>) {
    encode(decode::<T>(payload).and_then(act))
}

/// The reply to an operation nobody serves.
fn unsupported(message: String) -> (Vec<u8>, Vec<Outgoing>) {
    encode::<Done>(Err(CtiError::new(CtiErrorCode::Unsupported, message)))
}

fn encode<T: Serialize>(result: lab::Outcome<T>) -> (Vec<u8>, Vec<Outgoing>) {
    let (reply, events) = match result {
        Ok((value, events)) => (CtiReply::Ok(value), events),
        Err(e) => (CtiReply::Error(e), Vec::new()),
    };
    (serde_json::to_vec(&reply).unwrap_or_default(), events)
}
