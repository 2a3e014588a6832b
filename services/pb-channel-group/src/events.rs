//! CTI changes applied to an agent's destinations: pure, so the rules are tested without a
//! CTI.

use pb_cti::{AgentEvent, AgentSnapshot, InteractionSnapshot};
use pb_protocol::Event;
use pb_protocol::channel::{ChannelEvent, InteractionRef};
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
        AgentEvent::InteractionChanged { interaction, .. } => {
            return interaction_changed(tree, &interaction);
        }
        AgentEvent::LoggedOut { .. } => {}
    }
    (changed, events)
}

/// The CTI's view of an agent as the changes it would have sent to a `tree` that missed
/// them: channels added to and removed from the place its groups list, each channel's
/// state and each live interaction (which [`apply`] turns into events only where they
/// differ from the tree).
pub(crate) fn from_snapshot(tree: &AgentTree, snapshot: AgentSnapshot) -> Vec<AgentEvent> {
    let AgentSnapshot {
        agent_id,
        place,
        channels,
        interactions,
        ..
    } = snapshot;
    let mut changes = Vec::new();
    for group in tree.groups.values().filter(|g| g.place == place) {
        for gone in group
            .channels
            .iter()
            .filter(|c| !channels.iter().any(|s| s.endpoint == c.end_point))
        {
            changes.push(AgentEvent::ChannelRemoved {
                agent_id: agent_id.clone(),
                place: place.clone(),
                endpoint: gone.end_point.clone(),
                media: gone.channel_type,
            });
        }
    }
    for channel in channels {
        if tree.groups.values().any(|g| {
            g.place == place && !g.channels.iter().any(|c| c.end_point == channel.endpoint)
        }) {
            changes.push(AgentEvent::ChannelAdded {
                agent_id: agent_id.clone(),
                place: place.clone(),
                channel: channel.clone(),
            });
        }
        changes.push(AgentEvent::ChannelChanged {
            agent_id: agent_id.clone(),
            place: place.clone(),
            channel,
        });
    }
    for interaction in interactions {
        changes.push(AgentEvent::InteractionChanged {
            agent_id: agent_id.clone(),
            interaction,
        });
    }
    changes
}

/// Apply the CTI's view of one of the agent's interactions, from an event or a call's
/// reply: whether anything changed, and the events, in this order: `channel.interaction.added`
/// on every initialised channel of its endpoint that has not announced it; each interaction
/// destination's data and conversation events; each conversation destination's state
/// change; each interaction destination's state change.
pub(crate) fn interaction_changed(
    tree: &mut AgentTree,
    snapshot: &InteractionSnapshot,
) -> (bool, Vec<Event>) {
    let mut changed = false;
    let mut events = Vec::new();
    for (target, channel) in tree.channels.iter_mut() {
        if channel.endpoint != snapshot.endpoint || channel.unsupported || !channel.initialised() {
            continue;
        }
        let Some(announce) = channel.track(snapshot) else {
            continue;
        };
        changed = true;
        if announce {
            events.push(Event::new(
                target.clone(),
                ChannelEvent::InteractionAdded(InteractionRef {
                    name: snapshot.name.clone(),
                    media: snapshot.media,
                }),
            ));
        }
    }
    let mut last = Vec::new();
    for (target, interaction) in tree.interactions.iter_mut() {
        if interaction.name != snapshot.name {
            continue;
        }
        if let Some(change) = interaction.apply(snapshot) {
            changed = true;
            events.extend(
                change
                    .first
                    .into_iter()
                    .map(|e| Event::new(target.clone(), e)),
            );
            last.extend(change.last.map(|e| Event::new(target.clone(), e)));
        }
    }
    for (target, conversation) in tree.conversations.iter_mut() {
        if conversation.interaction != snapshot.name {
            continue;
        }
        if let Some(raised) = conversation.apply(snapshot) {
            changed = true;
            events.extend(raised.into_iter().map(|e| Event::new(target.clone(), e)));
        }
    }
    events.extend(last);
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
                pending_state: None,
                pending_reason: None,
                revision: 0,
            },
        }
    }

    #[test]
    fn a_snapshot_becomes_the_changes_a_tree_missed() {
        let tree = tree(true);
        let mut callback = match added("cb-1001") {
            AgentEvent::ChannelAdded { channel, .. } => channel,
            _ => unreachable!(),
        };
        callback.revision = 3;
        let snapshot = AgentSnapshot {
            agent_id: "1001".into(),
            logged_in: true,
            place: "place-1001".into(),
            channels: vec![callback],
            interactions: Vec::new(),
            logout_pending: false,
        };
        let changes = from_snapshot(&tree, snapshot);
        let tokens: Vec<&str> = changes.iter().map(AgentEvent::token).collect();
        // ext-1001 is gone from the place, cb-1001 came, and its state is applied.
        assert_eq!(
            tokens,
            [
                AgentEvent::CHANNEL_REMOVED,
                AgentEvent::CHANNEL_ADDED,
                AgentEvent::CHANNEL_CHANGED
            ]
        );
        let mut tree = tree;
        let raised: Vec<_> = changes
            .into_iter()
            .flat_map(|c| apply(&mut tree, "1001", c).1)
            .map(|e| e.name().to_owned())
            .collect();
        assert_eq!(
            raised,
            ["channelgroup.channel.removed", "channelgroup.channel.added"]
        );
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

    mod interactions {
        use super::*;
        use crate::state::{Channel, Conversation, Interaction, InteractionSeen, Reported};
        use pb_cti::LegSnapshot;
        use pb_protocol::Kind;
        use pb_protocol::channel::ChannelState;
        use pb_protocol::conversation::ConversationState;
        use pb_protocol::interaction::ConversationRole;
        use pb_protocol::interaction::InteractionState;

        fn leg(name: &str, role: ConversationRole, state: ConversationState) -> LegSnapshot {
            LegSnapshot {
                name: name.into(),
                role,
                state,
                remote: "+15550100".into(),
            }
        }

        fn call(
            state: InteractionState,
            legs: Vec<LegSnapshot>,
            revision: u64,
        ) -> InteractionSnapshot {
            InteractionSnapshot {
                name: "call-1".into(),
                endpoint: "ext-1001".into(),
                media: ChannelType::Telephony,
                state,
                data: pb_protocol::Body::new(),
                legs,
                revision,
            }
        }

        /// An agent with an initialised telephony channel `s.g.c`, and (when `created`) the
        /// call's interaction `s.g.c.i` and primary conversation `s.g.c.i.p`, initialised
        /// from `first`.
        fn tree(created: Option<&InteractionSnapshot>) -> AgentTree {
            let mut t = AgentTree::default();
            t.channels.insert(
                Target::new("s.g.c").unwrap(),
                Channel {
                    endpoint: "ext-1001".into(),
                    media: ChannelType::Telephony,
                    unsupported: false,
                    reported: Some(Reported {
                        state: ChannelState::Active,
                        agent_state: AgentState::Ready,
                        reason_code: None,
                        pending: None,
                    }),
                    revision: 0,
                    interactions: Default::default(),
                },
            );
            if let Some(first) = created {
                t.channels.values_mut().for_each(|c| {
                    c.track(first);
                });
                t.interactions.insert(
                    Target::new("s.g.c.i").unwrap(),
                    Interaction {
                        name: first.name.clone(),
                        media: first.media,
                        reported: Some(InteractionSeen::of(first)),
                        revision: first.revision,
                    },
                );
                t.conversations.insert(
                    Target::new("s.g.c.i.p").unwrap(),
                    Conversation {
                        interaction: first.name.clone(),
                        leg: "call-1.p".into(),
                        reported: Some(Conversation::seen(&first.legs[0])),
                        revision: first.revision,
                    },
                );
            }
            t
        }

        fn names(events: &[Event]) -> Vec<(String, String)> {
            events
                .iter()
                .map(|e| (e.name().to_owned(), e.target.to_string()))
                .collect()
        }

        #[test]
        fn a_new_interaction_is_announced_once_and_forgotten_when_completed() {
            use ConversationRole::Primary;
            let alerting = call(
                InteractionState::Alerting,
                vec![leg("call-1.p", Primary, ConversationState::Alerting)],
                1,
            );
            let mut t = tree(None);
            let (changed, events) = interaction_changed(&mut t, &alerting);
            assert!(changed);
            assert_eq!(
                names(&events),
                [("channel.interaction.added".to_owned(), "s.g.c".to_owned())]
            );
            let (_, again) = interaction_changed(&mut t, &alerting);
            assert!(again.is_empty(), "announced once");
            let done = call(InteractionState::Completed, vec![], 9);
            let (changed, events) = interaction_changed(&mut t, &done);
            assert!(changed && events.is_empty());
            assert!(t.channels.values().all(|c| !c.offers("call-1")));
            let (changed, events) = interaction_changed(&mut t, &alerting);
            assert!(
                !changed && events.is_empty(),
                "a late event announces nothing"
            );
        }

        #[test]
        fn legs_change_before_the_call_and_stale_snapshots_are_ignored() {
            use ConversationRole::{Consult, Primary};
            use ConversationState::*;
            let alerting = call(
                InteractionState::Alerting,
                vec![leg("call-1.p", Primary, Alerting)],
                1,
            );
            let mut t = tree(Some(&alerting));
            let answered = call(
                InteractionState::Started,
                vec![leg("call-1.p", Primary, Connected)],
                2,
            );
            let (_, events) = interaction_changed(&mut t, &answered);
            assert_eq!(
                names(&events),
                [
                    (
                        "conversation.statechanged".to_owned(),
                        "s.g.c.i.p".to_owned()
                    ),
                    ("interaction.statechanged".to_owned(), "s.g.c.i".to_owned()),
                ]
            );
            let (changed, events) = interaction_changed(&mut t, &alerting);
            assert!(!changed && events.is_empty(), "older revision: ignored");

            let mut consulting = call(
                InteractionState::Started,
                vec![
                    leg("call-1.p", Primary, Held),
                    leg("call-1.c1", Consult, Dialing),
                ],
                3,
            );
            consulting.data.insert("disposition".into(), "sale".into());
            let (_, events) = interaction_changed(&mut t, &consulting);
            assert_eq!(
                names(&events),
                [
                    ("interaction.datachanged".to_owned(), "s.g.c.i".to_owned()),
                    (
                        "interaction.conversation.added".to_owned(),
                        "s.g.c.i".to_owned()
                    ),
                    (
                        "conversation.statechanged".to_owned(),
                        "s.g.c.i.p".to_owned()
                    ),
                ]
            );
            let seen = t
                .interactions
                .values()
                .next()
                .unwrap()
                .reported
                .clone()
                .unwrap();
            assert!(
                seen.legs.contains("call-1.c1"),
                "the consult may now be created"
            );
        }

        #[test]
        fn a_completed_interaction_stays_completed_when_its_name_is_offered_again() {
            use ConversationRole::Primary;
            use ConversationState::*;
            let alerting = call(
                InteractionState::Alerting,
                vec![leg("call-1.p", Primary, Alerting)],
                1,
            );
            let mut t = tree(Some(&alerting));
            let rejected = call(
                InteractionState::Completed,
                vec![leg("call-1.p", Primary, Ended)],
                2,
            );
            let (_, events) = interaction_changed(&mut t, &rejected);
            assert_eq!(events.len(), 2, "the leg and the call end: {events:?}");
            let (it, conv) = (
                Target::new("s.g.c.i").unwrap(),
                Target::new("s.g.c.i.p").unwrap(),
            );
            assert_eq!(
                t.resource_at(Kind::Interaction, &it),
                None,
                "over: may be created anew"
            );
            assert_eq!(t.resource_at(Kind::Conversation, &conv), None);
            // Routed to this agent again: announced anew; the old destinations keep quiet.
            let again = call(
                InteractionState::Alerting,
                vec![leg("call-1.p", Primary, Alerting)],
                7,
            );
            let (_, events) = interaction_changed(&mut t, &again);
            assert_eq!(
                names(&events),
                [("channel.interaction.added".to_owned(), "s.g.c".to_owned())]
            );
            assert!(t.interactions[&it].over() && t.conversations[&conv].over());
        }

        #[test]
        fn nothing_is_raised_before_init() {
            use ConversationRole::Primary;
            let alerting = call(
                InteractionState::Alerting,
                vec![leg("call-1.p", Primary, ConversationState::Alerting)],
                1,
            );
            let mut t = tree(Some(&alerting));
            t.interactions.values_mut().for_each(|i| i.reported = None);
            t.conversations.values_mut().for_each(|c| c.reported = None);
            let ended = call(
                InteractionState::Ended,
                vec![leg("call-1.p", Primary, ConversationState::Ended)],
                2,
            );
            let (_, events) = interaction_changed(&mut t, &ended);
            assert!(events.is_empty(), "{events:?}");
        }
    }
}
