//! The channel-group service's state: one record per agent holding its channel group and
//! channel destinations, and the pure rules that turn CTI channel states into the states a
//! channel reports and the events that move the bridge from one to the next.

use std::collections::BTreeMap;

use pb_cti::ChannelSnapshot;
use pb_protocol::Target;
use pb_protocol::channel::{AgentState, ChannelEvent, ChannelState, ChannelType};
use pb_protocol::channel_group::ChannelInGroup;
use pb_protocol::session::ReasonCode;
use serde::{Deserialize, Serialize};

/// Every channel group and channel destination of one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTree {
    pub groups: BTreeMap<Target, Group>,
    pub channels: BTreeMap<Target, Channel>,
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
}

impl Channel {
    pub fn initialised(&self) -> bool {
        self.reported.is_some()
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
pub fn unsupported_may_raise(event: &ChannelEvent) -> bool {
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
            },
            holder => Reported {
                state: if holder.is_some() {
                    ChannelState::Unavailable
                } else {
                    ChannelState::Inactive
                },
                agent_state: AgentState::NotReady,
                reason_code: None,
            },
        }
    }
}

/// The events that take the bridge from `before` to `after`, in order.
pub fn channel_events(before: &Reported, after: &Reported) -> Vec<ChannelEvent> {
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
