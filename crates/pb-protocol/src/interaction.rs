//! Interaction destinations, `<channel>.<interaction>`: generic, telephony and multimedia
//! (reference §9.5, contract §7).

use serde::{Deserialize, Serialize};

use crate::Body;
use crate::session::CreateChild;

messages! {
    /// Queries and requests the bridge sends to an interaction.
    pub enum InteractionCommand {
        Init = "interaction.query.init",
        /// Telephony: dial a consult call.
        Consult(Consult) = "interaction.request.consult",
        /// Project-defined.
        Accept = "interaction.request.accept",
        /// Project-defined.
        Reject = "interaction.request.reject",
        /// Project-defined.
        Complete = "interaction.request.complete",
        /// Project-defined.
        Dispose = "interaction.request.dispose",
        /// Project-defined: merge attached data.
        SetData(InteractionData) = "interaction.request.setdata",
        /// Project-defined, telephony: transfer to the consulted party.
        Transfer = "interaction.request.transfer",
        /// Project-defined, telephony: conference in the consulted party.
        Conference = "interaction.request.conference",
        /// Project-defined, telephony: swap between primary and consult.
        Alternate = "interaction.request.alternate",
        /// Project-defined, telephony.
        CreateConversation(CreateChild) = "interaction.request.createconversation",
    }
}

messages! {
    /// Events of an interaction.
    pub enum InteractionEvent {
        /// Email and chat: waiting to be accepted.
        Alerting = "interaction.alerting",
        /// Project-defined.
        StateChanged(InteractionStateChanged) = "interaction.statechanged",
        /// Project-defined.
        DataChanged(InteractionData) = "interaction.datachanged",
        /// Project-defined.
        ConversationAdded(ConversationAdded) = "interaction.conversation.added",
    }
}

/// The interaction states (reference §10.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InteractionState {
    Alerting,
    Dialing,
    Started,
    Ended,
    Completed,
}

impl InteractionState {
    /// Alerting, dialing or started: not ended yet.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            InteractionState::Alerting | InteractionState::Dialing | InteractionState::Started
        )
    }
}

/// The roles of a conversation in its interaction (reference §10.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationRole {
    Primary,
    Consult,
}

/// Body of `interaction.request.consult`: whom to consult.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consult {
    pub destination: String,
}

/// A body carrying `interaction-data`: free-form attached data, values strings or objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InteractionData {
    #[serde(rename = "interaction-data")]
    pub data: Body,
}

/// Body of `interaction.statechanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionStateChanged {
    #[serde(rename = "interaction-state")]
    pub state: InteractionState,
}

/// Body of `interaction.conversation.added`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationAdded {
    pub name: String,
    pub role: ConversationRole,
}

/// Response body of `interaction.query.init`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionInit {
    #[serde(rename = "interaction-state")]
    pub state: InteractionState,
    #[serde(rename = "interaction-data", default)]
    pub data: Body,
    /// Telephony only; always present there, possibly empty (reference §9.5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<Conversations>,
}

/// The conversations of a telephony interaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consult: Option<ConversationId>,
}

/// A conversation's id inside `conversations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationId {
    pub id: String,
}

impl Conversations {
    /// Whether these conversations fit the interaction state (reference §9.5.2): `primary`
    /// in ALERTING, DIALING and STARTED; `consult` only in STARTED; none when ENDED or
    /// COMPLETED.
    pub fn fit(&self, state: InteractionState) -> Result<(), &'static str> {
        use InteractionState::*;
        match state {
            Alerting | Dialing | Started if self.primary.is_none() => {
                Err("a primary conversation is required while alerting, dialing or started")
            }
            Alerting | Dialing if self.consult.is_some() => {
                Err("a consult conversation exists only while started")
            }
            Ended | Completed if self.primary.is_some() || self.consult.is_some() => {
                Err("an ended or completed interaction has no conversations")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InteractionState::*;

    fn conv(primary: bool, consult: bool) -> Conversations {
        let id = |s: &str| ConversationId { id: s.into() };
        Conversations {
            primary: primary.then(|| id("p")),
            consult: consult.then(|| id("c")),
        }
    }

    #[test]
    fn conversation_rules_of_reference_9_5_2() {
        let table = [
            (Alerting, conv(true, false), true),
            (Alerting, conv(false, false), false),
            (Alerting, conv(true, true), false),
            (Dialing, conv(true, false), true),
            (Dialing, conv(true, true), false),
            (Started, conv(true, true), true),
            (Started, conv(false, true), false),
            (Ended, conv(false, false), true),
            (Ended, conv(true, false), false),
            (Completed, conv(false, true), false),
            (Completed, conv(false, false), true),
        ];
        for (state, c, ok) in table {
            assert_eq!(c.fit(state).is_ok(), ok, "{state:?} {c:?}");
        }
    }
}
