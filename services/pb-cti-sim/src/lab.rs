//! The lab CTI's state machine: agents, places, channels, their interactions ([`crate::calls`]),
//! the link and the faults. Pure: every operation returns its reply and the events to
//! publish, and timers for later ([`Lab::take_timers`]); [`crate::run`] does the IO.
//!
//! After every change the lab settles: the changed interactions are published (each to its
//! agent, in the order they changed); the logouts and state changes that waited for
//! interactions to end take effect and the queue is routed, the interactions this changed
//! are published, then the channel changes and logouts that took effect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use pb_cti::{
    Action, AgentEvent, AgentSnapshot, ChannelSnapshot, CtiError, CtiErrorCode, Done,
    InteractionSnapshot, LinkEvent,
};
use pb_protocol::channel::{AgentState, ChannelType};
use pb_protocol::control::{AgentInfo, AgentName, Capabilities};
use serde_json::json;

use crate::admin;
use crate::calls::{CallId, Calls, Candidate, Tally, Target, Timer};
use crate::roster::AgentRecord;

/// A change to publish, on the subject of its agent and kind.
pub type Outgoing = AgentEvent;

/// What an operation returns: its reply and the agent events it caused.
pub type Outcome<T> = Result<(T, Vec<Outgoing>), CtiError>;

#[derive(Debug, Clone)]
struct Channel {
    endpoint: String,
    media: ChannelType,
    holder: Option<String>,
    state: AgentState,
    reason: Option<String>,
    /// A state (and reason) waiting for the channel's interactions to end.
    pending: Option<(AgentState, Option<String>)>,
    revision: u64,
}

impl Channel {
    fn new(endpoint: &str, media: ChannelType) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            media,
            holder: None,
            state: AgentState::NotReady,
            reason: None,
            pending: None,
            revision: 0,
        }
    }

    fn snapshot(&self) -> ChannelSnapshot {
        ChannelSnapshot {
            endpoint: self.endpoint.clone(),
            media: self.media,
            holder: self.holder.clone(),
            agent_state: self.state,
            reason_code: self.reason.clone(),
            pending_state: self.pending.as_ref().map(|(state, _)| *state),
            pending_reason: self.pending.as_ref().and_then(|(_, r)| r.clone()),
            revision: self.revision,
        }
    }

    /// Set who holds the channel and in which state, dropping a pending state; a new
    /// revision.
    fn set(&mut self, holder: Option<String>, state: AgentState, reason: Option<String>) {
        self.holder = holder;
        self.state = state;
        self.reason = reason;
        self.pending = None;
        self.revision += 1;
    }

    /// The holder's state changes now; whether anything changed.
    fn change(&mut self, state: AgentState, reason: Option<String>) -> bool {
        if self.state == state && self.reason == reason {
            return false;
        }
        let holder = self.holder.clone();
        self.set(holder, state, reason);
        true
    }

    /// The holder's state changes when the channel's interactions end (the current state:
    /// no change waits); whether anything changed.
    fn wait(&mut self, state: AgentState, reason: Option<String>) -> bool {
        let pending = (self.state != state || self.reason != reason).then_some((state, reason));
        if self.pending == pending {
            return false;
        }
        self.pending = pending;
        self.revision += 1;
        true
    }
}

/// The simulated CTI platform.
#[derive(Debug)]
pub struct Lab {
    agents: HashMap<String, AgentRecord>,
    by_login: HashMap<String, String>,
    /// place -> its channels, in roster order.
    places: BTreeMap<String, Vec<Channel>>,
    /// place -> the agents whose own place it is.
    owners: HashMap<String, Vec<String>>,
    /// agent -> the place it is logged into.
    logged_in: HashMap<String, String>,
    link: LinkEvent,
    /// Where this incarnation's revisions start ([`Lab::incarnation`]).
    revision_base: u64,
    /// While the link is down: the switch behind it keeps working ([`Lab::at_switch`]),
    /// and the events of what it does are lost ([`Lab::events_lost`]).
    switch_runs: bool,
    /// An operation of the switch itself is running (not an adapter client's call).
    at_switch: bool,
    /// Every event is lost, the link up ([`Lab::lose_events`]).
    losing: bool,
    rejected: HashSet<String>,
    calls: Calls,
    /// agent -> the reason of its logout, waiting for its interactions to end.
    leaving: BTreeMap<String, Option<String>>,
    /// endpoint -> place of the channels whose state change waits.
    waiting: BTreeMap<String, String>,
}

fn err(code: CtiErrorCode, message: impl Into<String>) -> CtiError {
    CtiError::new(code, message)
}

/// A call cannot reach `agent_id`, and why.
fn unavailable(agent_id: &str, why: &str) -> CtiError {
    err(
        CtiErrorCode::InvalidState,
        format!("agent `{agent_id}` is not available: {why}"),
    )
}

impl Lab {
    /// A lab with these agents, nobody logged in; external numbers answer after `answer`.
    pub fn new(roster: Vec<AgentRecord>, answer: Duration) -> Self {
        let mut places: BTreeMap<String, Vec<Channel>> = BTreeMap::new();
        let mut owners: HashMap<String, Vec<String>> = HashMap::new();
        for a in &roster {
            owners
                .entry(a.place.clone())
                .or_default()
                .push(a.agent_id.clone());
            let channels = places.entry(a.place.clone()).or_default();
            for c in &a.channels {
                if !channels.iter().any(|x| x.endpoint == c.endpoint) {
                    channels.push(Channel::new(&c.endpoint, c.media));
                }
            }
        }
        Self {
            by_login: roster
                .iter()
                .map(|a| (a.login.clone(), a.agent_id.clone()))
                .collect(),
            agents: roster
                .into_iter()
                .map(|a| (a.agent_id.clone(), a))
                .collect(),
            places,
            owners,
            logged_in: HashMap::new(),
            link: LinkEvent {
                up: true,
                reason: None,
                incarnation: None,
            },
            revision_base: 0,
            switch_runs: false,
            at_switch: false,
            losing: false,
            rejected: HashSet::new(),
            calls: Calls::new(answer),
            leaving: BTreeMap::new(),
            waiting: BTreeMap::new(),
        }
    }

    /// This lab is incarnation `id` of the CTI: its link status says so, and its revisions
    /// start at `base` (above any an earlier incarnation gave, when taken from the clock)
    /// and its interaction names carry the id's first characters, so a client never takes
    /// a new incarnation's change for an old one.
    pub fn incarnation(mut self, id: &str, base: u64) -> Self {
        self.link.incarnation = Some(id.to_owned());
        self.revision_base = base;
        for channel in self.places.values_mut().flatten() {
            channel.revision = base;
        }
        self.calls
            .restarted(base, &id.chars().take(4).collect::<String>());
        self
    }

    pub(crate) fn agent_count(&self) -> usize {
        self.agents.len()
    }

    pub(crate) fn logged_in_count(&self) -> usize {
        self.logged_in.len()
    }

    pub fn link(&self) -> LinkEvent {
        self.link.clone()
    }

    /// Drop or restore the link (dropped with `switch_runs`: the switch keeps working
    /// behind it). Returns whether it changed.
    pub(crate) fn set_link(&mut self, up: bool, reason: Option<String>, switch_runs: bool) -> bool {
        let changed = self.link.up != up;
        self.switch_runs = !up && switch_runs;
        self.link = LinkEvent {
            incarnation: self.link.incarnation.clone(),
            up,
            reason: if up {
                None
            } else {
                Some(reason.unwrap_or_else(|| "the CTI link was dropped".into()))
            },
        };
        changed
    }

    /// Make the CTI refuse (or accept again) an agent.
    pub(crate) fn set_rejected(&mut self, agent_id: &str, rejected: bool) -> Result<(), CtiError> {
        self.agent(agent_id)?;
        if rejected {
            self.rejected.insert(agent_id.to_owned());
        } else {
            self.rejected.remove(agent_id);
        }
        Ok(())
    }

    /// Run `operation` as the switch itself (a change made at the CTI, a far end, an
    /// offer): it works while the link is down if the switch runs behind it.
    pub(crate) fn at_switch<T>(&mut self, operation: impl FnOnce(&mut Lab) -> T) -> T {
        self.at_switch = true;
        let result = operation(self);
        self.at_switch = false;
        result
    }

    /// Lose every event from now on (or no longer), the link up.
    pub(crate) fn lose_events(&mut self, lose: bool) {
        self.losing = lose;
    }

    /// Whether events are lost: the link is down with the switch running behind it, or
    /// they are lost on the way ([`Lab::lose_events`]).
    pub(crate) fn events_lost(&self) -> bool {
        self.losing || (!self.link.up && self.switch_runs)
    }

    fn link_up(&self) -> Result<(), CtiError> {
        if self.link.up || (self.switch_runs && self.at_switch) {
            Ok(())
        } else {
            Err(err(
                CtiErrorCode::LinkDown,
                format!(
                    "the CTI link is down ({})",
                    self.link.reason.as_deref().unwrap_or("no reason given")
                ),
            ))
        }
    }

    fn agent(&self, agent_id: &str) -> Result<&AgentRecord, CtiError> {
        self.agents.get(agent_id).ok_or_else(|| {
            err(
                CtiErrorCode::UnknownAgent,
                format!("the CTI knows no agent `{agent_id}`"),
            )
        })
    }

    fn usable_agent(&self, agent_id: &str) -> Result<&AgentRecord, CtiError> {
        self.link_up()?;
        let agent = self.agent(agent_id)?;
        if self.rejected.contains(agent_id) {
            return Err(err(
                CtiErrorCode::Rejected,
                format!("the CTI rejects agent `{agent_id}`"),
            ));
        }
        Ok(agent)
    }

    pub fn capabilities(&self) -> Result<Capabilities, CtiError> {
        self.link_up()?;
        Ok(Capabilities {
            channel_groups_supported: true,
            channel_groups_max_per_agent: 1,
            channel_groups_media_types: "TELEPHONY,EMAIL,CHAT".into(),
            single_channels_supported: false,
            single_channels_media_types: String::new(),
        })
    }

    /// Check credentials; no side effect.
    pub fn validate(&self, agent_id: &str, login: &str, password: &str) -> Result<Done, CtiError> {
        let agent = self.usable_agent(agent_id)?;
        if agent.login == login && agent.password == password {
            Ok(Done {})
        } else {
            Err(err(
                CtiErrorCode::BadCredentials,
                format!("wrong login or password for agent `{agent_id}`"),
            ))
        }
    }

    /// An agent's information, for a requester whose credentials are checked first.
    pub fn agent_info(
        &self,
        agent_id: &str,
        requester_login: &str,
        requester_password: &str,
    ) -> Result<AgentInfo, CtiError> {
        self.link_up()?;
        let requester_ok = self
            .by_login
            .get(requester_login)
            .and_then(|id| self.agents.get(id))
            .is_some_and(|r| r.password == requester_password);
        if !requester_ok {
            return Err(err(
                CtiErrorCode::BadCredentials,
                format!("wrong login or password for requesting agent `{requester_login}`"),
            ));
        }
        let agent = self.agent(agent_id)?;
        Ok(AgentInfo {
            switch_agent_id: agent.switch_agent_id.clone(),
            name: AgentName::Split {
                first: agent.first_name.clone(),
                last: agent.last_name.clone(),
            },
            cti_specific: Some(json!({
                "place": agent.place,
                "channels": agent.channels,
            })),
        })
    }

    /// The agent's place and its channels as they are now.
    pub fn snapshot(&self, agent_id: &str) -> Result<AgentSnapshot, CtiError> {
        self.link_up()?;
        let agent = self.agent(agent_id)?;
        let place = self.logged_in.get(agent_id).unwrap_or(&agent.place).clone();
        Ok(self.snapshot_of(agent_id, &place))
    }

    fn snapshot_of(&self, agent_id: &str, place: &str) -> AgentSnapshot {
        AgentSnapshot {
            agent_id: agent_id.to_owned(),
            logged_in: self.logged_in.get(agent_id).is_some_and(|p| p == place),
            place: place.to_owned(),
            channels: self
                .places
                .get(place)
                .map(|cs| cs.iter().map(Channel::snapshot).collect())
                .unwrap_or_default(),
            interactions: self.calls.of_agent(agent_id),
            logout_pending: self.leaving.contains_key(agent_id),
        }
    }

    /// Who hears about a change of a channel of `place`: its owners, its old and new holder.
    fn audience(&self, place: &str, extra: &[Option<&String>]) -> Vec<String> {
        let mut out: Vec<String> = self.owners.get(place).cloned().unwrap_or_default();
        for who in extra.iter().flatten() {
            if !out.contains(who) {
                out.push((*who).clone());
            }
        }
        out
    }

    fn changed(&self, place: &str, channel: &Channel, before: Option<&String>) -> Vec<Outgoing> {
        self.audience(place, &[before, channel.holder.as_ref()])
            .into_iter()
            .map(|who| AgentEvent::ChannelChanged {
                agent_id: who,
                place: place.to_owned(),
                channel: channel.snapshot(),
            })
            .collect()
    }

    /// The interactions counted.
    pub(crate) fn tally(&self) -> Tally {
        self.calls.tally()
    }

    /// The timers set since the last take, with their delays: fire each with [`Lab::fire`]
    /// when its delay has passed.
    pub(crate) fn take_timers(&mut self) -> Vec<(Duration, Timer)> {
        self.calls.take_timers()
    }

    /// A timer's delay has passed.
    pub fn fire(&mut self, timer: Timer) -> Vec<Outgoing> {
        self.calls.fire(timer);
        self.settle()
    }

    /// After a change: its interactions' changes; then logouts and state changes that
    /// waited take effect and the queue is routed, and the interactions' changes this made
    /// (an ended interaction COMPLETED at a logout, an offer alerting) come before the
    /// channels' changes and the logouts.
    fn settle(&mut self) -> Vec<Outgoing> {
        let mut events = self.calls.emit();
        let mut later = self.apply_logouts();
        later.extend(self.apply_states());
        self.route();
        events.extend(self.calls.emit());
        events.extend(later);
        events
    }

    /// The waiting logouts of agents no longer dialing or handling an interaction.
    fn apply_logouts(&mut self) -> Vec<Outgoing> {
        let mut events = Vec::new();
        loop {
            let due: Vec<String> = self
                .leaving
                .keys()
                .filter(|a| !self.calls.working(a))
                .cloned()
                .collect();
            if due.is_empty() {
                return events;
            }
            for agent_id in due {
                let reason = self.leaving.remove(&agent_id).flatten();
                events.extend(self.log_out_now(&agent_id, reason));
            }
        }
    }

    /// The waiting state changes of channels with nothing live on them any more.
    fn apply_states(&mut self) -> Vec<Outgoing> {
        let due: Vec<(String, String)> = self
            .waiting
            .iter()
            .filter(|(endpoint, _)| !self.calls.live_on(endpoint))
            .map(|(endpoint, place)| (endpoint.clone(), place.clone()))
            .collect();
        let mut events = Vec::new();
        for (endpoint, place) in due {
            self.waiting.remove(&endpoint);
            let Some(channel) = self
                .places
                .get_mut(&place)
                .and_then(|cs| cs.iter_mut().find(|c| c.endpoint == endpoint))
            else {
                continue;
            };
            let Some((state, reason)) = channel.pending.take() else {
                continue;
            };
            channel.change(state, reason);
            let channel = channel.clone();
            events.extend(self.changed(&place, &channel, None));
        }
        events
    }

    /// Offer the queue to the channels held READY by agents not logging out.
    fn route(&mut self) {
        if !self.calls.has_queue() {
            return;
        }
        let candidates = self
            .places
            .values()
            .flatten()
            .filter(|c| c.state == AgentState::Ready)
            .filter_map(|c| {
                let holder = c.holder.as_ref()?;
                (!self.leaving.contains_key(holder)).then(|| Candidate {
                    agent_id: holder.clone(),
                    endpoint: c.endpoint.clone(),
                    media: c.media,
                })
            })
            .collect();
        self.calls.route(candidates);
    }
}

mod agents;
mod interactions;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::generate;

    fn lab() -> Lab {
        Lab::new(generate(3), Duration::from_millis(300))
    }

    #[test]
    fn validate_has_no_side_effect() {
        let lab = lab();
        assert!(lab.validate("1001", "1001", "pw-1001").is_ok());
        assert_eq!(lab.logged_in_count(), 0);
        let e = lab.validate("1001", "1001", "nope").unwrap_err();
        assert_eq!(e.code, CtiErrorCode::BadCredentials);
        assert!(!e.message.contains("nope"));
        assert_eq!(
            lab.validate("9", "9", "x").unwrap_err().code,
            CtiErrorCode::UnknownAgent
        );
    }

    #[test]
    fn login_activate_ready_notready_logout() {
        let mut lab = lab();
        let (snap, events) = lab.login("1001", "pw-1001", None).unwrap();
        assert!(snap.logged_in);
        assert_eq!(snap.place, "place-1001");
        assert!(events.is_empty(), "logging in takes no channel");
        assert_eq!(
            lab.login("1001", "pw-1001", None).unwrap().1.len(),
            0,
            "again: no change"
        );
        let (ch, ev) = lab.activate("1001", "ext-1001").unwrap();
        assert_eq!(ch.holder.as_deref(), Some("1001"));
        assert_eq!(ev.len(), 1);
        let first = ch.revision;
        assert!(lab.activate("1001", "ext-1001").unwrap().1.is_empty());
        let (ch, ev) = lab
            .set_state("1001", "ext-1001", AgentState::Ready, Some("x".into()))
            .unwrap();
        assert_eq!((ch.agent_state, ch.reason_code), (AgentState::Ready, None));
        assert_eq!(ev.len(), 1);
        let (same, ev) = lab
            .set_state("1001", "ext-1001", AgentState::Ready, None)
            .unwrap();
        assert!(ev.is_empty(), "no change, no event");
        assert_eq!(same.revision, first + 1, "one revision per change");
        let (ch, _) = lab
            .set_state(
                "1001",
                "ext-1001",
                AgentState::NotReady,
                Some("lunch".into()),
            )
            .unwrap();
        assert_eq!(ch.reason_code.as_deref(), Some("lunch"));
        let e = lab
            .set_state("1001", "mail-1001", AgentState::Ready, None)
            .unwrap_err();
        assert_eq!(e.code, CtiErrorCode::InvalidState);
        let (snap, events) = lab.logout("1001", Some("eod".into())).unwrap();
        assert!(!snap.logged_in);
        assert!(snap.channels.iter().all(|c| c.holder.is_none()));
        assert!(matches!(events.last(), Some(AgentEvent::LoggedOut { .. })));
        assert_eq!(lab.logged_in_count(), 0);
        let (_, events) = lab.logout("1001", None).unwrap();
        assert!(events.is_empty(), "logging out twice changes nothing");
    }

    #[test]
    fn channels_held_by_other_agents() {
        let mut lab = lab();
        lab.login("1001", "pw-1001", None).unwrap();
        let e = lab.activate("1002", "ext-1001").unwrap_err();
        assert_eq!(e.code, CtiErrorCode::InvalidState, "not logged in");
        // Agent 1002 logs into place-1001 (hot desk) and takes its telephony channel.
        lab.login("1002", "pw-1002", Some("place-1001")).unwrap();
        let (_, events) = lab.activate("1002", "ext-1001").unwrap();
        assert!(
            events.iter().any(|e| e.agent_id() == "1001"),
            "the owner hears"
        );
        let e = lab.activate("1001", "ext-1001").unwrap_err();
        assert!(e.message.contains("held by agent `1002`"), "{}", e.message);
        let (_, events) = lab.deactivate("1002", "ext-1001").unwrap();
        assert!(events.iter().any(|e| e.agent_id() == "1001"));
        assert!(lab.activate("1001", "ext-1001").is_ok());
    }

    #[test]
    fn channels_added_and_removed_at_the_cti() {
        let mut lab = lab();
        let (_, events) = lab
            .add_channel("place-1001", "cb-1001", ChannelType::Callback)
            .unwrap();
        assert!(
            matches!(&events[..], [e @ AgentEvent::ChannelAdded { .. }] if e.agent_id() == "1001")
        );
        assert!(
            lab.add_channel("place-1001", "cb-1001", ChannelType::Callback)
                .is_err()
        );
        lab.login("1001", "pw-1001", None).unwrap();
        lab.activate("1001", "cb-1001").unwrap();
        let e = lab.remove_channel("place-1001", "cb-1001").unwrap_err();
        assert_eq!(e.code, CtiErrorCode::InvalidState, "a held channel stays");
        lab.deactivate("1001", "cb-1001").unwrap();
        let (_, events) = lab.remove_channel("place-1001", "cb-1001").unwrap();
        assert!(
            matches!(&events[..], [AgentEvent::ChannelRemoved { endpoint, .. }] if endpoint == "cb-1001")
        );
        assert!(lab.snapshot("1001").unwrap().channel("cb-1001").is_none());
    }

    #[test]
    fn faults() {
        let mut lab = lab();
        lab.set_rejected("1002", true).unwrap();
        assert_eq!(
            lab.login("1002", "pw-1002", None).unwrap_err().code,
            CtiErrorCode::Rejected
        );
        assert!(lab.set_link(false, None, false));
        assert!(!lab.set_link(false, None, false));
        assert_eq!(lab.capabilities().unwrap_err().code, CtiErrorCode::LinkDown);
        assert_eq!(
            lab.snapshot("1001").unwrap_err().code,
            CtiErrorCode::LinkDown
        );
        assert!(lab.set_link(true, None, false));
        assert!(lab.capabilities().is_ok());
        assert!(lab.set_rejected("nobody", true).is_err());
    }

    #[test]
    fn behind_a_dropped_link_the_switch_may_keep_working() {
        let mut lab = lab();
        lab.set_link(false, Some("cut".into()), true);
        assert!(lab.events_lost());
        // The adapter's clients are refused; the switch's own operations go on.
        assert_eq!(lab.capabilities().unwrap_err().code, CtiErrorCode::LinkDown);
        assert!(lab.at_switch(|lab| lab.snapshot("1001")).is_ok());
        assert_eq!(
            lab.snapshot("1001").unwrap_err().code,
            CtiErrorCode::LinkDown
        );
        lab.set_link(true, None, true);
        assert!(!lab.events_lost(), "a link up loses nothing");
        lab.set_link(false, None, false);
        assert!(!lab.events_lost());
        assert!(
            lab.at_switch(|lab| lab.snapshot("1001")).is_err(),
            "the whole CTI stands still"
        );
    }

    #[test]
    fn agent_info_checks_the_requester() {
        let lab = lab();
        let info = lab.agent_info("1002", "1001", "pw-1001").unwrap();
        assert_eq!(info.switch_agent_id, "sw-1002");
        let e = lab.agent_info("1002", "1001", "bad").unwrap_err();
        assert_eq!(e.code, CtiErrorCode::BadCredentials);
        assert_eq!(
            lab.agent_info("9999", "1001", "pw-1001").unwrap_err().code,
            CtiErrorCode::UnknownAgent
        );
    }
}
