//! Placing a message that arrives without a subject (a frame of the TCP link, contract §8):
//! what [`route`] reads of it, and nothing more, so that the destination's service does the
//! full decoding (and answers what is wrong with the body) exactly as over NATS.
//!
//! A frame is routed when it is UTF-8 JSON, has a `header` object whose `type` is a query or
//! a request, whose `name` names a destination kind and whose `target` is a valid target
//! (§2, §3). Anything else is answered FAILURE naming the problem ([`BadCommand`]), or, for
//! a response or an event sent by the bridge, is not a command at all ([`Routing::NotCommand`]).

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::message::{BadCommand, DecodeError};
use crate::{Body, Kind, MessageType, Target};

/// A command as far as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub kind: Kind,
    pub target: Target,
    pub name: String,
    /// The `requestId`, or empty when the header has none (the service answers that).
    pub request_id: String,
    pub message_type: MessageType,
}

/// What a frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// A query or request, to send on `P.<kind>.<target>`.
    Command(Routed),
    /// A response or an event: the bridge sends neither (reference §4), so it is not
    /// forwarded; `name` as read, or empty.
    NotCommand {
        message_type: MessageType,
        name: String,
    },
}

/// Read what routing needs of `payload`: the header only (the body is checked to be JSON,
/// never kept).
pub fn route(payload: &[u8]) -> Result<Routing, Box<BadCommand>> {
    let fail = |header: Option<&Body>, error: DecodeError| {
        let text = |key: &str| {
            header
                .and_then(|h| h.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Err(Box::new(BadCommand {
            request_id: text("requestId"),
            name: text("name"),
            target: text("target"),
            error,
        }))
    };
    if let Err(e) = std::str::from_utf8(payload) {
        return fail(None, DecodeError::NotUtf8(e.to_string()));
    }
    let header = match read_header(payload) {
        Ok(header) => header,
        Err(error) => return fail(None, error),
    };
    let text = |key: &'static str| header.get(key).and_then(Value::as_str);
    let Some(type_) = text("type") else {
        return fail(Some(&header), DecodeError::MissingHeader("type"));
    };
    let Some(message_type) = MessageType::parse(type_) else {
        return fail(Some(&header), DecodeError::UnknownType(type_.to_owned()));
    };
    let name = text("name");
    if matches!(message_type, MessageType::Response | MessageType::Event) {
        return Ok(Routing::NotCommand {
            message_type,
            name: name.unwrap_or_default().to_owned(),
        });
    }
    let Some(name) = name else {
        return fail(Some(&header), DecodeError::MissingHeader("name"));
    };
    let Some(kind) = Kind::of_name(name) else {
        return fail(
            Some(&header),
            DecodeError::NoKind {
                name: name.to_owned(),
            },
        );
    };
    let Some(target) = text("target") else {
        return fail(Some(&header), DecodeError::MissingHeader("target"));
    };
    let target = match Target::new(target) {
        Ok(target) => target,
        Err(source) => {
            let header_target = target.to_owned();
            return fail(
                Some(&header),
                DecodeError::BadTarget {
                    header: header_target,
                    source,
                },
            );
        }
    };
    Ok(Routing::Command(Routed {
        kind,
        target,
        name: name.to_owned(),
        request_id: text("requestId").unwrap_or_default().to_owned(),
        message_type,
    }))
}

/// The envelope's header, the body skipped (but checked to be JSON).
fn read_header(payload: &[u8]) -> Result<Body, DecodeError> {
    Ok(crate::envelope::header_of(payload)?)
}

/// The header of an envelope of which only `prefix`, its first bytes, is at hand (a frame
/// too long to keep whole): found when the `header` member comes before anything that does
/// not fit in `prefix`. `None` when it cannot be read from there.
pub fn peek_header(prefix: &[u8]) -> Option<Body> {
    let mut found = None;
    // The seed stops the parse once the header is read; the error that stop causes is
    // expected, so only `found` tells the outcome.
    let _ = HeaderSeed(&mut found).deserialize(&mut serde_json::Deserializer::from_slice(prefix));
    found
}

struct HeaderSeed<'a>(&'a mut Option<Body>);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "header" {
                if let Value::Object(header) = map.next_value::<Value>()? {
                    *self.0 = Some(header);
                }
                return Err(serde::de::Error::custom("header read"));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routed(payload: &Value) -> Result<Routing, Box<BadCommand>> {
        route(payload.to_string().as_bytes())
    }

    #[test]
    fn commands_are_placed_by_their_header() {
        let frame = json!({"header": {"type": "cti.request", "name": "channel.request.ready",
            "target": "s 1.g1.c1", "requestId": "r-1"}, "body": {"whatever": [1, 2]}});
        let Ok(Routing::Command(r)) = routed(&frame) else {
            panic!("not routed");
        };
        assert_eq!(r.kind, Kind::Channel);
        assert_eq!(r.target.as_str(), "s 1.g1.c1");
        assert_eq!(r.name, "channel.request.ready");
        assert_eq!(r.request_id, "r-1");
        assert_eq!(r.message_type, MessageType::Request);
        // A name unknown to its kind and a missing requestId are the service's to answer.
        let frame = json!({"header": {"type": "cti.query", "name": "cti.query.nothing",
            "target": "PB1.CONTROL"}, "body": {}});
        assert!(matches!(routed(&frame), Ok(Routing::Command(r)) if r.kind == Kind::Control));
    }

    #[test]
    fn responses_and_events_are_not_commands() {
        for type_ in ["cti.response", "cti.event"] {
            let frame = json!({"header": {"type": type_, "name": "x"}, "body": {}});
            assert!(matches!(routed(&frame), Ok(Routing::NotCommand { name, .. }) if name == "x"));
        }
    }

    #[test]
    fn what_cannot_be_placed_is_answered_with_what_could_be_read() {
        let bad = |payload: &[u8]| *route(payload).unwrap_err();
        assert!(matches!(bad(b"\xff\xfe").error, DecodeError::NotUtf8(_)));
        assert!(matches!(bad(b"{nope").error, DecodeError::Envelope(_)));
        assert!(matches!(bad(b"[1]").error, DecodeError::Envelope(_)));
        assert!(matches!(
            bad(b"{\"body\":{}}").error,
            DecodeError::Envelope(_)
        ));
        let cases = [
            (json!({"header": {"name": "n", "requestId": "r"}}), "type"),
            (
                json!({"header": {"type": "cti.bogus", "requestId": "r"}}),
                "cti.bogus",
            ),
            (
                json!({"header": {"type": "cti.query", "requestId": "r"}}),
                "name",
            ),
            (
                json!({"header": {"type": "cti.query", "name": "agent.query.x", "requestId": "r"}}),
                "agent.query.x",
            ),
            (
                json!({"header": {"type": "cti.query", "name": "session.query.init", "requestId": "r"}}),
                "target",
            ),
            (
                json!({"header": {"type": "cti.query", "name": "session.query.init",
                    "target": "a..b", "requestId": "r"}}),
                "a..b",
            ),
        ];
        for (frame, named) in cases {
            let bad = *routed(&frame).unwrap_err();
            assert_eq!(bad.request_id, "r", "{frame}");
            let message = bad.error.to_string();
            assert!(message.contains(named), "{frame}: {message}");
        }
    }

    #[test]
    fn a_header_is_read_from_the_start_of_a_long_frame() {
        // Written header first, as the reference shows it (serde_json writes keys sorted).
        let header = json!({"type": "cti.request", "name": "interaction.request.setdata",
            "target": "s.g.c.i", "requestId": "r-9"});
        let full = format!(
            "{{\"header\":{header},\"body\":{{\"interaction-data\":\"{}\"}}}}",
            "x".repeat(5000)
        );
        let header = peek_header(&full.as_bytes()[..200]).expect("the header is in the prefix");
        assert_eq!(header["requestId"], "r-9");
        // The body first: the header lies beyond the prefix.
        let body_first = format!(
            "{{\"body\":{{\"d\":\"{}\"}},\"header\":{{\"requestId\":\"r\"}}}}",
            "x".repeat(5000)
        );
        assert_eq!(peek_header(&body_first.as_bytes()[..200]), None);
        assert_eq!(peek_header(b"\x00\x01garbage"), None);
        assert_eq!(peek_header(b""), None);
    }

    proptest::proptest! {
        #[test]
        fn routing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = route(&bytes);
            let _ = peek_header(&bytes);
        }
    }
}
