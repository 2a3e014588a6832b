//! The session service: serves session destinations (`P.session.<target>`), created by the
//! control service's hand-off (`P.int.session.create`). Each agent's sessions are handled by
//! one owner replica at a time ([`pb_runtime::owned`]); state is one record per agent in the
//! `<prefix>_sessions` bucket.
//!
//! * [`cmd`]: one module per session command;
//! * [`internal`]: the hand-off from control, and releasing an agent's sessions;
//! * [`state`]: the record.

mod cmd;
mod internal;
mod state;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pb_cti::AgentEvent;
use pb_protocol::internal::{InternalReply, SyncUnit, UnitRef};
use pb_protocol::session::{ReasonCode, SessionEvent};
use pb_protocol::{Call, Command, Event, Kind, Subjects, Target};
use pb_runtime::config::ConfigError;
use pb_runtime::cti::Budget;
use pb_runtime::owned::{self, Listening, OwnedConfig, OwnedError, Owner, Unit};
use pb_runtime::state::{StateError, Targets, UnitStore};
use pb_runtime::{Config, CtiClient, Reply, Shutdown};

use crate::state::AgentSessions;

/// The session service's state and clients; one per replica (clones share them).
#[derive(Debug, Clone)]
pub struct Sessions {
    client: async_nats::Client,
    subjects: Subjects,
    cti: CtiClient,
    store: UnitStore<AgentSessions>,
    targets: Targets,
    deadline: Duration,
}

impl Sessions {
    /// The time left for the calls of a command starting now.
    fn budget(&self) -> Budget {
        Budget::start(self.deadline)
    }

    /// Tell the channel-group service to [`Pause`](pb_protocol::internal::Pause),
    /// [`Resume`](pb_protocol::internal::Resume) or [`SyncUnit`] an agent's channel
    /// destinations, within `timeout`.
    async fn tell_channels<C>(&self, call: &C, timeout: Duration) -> Result<(), String>
    where
        C: Call<Reply = InternalReply>,
    {
        let sent = pb_runtime::call(&self.client, &self.subjects, call, timeout);
        match sent.await.map_err(|e| e.to_string())? {
            InternalReply::Ok => Ok(()),
            InternalReply::Error(why) | InternalReply::Again(why) => Err(why),
        }
    }
}

impl Sessions {
    /// The CTI logged the agent out: `session.loggedout` on each initialised session that
    /// neither asked for it nor was told already.
    async fn logged_out(&self, unit: &str, reason_code: Option<String>) -> Vec<Event> {
        let Ok(mut loaded) = self.store.load(unit).await else {
            tracing::error!(%unit, "cannot read the agent's sessions; logged-out event not raised");
            return Vec::new();
        };
        let mut events = Vec::new();
        for (target, session) in loaded.value.sessions.iter_mut() {
            if session.initialised && !session.logging_out && !session.logged_out {
                events.push(Event::new(
                    target.clone(),
                    SessionEvent::LoggedOut(ReasonCode {
                        reason_code: reason_code.clone(),
                    }),
                ));
            }
            session.logging_out = false;
            session.logged_out = true;
        }
        if let Err(e) = self.store.save(unit, &mut loaded).await {
            tracing::error!(%unit, error = %e, "cannot record the logout");
        }
        // A command to the agent's channels may have caused the logout: its response goes
        // out before the event (contract §5.4).
        if !events.is_empty()
            && loaded.value.sessions.values().any(|s| s.group.is_some())
            && let Err(e) = self
                .tell_channels(
                    &SyncUnit(UnitRef {
                        agent_id: unit.to_owned(),
                    }),
                    self.deadline,
                )
                .await
        {
            tracing::warn!(%unit, error = %e, "cannot wait for the agent's channels");
        }
        events
    }
}

fn state_failure(e: StateError) -> Reply {
    Reply::from(e)
}

/// The owning runtime's settings ([`OwnedConfig::from_lookup`]).
pub fn owned_config(lookup: impl Fn(&str) -> Option<String>) -> Result<OwnedConfig, ConfigError> {
    OwnedConfig::from_lookup(
        pb_protocol::internal::SESSION_SERVICE,
        Listening::PerDestination,
        &[AgentEvent::LOGGED_OUT],
        lookup,
    )
}

/// Serve session destinations until `shutdown`.
pub async fn run(
    client: async_nats::Client,
    config: Config,
    owned: OwnedConfig,
    shutdown: Shutdown,
) -> Result<(), OwnedError> {
    let buckets = pb_runtime::kv::Buckets::new(&client, &config);
    let sessions = Arc::new(Sessions {
        client: client.clone(),
        subjects: config.subjects.clone(),
        cti: CtiClient::new(client.clone(), config.subjects.clone()),
        store: UnitStore::open(
            &buckets,
            pb_runtime::kv::buckets::SESSIONS,
            config.limits.record,
        )
        .await?,
        targets: Targets::open(&buckets).await?,
        deadline: config.deadline,
    });
    owned::run(client, &config, owned, sessions, shutdown).await
}

impl Owner for Sessions {
    async fn destinations(&self, unit: &str) -> Result<Vec<(Kind, Target)>, StateError> {
        let loaded = self.store.take(unit).await?;
        Ok(loaded
            .value
            .sessions
            .into_keys()
            .map(|t| (Kind::Session, t))
            .collect())
    }

    async fn command(&self, unit: &mut Unit, command: Command) -> Reply {
        cmd::handle(self, unit, command).await
    }

    async fn internal(
        &self,
        unit: &mut Unit,
        op: &str,
        payload: Bytes,
    ) -> (InternalReply, Vec<Event>) {
        internal::handle(self, unit, op, payload).await
    }

    async fn cti_event(&self, unit: &mut Unit, event: AgentEvent) -> Vec<Event> {
        let AgentEvent::LoggedOut { reason_code, .. } = event else {
            return Vec::new(); // channel changes are the channel-group service's
        };
        self.logged_out(unit.name(), reason_code).await
    }

    /// An agent the CTI no longer has logged in gets its `session.loggedout`, once.
    async fn resync(&self, unit: &mut Unit) -> Vec<Event> {
        let unit = unit.name();
        let call = pb_cti::GetSnapshot {
            agent_id: unit.to_owned(),
        };
        match self.cti.call(&call, self.deadline).await {
            Ok(snapshot) if !snapshot.logged_in => self.logged_out(unit, None).await,
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(%unit, error = %e, "cannot read the CTI's view of the agent: not re-synchronised");
                Vec::new()
            }
        }
    }

    async fn units(&self) -> Result<Vec<String>, StateError> {
        self.store.units().await
    }
}
