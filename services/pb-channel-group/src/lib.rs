//! The channel-group service: serves channel group, channel, interaction and conversation
//! destinations (`P.channelgroup.<target>`, `P.channel.<target>`, `P.interaction.<target>`,
//! `P.conversation.<target>`).
//! Groups are created by the session service's hand-off (`P.int.channelgroup.create`).
//! Each agent's destinations are handled by one owner replica at a time
//! ([`pb_runtime::owned`]); state is one record per agent in the `<prefix>_channels` bucket.
//! CTI changes (`P.cti.evt.agent.<agentId>.<event>`) become events on the right targets.
//!
//! * [`cmd`]: the commands, one module per destination kind;
//! * [`internal`]: creating a group, releasing an agent's destinations;
//! * [`events`]: CTI changes applied to the agent's destinations, and the events they raise;
//! * [`state`]: the record, and the rules from CTI states to reported states and events.

mod cmd;
mod events;
mod internal;
mod state;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pb_cti::{AgentEvent, CtiReply};
use pb_protocol::internal::InternalReply;
use pb_protocol::{Call, Command, Event, Kind, Target};
use pb_runtime::config::ConfigError;
use pb_runtime::cti::Budget;
use pb_runtime::owned::{self, Listening, OwnedConfig, OwnedError, Owner, Unit};
use pb_runtime::state::{StateError, UnitStore};
use pb_runtime::{Config, CtiClient, Reply, Shutdown};

use crate::state::AgentTree;

/// The channel-group service's state and clients; one per replica.
#[derive(Debug)]
pub struct Groups {
    cti: CtiClient,
    store: UnitStore<AgentTree>,
    deadline: Duration,
}

impl Groups {
    /// Make a CTI call within the deadline of a command starting now; a failure is the
    /// command's FAILURE answer, with the CTI's reason.
    async fn call<C, T>(&self, call: &C) -> Result<T, Reply>
    where
        C: Call<Reply = CtiReply<T>> + Sync,
    {
        self.cti
            .call(call, Budget::start(self.deadline).left())
            .await
            .map_err(pb_runtime::cti::failed::<C>)
    }

    /// The agent's place, channels and interactions as the CTI has them now.
    async fn snapshot(&self, agent_id: &str) -> Result<pb_cti::AgentSnapshot, Reply> {
        let agent_id = agent_id.to_owned();
        self.call(&pb_cti::GetSnapshot { agent_id }).await
    }

    /// One of the agent's interactions as the CTI has it now.
    async fn interaction(
        &self,
        agent_id: &str,
        name: &str,
    ) -> Result<pb_cti::InteractionSnapshot, Reply> {
        let call = pb_cti::GetInteraction {
            agent_id: agent_id.to_owned(),
            interaction: name.to_owned(),
        };
        self.call(&call).await
    }
}

impl Groups {
    /// Apply the CTI changes `changes` makes of the agent's destinations, and record them
    /// once; the events to raise (none when the record cannot be written: nothing is
    /// reported that is not kept).
    async fn apply_cti(
        &self,
        unit: &str,
        changes: impl FnOnce(&AgentTree) -> Vec<AgentEvent>,
    ) -> Vec<Event> {
        let mut loaded = match self.store.load(unit).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(%unit, error = %e, "cannot read the agent's channels; change not reported");
                return Vec::new();
            }
        };
        let mut changed = false;
        let mut events = Vec::new();
        for change in changes(&loaded.value) {
            let (did, raised) = events::apply(&mut loaded.value, unit, change);
            changed |= did;
            events.extend(raised);
        }
        if !changed {
            return Vec::new();
        }
        if let Err(e) = self.store.save(unit, &mut loaded).await {
            tracing::error!(%unit, error = %e, "cannot record the CTI change; not reported");
            return Vec::new();
        }
        events
    }
}

/// The owning runtime's settings ([`OwnedConfig::from_lookup`]).
pub fn owned_config(lookup: impl Fn(&str) -> Option<String>) -> Result<OwnedConfig, ConfigError> {
    // Channel and interaction changes on one subscription, so that an agent's changes
    // are applied in the order the CTI made them (a pending state after the interaction
    // whose end applied it); the session service's logouts are ignored.
    OwnedConfig::from_lookup(
        pb_protocol::internal::CHANNEL_GROUP_SERVICE,
        Listening::PerSession,
        &[AgentEvent::ALL],
        lookup,
    )
}

/// Serve the channel group, channel, interaction and conversation destinations until
/// `shutdown`.
pub async fn run(
    client: async_nats::Client,
    config: Config,
    owned: OwnedConfig,
    shutdown: Shutdown,
) -> Result<(), OwnedError> {
    let buckets = pb_runtime::kv::Buckets::new(&client, &config);
    let groups = Arc::new(Groups {
        cti: CtiClient::new(client.clone(), config.subjects.clone()),
        store: UnitStore::open(
            &buckets,
            pb_runtime::kv::buckets::CHANNELS,
            config.limits.record,
        )
        .await?,
        deadline: config.deadline,
    });
    owned::run(client, &config, owned, groups, shutdown).await
}

impl Owner for Groups {
    async fn destinations(&self, unit: &str) -> Result<Vec<(Kind, Target)>, StateError> {
        let tree = self.store.take(unit).await?.value;
        Ok(tree.destinations())
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

    /// A change at the CTI. A channel's change is reported by every initialised channel
    /// destination of the agent on that endpoint; one not yet initialised stays silent (its
    /// init answer will show the new state, contract §5.4). A channel added to or removed
    /// from the place is reported by every initialised group of that place.
    async fn cti_event(&self, unit: &mut Unit, event: AgentEvent) -> Vec<Event> {
        match event {
            AgentEvent::LoggedOut { .. } => Vec::new(), // the session service's
            event => self.apply_cti(unit.name(), |_| vec![event]).await,
        }
    }

    /// The CTI's view now, applied as the events it would have sent: each channel's state,
    /// each live interaction, channels added to or removed from the place.
    async fn resync(&self, unit: &mut Unit) -> Vec<Event> {
        let unit = unit.name();
        let snapshot = match self.snapshot(unit).await {
            Ok(snapshot) => snapshot,
            Err(_) => {
                tracing::warn!(%unit, "cannot read the CTI's view of the agent: not re-synchronised");
                return Vec::new();
            }
        };
        self.apply_cti(unit, |tree| events::from_snapshot(tree, snapshot))
            .await
    }

    async fn units(&self) -> Result<Vec<String>, StateError> {
        self.store.units().await
    }
}
