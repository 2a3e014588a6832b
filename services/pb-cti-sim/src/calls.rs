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
}

mod actions;
mod queue;
mod switch;

#[cfg(test)]
mod tests;
