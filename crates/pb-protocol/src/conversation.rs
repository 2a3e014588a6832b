//! Conversation destinations, one per call leg, `<interaction>.<conversation>`
//! (reference §9.6, contract §7).

use serde::{Deserialize, Serialize};

use crate::interaction::ConversationRole;

messages! {
    /// Queries and requests the bridge sends to a conversation.
    pub enum ConversationCommand {
        Init = "conversation.query.init",
        /// Project-defined.
        Answer = "conversation.request.answer",
        /// Project-defined.
        Release = "conversation.request.release",
        /// Project-defined.
        Hold = "conversation.request.hold",
        /// Project-defined.
        Retrieve = "conversation.request.retrieve",
        /// Project-defined.
        Dispose = "conversation.request.dispose",
        /// Project-defined.
        BlindTransfer(Destination) = "conversation.request.blindtransfer",
        /// Project-defined.
        BlindConference(Destination) = "conversation.request.blindconference",
        /// Project-defined.
        SendDtmf(Dtmf) = "conversation.request.senddtmf",
    }
}

messages! {
    /// Events of a conversation.
    pub enum ConversationEvent {
        /// Project-defined.
        StateChanged(ConversationStateChanged) = "conversation.statechanged",
    }
}

/// The states of a call leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConversationState {
    Alerting,
    Dialing,
    Connected,
    Held,
    Ended,
}

/// Body of the blind transfer and blind conference requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub destination: String,
}

/// Body of `conversation.request.senddtmf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dtmf {
    pub digits: String,
}

/// Body of `conversation.statechanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationStateChanged {
    #[serde(rename = "conversation-state")]
    pub state: ConversationState,
}

/// Response body of `conversation.query.init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInit {
    #[serde(rename = "conversation-state")]
    pub state: ConversationState,
    pub role: ConversationRole,
    /// The far end: a number or another agent's extension.
    pub remote: String,
}
