//! The channel-group service's state: one record per agent holding its channel group,
//! channel, interaction and conversation destinations, and the pure rules that turn CTI
//! states into the states a destination reports and the events that move the bridge from
//! one to the next.

use std::collections::{BTreeMap, BTreeSet};

use pb_cti::{ChannelSnapshot, InteractionSnapshot, LegSnapshot};
use pb_protocol::channel::{AgentState, ChannelEvent, ChannelState, ChannelType};
use pb_protocol::channel_group::ChannelInGroup;
use pb_protocol::conversation::{
    ConversationEvent, ConversationInit, ConversationState, ConversationStateChanged,
};
use pb_protocol::interaction::{
    ConversationAdded, InteractionData, InteractionEvent, InteractionState, InteractionStateChanged,
};
use pb_protocol::session::ReasonCode;
use pb_protocol::{Body, Kind, Target};
use serde::{Deserialize, Serialize};

/// Every destination of one agent below its session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTree {
    pub groups: BTreeMap<Target, Group>,
    pub channels: BTreeMap<Target, Channel>,
    #[serde(default)]
    pub interactions: BTreeMap<Target, Interaction>,
    #[serde(default)]
    pub conversations: BTreeMap<Target, Conversation>,
}

impl AgentTree {
    /// Every destination, by kind.
    pub fn destinations(self) -> Vec<(Kind, Target)> {
        let of = |kind, targets: Vec<Target>| targets.into_iter().map(move |t| (kind, t));
        of(Kind::ChannelGroup, self.groups.into_keys().collect())
            .chain(of(Kind::Channel, self.channels.into_keys().collect()))
            .chain(of(
                Kind::Interaction,
                self.interactions.into_keys().collect(),
            ))
            .chain(of(
                Kind::Conversation,
                self.conversations.into_keys().collect(),
            ))
            .collect()
    }

    /// The CTI resource the destination `target` of `kind` stands for: a channel's endpoint,
    /// an interaction's or a conversation's CTI name. `None` when there is no such
    /// destination, or it is over (a COMPLETED interaction, an ENDED conversation): a CTI
    /// that offers the same interaction again (given back, then routed anew) gets a new
    /// destination even with the same id.
    pub(crate) fn resource_at(&self, kind: Kind, target: &Target) -> Option<&str> {
        match kind {
            Kind::Channel => self.channels.get(target).map(|c| c.endpoint.as_str()),
            Kind::Interaction => self
                .interactions
                .get(target)
                .filter(|i| !i.over())
                .map(|i| i.name.as_str()),
            Kind::Conversation => self
                .conversations
                .get(target)
                .filter(|c| !c.over())
                .map(|c| c.leg.as_str()),
            Kind::Control | Kind::Session | Kind::ChannelGroup => None,
        }
    }

    /// Forget the destination `target` of `kind`.
    pub fn remove(&mut self, kind: Kind, target: &Target) {
        match kind {
            Kind::ChannelGroup => drop(self.groups.remove(target)),
            Kind::Channel => drop(self.channels.remove(target)),
            Kind::Interaction => drop(self.interactions.remove(target)),
            Kind::Conversation => drop(self.conversations.remove(target)),
            Kind::Control | Kind::Session => {}
        }
    }
}

/// A channel group destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub place: String,
    pub initialised: bool,
    /// The channels its init answer listed.
    pub channels: Vec<ChannelInGroup>,
}

/// A channel destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub endpoint: String,
    pub media: ChannelType,
    /// Created as UNSUPPORTED: answers only init and dispose (reference §9.4.3).
    pub unsupported: bool,
    /// What the bridge was last told (by the init answer or events); `None` before init.
    pub reported: Option<Reported>,
    /// The CTI revision of the channel that `reported` reflects.
    pub revision: u64,
    /// The interactions on this channel the bridge was told of (by the init answer or
    /// `channel.interaction.added`), by CTI name; COMPLETED ones are kept a while, so that a
    /// late CTI event of one cannot announce it again.
    #[serde(default)]
    pub interactions: BTreeMap<String, Announced>,
}

/// An interaction a channel announced: the CTI revision last applied, and whether it is
/// COMPLETED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    pub revision: u64,
    pub completed: bool,
}

/// How many COMPLETED interactions a channel remembers: a late event is one among the few
/// changes made meanwhile.
const COMPLETED_KEPT: usize = 16;

impl Channel {
    pub fn initialised(&self) -> bool {
        self.reported.is_some()
    }

    /// Whether the bridge may create a destination for interaction `name`: announced, and
    /// not COMPLETED.
    pub fn offers(&self, name: &str) -> bool {
        self.interactions.get(name).is_some_and(|a| !a.completed)
    }

    /// Take a CTI snapshot of one of its interactions into account: `None` when it is
    /// stale (or already applied), else whether the bridge must be told of it (new, or
    /// offered again after it was COMPLETED).
    pub(crate) fn track(&mut self, snapshot: &InteractionSnapshot) -> Option<bool> {
        let completed = snapshot.state == InteractionState::Completed;
        let now = Announced {
            revision: snapshot.revision,
            completed,
        };
        let announce = match self.interactions.insert(snapshot.name.clone(), now) {
            Some(before) if before.revision >= snapshot.revision => {
                self.interactions.insert(snapshot.name.clone(), before);
                return None;
            }
            Some(before) => before.completed && !completed,
            None => !completed,
        };
        if completed {
            self.forget_oldest_completed();
        }
        Some(announce)
    }

    /// Keep the [`COMPLETED_KEPT`] newest COMPLETED interactions.
    fn forget_oldest_completed(&mut self) {
        let mut done: Vec<(u64, String)> = self
            .interactions
            .iter()
            .filter(|(_, a)| a.completed)
            .map(|(name, a)| (a.revision, name.clone()))
            .collect();
        if done.len() > COMPLETED_KEPT {
            done.sort_unstable();
            for (_, name) in &done[..done.len() - COMPLETED_KEPT] {
                self.interactions.remove(name);
            }
        }
    }

    /// Take a CTI snapshot into account: the events to raise (none before init, none for a
    /// snapshot older than what was applied, only channel events for an UNSUPPORTED
    /// channel). Returns `None` when the snapshot is stale.
    pub fn apply(
        &mut self,
        agent_id: &str,
        snapshot: &ChannelSnapshot,
    ) -> Option<Vec<ChannelEvent>> {
        if snapshot.revision < self.revision {
            return None;
        }
        // Before init the bridge knows nothing; the init answer will show the live state.
        let before = self.reported.clone()?;
        let now = Reported::of(agent_id, snapshot);
        self.revision = snapshot.revision;
        self.reported = Some(now.clone());
        let unsupported = self.unsupported;
        Some(
            channel_events(&before, &now)
                .into_iter()
                .filter(|e| !unsupported || unsupported_may_raise(e))
                .collect(),
        )
    }
}

/// The events an UNSUPPORTED channel raises (reference §9.4.3).
pub(crate) fn unsupported_may_raise(event: &ChannelEvent) -> bool {
    matches!(
        event,
        ChannelEvent::Activated
            | ChannelEvent::Deactivated
            | ChannelEvent::Available
            | ChannelEvent::Unavailable
            | ChannelEvent::Disposed
    )
}

/// A channel's state as the bridge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub state: ChannelState,
    pub agent_state: AgentState,
    pub reason_code: Option<String>,
    /// A change that waits for the channel's interactions to end (no event of its own).
    #[serde(default)]
    pub pending: Option<AgentState>,
}

impl Reported {
    /// How `agent_id` sees a CTI channel: ACTIVE if it holds it, UNAVAILABLE if another
    /// agent does, INACTIVE if nobody does. The agent state matters only when ACTIVE.
    pub fn of(agent_id: &str, channel: &ChannelSnapshot) -> Self {
        match channel.holder.as_deref() {
            Some(holder) if holder == agent_id => Reported {
                state: ChannelState::Active,
                agent_state: channel.agent_state,
                reason_code: channel.reason_code.clone(),
                pending: channel.pending_state,
            },
            holder => Reported {
                state: if holder.is_some() {
                    ChannelState::Unavailable
                } else {
                    ChannelState::Inactive
                },
                agent_state: AgentState::NotReady,
                reason_code: None,
                pending: None,
            },
        }
    }
}

/// An interaction destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Its CTI name.
    pub name: String,
    pub media: ChannelType,
    /// What the bridge was last told; `None` before init.
    pub reported: Option<InteractionSeen>,
    /// The CTI revision `reported` reflects.
    pub revision: u64,
}

/// An interaction as the bridge sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionSeen {
    pub state: InteractionState,
    pub data: Body,
    /// The legs the bridge was told of (by the init answer or
    /// `interaction.conversation.added`): the conversations it may create.
    pub legs: BTreeSet<String>,
}

/// Whether merging `data` into the interaction at `target` keeps its `interaction-data`
/// and the agent's record within `limits` (the merge as the CTI makes it: a key given
/// replaces the key held, a `null` removes it).
pub(crate) fn room_for_data(
    tree: &AgentTree,
    target: &Target,
    data: &Body,
    limits: &pb_protocol::Limits,
) -> Result<(), pb_protocol::OverLimit> {
    use pb_protocol::Limit;
    let held = tree
        .interactions
        .get(target)
        .and_then(|i| i.reported.as_ref())
        .map(|seen| seen.data.clone())
        .unwrap_or_default();
    let size = |value: &Body| serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
    let before = size(&held);
    let mut merged = held;
    for (key, value) in data {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    let after = size(&merged);
    limits.check(Limit::InteractionData, after)?;
    let record = serde_json::to_vec(tree).map_or(usize::MAX, |v| v.len());
    limits.check(Limit::Record, (record + after).saturating_sub(before))
}

impl InteractionSeen {
    /// What the init answer shows of `snapshot`: its live legs are now known.
    pub fn of(snapshot: &InteractionSnapshot) -> Self {
        let live = snapshot.conversations();
        Self {
            state: snapshot.state,
            data: snapshot.data.clone(),
            legs: [live.primary, live.consult]
                .into_iter()
                .flatten()
                .map(|c| c.id)
                .collect(),
        }
    }
}

/// The events an interaction raises for a CTI change: those about its data and
/// conversations (raised before its conversations' own events), then its state change
/// (raised after them: a call's legs change before the call does).
#[derive(Debug, Default, PartialEq)]
pub struct InteractionChange {
    pub first: Vec<InteractionEvent>,
    pub last: Option<InteractionEvent>,
}

impl Interaction {
    pub fn initialised(&self) -> bool {
        self.reported.is_some()
    }

    /// COMPLETED: nothing changes it any more.
    pub fn over(&self) -> bool {
        self.reported
            .as_ref()
            .is_some_and(|seen| seen.state == InteractionState::Completed)
    }

    /// Take a CTI snapshot into account; `None` before init, when it is stale, or when the
    /// interaction is over (the CTI may offer an interaction of that name again).
    pub fn apply(&mut self, snapshot: &InteractionSnapshot) -> Option<InteractionChange> {
        if snapshot.revision < self.revision || self.over() {
            return None;
        }
        let seen = self.reported.as_mut()?;
        self.revision = snapshot.revision;
        let mut change = InteractionChange::default();
        if seen.data != snapshot.data {
            seen.data = snapshot.data.clone();
            change
                .first
                .push(InteractionEvent::DataChanged(InteractionData {
                    data: seen.data.clone(),
                }));
        }
        for leg in &snapshot.legs {
            if leg.state != ConversationState::Ended && seen.legs.insert(leg.name.clone()) {
                change
                    .first
                    .push(InteractionEvent::ConversationAdded(ConversationAdded {
                        name: leg.name.clone(),
                        role: leg.role,
                    }));
            }
        }
        if seen.state != snapshot.state {
            seen.state = snapshot.state;
            change.last = Some(InteractionEvent::StateChanged(InteractionStateChanged {
                state: snapshot.state,
            }));
        }
        Some(change)
    }
}

/// A conversation destination: one leg of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The CTI names of its interaction and of its leg.
    pub interaction: String,
    pub leg: String,
    /// The leg as the bridge was last told; `None` before init.
    pub reported: Option<ConversationInit>,
    /// The CTI revision (of the interaction) `reported` reflects.
    pub revision: u64,
}

impl Conversation {
    /// What an init answer shows of a leg.
    pub fn seen(leg: &LegSnapshot) -> ConversationInit {
        ConversationInit {
            state: leg.state,
            role: leg.role,
            remote: leg.remote.clone(),
        }
    }

    /// ENDED: nothing changes it any more.
    pub fn over(&self) -> bool {
        self.reported
            .as_ref()
            .is_some_and(|seen| seen.state == ConversationState::Ended)
    }

    /// Take a CTI snapshot of its interaction into account; `None` before init, when it is
    /// stale, over, or does not have the leg.
    pub fn apply(&mut self, snapshot: &InteractionSnapshot) -> Option<Vec<ConversationEvent>> {
        if snapshot.revision < self.revision || self.over() {
            return None;
        }
        let seen = self.reported.as_mut()?;
        let leg = snapshot.leg(&self.leg)?;
        self.revision = snapshot.revision;
        let before = seen.state;
        // The far end changes without an event of its own (a transfer, a conference): the
        // next init shows it.
        *seen = Self::seen(leg);
        if before == leg.state {
            return Some(Vec::new());
        }
        Some(vec![ConversationEvent::StateChanged(
            ConversationStateChanged { state: leg.state },
        )])
    }
}

/// The events that take the bridge from `before` to `after`, in order.
pub(crate) fn channel_events(before: &Reported, after: &Reported) -> Vec<ChannelEvent> {
    use ChannelState::*;
    let mut events = match (before.state, after.state) {
        (Inactive, Active) => vec![ChannelEvent::Activated],
        (Active, Inactive) => vec![ChannelEvent::Deactivated],
        (Inactive, Unavailable) => vec![ChannelEvent::Unavailable],
        (Unavailable, Inactive) => vec![ChannelEvent::Available],
        (Active, Unavailable) => vec![ChannelEvent::Deactivated, ChannelEvent::Unavailable],
        (Unavailable, Active) => vec![ChannelEvent::Available, ChannelEvent::Activated],
        _ => Vec::new(),
    };
    let agent_changed =
        (before.agent_state, &before.reason_code) != (after.agent_state, &after.reason_code);
    if after.state == Active && agent_changed {
        match after.agent_state {
            AgentState::Ready | AgentState::WorkReady => events.push(ChannelEvent::Ready),
            AgentState::NotReady | AgentState::WorkNotReady => {
                events.push(ChannelEvent::NotReady(ReasonCode {
                    reason_code: after.reason_code.clone(),
                }))
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(holder: Option<&str>, state: AgentState, reason: Option<&str>) -> ChannelSnapshot {
        ChannelSnapshot {
            endpoint: "ext-1001".into(),
            media: ChannelType::Telephony,
            holder: holder.map(str::to_owned),
            agent_state: state,
            reason_code: reason.map(str::to_owned),
            pending_state: None,
            pending_reason: None,
            revision: 0,
        }
    }

    #[test]
    fn stale_snapshots_are_ignored_and_nothing_is_raised_before_init() {
        let mut channel = Channel {
            endpoint: "ext-1001".into(),
            media: ChannelType::Telephony,
            unsupported: false,
            reported: None,
            revision: 0,
            interactions: BTreeMap::new(),
        };
        let at = |rev, state| ChannelSnapshot {
            revision: rev,
            ..snap(Some("1001"), state, None)
        };
        assert_eq!(
            channel.apply("1001", &at(3, AgentState::NotReady)),
            None,
            "before init: silent"
        );
        assert!(!channel.initialised(), "and still not initialised");
        channel.reported = Some(Reported::of("1001", &at(3, AgentState::NotReady)));
        assert_eq!(
            channel.apply("1001", &at(4, AgentState::Ready)),
            Some(vec![ChannelEvent::Ready])
        );
        assert_eq!(
            channel.apply("1001", &at(2, AgentState::NotReady)),
            None,
            "stale"
        );
        assert_eq!(channel.revision, 4);
        channel.unsupported = true;
        assert_eq!(
            channel.apply("1001", &at(5, AgentState::NotReady)),
            Some(vec![])
        );
    }

    fn seen(holder: Option<&str>, state: AgentState, reason: Option<&str>) -> Reported {
        Reported::of("1001", &snap(holder, state, reason))
    }

    #[test]
    fn how_an_agent_sees_a_channel() {
        assert_eq!(
            seen(None, AgentState::Ready, None).state,
            ChannelState::Inactive
        );
        let other = seen(Some("1002"), AgentState::Ready, None);
        assert_eq!(
            (other.state, other.agent_state),
            (ChannelState::Unavailable, AgentState::NotReady)
        );
        let mine = seen(Some("1001"), AgentState::NotReady, Some("lunch"));
        assert_eq!(mine.state, ChannelState::Active);
        assert_eq!(mine.reason_code.as_deref(), Some("lunch"));
    }

    #[test]
    fn events_for_every_transition() {
        use AgentState::*;
        let inactive = seen(None, NotReady, None);
        let active = seen(Some("1001"), NotReady, None);
        let ready = seen(Some("1001"), Ready, None);
        let lunch = seen(Some("1001"), NotReady, Some("lunch"));
        let other = seen(Some("1002"), Ready, None);
        let notready = |r: Option<&str>| {
            ChannelEvent::NotReady(ReasonCode {
                reason_code: r.map(str::to_owned),
            })
        };
        let table = [
            (&inactive, &active, vec![ChannelEvent::Activated]),
            (&active, &ready, vec![ChannelEvent::Ready]),
            (&ready, &lunch, vec![notready(Some("lunch"))]),
            (&lunch, &active, vec![notready(None)]),
            (&ready, &inactive, vec![ChannelEvent::Deactivated]),
            (&inactive, &other, vec![ChannelEvent::Unavailable]),
            (&other, &inactive, vec![ChannelEvent::Available]),
            (
                &ready,
                &other,
                vec![ChannelEvent::Deactivated, ChannelEvent::Unavailable],
            ),
            (
                &other,
                &ready,
                vec![
                    ChannelEvent::Available,
                    ChannelEvent::Activated,
                    ChannelEvent::Ready,
                ],
            ),
            (
                &inactive,
                &ready,
                vec![ChannelEvent::Activated, ChannelEvent::Ready],
            ),
            (&ready, &ready, vec![]),
            (&inactive, &inactive, vec![]),
        ];
        for (before, after, want) in table {
            assert_eq!(
                channel_events(before, after),
                want,
                "{before:?} -> {after:?}"
            );
        }
    }
}
