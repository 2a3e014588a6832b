//! The bridge's side of interactions and their conversations, one call each: take an
//! interaction a channel announced (create its destination, read it, create a destination
//! for each of its conversations), place a call, consult. Used by the CLI's one-shot
//! commands and by the desk.

use std::time::Duration;

use pb_protocol::channel::{ChannelCommand, Dial, InteractionRef};
use pb_protocol::conversation::{ConversationCommand, ConversationInit};
use pb_protocol::interaction::{
    Consult, ConversationAdded, ConversationRole, InteractionCommand, InteractionData,
    InteractionEvent, InteractionInit,
};
use pb_protocol::session::CreateChild;
use pb_protocol::{Body, Event, EventMessage, Kind, Target};
use serde::de::DeserializeOwned;

use crate::flow::{Driver, FlowError, read};

/// Why an interaction step did not go through.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("{target}: no `{event}` event within {waited:?} after {after}")]
    NoEvent {
        target: String,
        event: &'static str,
        after: &'static str,
        waited: Duration,
    },
    #[error("{target}: the call has no primary conversation to {verb}")]
    NoPrimary { target: String, verb: &'static str },
    #[error("the task handling an interaction failed: {0}")]
    Task(String),
}

/// An interaction taken: its destination created and read, and its conversations'.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The CTI name.
    pub name: String,
    pub target: String,
    pub init: InteractionInit,
    pub conversations: Vec<Leg>,
}

impl Taken {
    /// Its primary conversation, if it has one.
    pub fn primary(&self) -> Option<&Leg> {
        self.conversations
            .iter()
            .find(|leg| leg.init.role == ConversationRole::Primary)
    }
}

/// A conversation (call leg) taken: its destination created and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// The CTI name.
    pub name: String,
    pub target: String,
    pub init: ConversationInit,
}

/// The id the bridge gives the destination of the CTI resource `name`: the name itself,
/// dots made dashes (a target segment holds no dot; other characters are encoded).
pub(crate) fn id_of(name: &str) -> String {
    name.replace('.', "-")
}

/// The target `<parent>.<id>`, checked; `name` is the command that needs it.
pub fn child(parent: &str, id: &str, name: &str) -> Result<String, FlowError> {
    Target::new(parent)
        .and_then(|p| p.child(id))
        .map(|t| t.as_str().to_owned())
        .map_err(|e| FlowError::Invalid {
            name: name.to_owned(),
            target: parent.to_owned(),
            message: format!("no target for id `{id}`: {e}"),
        })
}

/// `interaction.request.setdata` with `{"disposition": disposition}`.
pub(crate) fn set_disposition(disposition: &str) -> InteractionCommand {
    let data = Body::from_iter([("disposition".to_owned(), disposition.into())]);
    InteractionCommand::SetData(InteractionData { data })
}

impl Driver {
    /// Take interaction `name` announced on `channel`: create its destination with `id`,
    /// read it, and create and read a destination for each conversation it lists.
    pub async fn take(&self, channel: &str, name: &str, id: &str) -> Result<Taken, FlowError> {
        let create = ChannelCommand::CreateInteraction(CreateChild {
            id: id.to_owned(),
            name: name.to_owned(),
        });
        let target = child(channel, id, create.name())?;
        self.act(channel, create).await?;
        let init: InteractionInit = self.query(&target, InteractionCommand::Init).await?;
        let listed: Vec<String> = init
            .conversations
            .iter()
            .flat_map(|c| [&c.primary, &c.consult])
            .flatten()
            .map(|leg| leg.id.clone())
            .collect();
        let mut conversations = Vec::new();
        for leg in &listed {
            conversations.push(self.take_conversation(&target, leg).await?);
        }
        Ok(Taken {
            name: name.to_owned(),
            target,
            init,
            conversations,
        })
    }

    /// Create and read the destination of conversation `name` of `interaction`.
    pub(crate) async fn take_conversation(
        &self,
        interaction: &str,
        name: &str,
    ) -> Result<Leg, FlowError> {
        let id = id_of(name);
        let create = InteractionCommand::CreateConversation(CreateChild {
            id: id.clone(),
            name: name.to_owned(),
        });
        let target = child(interaction, &id, create.name())?;
        self.act(interaction, create).await?;
        let init = self.query(&target, ConversationCommand::Init).await?;
        Ok(Leg {
            name: name.to_owned(),
            target,
            init,
        })
    }

    /// Place a call from telephony `channel` to `destination`, then take the new
    /// interaction with `id` (by default [`id_of`] its name).
    pub async fn dial(
        &self,
        channel: &str,
        destination: &str,
        id: Option<&str>,
    ) -> Result<Taken, FlowError> {
        let dial = ChannelCommand::Dial(Dial {
            destination: destination.to_owned(),
        });
        let InteractionRef { name, .. } = self.query(channel, dial).await?;
        let id = id.map_or_else(|| id_of(&name), str::to_owned);
        self.take(channel, &name, &id).await
    }

    /// Consult `destination` from `interaction` (its primary call is held), then take the
    /// consult conversation the interaction announces.
    pub async fn consult(&self, interaction: &str, destination: &str) -> Result<Leg, StepError> {
        let parsed = Target::new(interaction).map_err(|e| FlowError::Invalid {
            name: "interaction.request.consult".into(),
            target: interaction.to_owned(),
            message: e.to_string(),
        })?;
        let subjects = self.subjects().clone();
        let mut events = self
            .events(subjects.event(Kind::Interaction, &parsed))
            .await?;
        let consult = InteractionCommand::Consult(Consult {
            destination: destination.to_owned(),
        });
        self.act(interaction, consult).await?;
        let added = tokio::time::timeout(self.timeout(), async {
            while let Some(message) = events.next().await {
                if let Ok(Event {
                    message:
                        EventMessage::Interaction(InteractionEvent::ConversationAdded(
                            ConversationAdded {
                                name,
                                role: ConversationRole::Consult,
                            },
                        )),
                    ..
                }) = Event::decode(&subjects, &message.subject, &message.payload)
                {
                    return Some(name);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or(StepError::NoEvent {
            target: interaction.to_owned(),
            event: "interaction.conversation.added",
            after: "interaction.request.consult",
            waited: self.timeout(),
        })?;
        Ok(self.take_conversation(interaction, &added).await?)
    }

    /// Send a typed command and read its answer's body as `T`.
    pub async fn query<T: DeserializeOwned>(
        &self,
        target: &str,
        message: impl Into<pb_protocol::CommandMessage>,
    ) -> Result<T, FlowError> {
        let message = message.into();
        let name = message.name();
        read(name, self.act(target, message).await?, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_targets_of_cti_names() {
        assert_eq!(id_of("call-17"), "call-17");
        assert_eq!(id_of("pbx.7.leg"), "pbx-7-leg");
        assert_eq!(
            child("s-1.g1.c1", &id_of("x.y"), "n").unwrap(),
            "s-1.g1.c1.x-y"
        );
        let err = child("s-1.g1.c1", "", "channel.request.createinteraction").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("channel.request.createinteraction on s-1.g1.c1: no target"),
            "{err}"
        );
    }
}
