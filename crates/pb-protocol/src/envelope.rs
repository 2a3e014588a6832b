//! The envelope (contract §2): `{"header": {...}, "body": {...}}`.

use serde_json::{Map, Value, json};

use crate::Body;

/// The four message types of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Query,
    Request,
    Response,
    Event,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Query => "cti.query",
            MessageType::Request => "cti.request",
            MessageType::Response => "cti.response",
            MessageType::Event => "cti.event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cti.query" => Some(MessageType::Query),
            "cti.request" => Some(MessageType::Request),
            "cti.response" => Some(MessageType::Response),
            "cti.event" => Some(MessageType::Event),
            _ => None,
        }
    }

    /// The type a message name implies: `<kind>.query.*` is a query, `<kind>.request.*` a
    /// request, anything else an event.
    pub fn of_name(name: &str) -> MessageType {
        match name.split('.').nth(1) {
            Some("query") => MessageType::Query,
            Some("request") => MessageType::Request,
            _ => MessageType::Event,
        }
    }
}

/// The longest `errorMessage` written, in bytes (a longer one is cut, with a note of its
/// length, to fit).
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// SUCCESS with a body, or FAILURE with its error message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success(Body),
    Failure(String),
}

impl Outcome {
    pub fn success() -> Self {
        Outcome::Success(Body::new())
    }

    /// FAILURE with `message`, never empty (contract §2) and never longer than
    /// [`MAX_ERROR_MESSAGE`] bytes (a message quoting input, or a CTI's, is cut short).
    pub fn failure(message: impl Into<String>) -> Self {
        let message = message.into();
        Outcome::Failure(if message.is_empty() {
            "failed (no reason given)".to_owned()
        } else if message.len() > MAX_ERROR_MESSAGE {
            // Room for the length note, so that a cut message is within the maximum (and
            // read back unchanged).
            crate::limits::shorten(&message, MAX_ERROR_MESSAGE - 32).into_owned()
        } else {
            message
        })
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_))
    }
}

/// A `cti.response`: the name, target and requestId of the command it answers, and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub name: String,
    pub target: String,
    pub request_id: String,
    pub outcome: Outcome,
}

/// Why a payload is not a readable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("response is not a JSON envelope: {0}")]
    Envelope(String),
    #[error("response header lacks `{0}` (or it is not a string)")]
    MissingHeader(&'static str),
    #[error("message type is `{0}`, not `cti.response`")]
    NotAResponse(String),
    #[error("response result is `{0}`, neither SUCCESS nor FAILURE")]
    BadResult(String),
}

impl Response {
    /// Encode as the contract's writers must: `result` and `errorMessage` only, the latter
    /// present exactly on FAILURE.
    pub fn encode(&self) -> Vec<u8> {
        let mut header = Map::with_capacity(6);
        header.insert("type".into(), json!(MessageType::Response.as_str()));
        header.insert("name".into(), json!(self.name));
        header.insert("target".into(), json!(self.target));
        header.insert("requestId".into(), json!(self.request_id));
        let body = match &self.outcome {
            Outcome::Success(body) => {
                header.insert("result".into(), json!("SUCCESS"));
                body.clone()
            }
            Outcome::Failure(message) => {
                header.insert("result".into(), json!("FAILURE"));
                header.insert("errorMessage".into(), json!(message));
                Body::new()
            }
        };
        envelope_bytes(header, body)
    }

    /// Decode a response, accepting `cti.result` / `error.message` as aliases of
    /// `result` / `errorMessage` and ignoring unknown keys.
    pub fn decode(payload: &[u8]) -> Result<Self, ResponseError> {
        let (header, body) =
            split_envelope(payload).map_err(|e| ResponseError::Envelope(e.to_string()))?;
        let get = |key: &'static str| header.get(key).and_then(Value::as_str);
        let required = |key: &'static str| {
            get(key)
                .map(str::to_owned)
                .ok_or(ResponseError::MissingHeader(key))
        };
        let kind = required("type")?;
        if kind != MessageType::Response.as_str() {
            return Err(ResponseError::NotAResponse(kind));
        }
        let result = get("result")
            .or_else(|| get("cti.result"))
            .ok_or(ResponseError::MissingHeader("result"))?;
        let outcome = match result {
            "SUCCESS" => Outcome::Success(body),
            "FAILURE" => Outcome::failure(
                get("errorMessage")
                    .or_else(|| get("error.message"))
                    .unwrap_or_default(),
            ),
            other => return Err(ResponseError::BadResult(other.to_owned())),
        };
        Ok(Response {
            name: required("name")?,
            target: required("target")?,
            request_id: required("requestId")?,
            outcome,
        })
    }
}

/// A command envelope from raw parts, typed as its name implies; for tools that send what a
/// user typed, well-formed or not (the typed way is [`crate::Command::encode`]).
pub fn raw_command(name: &str, target: &str, request_id: &str, body: Value) -> Vec<u8> {
    let mut header = Map::with_capacity(4);
    header.insert("type".into(), json!(MessageType::of_name(name).as_str()));
    header.insert("name".into(), json!(name));
    header.insert("target".into(), json!(target));
    header.insert("requestId".into(), json!(request_id));
    let outer = json!({"header": header, "body": body});
    serde_json::to_vec(&outer).unwrap_or_default()
}

/// What is wrong with the outer shape of a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload is not a JSON object")]
    NotAnObject,
    #[error("envelope lacks `{0}`")]
    Missing(&'static str),
    #[error("envelope `{0}` is not a JSON object")]
    NotObject(&'static str),
    #[error("envelope has `{0}` more than once")]
    Repeated(&'static str),
}

/// Split a payload into its header and body objects.
pub(crate) fn split_envelope(payload: &[u8]) -> Result<(Body, Body), EnvelopeError> {
    let (header, body) = outer(payload, true)?;
    Ok((object("header", header)?, object("body", body)?))
}

/// The `header` member of a payload as an object; the body is only checked to be there
/// once, as JSON.
pub(crate) fn header_of(payload: &[u8]) -> Result<Body, EnvelopeError> {
    object("header", outer(payload, false)?.0)
}

fn object(key: &'static str, member: Option<Value>) -> Result<Body, EnvelopeError> {
    match member {
        None => Err(EnvelopeError::Missing(key)),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(EnvelopeError::NotObject(key)),
    }
}

/// The `header` and (with `keep_body`) `body` members of a payload's outer object, each of
/// which may appear once: a repeated one is ambiguous, and refused.
fn outer(payload: &[u8], keep_body: bool) -> Result<(Option<Value>, Option<Value>), EnvelopeError> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    struct Members {
        keep_body: bool,
    }

    impl<'de> Visitor<'de> for Members {
        type Value = Result<(Option<Value>, Option<Value>), EnvelopeError>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut header, mut body, mut seen_body) = (None, None, false);
            // Read to the end whatever comes: the rest must still be JSON.
            let mut repeated = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "header" if header.is_none() => header = Some(map.next_value::<Value>()?),
                    "header" => {
                        repeated.get_or_insert("header");
                        map.next_value::<IgnoredAny>()?;
                    }
                    "body" if seen_body => {
                        repeated.get_or_insert("body");
                        map.next_value::<IgnoredAny>()?;
                    }
                    "body" => {
                        seen_body = true;
                        body = Some(if self.keep_body {
                            map.next_value::<Value>()?
                        } else {
                            map.next_value::<IgnoredAny>()?;
                            Value::Object(Body::new())
                        });
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            if let Some(key) = repeated {
                return Ok(Err(EnvelopeError::Repeated(key)));
            }
            Ok(Ok((header, body)))
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let members = match deserializer.deserialize_map(Members { keep_body }) {
        Ok(members) => members,
        // JSON, but not an object.
        Err(e) if e.is_data() => return Err(EnvelopeError::NotAnObject),
        Err(e) => return Err(EnvelopeError::NotJson(e.to_string())),
    };
    deserializer
        .end()
        .map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    members
}

pub(crate) fn envelope_bytes(header: Body, body: Body) -> Vec<u8> {
    let mut outer = Map::with_capacity(2);
    outer.insert("header".into(), Value::Object(header));
    outer.insert("body".into(), Value::Object(body));
    // Serialising a map of JSON values cannot fail.
    serde_json::to_vec(&Value::Object(outer)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(outcome: Outcome) -> Response {
        Response {
            name: "cti.request.serverstatus".into(),
            target: "PB1.CONTROL".into(),
            request_id: "{6F9619FF-8B86-D011-B42D-00C04FC964FF}".into(),
            outcome,
        }
    }

    #[test]
    fn round_trip_success_and_failure() {
        let mut body = Body::new();
        body.insert("x".into(), json!(1));
        for r in [
            response(Outcome::Success(body)),
            response(Outcome::failure("CTI link is down")),
        ] {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn writers_emit_error_message_only_on_failure() {
        let ok: Value = serde_json::from_slice(&response(Outcome::success()).encode()).unwrap();
        assert_eq!(ok["header"]["result"], "SUCCESS");
        assert!(ok["header"].get("errorMessage").is_none());
        let bad: Value =
            serde_json::from_slice(&response(Outcome::failure("no")).encode()).unwrap();
        assert_eq!(bad["header"]["result"], "FAILURE");
        assert_eq!(bad["header"]["errorMessage"], "no");
        assert_eq!(bad["body"], json!({}));
    }

    #[test]
    fn readers_accept_the_alias_spelling() {
        let payload = json!({
            "header": {"type": "cti.response", "name": "cti.request.serverstatus",
                       "target": "PB1.CONTROL", "requestId": "r1",
                       "cti.result": "FAILURE", "error.message": "starting", "extra": 1},
            "body": {}
        });
        let r = Response::decode(payload.to_string().as_bytes()).unwrap();
        assert_eq!(r.outcome, Outcome::Failure("starting".into()));
        let payload = json!({
            "header": {"type": "cti.response", "name": "n", "target": "t", "requestId": "r",
                       "cti.result": "SUCCESS"},
            "body": {"k": "v"}
        });
        assert!(
            Response::decode(payload.to_string().as_bytes())
                .unwrap()
                .outcome
                .is_success()
        );
    }

    #[test]
    fn a_repeated_header_or_body_is_refused() {
        let twice = br#"{"header":{},"body":{},"header":{}}"#;
        assert_eq!(
            split_envelope(twice),
            Err(EnvelopeError::Repeated("header"))
        );
        assert_eq!(header_of(twice), Err(EnvelopeError::Repeated("header")));
        let twice = br#"{"header":{},"body":{},"body":{}}"#;
        assert_eq!(split_envelope(twice), Err(EnvelopeError::Repeated("body")));
        assert_eq!(header_of(twice), Err(EnvelopeError::Repeated("body")));
        assert!(split_envelope(br#"{"header":{},"body":{},"x":1,"y":[2]}"#).is_ok());
        assert_eq!(split_envelope(b"[1]"), Err(EnvelopeError::NotAnObject));
        assert!(matches!(
            split_envelope(b"{} x"),
            Err(EnvelopeError::NotJson(_))
        ));
    }

    #[test]
    fn empty_failure_message_is_never_written() {
        assert_eq!(
            Outcome::failure(""),
            Outcome::Failure("failed (no reason given)".into())
        );
    }

    #[test]
    fn long_failure_messages_are_cut() {
        let Outcome::Failure(message) = Outcome::failure("x".repeat(600_000)) else {
            unreachable!()
        };
        assert!(message.len() <= MAX_ERROR_MESSAGE, "{}", message.len());
        assert!(message.ends_with("… (600000 bytes)"));
        assert_eq!(Outcome::failure(message.clone()), Outcome::Failure(message));
    }

    #[test]
    fn malformed_responses() {
        let cases: [(&str, ResponseError); 5] = [
            (
                "nope",
                ResponseError::Envelope(
                    "payload is not JSON: expected ident at line 1 column 2".into(),
                ),
            ),
            (
                r#"{"header":{},"body":{}}"#,
                ResponseError::MissingHeader("type"),
            ),
            (
                r#"{"header":{"type":"cti.event"},"body":{}}"#,
                ResponseError::NotAResponse("cti.event".into()),
            ),
            (
                r#"{"header":{"type":"cti.response"},"body":{}}"#,
                ResponseError::MissingHeader("result"),
            ),
            (
                r#"{"header":{"type":"cti.response","result":"OK"},"body":{}}"#,
                ResponseError::BadResult("OK".into()),
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(
                Response::decode(payload.as_bytes()).unwrap_err(),
                want,
                "{payload}"
            );
        }
    }

    #[test]
    fn raw_commands_take_their_type_from_the_name() {
        let raw = raw_command("channel.request.ready", "s.g.c", "r1", json!({"x": 1}));
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["header"]["type"], "cti.request");
        assert_eq!(v["header"]["requestId"], "r1");
        assert_eq!(v["body"]["x"], 1);
        let raw = raw_command("cti.query.capabilities", "PB1.CONTROL", "r2", json!([]));
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["header"]["type"], "cti.query");
        assert_eq!(v["body"], json!([]), "a raw body is sent as given");
    }

    #[test]
    fn type_of_names() {
        assert_eq!(
            MessageType::of_name("cti.query.capabilities"),
            MessageType::Query
        );
        assert_eq!(
            MessageType::of_name("channel.request.ready"),
            MessageType::Request
        );
        assert_eq!(
            MessageType::of_name("cti.serverstatuschanged"),
            MessageType::Event
        );
        assert_eq!(
            MessageType::of_name("channelgroup.channel.added"),
            MessageType::Event
        );
    }
}
