//! The lab CTI's interactions: the agents' calls, chats and emails, the calls at the switch
//! their legs are in, and the queue of offers waiting for an agent. Pure, like
//! [`crate::lab`], which checks agents and channels before acting here and routes the queue
//! to the channels it finds ready.
//!
//! A call at the switch is a set of parties, external numbers and agents' legs; one left
//! with fewer than two parties, or with no agent's leg, ends, and every leg still in it ends.
//! An agent's call has a primary leg and consult legs. When its primary ends, a live consult
//! is released with it: a consult exists only while the interaction is STARTED (reference
//! §9.5.2). A chat or an email has no legs: its state is kept, not derived.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::time::Duration;

use pb_cti::{AgentEvent, CtiError, CtiErrorCode, InteractionSnapshot, LegSnapshot};
use pb_protocol::Body;
use pb_protocol::channel::ChannelType;
use pb_protocol::conversation::ConversationState;
use pb_protocol::interaction::{ConversationRole, InteractionState};

use crate::admin::{AgentInteraction, Interactions, Offer};
use crate::traffic;

use ConversationRole::{Consult, Primary};
use ConversationState::{Alerting, Connected, Dialing, Ended, Held};

/// How many offers may wait; the customer behind one more gives up at once.
pub(crate) const QUEUE_CAP: usize = 1000;

/// A conversation that has not ended.
const LIVE: [ConversationState; 4] = [Alerting, Dialing, Connected, Held];

/// An agent's call (interaction), by the order it was made.
pub(crate) type CallId = u64;
type SwitchId = u64;

/// Something the lab does on its own later: [`crate::lab::Lab::take_timers`] hands timers
/// out with their delays, [`crate::lab::Lab::fire`] does them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The external number dialed into this call at the switch answers.
    Answer(u64),
}

/// Where a call goes: another agent's telephony channel, or an external number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Agent { agent_id: String, endpoint: String },
    External(String),
}

/// A channel an offer may go to: held by a ready agent that is not logging out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub agent_id: String,
    pub endpoint: String,
    pub media: ChannelType,
}

/// The interactions counted, for [`crate::admin::SimStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub offered: u64,
    pub queued: usize,
    pub live: usize,
    pub completed: u64,
    pub abandoned: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Party {
    External(String),
    /// An agent's call and the index of its leg.
    Agent {
        call: CallId,
        leg: usize,
    },
}

impl Party {
    fn leg(&self) -> Option<(CallId, usize)> {
        match self {
            Party::Agent { call, leg } => Some((*call, *leg)),
            Party::External(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Leg {
    name: String,
    role: ConversationRole,
    state: ConversationState,
    remote: String,
    /// The call at the switch it is (or was last) in.
    switch: SwitchId,
}

/// Where an offer waits and who may take it; its agent's call keeps it, to give it back.
#[derive(Debug, Clone)]
struct Ticket {
    /// Its place in the queue: the order it was offered in.
    seq: u64,
    /// Telephony: the number waiting on the line.
    caller: Option<String>,
    only: Option<String>,
    /// The agents that rejected it.
    excluded: BTreeSet<String>,
}

impl Ticket {
    fn admits(&self, agent_id: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == agent_id)
            && !self.excluded.contains(agent_id)
    }
}

#[derive(Debug, Clone)]
struct Queued {
    name: String,
    media: ChannelType,
    data: Body,
    ticket: Ticket,
}

#[derive(Debug, Clone)]
enum Progress {
    /// A call: its legs, ended ones included.
    Legs(Vec<Leg>),
    /// A chat or an email: ALERTING, STARTED or ENDED.
    Stage(InteractionState),
}

#[derive(Debug, Clone)]
struct AgentCall {
    name: String,
    agent: String,
    endpoint: String,
    media: ChannelType,
    data: Body,
    progress: Progress,
    completed: bool,
    revision: u64,
    /// The offer it came from, if it came from the queue.
    ticket: Option<Ticket>,
    /// DTMF digits sent, by leg name.
    digits: BTreeMap<String, String>,
}

impl AgentCall {
    fn legs(&self) -> &[Leg] {
        match &self.progress {
            Progress::Legs(legs) => legs,
            Progress::Stage(_) => &[],
        }
    }

    /// A call's state comes from its legs: ENDED when all have ended, else ALERTING or
    /// DIALING while its primary is, else STARTED.
    fn state(&self) -> InteractionState {
        if self.completed {
            return InteractionState::Completed;
        }
        let legs = match &self.progress {
            Progress::Stage(stage) => return *stage,
            Progress::Legs(legs) => legs,
        };
        if legs.iter().all(|l| l.state == Ended) {
            return InteractionState::Ended;
        }
        match legs.iter().find(|l| l.role == Primary).map(|l| l.state) {
            Some(Alerting) => InteractionState::Alerting,
            Some(Dialing) => InteractionState::Dialing,
            _ => InteractionState::Started,
        }
    }

    /// Its live leg of this role, and where it is.
    fn live(&self, role: ConversationRole) -> Option<(usize, &Leg)> {
        self.legs()
            .iter()
            .enumerate()
            .find(|(_, l)| l.role == role && l.state != Ended)
    }

    /// Its leg named `name`.
    fn named(&self, name: &str) -> Result<(usize, &Leg), CtiError> {
        self.legs()
            .iter()
            .enumerate()
            .find(|(_, l)| l.name == name)
            .ok_or_else(|| bad(format!("interaction `{}` has no leg `{name}`", self.name)))
    }

    fn telephony(&self) -> Result<(), CtiError> {
        match self.progress {
            Progress::Legs(_) => Ok(()),
            Progress::Stage(_) => Err(bad(format!(
                "interaction `{}` is {}: only a telephony call can do this",
                self.name,
                self.media.as_str()
            ))),
        }
    }

    /// Refuse unless it is in `state`; `only` says what such an interaction can do.
    fn expect(&self, state: InteractionState, only: &str) -> Result<(), CtiError> {
        let now = self.state();
        if now == state {
            Ok(())
        } else {
            Err(invalid(format!(
                "interaction `{}` is {}: only {only}",
                self.name,
                upper(now)
            )))
        }
    }

    fn snapshot(&self) -> InteractionSnapshot {
        InteractionSnapshot {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            media: self.media,
            state: self.state(),
            data: self.data.clone(),
            legs: self
                .legs()
                .iter()
                .map(|l| LegSnapshot {
                    name: l.name.clone(),
                    role: l.role,
                    state: l.state,
                    remote: l.remote.clone(),
                })
                .collect(),
            revision: self.revision,
        }
    }
}

/// Refuse unless the leg is in one of `states`; `only` says which legs can do what.
fn leg_in(leg: &Leg, states: &[ConversationState], only: &str) -> Result<(), CtiError> {
    if states.contains(&leg.state) {
        Ok(())
    } else {
        Err(invalid(format!(
            "conversation `{}` is {}: only {only}",
            leg.name,
            upper(leg.state)
        )))
    }
}

fn invalid(message: impl Into<String>) -> CtiError {
    CtiError::new(CtiErrorCode::InvalidState, message)
}

fn bad(message: impl Into<String>) -> CtiError {
    CtiError::new(CtiErrorCode::BadRequest, message)
}

fn no_call(id: CallId) -> CtiError {
    bad(format!("the CTI has no interaction #{id}"))
}

/// A state as the protocol spells it (`ALERTING`).
fn upper(value: impl Debug) -> String {
    format!("{value:?}").to_uppercase()
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    offered: u64,
    completed: u64,
    abandoned: u64,
}

/// Every interaction at the lab CTI, the calls at its switch and its queue.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    /// By id, the order they were made in; a COMPLETED one goes once its change is out.
    calls: BTreeMap<CallId, AgentCall>,
    /// CTI name -> the newest call with it (an offer given back keeps its name).
    names: HashMap<String, CallId>,
    switches: HashMap<SwitchId, Vec<Party>>,
    /// Offers waiting, oldest first.
    queue: BTreeMap<u64, Queued>,
    /// endpoint -> when it last became free, on the serial clock.
    idle: HashMap<String, u64>,
    /// Ids, switch calls, queue places and the clock of `idle`.
    serial: u64,
    /// Names made: `call-N`, `chat-N`, `email-N` (`call-<tag>-N` with a tag).
    made: u64,
    /// The incarnation's tag in names, so that a restarted simulator never reuses one.
    tag: String,
    /// The calls changed since the last [`Calls::emit`], in the order they changed.
    touched: Vec<CallId>,
    timers: Vec<(Duration, Timer)>,
    /// How long an external number takes to answer.
    answer: Duration,
    counts: Counts,
}

impl Calls {
    /// No interactions yet; external numbers answer after `answer`.
    pub(crate) fn new(answer: Duration) -> Self {
        Self {
            answer,
            ..Self::default()
        }
    }

    /// Serials (revisions among them) from `base` on, names tagged with `tag`: the calls
    /// of one incarnation of the simulator.
    pub(crate) fn restarted(&mut self, base: u64, tag: &str) {
        self.serial = base;
        self.tag = tag.to_owned();
    }

    fn serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn name(&mut self, kind: &str) -> String {
        self.made += 1;
        if self.tag.is_empty() {
            format!("{kind}-{}", self.made)
        } else {
            format!("{kind}-{}-{}", self.tag, self.made)
        }
    }

    fn call(&self, id: CallId) -> Result<&AgentCall, CtiError> {
        self.calls.get(&id).ok_or_else(|| no_call(id))
    }

    fn leg_ref(&self, id: CallId, leg: usize) -> Option<&Leg> {
        self.calls.get(&id)?.legs().get(leg)
    }

    fn leg_mut(&mut self, id: CallId, leg: usize) -> Option<&mut Leg> {
        match &mut self.calls.get_mut(&id)?.progress {
            Progress::Legs(legs) => legs.get_mut(leg),
            Progress::Stage(_) => None,
        }
    }

    /// A call changed: a new revision, and its change goes out at the next [`Calls::emit`].
    /// Revisions come from the lab's one clock, so an interaction offered again under the
    /// same name (given back, then routed anew) never looks older than its first life.
    fn touch(&mut self, id: CallId) {
        let revision = self.serial();
        if let Some(call) = self.calls.get_mut(&id) {
            call.revision = revision;
        }
        if !self.touched.contains(&id) {
            self.touched.push(id);
        }
    }

    fn set_leg(&mut self, id: CallId, leg: usize, state: ConversationState) {
        if let Some(l) = self.leg_mut(id, leg) {
            l.state = state;
        }
        self.touch(id);
    }

    fn set_stage(&mut self, id: CallId, state: InteractionState) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.progress = Progress::Stage(state);
        }
        self.touch(id);
    }

    /// The interaction named `name` that is not COMPLETED, whoever's it is.
    fn named_call(&self, name: &str) -> Option<(CallId, &AgentCall)> {
        let id = *self.names.get(name)?;
        self.calls
            .get(&id)
            .filter(|c| !c.completed)
            .map(|c| (id, c))
    }

    /// The agent's interaction named `name` that is not COMPLETED.
    pub(crate) fn find(&self, agent_id: &str, name: &str) -> Result<CallId, CtiError> {
        self.named_call(name)
            .filter(|(_, c)| c.agent == agent_id)
            .map(|(id, _)| id)
            .ok_or_else(|| bad(format!("agent `{agent_id}` has no interaction `{name}`")))
    }

    /// The agent's interaction named `name` as it is now.
    pub(crate) fn snapshot(
        &self,
        agent_id: &str,
        name: &str,
    ) -> Result<InteractionSnapshot, CtiError> {
        Ok(self.call(self.find(agent_id, name)?)?.snapshot())
    }

    /// The agent's interactions that are not COMPLETED, oldest first.
    pub(crate) fn of_agent(&self, agent_id: &str) -> Vec<InteractionSnapshot> {
        self.calls
            .values()
            .filter(|c| c.agent == agent_id && !c.completed)
            .map(AgentCall::snapshot)
            .collect()
    }

    /// Whether the channel has an interaction that is ALERTING, DIALING or STARTED.
    pub(crate) fn live_on(&self, endpoint: &str) -> bool {
        self.calls
            .values()
            .any(|c| c.endpoint == endpoint && c.state().is_live())
    }

    /// Whether the agent is dialing or handling an interaction: its logout waits for it.
    pub(crate) fn working(&self, agent_id: &str) -> bool {
        self.calls.values().any(|c| {
            c.agent == agent_id
                && matches!(
                    c.state(),
                    InteractionState::Dialing | InteractionState::Started
                )
        })
    }

    /// Whether offers are waiting.
    pub(crate) fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Every interaction that is not COMPLETED, and the queue.
    pub(crate) fn listing(&self) -> Interactions {
        Interactions {
            interactions: self
                .calls
                .values()
                .filter(|c| !c.completed)
                .map(|c| AgentInteraction {
                    agent_id: c.agent.clone(),
                    interaction: c.snapshot(),
                    digits: c.digits.clone(),
                })
                .collect(),
            queued: self.queue.values().map(|q| q.name.clone()).collect(),
        }
    }

    pub(crate) fn tally(&self) -> Tally {
        Tally {
            offered: self.counts.offered,
            queued: self.queue.len(),
            live: self.calls.values().filter(|c| c.state().is_live()).count(),
            completed: self.counts.completed,
            abandoned: self.counts.abandoned,
        }
    }

    /// The timers set since the last take.
    pub(crate) fn take_timers(&mut self) -> Vec<(Duration, Timer)> {
        std::mem::take(&mut self.timers)
    }

    /// The changes of the calls touched since the last emit, to their agents, in the order
    /// they were touched; the COMPLETED ones are then forgotten.
    pub(crate) fn emit(&mut self) -> Vec<AgentEvent> {
        let touched = std::mem::take(&mut self.touched);
        let events = touched
            .iter()
            .filter_map(|id| self.calls.get(id))
            .map(|c| AgentEvent::InteractionChanged {
                agent_id: c.agent.clone(),
                interaction: c.snapshot(),
            })
            .collect();
        for id in touched {
            if self.calls.get(&id).is_some_and(|c| c.completed)
                && let Some(call) = self.calls.remove(&id)
                && self.names.get(&call.name) == Some(&id)
            {
                self.names.remove(&call.name);
            }
        }
        events
    }

    /// A customer's call, chat or email joins the queue; its name. Beyond [`QUEUE_CAP`] the
    /// customer gives up at once.
    pub(crate) fn offer(&mut self, offer: Offer) -> Result<String, CtiError> {
        let kind = match offer.media {
            ChannelType::Telephony => "call",
            ChannelType::Chat => "chat",
            ChannelType::Email => "email",
            other => {
                return Err(bad(format!(
                    "an offer is a TELEPHONY, CHAT or EMAIL interaction, not {}",
                    other.as_str()
                )));
            }
        };
        if offer.from.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err(bad("the caller's number `from` is empty"));
        }
        self.counts.offered += 1;
        if self.queue.len() >= QUEUE_CAP {
            self.counts.abandoned += 1;
            return Err(invalid(format!(
                "the queue is full ({QUEUE_CAP} offers waiting): the customer gave up"
            )));
        }
        let name = self.name(kind);
        let seq = self.serial();
        let caller = (offer.media == ChannelType::Telephony)
            .then(|| offer.from.unwrap_or_else(|| traffic::phone_number(seq)));
        let ticket = Ticket {
            seq,
            caller,
            only: offer.agent_id,
            excluded: BTreeSet::new(),
        };
        self.queue.insert(
            seq,
            Queued {
                name: name.clone(),
                media: offer.media,
                data: offer.data,
                ticket,
            },
        );
        Ok(name)
    }

    /// The channel became free now (taken, or its last interaction COMPLETED).
    pub(crate) fn freed(&mut self, endpoint: &str) {
        let now = self.serial();
        self.idle.insert(endpoint.to_owned(), now);
    }

    /// Give the waiting offers, oldest first, to these channels: to one of the offer's media
    /// with no interaction that is not COMPLETED, an agent the offer admits, the channel free
    /// the longest.
    pub(crate) fn route(&mut self, candidates: Vec<Candidate>) {
        let mut free: HashMap<ChannelType, Vec<Candidate>> = HashMap::new();
        {
            let taken: HashSet<&str> = self
                .calls
                .values()
                .filter(|c| !c.completed)
                .map(|c| c.endpoint.as_str())
                .collect();
            for c in candidates {
                if !taken.contains(c.endpoint.as_str()) {
                    free.entry(c.media).or_default().push(c);
                }
            }
        }
        let since = |c: &Candidate| self.idle.get(&c.endpoint).copied().unwrap_or(0);
        for list in free.values_mut() {
            list.sort_by(|a, b| (since(a), &a.endpoint).cmp(&(since(b), &b.endpoint)));
        }
        let waiting: Vec<u64> = self.queue.keys().copied().collect();
        for seq in waiting {
            let Some(item) = self.queue.get(&seq) else {
                continue;
            };
            let Some(list) = free.get_mut(&item.media) else {
                continue;
            };
            let Some(at) = list.iter().position(|c| item.ticket.admits(&c.agent_id)) else {
                continue;
            };
            let chosen = list.remove(at);
            if let Some(item) = self.queue.remove(&seq) {
                self.assign(item, chosen);
            }
        }
    }

    /// The offer alerts at the agent's channel (a call: at its phone, the caller on the line).
    fn assign(&mut self, item: Queued, to: Candidate) {
        let caller = item.ticket.caller.clone();
        let id = self.open(
            item.name,
            to.agent_id,
            to.endpoint,
            item.media,
            item.data,
            Some(item.ticket),
        );
        if let Some(caller) = caller {
            let switch = self.switch(vec![Party::External(caller)]);
            self.add_leg(id, Primary, Alerting, switch);
        }
    }

    /// A new agent's call, ALERTING until a call's legs say otherwise.
    fn open(
        &mut self,
        name: String,
        agent: String,
        endpoint: String,
        media: ChannelType,
        data: Body,
        ticket: Option<Ticket>,
    ) -> CallId {
        let id = self.serial();
        let progress = if media == ChannelType::Telephony {
            Progress::Legs(Vec::new())
        } else {
            Progress::Stage(InteractionState::Alerting)
        };
        self.names.insert(name.clone(), id);
        self.calls.insert(
            id,
            AgentCall {
                name,
                agent,
                endpoint,
                media,
                data,
                progress,
                completed: false,
                revision: 0,
                ticket,
                digits: BTreeMap::new(),
            },
        );
        self.touch(id);
        id
    }

    fn switch(&mut self, parties: Vec<Party>) -> SwitchId {
        let id = self.serial();
        self.switches.insert(id, parties);
        id
    }

    /// A new leg of the call, in the call at the switch `switch`.
    fn add_leg(
        &mut self,
        id: CallId,
        role: ConversationRole,
        state: ConversationState,
        switch: SwitchId,
    ) {
        let Some(AgentCall {
            name,
            progress: Progress::Legs(legs),
            ..
        }) = self.calls.get_mut(&id)
        else {
            return;
        };
        let name = match role {
            Primary => format!("{name}.p"),
            Consult => format!(
                "{name}.c{}",
                legs.iter().filter(|l| l.role == Consult).count() + 1
            ),
        };
        legs.push(Leg {
            name,
            role,
            state,
            remote: String::new(),
            switch,
        });
        let leg = legs.len() - 1;
        self.touch(id);
        self.join(switch, Party::Agent { call: id, leg });
    }

    fn join(&mut self, switch: SwitchId, party: Party) {
        if let Some((id, leg)) = party.leg()
            && let Some(l) = self.leg_mut(id, leg)
        {
            l.switch = switch;
        }
        if let Some(parties) = self.switches.get_mut(&switch) {
            parties.push(party);
        }
        self.remotes(switch);
    }

    /// The leg leaves its call at the switch and ends; a primary takes its live consult
    /// with it.
    fn leave(&mut self, id: CallId, leg: usize) {
        let Some(l) = self.leg_mut(id, leg) else {
            return;
        };
        if l.state == Ended {
            return;
        }
        l.state = Ended;
        let (switch, role) = (l.switch, l.role);
        self.touch(id);
        if let Some(parties) = self.switches.get_mut(&switch) {
            parties.retain(|p| *p != Party::Agent { call: id, leg });
            self.check(switch);
        }
        if role == Primary
            && let Some((consult, _)) = self.calls.get(&id).and_then(|c| c.live(Consult))
        {
            self.leave(id, consult);
        }
    }

    /// A call at the switch with fewer than two parties or no agent's leg ends; otherwise
    /// its legs' remotes follow its parties.
    fn check(&mut self, switch: SwitchId) {
        let Some(parties) = self.switches.get(&switch) else {
            return;
        };
        if parties.len() >= 2 && parties.iter().any(|p| p.leg().is_some()) {
            self.remotes(switch);
        } else if let Some(parties) = self.switches.remove(&switch) {
            for (id, leg) in parties.iter().filter_map(Party::leg) {
                self.leave(id, leg);
            }
        }
    }

    /// How the other parties see this one: its number, or its agent's endpoint.
    fn address(&self, party: &Party) -> String {
        match party {
            Party::External(number) => number.clone(),
            Party::Agent { call, .. } => self
                .calls
                .get(call)
                .map(|c| c.endpoint.clone())
                .unwrap_or_default(),
        }
    }

    /// Every leg in the call at the switch sees the other parties, comma-separated.
    fn remotes(&mut self, switch: SwitchId) {
        let Some(parties) = self.switches.get(&switch) else {
            return;
        };
        let addresses: Vec<String> = parties.iter().map(|p| self.address(p)).collect();
        let legs: Vec<(usize, (CallId, usize))> = parties
            .iter()
            .enumerate()
            .filter_map(|(at, p)| Some((at, p.leg()?)))
            .collect();
        for (at, (id, leg)) in legs {
            let remote = addresses
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != at)
                .map(|(_, a)| a.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let changed = match self.leg_mut(id, leg) {
                Some(l) if l.remote != remote => {
                    l.remote = remote;
                    true
                }
                _ => false,
            };
            if changed {
                self.touch(id);
            }
        }
    }

    /// The target joins the call at the switch: another agent gets a new call, ALERTING,
    /// with this data; an external number answers after the answer delay.
    fn reach(&mut self, switch: SwitchId, target: Target, data: Body) {
        match target {
            Target::Agent { agent_id, endpoint } => {
                let name = self.name("call");
                let id = self.open(name, agent_id, endpoint, ChannelType::Telephony, data, None);
                self.add_leg(id, Primary, Alerting, switch);
            }
            Target::External(number) => {
                self.join(switch, Party::External(number));
                self.timers.push((self.answer, Timer::Answer(switch)));
            }
        }
    }

    /// The agents' legs DIALING in the call at the switch are answered.
    fn connect_dialing(&mut self, switch: SwitchId) {
        let legs: Vec<(CallId, usize)> = self
            .switches
            .get(&switch)
            .map(|parties| parties.iter().filter_map(Party::leg).collect())
            .unwrap_or_default();
        for (id, leg) in legs {
            if self.leg_ref(id, leg).is_some_and(|l| l.state == Dialing) {
                self.set_leg(id, leg, Connected);
            }
        }
    }

    /// A timer is due.
    pub(crate) fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Answer(switch) => self.connect_dialing(switch),
        }
    }

    /// A new call from the agent's telephony channel, DIALING, to the target; its name.
    pub(crate) fn dial(&mut self, agent_id: &str, endpoint: &str, target: Target) -> String {
        let name = self.name("call");
        let id = self.open(
            name.clone(),
            agent_id.to_owned(),
            endpoint.to_owned(),
            ChannelType::Telephony,
            Body::new(),
            None,
        );
        let switch = self.switch(Vec::new());
        self.add_leg(id, Primary, Dialing, switch);
        self.reach(switch, target, Body::new());
        name
    }

    /// The interaction is COMPLETED; its channel is free when nothing else is on it.
    fn close(&mut self, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.completed = true;
        let endpoint = call.endpoint.clone();
        self.touch(id);
        if !self
            .calls
            .values()
            .any(|c| c.endpoint == endpoint && !c.completed)
        {
            self.freed(&endpoint);
        }
    }

    /// An ALERTING interaction leaves its agent, COMPLETED: an offer goes back to the queue
    /// (without this agent when `refused`, the caller waiting again), another agent's call
    /// is declined.
    fn give_up(&mut self, id: CallId, refused: bool) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let back = call.ticket.clone().map(|mut ticket| {
            if refused {
                ticket.excluded.insert(call.agent.clone());
            }
            Queued {
                name: call.name.clone(),
                media: call.media,
                data: call.data.clone(),
                ticket,
            }
        });
        if let Some((leg, switch)) = call.live(Primary).map(|(at, l)| (at, l.switch)) {
            if back.is_some() {
                self.switches.remove(&switch);
            }
            self.leave(id, leg);
        }
        self.close(id);
        if let Some(item) = back {
            self.queue.insert(item.ticket.seq, item);
        }
    }

    /// The agent logs out: its ALERTING interactions leave it, its ENDED ones are COMPLETED.
    pub(crate) fn give_back(&mut self, agent_id: &str) {
        let mine: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.agent == agent_id && !c.completed)
            .map(|(id, _)| *id)
            .collect();
        for id in mine {
            match self.calls.get(&id).map(AgentCall::state) {
                Some(InteractionState::Alerting) => self.give_up(id, false),
                Some(InteractionState::Ended) => {
                    self.close(id);
                    self.counts.completed += 1;
                }
                _ => {}
            }
        }
    }

    /// The customer leaves: an offer waiting is dropped; a call's external parties hang up;
    /// a chat or an email is closed.
    pub(crate) fn hangup(&mut self, name: &str) -> Result<(), CtiError> {
        if let Some(seq) = self
            .queue
            .iter()
            .find(|(_, q)| q.name == name)
            .map(|(seq, _)| *seq)
        {
            self.queue.remove(&seq);
            self.counts.abandoned += 1;
            return Ok(());
        }
        let (id, call) = self
            .named_call(name)
            .ok_or_else(|| bad(format!("the CTI has no interaction or offer `{name}`")))?;
        let state = call.state();
        if !state.is_live() {
            return Err(invalid(format!(
                "interaction `{name}` is {}: its customer has left already",
                upper(state)
            )));
        }
        let switches: Option<Vec<SwitchId>> = match &call.progress {
            Progress::Legs(legs) => Some(
                legs.iter()
                    .filter(|l| l.state != Ended)
                    .map(|l| l.switch)
                    .collect(),
            ),
            Progress::Stage(_) => None,
        };
        match switches {
            Some(switches) => self.drop_externals(name, switches)?,
            None => self.set_stage(id, InteractionState::Ended),
        }
        if state == InteractionState::Alerting {
            self.counts.abandoned += 1;
        }
        Ok(())
    }

    /// Every external party of these calls at the switch hangs up.
    fn drop_externals(&mut self, name: &str, switches: Vec<SwitchId>) -> Result<(), CtiError> {
        let external = |p: &Party| matches!(p, Party::External(_));
        let any = switches.iter().any(|s| {
            self.switches
                .get(s)
                .is_some_and(|ps| ps.iter().any(external))
        });
        if !any {
            return Err(invalid(format!(
                "call `{name}` has no external party to hang up"
            )));
        }
        for switch in switches {
            if let Some(parties) = self.switches.get_mut(&switch) {
                parties.retain(|p| !external(p));
            }
            self.check(switch);
        }
        Ok(())
    }

    /// Take an ALERTING interaction: a chat or an email STARTS, a call's primary is answered.
    pub(crate) fn accept(&mut self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        call.expect(
            InteractionState::Alerting,
            "an ALERTING interaction can be accepted",
        )?;
        match call.live(Primary).map(|(leg, _)| leg) {
            Some(leg) => self.answer_leg(id, leg),
            None => self.set_stage(id, InteractionState::Started),
        }
        Ok(())
    }

    /// Give an ALERTING interaction back: COMPLETED for this agent, an offer back in the
    /// queue for the others.
    pub(crate) fn reject(&mut self, id: CallId) -> Result<(), CtiError> {
        self.call(id)?.expect(
            InteractionState::Alerting,
            "an ALERTING interaction can be rejected",
        )?;
        self.give_up(id, true);
        Ok(())
    }

    /// Finish an ENDED interaction, or a STARTED chat or email.
    pub(crate) fn complete(&mut self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        match (call.state(), &call.progress) {
            (InteractionState::Ended, _) | (InteractionState::Started, Progress::Stage(_)) => {}
            (InteractionState::Started, Progress::Legs(_)) => {
                return Err(invalid(format!(
                    "call `{}` is STARTED: release the call first",
                    call.name
                )));
            }
            (state, _) => {
                return Err(invalid(format!(
                    "interaction `{}` is {}: only an ENDED interaction, or a STARTED chat or \
                     email, can be completed",
                    call.name,
                    upper(state)
                )));
            }
        }
        self.close(id);
        self.counts.completed += 1;
        Ok(())
    }

    /// Merge attached data: top-level keys replace, `null` removes.
    pub(crate) fn set_data(&mut self, id: CallId, data: Body) -> Result<(), CtiError> {
        let call = self.calls.get_mut(&id).ok_or_else(|| no_call(id))?;
        for (key, value) in data {
            if value.is_null() {
                call.data.remove(&key);
            } else {
                call.data.insert(key, value);
            }
        }
        self.touch(id);
        Ok(())
    }

    /// Answer an ALERTING leg.
    pub(crate) fn answer(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(l, &[Alerting], "an ALERTING conversation can be answered")?;
        self.answer_leg(id, at);
        Ok(())
    }

    /// The leg is CONNECTED, and so are the legs dialing it.
    fn answer_leg(&mut self, id: CallId, leg: usize) {
        self.set_leg(id, leg, Connected);
        if let Some(switch) = self.leg_ref(id, leg).map(|l| l.switch) {
            self.connect_dialing(switch);
        }
    }

    /// Hang a live leg up.
    pub(crate) fn release(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(l, &LIVE, "a live conversation can be released")?;
        self.leave(id, at);
        Ok(())
    }

    /// Hold a CONNECTED leg.
    pub(crate) fn hold(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        self.flip(
            id,
            leg,
            Connected,
            Held,
            "a CONNECTED conversation can be held",
        )
    }

    /// Retrieve a HELD leg.
    pub(crate) fn retrieve(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        self.flip(
            id,
            leg,
            Held,
            Connected,
            "a HELD conversation can be retrieved",
        )
    }

    fn flip(
        &mut self,
        id: CallId,
        leg: &str,
        from: ConversationState,
        to: ConversationState,
        only: &str,
    ) -> Result<(), CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(l, &[from], only)?;
        self.set_leg(id, at, to);
        Ok(())
    }

    /// Whether the call can consult: STARTED, with no live consult.
    pub(crate) fn can_consult(&self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        call.telephony()?;
        call.expect(InteractionState::Started, "a STARTED call can consult")?;
        match call.live(Consult) {
            Some((_, leg)) => Err(invalid(format!(
                "call `{}` already consults on `{}`",
                call.name, leg.name
            ))),
            None => Ok(()),
        }
    }

    /// Hold the primary and dial a consult leg to the target, which gets a copy of the data.
    pub(crate) fn consult(&mut self, id: CallId, target: Target) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let data = call.data.clone();
        let connected = call
            .live(Primary)
            .filter(|(_, l)| l.state == Connected)
            .map(|(leg, _)| leg);
        if let Some(leg) = connected {
            self.set_leg(id, leg, Held);
        }
        let switch = self.switch(Vec::new());
        self.add_leg(id, Consult, Dialing, switch);
        self.reach(switch, target, data);
    }

    /// The call's live primary and answered (CONNECTED or HELD) consult.
    fn answered_consult(&self, id: CallId, what: &str) -> Result<(usize, usize), CtiError> {
        let call = self.call(id)?;
        call.telephony()?;
        // Answered: connected, or held after an alternate.
        let consult = call
            .live(Consult)
            .filter(|(_, l)| matches!(l.state, Connected | Held));
        match (call.live(Primary), consult) {
            (Some((primary, _)), Some((consult, _))) => Ok((primary, consult)),
            _ => Err(invalid(format!(
                "call `{}` has no answered consult to {what}",
                call.name
            ))),
        }
    }

    /// The consult's other parties join the primary's call; the agent leaves both.
    pub(crate) fn transfer(&mut self, id: CallId) -> Result<(), CtiError> {
        let (primary, consult) = self.answered_consult(id, "transfer to")?;
        self.merge(id, primary, consult);
        self.leave(id, primary);
        Ok(())
    }

    /// The consult's other parties join the primary's call, which the agent takes back.
    pub(crate) fn conference(&mut self, id: CallId) -> Result<(), CtiError> {
        let (primary, consult) = self.answered_consult(id, "conference")?;
        self.merge(id, primary, consult);
        if self.leg_ref(id, primary).is_some_and(|l| l.state == Held) {
            self.set_leg(id, primary, Connected);
        }
        Ok(())
    }

    /// The consult's other parties move to the primary's call at the switch; the consult
    /// leg ends.
    fn merge(&mut self, id: CallId, primary: usize, consult: usize) {
        let (Some(to), Some(from)) = (
            self.leg_ref(id, primary).map(|l| l.switch),
            self.leg_ref(id, consult).map(|l| l.switch),
        ) else {
            return;
        };
        let ours = Party::Agent {
            call: id,
            leg: consult,
        };
        let moved: Vec<Party> = self
            .switches
            .get_mut(&from)
            .map(|parties| {
                let moved = parties.iter().filter(|p| **p != ours).cloned().collect();
                parties.retain(|p| *p == ours);
                moved
            })
            .unwrap_or_default();
        for party in moved {
            self.join(to, party);
        }
        self.leave(id, consult);
    }

    /// Swap the primary and the consult: the CONNECTED one is held, the HELD one retrieved.
    pub(crate) fn alternate(&mut self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        call.telephony()?;
        let (Some((primary, p)), Some((consult, c))) = (call.live(Primary), call.live(Consult))
        else {
            return Err(invalid(format!(
                "call `{}` has no consult to alternate with",
                call.name
            )));
        };
        let (hold, retrieve) = match (p.state, c.state) {
            (Held, Connected) => (consult, primary),
            (Connected, Held) => (primary, consult),
            _ => {
                return Err(invalid(format!(
                    "alternating needs one CONNECTED and one HELD conversation: `{}` is {}, \
                     `{}` is {}",
                    p.name,
                    upper(p.state),
                    c.name,
                    upper(c.state)
                )));
            }
        };
        self.set_leg(id, hold, Held);
        self.set_leg(id, retrieve, Connected);
        Ok(())
    }

    /// The leg a blind transfer or conference starts from: CONNECTED or HELD.
    pub(crate) fn can_blind(&self, id: CallId, leg: &str) -> Result<usize, CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(
            l,
            &[Connected, Held],
            "a CONNECTED or HELD conversation can be blind transferred or conferenced",
        )?;
        Ok(at)
    }

    /// The target joins the leg's call at the switch (another agent with a copy of the
    /// data); the leg leaves unless it `stays` (a conference).
    pub(crate) fn blind(&mut self, id: CallId, leg: usize, target: Target, stays: bool) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let data = call.data.clone();
        let Some(switch) = call.legs().get(leg).map(|l| l.switch) else {
            return;
        };
        self.reach(switch, target, data);
        if !stays {
            self.leave(id, leg);
        }
    }

    /// Send DTMF digits on a CONNECTED leg: recorded for the leg, no change of state.
    pub(crate) fn send_dtmf(
        &mut self,
        id: CallId,
        leg: &str,
        digits: &str,
    ) -> Result<(), CtiError> {
        let valid = |d: char| d.is_ascii_digit() || "*#ABCD".contains(d);
        if digits.is_empty() || !digits.chars().all(valid) {
            return Err(bad(format!(
                "DTMF digits `{digits}`: only 0-9, *, # and A-D can be sent"
            )));
        }
        let (_, l) = self.call(id)?.named(leg)?;
        leg_in(l, &[Connected], "a CONNECTED conversation can send DTMF")?;
        let leg = l.name.clone();
        if let Some(call) = self.calls.get_mut(&id) {
            call.digits.entry(leg).or_default().push_str(digits);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
