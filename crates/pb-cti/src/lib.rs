//! The CTI adapter contract: how the control, session and channel-group services talk to a
//! CTI platform, over project-internal NATS subjects, so that a real platform's adapter can
//! replace the simulated CTI without touching them. Pure data, no IO.
//!
//! | traffic | subject | pattern |
//! |---|---|---|
//! | call, service to adapter | `P.cti.req.<op>` | request-reply; adapters serve in queue group [`QUEUE_GROUP`] |
//! | link up/down, adapter to services | `P.cti.evt.link` | publish ([`LinkEvent`]) |
//! | an agent's change at the CTI | `P.cti.evt.agent.<agentId>.<event>` | publish ([`AgentEvent`]) |
//!
//! Every call is a [`Call`](pb_protocol::Call) to [`Callee::Cti`] (`P.cti.req.<op>`, [`Subjects::call`](pb_protocol::Subjects::call)): a
//! request struct with its operation name and reply type. The reply payload is a
//! [`CtiReply`]: `{"ok": <reply>}` or `{"error": {"code": "...", "message": "..."}}`.
//!
//! A call that changes something ([`Call::CHANGES`](pb_protocol::Call::CHANGES)) made for a bridge request carries
//! a [`REQUEST_KEY_HEADER`]: the same call with the same key is answered as it was the
//! first time and not done again. A command redone after its first attempt's replica was
//! lost mid-way therefore finds what that attempt did, not a refusal ("already answered").

use serde::{Deserialize, Serialize};

use pb_protocol::channel::{AgentState, ChannelType};
use pb_protocol::control::{AgentInfo, Capabilities};
use pb_protocol::conversation::ConversationState;
use pb_protocol::interaction::{ConversationId, ConversationRole, Conversations, InteractionState};
use pb_protocol::subject::Subjects;
use pb_protocol::target::encode_token;
use pb_protocol::{Body, Callee, Secret};

/// The header of a change made for a bridge request: the request and the call's place among
/// the request's calls. An adapter remembers the answer to each key for a while (at least
/// the reply cache's window, five minutes) and answers a repeat with it, unchanged and
/// without acting or raising events again.
pub const REQUEST_KEY_HEADER: &str = "Pb-Request-Key";

/// The queue group every adapter replica serves calls in.
pub const QUEUE_GROUP: &str = "pb-cti";

/// `P.cti.evt.>`: every event, what an adapter publishes.
pub fn all_events(subjects: &Subjects) -> String {
    subjects.internal("cti.evt.>")
}

/// `P.cti.evt.agent.>`: every agent's every change.
pub fn all_agent_events(subjects: &Subjects) -> String {
    subjects.internal("cti.evt.agent.>")
}

/// `P.cti.evt.link`: link state changes.
pub fn link_events(subjects: &Subjects) -> String {
    subjects.internal("cti.evt.link")
}

/// `P.cti.evt.agent.<agentId>.<event>`: one agent's change at the CTI, `<event>` its
/// [`AgentEvent::token`] (the id is percent-encoded like a target segment), so that a
/// service hears only the changes it acts on.
pub fn agent_event_subject(subjects: &Subjects, event: &AgentEvent) -> String {
    subjects.internal(&format!(
        "cti.evt.agent.{}.{}",
        encode_token(event.agent_id()),
        event.token()
    ))
}

/// `P.cti.evt.agent.*.<event>`: every agent's changes of one kind (`event` an
/// [`AgentEvent::token`], or `*` for all), what a replica of a service subscribes to once,
/// routing each to the agent's handler in the process.
pub fn every_agent_event(subjects: &Subjects, event: &str) -> String {
    subjects.internal(&format!("cti.evt.agent.*.{event}"))
}

/// The agent whose change arrived on `subject` ([`agent_event_subject`]), if it is one.
pub fn agent_of(subjects: &Subjects, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(&subjects.internal("cti.evt.agent."))?;
    let (token, _event) = rest.split_once('.')?;
    pb_protocol::target::decode_token(token).ok()
}

// Each call: its operation (the subject's last token) and reply.
pb_protocol::calls!(Callee::Cti => {
    GetCapabilities = "capabilities" -> CtiReply<Capabilities>;
    GetLinkStatus = "linkstatus" -> CtiReply<LinkEvent>;
    GetAgentInfo = "agentinfo" -> CtiReply<AgentInfo>;
    ValidateCredentials = "validate" -> CtiReply<Done>;
    GetSnapshot = "snapshot" -> CtiReply<AgentSnapshot>;
    Login = "login" -> CtiReply<AgentSnapshot>, changes;
    Activate = "activate" -> CtiReply<ChannelSnapshot>, changes;
    Deactivate = "deactivate" -> CtiReply<ChannelSnapshot>, changes;
    Logout = "logout" -> CtiReply<AgentSnapshot>, changes;
    SetAgentState = "setstate" -> CtiReply<ChannelSnapshot>, changes;
    GetInteraction = "interaction" -> CtiReply<InteractionSnapshot>;
    Dial = "dial" -> CtiReply<InteractionSnapshot>, changes;
    Act = "act" -> CtiReply<InteractionSnapshot>, changes;
});

/// The reply to a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CtiReply<T> {
    Ok(T),
    Error(CtiError),
}

impl<T> From<Result<T, CtiError>> for CtiReply<T> {
    fn from(r: Result<T, CtiError>) -> Self {
        match r {
            Ok(v) => CtiReply::Ok(v),
            Err(e) => CtiReply::Error(e),
        }
    }
}

impl<T> From<CtiReply<T>> for Result<T, CtiError> {
    fn from(r: CtiReply<T>) -> Self {
        match r {
            CtiReply::Ok(v) => Ok(v),
            CtiReply::Error(e) => Err(e),
        }
    }
}

/// A refusal by the CTI: a machine-readable code and a message for the bridge. Messages
/// never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CtiError {
    pub code: CtiErrorCode,
    pub message: String,
}

impl CtiError {
    pub fn new(code: CtiErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Why the CTI refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CtiErrorCode {
    /// The link to the CTI platform is down.
    LinkDown,
    /// No such agent.
    UnknownAgent,
    /// Login or password wrong.
    BadCredentials,
    /// The CTI refuses this agent (for example, a licence or a lab fault).
    Rejected,
    /// The request does not fit the resource's state.
    InvalidState,
    /// The CTI cannot do this.
    Unsupported,
    /// The call itself is malformed.
    BadRequest,
}

impl CtiErrorCode {
    /// The code as it is written on the wire (`link-down`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinkDown => "link-down",
            Self::UnknownAgent => "unknown-agent",
            Self::BadCredentials => "bad-credentials",
            Self::Rejected => "rejected",
            Self::InvalidState => "invalid-state",
            Self::Unsupported => "unsupported",
            Self::BadRequest => "bad-request",
        }
    }
}

/// An empty reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// `capabilities`: what the CTI supports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetCapabilities {}

/// `linkstatus`: whether the CTI link is up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLinkStatus {}

/// `agentinfo`: one agent's information, after checking the requesting agent's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAgentInfo {
    pub agent_id: String,
    pub requester_login: String,
    pub requester_password: Secret,
}

/// `validate`: check an agent's credentials without side effects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateCredentials {
    pub agent_id: String,
    pub login: String,
    pub password: Secret,
}

/// `snapshot`: an agent's place and channels as the CTI sees them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSnapshot {
    pub agent_id: String,
}

/// `login`: authenticate an agent at the CTI and log it into a place (its own by default),
/// without taking any channel; channels are taken with [`Activate`]. Logging in again at
/// the same place changes nothing (a reconnecting desktop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub agent_id: String,
    pub password: Secret,
    /// The place to log into; `None` for the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
}

/// `activate`: a logged-in agent takes a channel of its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activate {
    pub agent_id: String,
    pub endpoint: String,
}

/// `deactivate`: an agent gives a channel back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deactivate {
    pub agent_id: String,
    pub endpoint: String,
}

/// `logout`: give every channel back and leave the place; [`AgentEvent::LoggedOut`] follows.
/// While the agent dials or handles an interaction (DIALING or STARTED), the logout waits
/// for it ([`AgentSnapshot::logout_pending`]) and takes effect, with its event, when it
/// ends; interactions still ALERTING then go back to the CTI (an offer to its queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}

/// `setstate`: set an agent's state on one channel (ready, not ready with a reason, ...).
/// While the channel has an interaction that has not ended, the change waits for it
/// ([`ChannelSnapshot::pending_state`]) and takes effect, with its event, when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAgentState {
    pub agent_id: String,
    pub endpoint: String,
    pub state: AgentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}

/// `interaction`: one of an agent's interactions as the CTI has it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetInteraction {
    pub agent_id: String,
    /// The interaction's CTI name ([`InteractionSnapshot::name`]).
    pub interaction: String,
}

/// `dial`: place an outbound call from a telephony channel the agent holds; the reply is
/// the new interaction, DIALING until the far end answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dial {
    pub agent_id: String,
    pub endpoint: String,
    /// An external number, another channel's endpoint or another agent's id.
    pub destination: String,
}

/// `act`: act on one of an agent's interactions, or on one of its legs; the reply is the
/// interaction after the action. A refusal is [`CtiErrorCode::InvalidState`] when the action
/// does not fit the interaction's or leg's state, with a message saying why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Act {
    pub agent_id: String,
    pub interaction: String,
    pub action: Action,
}

/// What [`Act`] does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Take an ALERTING interaction (for a call: answer its primary leg).
    Accept,
    /// Give an ALERTING interaction back to the queue it came from; it is COMPLETED for
    /// this agent.
    Reject,
    /// Finish the interaction: an ENDED one (any media), or a STARTED chat or email.
    Complete,
    /// Merge attached data (top-level keys replace, `null` removes).
    SetData {
        data: Body,
    },
    /// Telephony, STARTED: hold the primary leg and dial a consult leg.
    Consult {
        destination: String,
    },
    /// Telephony: connect the primary's party to the connected consult party and leave.
    Transfer,
    /// Telephony: join the connected consult party to the primary call.
    Conference,
    /// Telephony: hold whichever of primary and consult is connected, retrieve the other.
    Alternate,
    Answer {
        leg: String,
    },
    Release {
        leg: String,
    },
    Hold {
        leg: String,
    },
    Retrieve {
        leg: String,
    },
    BlindTransfer {
        leg: String,
        destination: String,
    },
    BlindConference {
        leg: String,
        destination: String,
    },
    /// Digits `0-9`, `*`, `#`, `A-D`.
    SendDtmf {
        leg: String,
        digits: String,
    },
}

/// One of an agent's interactions: a call, a chat or an email offered to or handled by the
/// agent. Another agent on the same call (a consult, a transfer) has its own interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionSnapshot {
    /// Its CTI name, unique at the CTI.
    pub name: String,
    /// The channel it is on.
    pub endpoint: String,
    pub media: ChannelType,
    pub state: InteractionState,
    /// Attached (screen-pop) data: values strings or objects.
    #[serde(default)]
    pub data: Body,
    /// Telephony: its call legs, ended ones included (their last state is ENDED).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<LegSnapshot>,
    /// Grows with every change of this interaction, as [`ChannelSnapshot::revision`].
    pub revision: u64,
}

impl InteractionSnapshot {
    /// The leg with this name.
    pub fn leg(&self, name: &str) -> Option<&LegSnapshot> {
        self.legs.iter().find(|l| l.name == name)
    }

    /// The legs that have not ended, as `interaction.query.init` lists them.
    pub fn conversations(&self) -> Conversations {
        let live = |role| {
            self.legs
                .iter()
                .find(|l| l.role == role && l.state != ConversationState::Ended)
                .map(|l| ConversationId { id: l.name.clone() })
        };
        Conversations {
            primary: live(ConversationRole::Primary),
            consult: live(ConversationRole::Consult),
        }
    }
}

/// One leg of a call, as the agent's conversation sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegSnapshot {
    /// Its CTI name, unique at the CTI.
    pub name: String,
    pub role: ConversationRole,
    pub state: ConversationState,
    /// The far end: a number, or another agent's endpoint; several, comma-separated, in a
    /// conference.
    pub remote: String,
}

/// The link state, as a call's reply and as the event on `P.cti.evt.link`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    pub up: bool,
    /// Why the link is down, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The adapter's incarnation: a new one each time it starts. A client that sees it
    /// change knows the adapter forgot everything it was not told again, and re-reads the
    /// state of its agents. (Revisions keep growing across incarnations: an adapter starts
    /// its own above any it gave before, for one from its start time.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
}

/// An agent's place and channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    pub agent_id: String,
    /// Whether the agent is logged in at the CTI.
    pub logged_in: bool,
    /// The place (channel group) the agent is logged into, or its own place when logged out.
    pub place: String,
    pub channels: Vec<ChannelSnapshot>,
    /// The agent's interactions that are not COMPLETED.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interactions: Vec<InteractionSnapshot>,
    /// A logout waits for an interaction to end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logout_pending: bool,
}

impl AgentSnapshot {
    /// The channel with this endpoint.
    pub fn channel(&self, endpoint: &str) -> Option<&ChannelSnapshot> {
        self.channels.iter().find(|c| c.endpoint == endpoint)
    }
}

/// One channel at the CTI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSnapshot {
    pub endpoint: String,
    pub media: ChannelType,
    /// The agent logged in on this channel, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The holder's state on this channel (NOT_READY when nobody holds it).
    pub agent_state: AgentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// A state change that waits for the channel's interactions to end, and its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_state: Option<AgentState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// Grows with every change of this channel: events can arrive after a later call's
    /// reply, and a consumer ignores a snapshot older than one it has applied.
    pub revision: u64,
}

/// Published on `P.cti.evt.agent.<agentId>` whenever something changes for the agent at the
/// CTI, whoever caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum AgentEvent {
    /// A channel of the agent's place changed (holder or state).
    ChannelChanged {
        agent_id: String,
        place: String,
        channel: ChannelSnapshot,
    },
    /// A channel was added to a place the agent owns or is logged into.
    ChannelAdded {
        agent_id: String,
        place: String,
        channel: ChannelSnapshot,
    },
    /// A channel was removed from such a place.
    ChannelRemoved {
        agent_id: String,
        place: String,
        endpoint: String,
        media: ChannelType,
    },
    /// One of the agent's interactions appeared or changed (state, data or legs).
    InteractionChanged {
        agent_id: String,
        interaction: InteractionSnapshot,
    },
    /// The agent was logged out of every channel.
    LoggedOut {
        agent_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason_code: Option<String>,
    },
}

impl AgentEvent {
    /// The agent it is about.
    pub fn agent_id(&self) -> &str {
        match self {
            AgentEvent::ChannelChanged { agent_id, .. }
            | AgentEvent::ChannelAdded { agent_id, .. }
            | AgentEvent::ChannelRemoved { agent_id, .. }
            | AgentEvent::InteractionChanged { agent_id, .. }
            | AgentEvent::LoggedOut { agent_id, .. } => agent_id,
        }
    }

    /// Its last subject token, the same as its `event` tag.
    pub fn token(&self) -> &'static str {
        match self {
            AgentEvent::ChannelChanged { .. } => AgentEvent::CHANNEL_CHANGED,
            AgentEvent::ChannelAdded { .. } => AgentEvent::CHANNEL_ADDED,
            AgentEvent::ChannelRemoved { .. } => AgentEvent::CHANNEL_REMOVED,
            AgentEvent::InteractionChanged { .. } => AgentEvent::INTERACTION_CHANGED,
            AgentEvent::LoggedOut { .. } => AgentEvent::LOGGED_OUT,
        }
    }

    pub const CHANNEL_CHANGED: &'static str = "channel-changed";
    pub const CHANNEL_ADDED: &'static str = "channel-added";
    pub const CHANNEL_REMOVED: &'static str = "channel-removed";
    pub(crate) const INTERACTION_CHANGED: &'static str = "interaction-changed";
    pub const LOGGED_OUT: &'static str = "logged-out";
    /// Every kind: one subscription keeps the order of all of an agent's changes.
    pub const ALL: &'static str = "*";
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb_protocol::Call;
    use serde_json::json;

    #[test]
    fn agent_event_subjects_name_their_agent() {
        let subjects = Subjects::default();
        let event = AgentEvent::ChannelRemoved {
            agent_id: "ag 7.x".into(),
            place: "p".into(),
            endpoint: "e".into(),
            media: ChannelType::Email,
        };
        let subject = agent_event_subject(&subjects, &event);
        assert_eq!(subject, "pb.cti.evt.agent.ag%207%2Ex.channel-removed");
        assert_eq!(agent_of(&subjects, &subject).as_deref(), Some("ag 7.x"));
        assert_eq!(agent_of(&subjects, "pb.cti.evt.link"), None);
        assert_eq!(
            every_agent_event(&subjects, AgentEvent::LOGGED_OUT),
            "pb.cti.evt.agent.*.logged-out"
        );
        // The token is the serde tag.
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], event.token());
    }

    #[test]
    fn reply_wire_form() {
        let ok: CtiReply<Done> = CtiReply::Ok(Done {});
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!({"ok": {}}));
        let err: CtiReply<Done> =
            CtiReply::Error(CtiError::new(CtiErrorCode::LinkDown, "CTI link is down"));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"error": {"code": "link-down", "message": "CTI link is down"}})
        );
    }

    #[test]
    fn subjects() {
        let s = Subjects::default();
        assert_eq!(s.call(Login::CALLEE, Login::OP), "pb.cti.req.login");
        assert_eq!(link_events(&s), "pb.cti.evt.link");
        let out = |agent: &str| AgentEvent::LoggedOut {
            agent_id: agent.into(),
            reason_code: None,
        };
        assert_eq!(
            agent_event_subject(&s, &out("1001")),
            "pb.cti.evt.agent.1001.logged-out"
        );
        assert_eq!(
            agent_event_subject(&s, &out("a.b c")),
            "pb.cti.evt.agent.a%2Eb%20c.logged-out"
        );
    }

    #[test]
    fn events_are_tagged() {
        let e = AgentEvent::LoggedOut {
            agent_id: "1001".into(),
            reason_code: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event": "logged-out", "agent_id": "1001"})
        );
    }
}
