//! Oracles for the decoders of `pb-protocol`: command, event and response envelopes,
//! placing a frame without a subject, the internal payloads and the target codec.
//!
//! Each `check_*` function takes what its decoder reads and panics when the decoder
//! panics, or when what it did is wrong: a decoded message that does not encode back to
//! itself, a decoded command on a subject it does not belong to, an error message longer
//! than [`MAX_ERROR_MESSAGE`], a FAILURE answer that does not read back. Each input
//! function (`command`, `event`, ...) reads one fuzz input: a mode byte, then raw bytes or
//! a valid envelope changed as the rest of the input says ([`super::json::change_of`]).

use pb_protocol::envelope::{MAX_ERROR_MESSAGE, raw_command};
use pb_protocol::internal::{GroupCreate, InternalReply, Resume, SessionCreate, UnitRef};
use pb_protocol::route::{peek_header, route};
use pb_protocol::target::{decode_token, encode_token};
use pb_protocol::{
    Command, CommandMessage, Event, EventMessage, Kind, Limit, Limits, MessageType, Outcome,
    Response, Routing, Subjects, Target,
};
use serde_json::{Value, json};

use super::json::{change_of, mutate, round_trip, same, value_of};

/// A target of each kind's shape.
pub fn sample_target(kind: Kind) -> Target {
    let target = match kind {
        Kind::Control => "PB1.CONTROL",
        Kind::Session => "s-1",
        Kind::ChannelGroup => "s-1.g1",
        Kind::Channel => "s-1.g1.c1",
        Kind::Interaction => "s-1.g1.c1.i1",
        Kind::Conversation => "s-1.g1.c1.i1.v1",
    };
    Target::new(target).expect("a sample target is valid")
}

/// Every limit lifted: what a decoded command encodes may be a little longer than what
/// was read (`1E2` is written `100.0`), and the round trip is about the codec.
pub fn unlimited() -> Limits {
    let mut limits = Limits::default();
    for limit in Limit::ALL {
        limits.set(limit, usize::MAX);
    }
    limits
}

/// The kind a fuzz input's mode byte names, and what remains of the byte.
fn kind_of(mode: u8) -> (Kind, u8) {
    let n = Kind::ALL.len() as u8;
    (Kind::ALL[usize::from(mode % n)], mode / n)
}

/// The name `selector` picks from `names`.
fn pick<'a>(names: &[&'a str], selector: Option<&u8>) -> &'a str {
    let i = selector.map_or(0, |s| usize::from(*s));
    names[i % names.len()]
}

/// The subject a payload's header would be sent on, when its name and target allow one.
fn header_subject(subjects: &Subjects, payload: &[u8], event: bool) -> Option<String> {
    let outer: Value = serde_json::from_slice(payload).ok()?;
    let header = outer.get("header")?;
    let kind = Kind::of_name(header.get("name")?.as_str()?)?;
    let target = Target::new(header.get("target")?.as_str()?).ok()?;
    Some(if event {
        subjects.event(kind, &target)
    } else {
        subjects.command(kind, &target)
    })
}

fn envelope(header: Value, body: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"header": header, "body": body})).expect("JSON encodes")
}

/// One fuzz input for [`Command::decode`]. The mode byte picks the kind and one of: the
/// rest as the payload on a subject of that kind; the same on the subject its header
/// names; a valid header for the name the next byte picks, with the rest as its body; a
/// valid envelope changed as the rest says.
pub fn command(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let subjects = Subjects::default();
    let (kind, mode) = kind_of(mode);
    let target = sample_target(kind);
    let subject = subjects.command(kind, &target);
    let names = CommandMessage::names(kind);
    match mode % 4 {
        0 => check_command(&subjects, &subject, rest),
        1 => {
            let subject = header_subject(&subjects, rest, false).unwrap_or(subject);
            check_command(&subjects, &subject, rest);
        }
        2 => {
            let name = pick(names, rest.first());
            let body = value_of(rest.get(1..).unwrap_or_default());
            let payload = raw_command(name, target.as_str(), "r-1", body);
            check_command(&subjects, &subject, &payload);
        }
        _ => {
            let name = pick(names, rest.first());
            let mut valid: Value =
                serde_json::from_slice(&raw_command(name, target.as_str(), "r-1", json!({})))
                    .expect("a raw command is JSON");
            let (path, value) = change_of(rest.get(1..).unwrap_or_default());
            mutate(&mut valid, path, value);
            check_command(&subjects, &subject, &valid.to_string().into_bytes());
        }
    }
}

/// [`Command::decode`] of `payload` on `subject`, with the default limits.
pub fn check_command(subjects: &Subjects, subject: &str, payload: &[u8]) {
    match Command::decode(subjects, subject, payload, &Limits::default()) {
        Ok(command) => {
            let (kind, target) = subjects
                .parse_command(subject)
                .expect("a decoded command's subject parses");
            assert_eq!(command.kind(), kind, "decoded for another kind");
            assert_eq!(command.target, target, "decoded for another target");
            assert!(CommandMessage::names(kind).contains(&command.name()));
            let again = Command::decode(
                subjects,
                &command.subject(subjects),
                &command.encode(),
                &unlimited(),
            )
            .unwrap_or_else(|bad| {
                panic!(
                    "{} encoded again does not decode: {}",
                    command.name(),
                    bad.error
                )
            });
            assert!(
                same_command(&command, &again),
                "{} changed on its way through its encoding: {} then {}",
                command.name(),
                shown(&command),
                shown(&again)
            );
        }
        Err(bad) => {
            check_error(&bad.error.to_string());
            check_failure(&bad.response());
        }
    }
}

/// The same command, interaction data compared as [`same`] does.
pub fn same_command(a: &Command, b: &Command) -> bool {
    a.request_id == b.request_id
        && a.target == b.target
        && a.name() == b.name()
        && same(
            &Value::Object(a.message.to_body()),
            &Value::Object(b.message.to_body()),
        )
}

/// `value` as `Debug` shows it: its first and last 150 characters when longer.
fn shown(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 300 {
        return text;
    }
    let head: String = chars[..150].iter().collect();
    let tail: String = chars[chars.len() - 150..].iter().collect();
    format!("{head} … {tail}")
}

/// An error message for the bridge: said, and short whatever it quotes.
pub fn check_error(message: &str) {
    assert!(!message.is_empty(), "an empty error message");
    assert!(
        message.len() <= MAX_ERROR_MESSAGE,
        "an error message of {} bytes: {}…",
        message.len(),
        message.chars().take(200).collect::<String>()
    );
}

/// A FAILURE answer to a bad command: short, and it reads back as written.
pub fn check_failure(response: &Response) {
    let Outcome::Failure(message) = &response.outcome else {
        panic!("a bad command is answered {:?}", response.outcome);
    };
    check_error(message);
    let back = Response::decode(&response.encode()).expect("a FAILURE answer decodes");
    assert_eq!(&back, response, "a FAILURE answer changed on its way");
}

/// One fuzz input for [`Event::decode`], with the modes of [`command`].
pub fn event(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let subjects = Subjects::default();
    let (kind, mode) = kind_of(mode);
    let target = sample_target(kind);
    let subject = subjects.event(kind, &target);
    let names = EventMessage::names(kind);
    let header = |name: &str| json!({"type": "cti.event", "name": name, "target": target.as_str()});
    match mode % 4 {
        0 => check_event(&subjects, &subject, rest),
        1 => {
            let subject = header_subject(&subjects, rest, true).unwrap_or(subject);
            check_event(&subjects, &subject, rest);
        }
        2 => {
            let name = pick(names, rest.first());
            let body = value_of(rest.get(1..).unwrap_or_default());
            check_event(&subjects, &subject, &envelope(header(name), body));
        }
        _ => {
            let name = pick(names, rest.first());
            let mut valid = json!({"header": header(name), "body": {}});
            let (path, value) = change_of(rest.get(1..).unwrap_or_default());
            mutate(&mut valid, path, value);
            check_event(&subjects, &subject, &valid.to_string().into_bytes());
        }
    }
}

/// [`Event::decode`] of `payload` on `subject`.
pub fn check_event(subjects: &Subjects, subject: &str, payload: &[u8]) {
    match Event::decode(subjects, subject, payload) {
        Ok(event) => {
            let (kind, target) = subjects
                .parse_event(subject)
                .expect("a decoded event's subject parses");
            assert_eq!(event.message.kind(), kind, "decoded for another kind");
            assert_eq!(event.target, target, "decoded for another target");
            let again = Event::decode(subjects, &event.subject(subjects), &event.encode())
                .unwrap_or_else(|e| panic!("{} encoded again does not decode: {e}", event.name()));
            assert!(
                same_event(&event, &again),
                "{} changed on its way through its encoding: {} then {}",
                event.name(),
                shown(&event),
                shown(&again)
            );
        }
        Err(e) => check_error(&e.to_string()),
    }
}

/// The same event, interaction data compared as [`same`] does.
pub fn same_event(a: &Event, b: &Event) -> bool {
    a.target == b.target
        && a.name() == b.name()
        && same(
            &Value::Object(a.message.to_body()),
            &Value::Object(b.message.to_body()),
        )
}

/// One fuzz input for [`Response::decode`]: mode byte even, the rest as the payload; odd,
/// a valid SUCCESS or FAILURE response (by the mode's second bit) changed as the rest says.
pub fn response(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        return check_response(rest);
    }
    let mut header = json!({"type": "cti.response", "name": "cti.request.serverstatus",
        "target": "PB1.CONTROL", "requestId": "r-1", "result": "SUCCESS"});
    if mode & 2 != 0 {
        header["result"] = json!("FAILURE");
        header["errorMessage"] = json!("no");
    }
    let mut valid = json!({"header": header, "body": {}});
    let (path, value) = change_of(rest);
    mutate(&mut valid, path, value);
    check_response(&valid.to_string().into_bytes());
}

/// [`Response::decode`] of `payload`: what it reads, it writes so that it reads back the
/// same.
pub fn check_response(payload: &[u8]) {
    let Ok(response) = Response::decode(payload) else {
        return;
    };
    let again = Response::decode(&response.encode()).expect("a decoded response encodes");
    assert!(
        same_response(&response, &again),
        "a response changed on its way through its encoding: {} then {}",
        shown(&response),
        shown(&again)
    );
}

/// The same response, a SUCCESS body compared as [`same`] does.
pub fn same_response(a: &Response, b: &Response) -> bool {
    let outcome = match (&a.outcome, &b.outcome) {
        (Outcome::Success(x), Outcome::Success(y)) => {
            same(&Value::Object(x.clone()), &Value::Object(y.clone()))
        }
        (x, y) => x == y,
    };
    outcome && a.name == b.name && a.target == b.target && a.request_id == b.request_id
}

/// One fuzz input for [`route`]: mode byte even, the rest as the frame; odd, a valid
/// command of the name the next byte picks (of every kind's), changed as the rest says.
pub fn routing(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        return check_route(rest);
    }
    let names: Vec<&str> = Kind::ALL
        .into_iter()
        .flat_map(CommandMessage::names)
        .copied()
        .collect();
    let name = pick(&names, rest.first());
    let kind = Kind::of_name(name).expect("every command name has a kind");
    let raw = raw_command(name, sample_target(kind).as_str(), "r-1", json!({}));
    let mut valid: Value = serde_json::from_slice(&raw).expect("a raw command is JSON");
    let (path, value) = change_of(rest.get(1..).unwrap_or_default());
    mutate(&mut valid, path, value);
    check_route(&valid.to_string().into_bytes());
}

/// [`route`] and [`peek_header`] of `frame`: a frame placed on a destination is decoded
/// there as the command routing read; one not placed is no command on the subject its
/// header names; the header is read from the frame's start, and no prefix of the frame
/// gives another header than the whole frame.
pub fn check_route(frame: &[u8]) {
    let subjects = Subjects::default();
    let whole = peek_header(frame);
    match route(frame) {
        Ok(Routing::Command(routed)) => {
            assert_eq!(Kind::of_name(&routed.name), Some(routed.kind));
            assert!(matches!(
                routed.message_type,
                MessageType::Query | MessageType::Request
            ));
            let subject = subjects.command(routed.kind, &routed.target);
            if let Ok(command) = Command::decode(&subjects, &subject, frame, &Limits::default()) {
                assert_eq!(command.name(), routed.name);
                assert_eq!(command.target, routed.target);
                assert_eq!(command.request_id, routed.request_id);
                assert_eq!(command.message_type(), routed.message_type);
            }
            let header = whole.as_ref().expect("a routed frame's header is peeked");
            let text = |key: &str| header.get(key).and_then(Value::as_str);
            assert_eq!(text("name"), Some(routed.name.as_str()));
            assert_eq!(text("target"), Some(routed.target.as_str()));
        }
        Ok(Routing::NotCommand { message_type, .. }) => {
            assert!(matches!(
                message_type,
                MessageType::Response | MessageType::Event
            ));
            not_a_command(&subjects, frame);
        }
        Err(bad) => {
            check_error(&bad.error.to_string());
            check_failure(&bad.response());
            not_a_command(&subjects, frame);
        }
    }
    for cut in [
        frame.len() / 2,
        frame.len() * 3 / 4,
        frame.len().saturating_sub(1),
    ] {
        if let Some(header) = peek_header(&frame[..cut]) {
            assert_eq!(
                Some(&header),
                whole.as_ref(),
                "a prefix read another header"
            );
        }
    }
}

/// A frame that routing does not place is not a command on its header's subject either.
fn not_a_command(subjects: &Subjects, frame: &[u8]) {
    if let Some(subject) = header_subject(subjects, frame, false) {
        assert!(
            Command::decode(subjects, &subject, frame, &Limits::default()).is_err(),
            "a frame routing refused decodes as a command on {subject}"
        );
    }
}

/// One fuzz input for the internal payloads: the first byte picks the payload (modulo five:
/// [`SessionCreate`], [`GroupCreate`], [`InternalReply`], [`UnitRef`], [`Resume`]) and
/// whether the rest is the payload (the byte divided by five even) or a change to a valid
/// one (odd).
pub fn internal(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let samples = [
        json!({"target": "s-1", "session_id": "s-1", "agent_id": "1001", "agent_password": "pw"}),
        json!({"target": "s-1.g1", "agent_id": "1001", "place": "place-1001"}),
        json!({"error": "no"}),
        json!({"agent_id": "1001"}),
        json!({"agent_id": "1001", "cti_events": [{"event": "logged-out", "agent_id": "1001"}]}),
    ];
    let payload = if (which / 5) & 1 == 0 {
        rest.to_vec()
    } else {
        let mut valid = samples[usize::from(which % 5)].clone();
        let (path, value) = change_of(rest);
        mutate(&mut valid, path, value);
        valid.to_string().into_bytes()
    };
    check_internal(which, &payload);
}

/// The internal payload `which` picks (modulo five, as [`internal`] numbers them) read
/// from `payload`.
pub fn check_internal(which: u8, payload: &[u8]) {
    match which % 5 {
        0 => {
            round_trip::<SessionCreate>(payload);
        }
        1 => {
            round_trip::<GroupCreate>(payload);
        }
        2 => {
            round_trip::<InternalReply>(payload);
        }
        3 => {
            round_trip::<UnitRef>(payload);
        }
        _ => {
            round_trip::<Resume>(payload);
        }
    }
}

/// The target codec on `text`: a target is any text without an empty segment; decoding
/// subject tokens is canonical (what decodes encodes back to the same tokens) and the
/// encoding of a target decodes back to it; one token ([`encode_token`]) round-trips any
/// text, and decoding one without a raw `.` is canonical too.
pub fn check_target(text: &str) {
    match Target::new(text) {
        Ok(target) => {
            assert_eq!(target.as_str(), text);
            assert!(!text.split('.').any(str::is_empty));
            let tokens = target.to_subject_tokens();
            assert_eq!(tokens.split('.').count(), text.split('.').count());
            assert!(
                tokens
                    .bytes()
                    .all(|b| b > b' ' && b < 0x7F && b != b'*' && b != b'>'),
                "{tokens:?} is not a subject's tokens"
            );
            assert_eq!(Target::from_subject_tokens(&tokens).as_ref(), Ok(&target));
        }
        Err(_) => assert!(text.is_empty() || text.split('.').any(str::is_empty)),
    }
    if let Ok(target) = Target::from_subject_tokens(text) {
        assert_eq!(
            target.to_subject_tokens(),
            text,
            "decoding is not canonical"
        );
    }
    let token = encode_token(text);
    assert!(!token.contains('.'));
    assert_eq!(decode_token(&token).as_deref(), Ok(text));
    if !text.contains('.')
        && let Ok(decoded) = decode_token(text)
    {
        assert_eq!(
            encode_token(&decoded),
            text,
            "decoding a token is not canonical"
        );
    }
}
