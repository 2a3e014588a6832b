//! The simulated CTI: a real, stateful lab CTI platform behind the CTI adapter contract
//! ([`pb_cti`]), so the whole system runs on one machine with nothing else.
//!
//! * [`roster`]: the agents (generated from `SIM_AGENTS`, or a roster file);
//! * [`lab`]: the platform's state machine (pure), with its interactions in [`calls`];
//! * [`admin`]: fault injection and changes made at the CTI, on `P.sim.<op>`;
//! * [`traffic`]: the generated customers' offers (pure);
//! * [`run`]: serves `P.cti.req.>` and `P.sim.>`, publishes link and agent events, fires
//!   the lab's timers and generates the traffic.

use pb_sim_admin as admin;
mod answered;
mod calls;
mod lab;
mod roster;
mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subject};
use futures::StreamExt;
use pb_cti::{CtiError, CtiErrorCode, CtiReply, Done};
use pb_protocol::{Call, Callee, Subjects};
use pb_runtime::Shutdown;
use pb_runtime::config::{ConfigError, number};
use pb_runtime::discovery::Endpoints;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, watch};

use crate::admin::Traffic;
use crate::lab::{Lab, Outgoing};
use crate::traffic::Pacer;

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
    /// `SIM_ANSWER_MS`, default 300: how long an external number takes to answer.
    pub answer: Duration,
    /// `SIM_CALLS_PER_S`, `SIM_CHATS_PER_S`, `SIM_EMAILS_PER_S`, default 0: the traffic
    /// generated at start.
    pub traffic: Traffic,
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
            answer: Duration::from_millis(number(&lookup, "SIM_ANSWER_MS", 300)?),
            traffic: Traffic {
                calls: rate(&lookup, "SIM_CALLS_PER_S")?,
                chats: rate(&lookup, "SIM_CHATS_PER_S")?,
                emails: rate(&lookup, "SIM_EMAILS_PER_S")?,
            },
        })
    }
}

/// Read a rate of offers per second (default 0).
fn rate(lookup: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<f64, ConfigError> {
    let Some(value) = lookup(var) else {
        return Ok(0.0);
    };
    let invalid = |reason: String| ConfigError::Invalid {
        var,
        value: value.clone(),
        reason,
    };
    let rate = value
        .trim()
        .parse::<f64>()
        .map_err(|_| invalid("expected a number".into()))?;
    traffic::check_rate(rate).map_err(invalid)
}

/// The simulator could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Roster(#[from] roster::RosterError),
    #[error("cannot subscribe to the simulator's subjects: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("NATS did not confirm what was sent: {0}")]
    Flush(#[source] async_nats::client::FlushError),
    #[error(transparent)]
    Ops(#[from] pb_runtime::ops::OpsError),
}

struct Sim {
    client: Client,
    subjects: Subjects,
    lab: Mutex<Lab>,
    delay_ms: AtomicU64,
    /// The answers to recent changes made for a bridge request (read and written with the
    /// lab locked, so that a repeat waits for the first).
    answered: std::sync::Mutex<answered::Answered>,
    /// The rates the generator offers at.
    traffic: watch::Sender<Traffic>,
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
    let endpoints = Endpoints::default();
    let mut calls = endpoints
        .subscribe(
            &client,
            "cti-calls",
            config.subjects.calls(Callee::Cti),
            Some(pb_cti::QUEUE_GROUP),
        )
        .await
        .map_err(SimError::Subscribe)?;
    let mut admin = endpoints
        .subscribe(
            &client,
            "sim-admin",
            config.subjects.calls(Callee::Simulator),
            None,
        )
        .await
        .map_err(SimError::Subscribe)?;
    let sim = Arc::new(Sim {
        client: client.clone(),
        subjects: config.subjects.clone(),
        // A new incarnation at each start, its revisions from the clock: above any that an
        // earlier run gave (microseconds since the epoch).
        lab: Mutex::new(
            Lab::new(roster, config.answer).incarnation(
                &uuid::Uuid::new_v4().simple().to_string(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or_default(),
            ),
        ),
        delay_ms: AtomicU64::new(config.delay.as_millis() as u64),
        answered: Default::default(),
        traffic: watch::Sender::new(config.traffic),
    });
    let generator = tokio::spawn(sim.clone().generate());
    // Tell the services the link is up (they may have started first).
    let link = sim.lab.lock().await.link();
    sim.publish(pb_cti::link_events(&sim.subjects), &link).await;
    client.flush().await.map_err(SimError::Flush)?;
    let ops = pb_runtime::ops::start(
        &client,
        &config.http_addr,
        "pb-cti-sim",
        &config.instance,
        &endpoints,
    )
    .await?;
    tracing::info!(
        agents = sim.lab.lock().await.agent_count(),
        "simulated CTI: service ready"
    );
    loop {
        tokio::select! {
            Some(message) = calls.next() => {
                let op = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
                let span = tracing::info_span!("cti", op = %op);
                let headers = message.headers.clone();
                let call = sim.clone().call(message);
                tokio::spawn(pb_runtime::trace::within(span, headers.as_ref(), call));
            }
            Some(message) = admin.next() => sim.admin(message).await,
            _ = shutdown.requested() => break,
        }
    }
    generator.abort();
    drop(ops);
    match tokio::time::timeout(pb_runtime::serve::NATS_STEP, client.flush()).await {
        Ok(flushed) => flushed.map_err(SimError::Flush),
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
        let headers = pb_runtime::trace::headers();
        if let Err(e) = self
            .client
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
        {
            tracing::error!(%subject, error = %e, "publish failed");
        }
    }

    /// Answer, then publish the agent events the operation caused.
    /// Reply, then publish `events` unless the lab says they are lost (its link is down
    /// with the switch running behind it).
    async fn reply_then_events(
        &self,
        lab: &Lab,
        reply: Subject,
        body: Vec<u8>,
        events: Vec<Outgoing>,
    ) {
        if let Err(e) = self.client.publish(reply, body.into()).await {
            tracing::error!(error = %e, "reply failed");
        }
        self.events(lab, events).await;
    }

    async fn events(&self, lab: &Lab, events: Vec<Outgoing>) {
        if lab.events_lost() && !events.is_empty() {
            tracing::info!(lost = events.len(), "the CTI link is down: events lost");
            return;
        }
        for event in events {
            self.publish(pb_cti::agent_event_subject(&self.subjects, &event), &event)
                .await;
        }
    }

    /// Start the timers the lab set: each sleeps its delay, then fires under the lab's lock
    /// and publishes what followed.
    fn schedule(self: &Arc<Self>, lab: &mut Lab) {
        for (after, timer) in lab.take_timers() {
            let sim = self.clone();
            tokio::spawn(pb_runtime::trace::carry(async move {
                tokio::time::sleep(after).await;
                let mut lab = sim.lab.lock().await;
                let events = lab.at_switch(|lab| lab.fire(timer));
                sim.schedule(&mut lab);
                sim.events(&lab, events).await;
            }));
        }
    }

    /// Offer generated traffic at the rates set, until the task is stopped.
    async fn generate(self: Arc<Self>) {
        let mut rates = self.traffic.subscribe();
        let start = Instant::now();
        let mut pacer = Pacer::new(*rates.borrow_and_update(), start.elapsed());
        loop {
            let wait = pacer.wait(start.elapsed());
            tokio::select! {
                changed = rates.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    pacer.set(*rates.borrow_and_update(), start.elapsed());
                }
                () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    for offer in pacer.due(start.elapsed()) {
                        self.offer(offer).await;
                    }
                }
            }
        }
    }

    /// Offer one generated interaction, as the `offer` admin operation does.
    async fn offer(self: &Arc<Self>, offer: admin::Offer) {
        let mut lab = self.lab.lock().await;
        match lab.at_switch(|lab| lab.offer(offer)) {
            Ok((offered, events)) => {
                tracing::debug!(name = offered.name, "generated offer");
                self.schedule(&mut lab);
                self.events(&lab, events).await;
            }
            Err(e) => tracing::debug!(error = %e, "generated offer not taken"),
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
        let key = message
            .headers
            .as_ref()
            .and_then(|h| h.get(pb_cti::REQUEST_KEY_HEADER))
            .map(|k| k.to_string());
        let mut lab = self.lab.lock().await;
        let now = std::time::Instant::now();
        let repeated = key.as_deref().and_then(|key| {
            self.answered
                .lock()
                .expect("answered lock")
                .get(&op, key, now)
        });
        if let Some(body) = repeated {
            tracing::debug!(op, "repeated change answered as the first time");
            self.reply_then_events(&lab, reply, body, Vec::new()).await;
            return;
        }
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
            pb_cti::GetInteraction::OP => act(payload, |c: pb_cti::GetInteraction| {
                lab.interaction(&c.agent_id, &c.interaction)
                    .map(|i| (i, vec![]))
            }),
            pb_cti::Dial::OP => act(payload, |c: pb_cti::Dial| {
                lab.dial(&c.agent_id, &c.endpoint, &c.destination)
            }),
            pb_cti::Act::OP => act(payload, |c: pb_cti::Act| {
                lab.act(&c.agent_id, &c.interaction, c.action)
            }),
            other => unsupported(format!("the simulated CTI has no operation `{other}`")),
        };
        tracing::debug!(op, "CTI call answered");
        if let Some(key) = &key {
            self.answered
                .lock()
                .expect("answered lock")
                .put(&op, key, body.clone(), now);
        }
        self.schedule(&mut lab);
        self.reply_then_events(&lab, reply, body, events).await;
        drop(lab);
    }

    async fn admin(self: &Arc<Self>, message: Message) {
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
                if lab.set_link(c.up, c.reason, c.switch_runs) {
                    link_changed = Some(lab.link());
                }
                Ok((lab.link(), vec![]))
            }),
            admin::LoseEvents::OP => act(payload, |c: admin::LoseEvents| {
                lab.lose_events(c.lose);
                Ok((Done {}, vec![]))
            }),
            admin::SetDelay::OP => act(payload, |c: admin::SetDelay| {
                self.delay_ms.store(c.ms, Ordering::Relaxed);
                Ok((Done {}, vec![]))
            }),
            admin::RejectAgent::OP => act(payload, |c: admin::RejectAgent| {
                lab.set_rejected(&c.agent_id, c.rejected)
                    .map(|()| (Done {}, vec![]))
            }),
            // Changes made at the CTI itself: the switch's own operations.
            admin::ForceState::OP => act(payload, |c: admin::ForceState| {
                lab.at_switch(|lab| lab.set_state(&c.agent_id, &c.endpoint, c.state, c.reason_code))
                    .map(|(_, e)| (Done {}, e))
            }),
            admin::ForceLogout::OP => act(payload, |c: admin::ForceLogout| {
                lab.at_switch(|lab| lab.logout(&c.agent_id, c.reason_code))
                    .map(|(_, e)| (Done {}, e))
            }),
            admin::AddChannel::OP => act(payload, |c: admin::AddChannel| {
                lab.at_switch(|lab| lab.add_channel(&c.place, &c.endpoint, c.media))
            }),
            admin::RemoveChannel::OP => act(payload, |c: admin::RemoveChannel| {
                lab.at_switch(|lab| lab.remove_channel(&c.place, &c.endpoint))
            }),
            admin::Offer::OP => act(payload, |c: admin::Offer| lab.at_switch(|lab| lab.offer(c))),
            admin::Hangup::OP => act(payload, |c: admin::Hangup| {
                lab.at_switch(|lab| lab.hangup(&c.interaction))
            }),
            admin::Traffic::OP => act(payload, |c: admin::Traffic| {
                traffic::check(&c).map_err(|e| CtiError::new(CtiErrorCode::BadRequest, e))?;
                self.traffic.send_replace(c);
                Ok((Done {}, vec![]))
            }),
            admin::GetInteractions::OP => act(payload, |_: admin::GetInteractions| {
                Ok((lab.interactions(), vec![]))
            }),
            admin::GetStatus::OP => act(payload, |_: admin::GetStatus| {
                let tally = lab.tally();
                Ok((
                    admin::SimStatus {
                        link: lab.link(),
                        delay_ms: self.delay_ms.load(Ordering::Relaxed),
                        agents: lab.agent_count(),
                        logged_in: lab.logged_in_count(),
                        traffic: *self.traffic.borrow(),
                        offered: tally.offered,
                        queued: tally.queued,
                        live: tally.live,
                        completed: tally.completed,
                        abandoned: tally.abandoned,
                    },
                    vec![],
                ))
            }),
            other => unsupported(format!("the simulator has no admin operation `{other}`")),
        };
        tracing::info!(op, "admin operation");
        self.schedule(&mut lab);
        self.reply_then_events(&lab, reply, body, events).await;
        if let Some(link) = link_changed {
            tracing::info!(up = link.up, "CTI link changed");
            self.publish(pb_cti::link_events(&self.subjects), &link)
                .await;
        }
    }
}

/// Decode a call or an admin operation, act on it, encode the reply.
fn act<C, T>(payload: &[u8], act: impl FnOnce(C) -> lab::Outcome<T>) -> (Vec<u8>, Vec<Outgoing>)
where
    C: Call<Reply = CtiReply<T>> + DeserializeOwned,
    T: Serialize,
{
    encode(decode::<C>(payload).and_then(act))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<SimConfig, ConfigError> {
        let lookup = |var: &str| {
            vars.iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| (*v).to_owned())
        };
        let common = pb_runtime::Config::from_lookup(|_| None).unwrap();
        SimConfig::from_lookup(&common, lookup)
    }

    #[test]
    fn the_answer_delay_and_the_traffic_are_read() {
        let c = config(&[]).unwrap();
        assert_eq!(c.answer, Duration::from_millis(300));
        assert_eq!(c.traffic, Traffic::default());
        let c = config(&[
            ("SIM_ANSWER_MS", "50"),
            ("SIM_CALLS_PER_S", "2.5"),
            ("SIM_EMAILS_PER_S", " 1 "),
        ])
        .unwrap();
        assert_eq!(c.answer, Duration::from_millis(50));
        assert_eq!(
            c.traffic,
            Traffic {
                calls: 2.5,
                chats: 0.0,
                emails: 1.0
            }
        );
        for bad in ["-1", "fast", "NaN", "1e9"] {
            let e = config(&[("SIM_CHATS_PER_S", bad)]).unwrap_err();
            assert!(e.to_string().contains("SIM_CHATS_PER_S"), "{e}");
        }
    }
}
