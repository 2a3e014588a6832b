//! The Processor Bridge protocol as carried over NATS: pure data, no IO.
//!
//! * [`envelope`]: the JSON envelope (`header` + `body`), message types, responses.
//! * [`target`]: destination targets and the percent-encoding that makes them subject tokens.
//! * [`subject`]: destination kinds and the subjects of commands and events.
//! * [`message`]: typed commands (queries and requests) and events of all six destination
//!   kinds, with their encoding to and decoding from a subject and a payload.
//! * one module per destination kind ([`control`], [`session`], [`channel_group`],
//!   [`channel`], [`interaction`], [`conversation`]) holding its bodies.
//! * [`route`]: placing a message that arrives without a subject (a frame of the TCP link).
//! * [`internal`]: the payloads services exchange among themselves (not bridge traffic).
//! * [`limits`]: bounds on what a message may carry, and short excerpts for error messages.
//!
//! Nothing here touches the network; the services and the bridge emulator do that.

#[macro_use]
mod macros;

pub mod call;
pub mod channel;
pub mod channel_group;
pub mod control;
pub mod conversation;
pub mod envelope;
pub mod interaction;
pub mod internal;
pub mod limits;
pub mod message;
pub mod route;
pub mod secret;
pub mod session;
pub mod subject;
pub mod target;

pub use call::{Call, Callee};
pub use envelope::{MessageType, Outcome, Response, ResponseError};
pub use limits::{Limit, Limits, OverLimit};
pub use message::{BadCommand, Command, CommandMessage, DecodeError, Event, EventMessage};
pub use route::{Routed, Routing};
pub use secret::Secret;
pub use subject::{Kind, SubjectError, Subjects};
pub use target::{Target, TargetError};

/// A JSON object: every body is one.
pub type Body = serde_json::Map<String, serde_json::Value>;

/// Serialise a body struct to a JSON object.
///
/// Every body type of this crate serialises to an object, so this cannot fail for them.
pub fn to_body<T: serde::Serialize>(value: &T) -> Body {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map,
        // Body types are structs with string keys: serde_json cannot produce anything else.
        _ => Body::new(),
    }
}

/// Deserialise a body struct from a JSON object, with serde's precise message on error
/// (for example "missing field `agentId`" or "invalid type: integer `5`, expected a string").
pub fn from_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::Object(body)).map_err(|e| e.to_string())
}
