//! CTI changes applied to an agent's channel groups and channels: pure, so the rules are
//! tested without a CTI.

use pb_cti::AgentEvent;
use pb_protocol::Event;
use pb_protocol::channel_group::{ChannelEndpoint, ChannelGroupEvent, ChannelInGroup};

use crate::state::AgentTree;

/// Apply one CTI event to the tree; whether anything changed, and the events to raise.
pub fn apply(tree: &mut AgentTree, agent_id: &str, event: AgentEvent) -> (bool, Vec<Event>) {
    let mut changed = false;
    let mut events = Vec::new();
    match event {
        AgentEvent::ChannelChanged { channel, .. } => {
            for (target, destination) in tree.channels.iter_mut() {
                if destination.endpoint == channel.endpoint
                    && let Some(raised) = destination.apply(agent_id, &channel)
                {
                    changed = true;
                    events.extend(raised.into_iter().map(|e| Event::new(target.clone(), e)));
                }
            }
        }
        AgentEvent::ChannelAdded { place, channel, .. } => {
            for (target, group) in tree.groups.iter_mut() {
                if group.place != place
                    || !group.initialised
                    || group
                        .channels
                        .iter()
                        .any(|c| c.end_point == channel.endpoint)
                {
                    continue;
                }
                group.channels.push(ChannelInGroup {
                    end_point: channel.endpoint.clone(),
                    channel_type: channel.media,
                });
                changed = true;
                events.push(Event::new(
                    target.clone(),
                    ChannelGroupEvent::ChannelAdded(ChannelEndpoint {
                        endpoint: channel.endpoint.clone(),
                        channel_type: channel.media,
                    }),
                ));
            }
        }
        AgentEvent::ChannelRemoved {
            place,
            endpoint,
            media,
            ..
        } => {
            for (target, group) in tree.groups.iter_mut() {
                let before = group.channels.len();
                group.channels.retain(|c| c.end_point != endpoint);
                if group.place != place || !group.initialised || group.channels.len() == before {
                    continue;
                }
                changed = true;
                events.push(Event::new(
                    target.clone(),
                    ChannelGroupEvent::ChannelRemoved(ChannelEndpoint {
                        endpoint: endpoint.clone(),
                        channel_type: media,
                    }),
                ));
            }
        }
        AgentEvent::LoggedOut { .. } => {}
    }
    (changed, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Group;
    use pb_cti::ChannelSnapshot;
    use pb_protocol::Target;
    use pb_protocol::channel::{AgentState, ChannelType};

    fn tree(initialised: bool) -> AgentTree {
        let mut tree = AgentTree::default();
        tree.groups.insert(
            Target::new("s.g").unwrap(),
            Group {
                place: "place-1001".into(),
                initialised,
                channels: vec![ChannelInGroup {
                    end_point: "ext-1001".into(),
                    channel_type: ChannelType::Telephony,
                }],
            },
        );
        tree
    }

    fn added(endpoint: &str) -> AgentEvent {
        AgentEvent::ChannelAdded {
            agent_id: "1001".into(),
            place: "place-1001".into(),
            channel: ChannelSnapshot {
                endpoint: endpoint.into(),
                media: ChannelType::Callback,
                holder: None,
                agent_state: AgentState::NotReady,
                reason_code: None,
                revision: 0,
            },
        }
    }

    #[test]
    fn channels_added_and_removed_reach_initialised_groups_once() {
        let mut t = tree(true);
        let (changed, events) = apply(&mut t, "1001", added("cb-1001"));
        assert!(changed);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name(), "channelgroup.channel.added");
        let (changed, events) = apply(&mut t, "1001", added("cb-1001"));
        assert!(!changed && events.is_empty(), "known already");
        let removed = AgentEvent::ChannelRemoved {
            agent_id: "1001".into(),
            place: "place-1001".into(),
            endpoint: "cb-1001".into(),
            media: ChannelType::Callback,
        };
        let (_, events) = apply(&mut t, "1001", removed);
        assert_eq!(events[0].name(), "channelgroup.channel.removed");
        assert_eq!(t.groups.values().next().unwrap().channels.len(), 1);
    }

    #[test]
    fn a_group_not_yet_initialised_stays_silent() {
        let mut t = tree(false);
        let (changed, events) = apply(&mut t, "1001", added("cb-1001"));
        assert!(!changed && events.is_empty());
    }
}
