//! Typed commands and events of all six destination kinds, and their wire form.

use serde_json::{Value, json};

use crate::channel::{ChannelCommand, ChannelEvent};
use crate::channel_group::{ChannelGroupCommand, ChannelGroupEvent};
use crate::control::{ControlCommand, ControlEvent};
use crate::conversation::{ConversationCommand, ConversationEvent};
use crate::envelope::{EnvelopeError, envelope_bytes, split_envelope};
use crate::interaction::{InteractionCommand, InteractionEvent};
use crate::limits::{Excerpt, Limit, Limits, OverLimit, Reason};
use crate::session::{SessionCommand, SessionEvent};
use crate::{
    Body, Kind, MessageType, Outcome, Response, SubjectError, Subjects, Target, TargetError,
};

by_kind! {
    /// A query or request, typed by destination kind.
    pub enum CommandMessage {
        Control(ControlCommand),
        Session(SessionCommand),
        ChannelGroup(ChannelGroupCommand),
        Channel(ChannelCommand),
        Interaction(InteractionCommand),
        Conversation(ConversationCommand),
    }
}

by_kind! {
    /// An event, typed by destination kind.
    pub enum EventMessage {
        Control(ControlEvent),
        Session(SessionEvent),
        ChannelGroup(ChannelGroupEvent),
        Channel(ChannelEvent),
        Interaction(InteractionEvent),
        Conversation(ConversationEvent),
    }
}

/// Why a payload is not a valid command or event for its subject (contract §5.2). Each
/// message names the problem, for the `errorMessage` of the FAILURE response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Subject(#[from] SubjectError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("header lacks `{0}` (or it is not a string)")]
    MissingHeader(&'static str),
    #[error(
        "header type `{}` is not a message type (cti.query, cti.request, cti.response, cti.event)",
        Excerpt(.0)
    )]
    UnknownType(String),
    #[error(
        "header type `{}` does not fit `{}`, which is a {expected}",
        Excerpt(.found),
        Excerpt(.name)
    )]
    WrongType {
        found: String,
        name: String,
        expected: &'static str,
    },
    #[error("`{}` is not a message a {kind} destination accepts{hint}", Excerpt(.name))]
    UnknownName {
        name: String,
        kind: &'static str,
        hint: String,
    },
    #[error("header target `{}` is not a valid target: {source}", Excerpt(.header))]
    BadTarget {
        header: String,
        #[source]
        source: TargetError,
    },
    #[error(
        "header target `{}` does not match the subject's target `{}`",
        Excerpt(.header),
        Excerpt(.subject)
    )]
    TargetMismatch { header: String, subject: String },
    #[error("body of `{}` is invalid: {}", Excerpt(.name), Reason(.reason))]
    Body { name: String, reason: String },
    #[error("the message is not UTF-8 text: {}", Reason(.0))]
    NotUtf8(String),
    #[error(
        "`{}` names no destination kind: names start with cti., session., channelgroup., \
         channel., interaction. or conversation.",
        Excerpt(.name)
    )]
    NoKind { name: String },
    #[error("the message is {length} bytes long, more than the limit of {limit} bytes")]
    TooLong { length: u64, limit: u64 },
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
}

/// A query or request addressed to one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub request_id: String,
    pub target: Target,
    pub message: CommandMessage,
}

/// A command that could not be decoded: what could be read of it, and why it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct BadCommand {
    /// The `requestId`, or empty when it could not be read.
    pub request_id: String,
    /// The `name` as read, or empty.
    pub name: String,
    /// The header's `target` as read, else the subject's target, else empty.
    pub target: String,
    pub error: DecodeError,
}

impl BadCommand {
    /// The FAILURE response that answers it (contract §5.2).
    pub fn response(&self) -> Response {
        Response {
            name: self.name.clone(),
            target: self.target.clone(),
            request_id: self.request_id.clone(),
            outcome: Outcome::failure(self.error.to_string()),
        }
    }
}

impl Command {
    pub fn new(
        request_id: impl Into<String>,
        target: Target,
        message: impl Into<CommandMessage>,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            target,
            message: message.into(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.message.name()
    }

    pub fn kind(&self) -> Kind {
        self.message.kind()
    }

    pub fn message_type(&self) -> MessageType {
        MessageType::of_name(self.name())
    }

    /// The subject the bridge sends this command on.
    pub fn subject(&self, subjects: &Subjects) -> String {
        subjects.command(self.kind(), &self.target)
    }

    /// The JSON envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut header = Body::with_capacity(4);
        header.insert("type".into(), json!(self.message_type().as_str()));
        header.insert("name".into(), json!(self.name()));
        header.insert("target".into(), json!(self.target.as_str()));
        header.insert("requestId".into(), json!(self.request_id));
        envelope_bytes(header, self.message.to_body())
    }

    /// The response to this command with the given outcome.
    pub fn respond(&self, outcome: Outcome) -> Response {
        Response {
            name: self.name().to_owned(),
            target: self.target.as_str().to_owned(),
            request_id: self.request_id.clone(),
            outcome,
        }
    }

    /// Decode a command received on `subject`, checking every rule of contract §5.2 and
    /// every limit of `limits` (a payload past its limit is not read at all).
    pub fn decode(
        subjects: &Subjects,
        subject: &str,
        payload: &[u8],
        limits: &Limits,
    ) -> Result<Command, Box<BadCommand>> {
        let mut bad = BadCommand {
            request_id: String::new(),
            name: String::new(),
            target: String::new(),
            error: DecodeError::MissingHeader("type"),
        };
        let fail = |mut bad: BadCommand, error: DecodeError| {
            bad.error = error;
            Err(Box::new(bad))
        };
        let (kind, subject_target) = match subjects.parse_command(subject) {
            Ok(parsed) => parsed,
            Err(e) => return fail(bad, e.into()),
        };
        bad.target = subject_target.as_str().to_owned();
        if let Err(e) = limits.check(Limit::Payload, payload.len()) {
            return fail(bad, e.into());
        }
        let (header, body) = match split_envelope(payload) {
            Ok(parts) => parts,
            Err(e) => {
                // Echo what can still be read, even from a broken envelope.
                if let Ok(Value::Object(outer)) = serde_json::from_slice::<Value>(payload)
                    && let Some(Value::Object(h)) = outer.get("header")
                {
                    read_echo(h, &mut bad);
                }
                return fail(bad, e.into());
            }
        };
        read_echo(&header, &mut bad);
        if let Err(e) = within(limits, &bad) {
            return fail(bad, e.into());
        }
        let text = |key: &'static str| header.get(key).and_then(Value::as_str);

        let Some(type_) = text("type") else {
            return fail(bad, DecodeError::MissingHeader("type"));
        };
        let Some(name) = text("name") else {
            return fail(bad, DecodeError::MissingHeader("name"));
        };
        let Some(header_target) = text("target") else {
            return fail(bad, DecodeError::MissingHeader("target"));
        };
        if text("requestId").is_none() {
            return fail(bad, DecodeError::MissingHeader("requestId"));
        }
        let Some(type_) = MessageType::parse(type_) else {
            return fail(bad, DecodeError::UnknownType(type_.to_owned()));
        };
        if !CommandMessage::names(kind).contains(&name) {
            let hint = match Kind::of_name(name) {
                Some(other) if other != kind => format!(" (it is a {} message)", other.describe()),
                _ if EventMessage::names(kind).contains(&name) => " (it is an event)".to_owned(),
                _ => String::new(),
            };
            return fail(
                bad,
                DecodeError::UnknownName {
                    name: name.to_owned(),
                    kind: kind.describe(),
                    hint,
                },
            );
        }
        let expected = MessageType::of_name(name);
        if type_ != expected {
            return fail(
                bad,
                DecodeError::WrongType {
                    found: type_.as_str().to_owned(),
                    name: name.to_owned(),
                    expected: expected.as_str(),
                },
            );
        }
        let target = match Target::new(header_target) {
            Ok(t) => t,
            Err(source) => {
                return fail(
                    bad,
                    DecodeError::BadTarget {
                        header: header_target.to_owned(),
                        source,
                    },
                );
            }
        };
        if let Err(e) = limits.check_target(&target) {
            return fail(bad, e.into());
        }
        if target != subject_target {
            return fail(
                bad,
                DecodeError::TargetMismatch {
                    header: header_target.to_owned(),
                    subject: subject_target.as_str().to_owned(),
                },
            );
        }
        let name = name.to_owned();
        match CommandMessage::from_parts(kind, &name, body) {
            Ok(Some(message)) => Ok(Command {
                request_id: bad.request_id,
                target,
                message,
            }),
            Ok(None) => unreachable_name(bad, name),
            Err(reason) => fail(bad, DecodeError::Body { name, reason }),
        }
    }
}

/// `names(kind)` listed the name, so `from_parts` knows it; answer rather than panic if the
/// two ever disagree.
fn unreachable_name(mut bad: BadCommand, name: String) -> Result<Command, Box<BadCommand>> {
    bad.error = DecodeError::UnknownName {
        name,
        kind: "known",
        hint: String::new(),
    };
    Err(Box::new(bad))
}

/// The echoable header fields' lengths within their limits (before anything quotes them).
fn within(limits: &Limits, bad: &BadCommand) -> Result<(), OverLimit> {
    limits.check(Limit::RequestId, bad.request_id.len())?;
    limits.check(Limit::Name, bad.name.len())?;
    limits.check(Limit::Target, bad.target.len())
}

/// Copy the echoable header fields (requestId, name, target) into a failure report.
fn read_echo(header: &Body, bad: &mut BadCommand) {
    let text = |key: &str| header.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(id) = text("requestId") {
        bad.request_id = id;
    }
    if let Some(name) = text("name") {
        bad.name = name;
    }
    if let Some(target) = text("target") {
        bad.target = target;
    }
}

/// An event raised on one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub target: Target,
    pub message: EventMessage,
}

impl Event {
    pub fn new(target: Target, message: impl Into<EventMessage>) -> Self {
        Self {
            target,
            message: message.into(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.message.name()
    }

    /// The subject this event is published on.
    pub fn subject(&self, subjects: &Subjects) -> String {
        subjects.event(self.message.kind(), &self.target)
    }

    /// The JSON envelope; every event carries `target` (contract §2).
    pub fn encode(&self) -> Vec<u8> {
        let mut header = Body::with_capacity(3);
        header.insert("type".into(), json!(MessageType::Event.as_str()));
        header.insert("name".into(), json!(self.name()));
        header.insert("target".into(), json!(self.target.as_str()));
        envelope_bytes(header, self.message.to_body())
    }

    /// Decode an event received on `subject` (what a bridge does).
    pub fn decode(
        subjects: &Subjects,
        subject: &str,
        payload: &[u8],
    ) -> Result<Event, DecodeError> {
        let (kind, subject_target) = subjects.parse_event(subject)?;
        let (header, body) = split_envelope(payload)?;
        let text = |key: &'static str| {
            header
                .get(key)
                .and_then(Value::as_str)
                .ok_or(DecodeError::MissingHeader(key))
        };
        let type_ = text("type")?;
        if type_ != MessageType::Event.as_str() {
            return Err(match MessageType::parse(type_) {
                Some(_) => DecodeError::WrongType {
                    found: type_.to_owned(),
                    name: text("name").unwrap_or_default().to_owned(),
                    expected: MessageType::Event.as_str(),
                },
                None => DecodeError::UnknownType(type_.to_owned()),
            });
        }
        let name = text("name")?.to_owned();
        let header_target = text("target")?;
        let target = Target::new(header_target).map_err(|source| DecodeError::BadTarget {
            header: header_target.to_owned(),
            source,
        })?;
        if target != subject_target {
            return Err(DecodeError::TargetMismatch {
                header: header_target.to_owned(),
                subject: subject_target.as_str().to_owned(),
            });
        }
        match EventMessage::from_parts(kind, &name, body) {
            Ok(Some(message)) => Ok(Event { target, message }),
            Ok(None) => Err(DecodeError::UnknownName {
                name,
                kind: kind.describe(),
                hint: String::new(),
            }),
            Err(reason) => Err(DecodeError::Body { name, reason }),
        }
    }
}
