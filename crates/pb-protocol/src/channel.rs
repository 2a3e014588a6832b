//! Channel destinations, `<group>.<channel>`: generic, telephony and unsupported
//! (reference §9.4, contract §7).

use serde::{Deserialize, Serialize};

use crate::session::{CreateChild, ReasonCode};

messages! {
    /// Queries and requests the bridge sends to a channel.
    pub enum ChannelCommand {
        Init = "channel.query.init",
        Dispose = "channel.request.dispose",
        /// Telephony only.
        Dial(Dial) = "channel.request.dial",
        /// Project-defined.
        Activate = "channel.request.activate",
        /// Project-defined.
        Deactivate = "channel.request.deactivate",
        /// Project-defined.
        Ready = "channel.request.ready",
        /// Project-defined.
        NotReady(ReasonCode) = "channel.request.notready",
        /// Project-defined.
        CreateInteraction(CreateChild) = "channel.request.createinteraction",
    }
}

messages! {
    /// Events of a channel.
    pub enum ChannelEvent {
        Activated = "channel.activated",
        Deactivated = "channel.deactivated",
        Available = "channel.available",
        Unavailable = "channel.unavailable",
        Disposed = "channel.disposed",
        /// Project-defined.
        Ready = "channel.ready",
        /// Project-defined.
        NotReady(ReasonCode) = "channel.notready",
        /// Project-defined: a new interaction; the bridge answers with createinteraction.
        InteractionAdded(InteractionRef) = "channel.interaction.added",
    }
}

/// The channel (media) types (reference §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelType {
    Telephony,
    Email,
    Chat,
    Callback,
    Unsupported,
}

impl ChannelType {
    pub const ALL: [ChannelType; 5] = [
        ChannelType::Telephony,
        ChannelType::Email,
        ChannelType::Chat,
        ChannelType::Callback,
        ChannelType::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Telephony => "TELEPHONY",
            ChannelType::Email => "EMAIL",
            ChannelType::Chat => "CHAT",
            ChannelType::Callback => "CALLBACK",
            ChannelType::Unsupported => "UNSUPPORTED",
        }
    }
}

/// Body of `channel.request.dial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dial {
    /// The number to dial: an internal extension or an external number.
    pub destination: String,
}

/// A channel's log-in state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelState {
    /// This session's agent is logged in.
    Active,
    /// Nobody is logged in.
    Inactive,
    /// Another agent is logged in.
    Unavailable,
}

/// An agent's state on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentState {
    Ready,
    NotReady,
    WorkReady,
    WorkNotReady,
}

/// Response body of `channel.query.init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInit {
    pub state: ChannelState,
    #[serde(rename = "agent-state")]
    pub agent_state: AgentState,
    #[serde(
        rename = "reasonCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reason_code: Option<String>,
    /// Set while a requested change waits for an interaction to end.
    #[serde(
        rename = "pending-agent-state",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pending_agent_state: Option<AgentState>,
    /// Absent on an unsupported channel (reference §9.4.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactions: Option<Vec<InteractionRef>>,
}

/// An interaction as a channel names it: its CTI name and media type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionRef {
    pub name: String,
    #[serde(rename = "type")]
    pub media: ChannelType,
}
