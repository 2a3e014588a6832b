//! Property tests of every decoder of the protocol: the command, event and response
//! envelopes, every message body, placing a frame without a subject, the internal payloads
//! and the target codec. Each never panics on arbitrary bytes, arbitrary JSON and valid
//! input changed anywhere, and what it encodes it decodes back to the same.
//!
//! The oracles are the fuzz targets' (`fuzz/src/protocol.rs`); the committed seeds and
//! every crash the fuzzers found are replayed through them here too
//! ([`fuzz_inputs_replay`]).

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/json.rs"]
mod json;
#[path = "../../../fuzz/src/protocol.rs"]
mod protocol;
// Shared with the other crates' property tests: this one uses part of it.
#[allow(dead_code)]
#[path = "../../../fuzz/src/strategies.rs"]
mod strategies;

use pb_protocol::channel::*;
use pb_protocol::channel_group::*;
use pb_protocol::control::*;
use pb_protocol::conversation::*;
use pb_protocol::envelope::MAX_ERROR_MESSAGE;
use pb_protocol::interaction::*;
use pb_protocol::internal::{GroupCreate, InternalReply, Resume, SessionCreate, UnitRef};
use pb_protocol::route::{peek_header, route};
use pb_protocol::session::*;
use pb_protocol::{
    Body, Command, CommandMessage, Event, EventMessage, Kind, Limits, Outcome, Response, Routing,
    Subjects, Target, from_body, to_body,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use strategies::*;

/// Text short enough for every limit (`Limits::default()`).
fn short() -> impl Strategy<Value = String> {
    text().prop_map(|t| t.chars().take(24).collect())
}

fn segment() -> impl Strategy<Value = String> {
    short().prop_map(|s| {
        let s: String = s.chars().filter(|c| *c != '.').collect();
        if s.is_empty() { "x".to_owned() } else { s }
    })
}

fn target() -> impl Strategy<Value = Target> {
    vec(segment(), 1..6).prop_map(|segments| Target::new(segments.join(".")).unwrap())
}

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(Kind::ALL.to_vec())
}

fn reason() -> impl Strategy<Value = ReasonCode> {
    proptest::option::of(short()).prop_map(|reason_code| ReasonCode { reason_code })
}

fn child() -> impl Strategy<Value = CreateChild> {
    (short(), short()).prop_map(|(id, name)| CreateChild { id, name })
}

fn destination() -> impl Strategy<Value = Destination> {
    short().prop_map(|destination| Destination { destination })
}

fn data() -> impl Strategy<Value = InteractionData> {
    exact_object().prop_map(|data| InteractionData { data })
}

/// One strategy per message, boxed so that a table can hold them all.
fn one<T: Into<M> + Clone + std::fmt::Debug + 'static, M: std::fmt::Debug + 'static>(
    strategy: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<M> {
    strategy.prop_map(Into::into).boxed()
}

/// Every command of every kind.
fn command_message() -> impl Strategy<Value = CommandMessage> {
    Union::new(vec![
        one(Just(ControlCommand::Capabilities)),
        one(
            (short(), short(), secret()).prop_map(|(agent_id, login, password)| {
                ControlCommand::AgentInfo(AgentInfoQuery {
                    agent_id,
                    requesting_agent_login: login,
                    requesting_agent_password: password,
                })
            }),
        ),
        one(
            (short(), short(), secret()).prop_map(|(agent_id, agent_login, agent_password)| {
                ControlCommand::ValidateAgentCredentials(AgentCredentials {
                    agent_id,
                    agent_login,
                    agent_password,
                })
            }),
        ),
        one(Just(ControlCommand::ServerStatus)),
        one((short(), secret(), short(), short()).prop_map(
            |(agent_id, agent_password, session_id, destination)| {
                ControlCommand::CreateSession(CreateSession {
                    agent_id,
                    agent_password,
                    session_id,
                    destination,
                })
            },
        )),
        one(Just(ControlCommand::Dispose)),
        one((
            proptest::option::of(short()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(name, chat, email, callback)| {
                SessionCommand::Init(SessionInitQuery {
                    name,
                    chat,
                    email,
                    callback,
                })
            })),
        one(child().prop_map(SessionCommand::CreateChannelGroup)),
        one(reason().prop_map(SessionCommand::Logout)),
        one(Just(SessionCommand::Dispose)),
        one(Just(ChannelGroupCommand::Init)),
        one((
            short(),
            short(),
            channel_type(),
            proptest::option::of(short()),
            proptest::option::of(short()),
        )
            .prop_map(|(id, name, channel_type, mode, number)| {
                ChannelGroupCommand::CreateChannel(CreateChannel {
                    id,
                    name,
                    channel_type,
                    mobileagent_mode: mode,
                    mobileagent_dialnumber: number,
                })
            })),
        one(Just(ChannelGroupCommand::Dispose)),
        one(Just(ChannelCommand::Init)),
        one(Just(ChannelCommand::Dispose)),
        one(short().prop_map(|destination| ChannelCommand::Dial(Dial { destination }))),
        one(Just(ChannelCommand::Activate)),
        one(Just(ChannelCommand::Deactivate)),
        one(Just(ChannelCommand::Ready)),
        one(reason().prop_map(ChannelCommand::NotReady)),
        one(child().prop_map(ChannelCommand::CreateInteraction)),
        one(Just(InteractionCommand::Init)),
        one(short().prop_map(|destination| InteractionCommand::Consult(Consult { destination }))),
        one(Just(InteractionCommand::Accept)),
        one(Just(InteractionCommand::Reject)),
        one(Just(InteractionCommand::Complete)),
        one(Just(InteractionCommand::Dispose)),
        one(data().prop_map(InteractionCommand::SetData)),
        one(Just(InteractionCommand::Transfer)),
        one(Just(InteractionCommand::Conference)),
        one(Just(InteractionCommand::Alternate)),
        one(child().prop_map(InteractionCommand::CreateConversation)),
        one(Just(ConversationCommand::Init)),
        one(Just(ConversationCommand::Answer)),
        one(Just(ConversationCommand::Release)),
        one(Just(ConversationCommand::Hold)),
        one(Just(ConversationCommand::Retrieve)),
        one(Just(ConversationCommand::Dispose)),
        one(destination().prop_map(ConversationCommand::BlindTransfer)),
        one(destination().prop_map(ConversationCommand::BlindConference)),
        one(short().prop_map(|digits| ConversationCommand::SendDtmf(Dtmf { digits }))),
    ])
}

/// Every event of every kind.
fn event_message() -> impl Strategy<Value = EventMessage> {
    let endpoint = || {
        (short(), channel_type()).prop_map(|(endpoint, channel_type)| ChannelEndpoint {
            endpoint,
            channel_type,
        })
    };
    Union::new(vec![
        one(server_status()
            .prop_map(|status| ControlEvent::ServerStatusChanged(ServerStatusChanged { status }))),
        one(short()
            .prop_map(|reason| ControlEvent::CommunicationLost(CommunicationLost { reason }))),
        one(Just(ControlEvent::CommunicationRestored)),
        one(reason().prop_map(SessionEvent::LoggedOut)),
        one(endpoint().prop_map(ChannelGroupEvent::ChannelAdded)),
        one(endpoint().prop_map(ChannelGroupEvent::ChannelRemoved)),
        one(Just(ChannelEvent::Activated)),
        one(Just(ChannelEvent::Deactivated)),
        one(Just(ChannelEvent::Available)),
        one(Just(ChannelEvent::Unavailable)),
        one(Just(ChannelEvent::Disposed)),
        one(Just(ChannelEvent::Ready)),
        one(reason().prop_map(ChannelEvent::NotReady)),
        one((short(), channel_type()).prop_map(|(name, media)| {
            ChannelEvent::InteractionAdded(InteractionRef { name, media })
        })),
        one(Just(InteractionEvent::Alerting)),
        one(interaction_state()
            .prop_map(|state| InteractionEvent::StateChanged(InteractionStateChanged { state }))),
        one(data().prop_map(InteractionEvent::DataChanged)),
        one((short(), conversation_role()).prop_map(|(name, role)| {
            InteractionEvent::ConversationAdded(ConversationAdded { name, role })
        })),
        one(conversation_state()
            .prop_map(|state| ConversationEvent::StateChanged(ConversationStateChanged { state }))),
    ])
}

fn command() -> impl Strategy<Value = Command> {
    (short(), target(), command_message())
        .prop_map(|(request_id, target, message)| Command::new(request_id, target, message))
}

fn event() -> impl Strategy<Value = Event> {
    (target(), event_message()).prop_map(|(target, message)| Event::new(target, message))
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        exact_object().prop_map(Outcome::Success),
        // Short and long messages: a long one is cut (`Outcome::failure`).
        (text(), 1usize..200).prop_map(|(t, n)| Outcome::failure(t.repeat(n))),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    (text(), text(), text(), outcome()).prop_map(|(name, target, request_id, outcome)| Response {
        name,
        target,
        request_id,
        outcome,
    })
}

/// A header field: right, missing or any JSON value.
fn field(right: Value) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(Some(right)),
        1 => Just(None),
        1 => json().prop_map(Some),
    ]
}

/// An envelope whose header fields are each right, missing or of any type, with any body.
fn loose_envelope(header: Vec<(&'static str, Value)>) -> impl Strategy<Value = Vec<u8>> {
    let fields: Vec<_> = header
        .into_iter()
        .map(|(key, right)| field(right).prop_map(move |value| (key, value)))
        .collect();
    (
        fields,
        prop_oneof![exact_object().prop_map(Value::Object), json()],
    )
        .prop_map(|(fields, body)| {
            let header: Body = fields
                .into_iter()
                .filter_map(|(key, value)| Some((key.to_owned(), value?)))
                .collect();
            json!({"header": header, "body": body})
                .to_string()
                .into_bytes()
        })
}

/// The name `index` picks among a kind's command names.
fn command_name(kind: Kind, index: prop::sample::Index) -> &'static str {
    let names = CommandMessage::names(kind);
    names[index.index(names.len())]
}

fn event_name(kind: Kind, index: prop::sample::Index) -> &'static str {
    let names = EventMessage::names(kind);
    names[index.index(names.len())]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..256)
}

proptest! {
    #[test]
    fn command_decoding_never_panics_on_bytes(kind in kind(), payload in bytes()) {
        let subjects = Subjects::default();
        let subject = subjects.command(kind, &protocol::sample_target(kind));
        protocol::check_command(&subjects, &subject, &payload);
        protocol::command(&payload);
    }

    #[test]
    fn command_decoding_never_panics_on_json(kind in kind(), value in json()) {
        let subjects = Subjects::default();
        let subject = subjects.command(kind, &protocol::sample_target(kind));
        protocol::check_command(&subjects, &subject, value.to_string().as_bytes());
    }

    #[test]
    fn commands_with_any_header_fields_and_body(
        (kind, payload) in (kind(), any::<prop::sample::Index>(), short(), any::<bool>())
            .prop_flat_map(|(kind, name, request_id, event_type)| {
                let name = command_name(kind, name);
                let type_ = if event_type { "cti.event" } else { pb_protocol::MessageType::of_name(name).as_str() };
                let header = vec![
                    ("type", json!(type_)),
                    ("name", json!(name)),
                    ("target", json!(protocol::sample_target(kind).as_str())),
                    ("requestId", json!(request_id)),
                ];
                (Just(kind), loose_envelope(header))
            })
    ) {
        let subjects = Subjects::default();
        let subject = subjects.command(kind, &protocol::sample_target(kind));
        protocol::check_command(&subjects, &subject, &payload);
    }

    #[test]
    fn commands_changed_anywhere(
        (command, input) in command().prop_flat_map(|command| {
            let valid: Value = serde_json::from_slice(&command.encode()).unwrap();
            (Just(command), changed(Just(valid)))
        })
    ) {
        let subjects = Subjects::default();
        protocol::check_command(&subjects, &command.subject(&subjects), input.to_string().as_bytes());
    }

    #[test]
    fn commands_round_trip(command in command()) {
        let subjects = Subjects::default();
        let decoded = Command::decode(&subjects, &command.subject(&subjects), &command.encode(), &Limits::default());
        prop_assert_eq!(decoded.as_ref().map_err(|bad| &bad.error), Ok(&command));
        let body = CommandMessage::from_parts(command.kind(), command.name(), command.message.to_body());
        prop_assert_eq!(body, Ok(Some(command.message)));
    }

    #[test]
    fn event_decoding_never_panics_on_bytes(kind in kind(), payload in bytes()) {
        let subjects = Subjects::default();
        let subject = subjects.event(kind, &protocol::sample_target(kind));
        protocol::check_event(&subjects, &subject, &payload);
        protocol::event(&payload);
    }

    #[test]
    fn event_decoding_never_panics_on_json(kind in kind(), value in json()) {
        let subjects = Subjects::default();
        let subject = subjects.event(kind, &protocol::sample_target(kind));
        protocol::check_event(&subjects, &subject, value.to_string().as_bytes());
    }

    #[test]
    fn events_with_any_header_fields_and_body(
        (kind, payload) in (kind(), any::<prop::sample::Index>())
            .prop_flat_map(|(kind, name)| {
                let header = vec![
                    ("type", json!("cti.event")),
                    ("name", json!(event_name(kind, name))),
                    ("target", json!(protocol::sample_target(kind).as_str())),
                ];
                (Just(kind), loose_envelope(header))
            })
    ) {
        let subjects = Subjects::default();
        let subject = subjects.event(kind, &protocol::sample_target(kind));
        protocol::check_event(&subjects, &subject, &payload);
    }

    #[test]
    fn events_changed_anywhere(
        (event, input) in event().prop_flat_map(|event| {
            let valid: Value = serde_json::from_slice(&event.encode()).unwrap();
            (Just(event), changed(Just(valid)))
        })
    ) {
        let subjects = Subjects::default();
        protocol::check_event(&subjects, &event.subject(&subjects), input.to_string().as_bytes());
    }

    #[test]
    fn events_round_trip(event in event()) {
        let subjects = Subjects::default();
        let decoded = Event::decode(&subjects, &event.subject(&subjects), &event.encode());
        prop_assert_eq!(decoded, Ok(event.clone()));
        let body = EventMessage::from_parts(event.message.kind(), event.name(), event.message.to_body());
        prop_assert_eq!(body, Ok(Some(event.message)));
    }

    #[test]
    fn response_decoding_never_panics(payload in bytes(), value in json()) {
        protocol::check_response(&payload);
        protocol::response(&payload);
        protocol::check_response(value.to_string().as_bytes());
    }

    #[test]
    fn responses_with_any_header_fields_and_body(
        payload in (text(), any::<bool>()).prop_flat_map(|(message, success)| {
            loose_envelope(vec![
                ("type", json!("cti.response")),
                ("name", json!("cti.request.serverstatus")),
                ("target", json!("PB1.CONTROL")),
                ("requestId", json!("r-1")),
                (if success { "result" } else { "cti.result" }, json!(if success { "SUCCESS" } else { "FAILURE" })),
                (if success { "errorMessage" } else { "error.message" }, json!(message)),
            ])
        })
    ) {
        protocol::check_response(&payload);
    }

    #[test]
    fn responses_changed_anywhere(
        input in response().prop_flat_map(|r| {
            changed(Just(serde_json::from_slice::<Value>(&r.encode()).unwrap()))
        })
    ) {
        protocol::check_response(input.to_string().as_bytes());
    }

    #[test]
    fn responses_round_trip(response in response()) {
        prop_assert_eq!(Response::decode(&response.encode()), Ok(response));
    }

    #[test]
    fn routing_never_panics_and_agrees_with_decoding(payload in bytes(), value in json()) {
        protocol::check_route(&payload);
        protocol::routing(&payload);
        protocol::check_route(value.to_string().as_bytes());
    }

    #[test]
    fn routing_commands_changed_anywhere(
        input in command().prop_flat_map(|command| {
            changed(Just(serde_json::from_slice::<Value>(&command.encode()).unwrap()))
        })
    ) {
        protocol::check_route(input.to_string().as_bytes());
    }

    #[test]
    fn every_command_is_routed_to_its_destination(command in command()) {
        let frame = command.encode();
        let Ok(Routing::Command(routed)) = route(&frame) else {
            return Err(TestCaseError::fail(format!("{} was not routed", command.name())));
        };
        prop_assert_eq!(routed.kind, command.kind());
        prop_assert_eq!(&routed.target, &command.target);
        prop_assert_eq!(routed.name.as_str(), command.name());
        prop_assert_eq!(&routed.request_id, &command.request_id);
        let header = peek_header(&frame).unwrap_or_default();
        prop_assert_eq!(header.get("name"), Some(&json!(command.name())));
        protocol::check_route(&frame);
    }

    #[test]
    fn every_event_is_not_a_command(event in event()) {
        let routed = route(&event.encode());
        let is_event = matches!(routed, Ok(Routing::NotCommand { message_type: pb_protocol::MessageType::Event, ref name }) if name == event.name());
        prop_assert!(is_event, "{:?}", routed);
    }

    #[test]
    fn internal_payloads_never_panic(which in 0u8..5, payload in bytes(), value in json()) {
        protocol::check_internal(which, &payload);
        protocol::check_internal(which, value.to_string().as_bytes());
        protocol::internal(&payload);
    }

    #[test]
    fn internal_payloads_changed_anywhere(
        (which, input) in (0u8..5)
            .prop_flat_map(|which| (Just(which), changed(Just(internal_sample(which)))))
    ) {
        protocol::check_internal(which, input.to_string().as_bytes());
    }

    #[test]
    fn internal_payloads_round_trip(
        target in target(),
        ids in (short(), short(), short()),
        password in secret(),
        reply in prop_oneof![
            Just(InternalReply::Ok),
            text().prop_map(InternalReply::Error),
            text().prop_map(InternalReply::Again),
        ],
        cti_events in vec(exact_json(), 0..4),
    ) {
        let (session_id, agent_id, place) = ids;
        let create = SessionCreate { target: target.clone(), session_id, agent_id: agent_id.clone(), agent_password: password };
        prop_assert_eq!(read_back(&create), create);
        let group = GroupCreate { target, agent_id: agent_id.clone(), place };
        prop_assert_eq!(read_back(&group), group);
        prop_assert_eq!(read_back(&reply), reply);
        let unit = UnitRef { agent_id: agent_id.clone() };
        prop_assert_eq!(read_back(&unit), unit);
        let resume = Resume { agent_id, cti_events };
        prop_assert_eq!(read_back(&resume), resume);
    }

    #[test]
    fn target_codec_on_any_text(text in text()) {
        protocol::check_target(&text);
    }

    #[test]
    fn target_codec_on_any_target(target in target()) {
        protocol::check_target(target.as_str());
        protocol::check_target(&target.to_subject_tokens());
    }

    #[test]
    fn response_bodies_never_panic_and_read_back(
        value in prop_oneof![json(), exact_object().prop_map(Value::Object)],
        which in 0usize..RESPONSE_BODIES,
    ) {
        response_body(which, value);
    }

    #[test]
    fn response_bodies_changed_anywhere(
        (which, input) in (0usize..RESPONSE_BODIES)
            .prop_flat_map(|which| (Just(which), changed(Just(response_body_sample(which)))))
    ) {
        response_body(which, input);
    }

    #[test]
    fn agent_info_and_capabilities_round_trip(info in agent_info(), capabilities in capabilities()) {
        prop_assert_eq!(from_body::<AgentInfo>(to_body(&info)), Ok(info));
        prop_assert_eq!(from_body::<Capabilities>(to_body(&capabilities)), Ok(capabilities));
    }
}

/// `value` through JSON and back.
fn read_back<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_slice(&serde_json::to_vec(value).unwrap()).unwrap()
}

/// A valid payload of each internal payload, numbered as `check_internal` numbers them.
fn internal_sample(which: u8) -> Value {
    match which {
        0 => {
            json!({"target": "s-1", "session_id": "s-1", "agent_id": "1001", "agent_password": "pw"})
        }
        1 => json!({"target": "s-1.g1", "agent_id": "1001", "place": "place-1001"}),
        2 => json!("ok"),
        3 => json!({"agent_id": "1001"}),
        _ => {
            json!({"agent_id": "1001", "cti_events": [{"event": "logged-out", "agent_id": "1001"}]})
        }
    }
}

/// The response bodies of the protocol, read as a bridge reads them ([`from_body`]).
const RESPONSE_BODIES: usize = 8;

fn response_body(which: usize, value: Value) {
    let Value::Object(body) = value else {
        return;
    };
    match which {
        0 => read_body::<SessionInit>(body),
        1 => read_body::<LogoutAnswer>(body),
        2 => read_body::<ChannelGroupInit>(body),
        3 => read_body::<ChannelInit>(body),
        4 => read_body::<InteractionInit>(body),
        5 => read_body::<ConversationInit>(body),
        6 => read_body::<Capabilities>(body),
        _ => read_body::<AgentInfo>(body),
    }
}

fn read_body<T: serde::Serialize + serde::de::DeserializeOwned>(body: Body) {
    if let Ok(value) = from_body::<T>(body) {
        json::reads_back(&value);
    }
}

fn response_body_sample(which: usize) -> Value {
    match which {
        0 => json!({"channel-groups": [{"name": "place-1001"}]}),
        1 => json!({"pending": true}),
        2 => json!({"channels": [{"end-point": "ext-1001", "type": "TELEPHONY"}]}),
        3 => json!({"state": "ACTIVE", "agent-state": "NOT_READY", "reasonCode": "lunch",
            "pending-agent-state": "READY", "interactions": [{"name": "i1", "type": "CHAT"}]}),
        4 => json!({"interaction-state": "STARTED", "interaction-data": {"a": 1},
            "conversations": {"primary": {"id": "v1"}, "consult": {"id": "v2"}}}),
        5 => json!({"conversation-state": "HELD", "role": "consult", "remote": "+4930123"}),
        6 => json!({"channel-groups-supported": true, "channel-groups-max-per-agent": 1,
            "channel-groups-media-types": "TELEPHONY", "single-channels-supported": false,
            "single-channels-media-types": ""}),
        _ => json!({"switch-agent-id": "sw-1", "full-name": "Ada Lovelace", "cti-specific": [1]}),
    }
}

/// The generators above make every command and event there is (so the round trips cover
/// every body), and each sample of the response bodies is valid.
#[test]
fn generators_cover_every_message() {
    let mut runner = TestRunner::deterministic();
    let mut commands = std::collections::BTreeSet::new();
    let mut events = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        commands.insert(
            command_message()
                .new_tree(&mut runner)
                .unwrap()
                .current()
                .name(),
        );
        events.insert(
            event_message()
                .new_tree(&mut runner)
                .unwrap()
                .current()
                .name(),
        );
    }
    for kind in Kind::ALL {
        for name in CommandMessage::names(kind) {
            assert!(commands.contains(name), "no command {name} generated");
        }
        for name in EventMessage::names(kind) {
            assert!(events.contains(name), "no event {name} generated");
        }
    }
    for which in 0..RESPONSE_BODIES {
        let Value::Object(body) = response_body_sample(which) else {
            panic!("sample {which} is not an object");
        };
        let read = match which {
            0 => from_body::<SessionInit>(body).map(drop),
            1 => from_body::<LogoutAnswer>(body).map(drop),
            2 => from_body::<ChannelGroupInit>(body).map(drop),
            3 => from_body::<ChannelInit>(body).map(drop),
            4 => from_body::<InteractionInit>(body).map(drop),
            5 => from_body::<ConversationInit>(body).map(drop),
            6 => from_body::<Capabilities>(body).map(drop),
            _ => from_body::<AgentInfo>(body).map(drop),
        };
        assert_eq!(read, Ok(()), "response body sample {which}");
    }
    for which in 0..5 {
        let payload = internal_sample(which).to_string();
        let read = match which {
            0 => serde_json::from_str::<SessionCreate>(&payload).map(drop),
            1 => serde_json::from_str::<GroupCreate>(&payload).map(drop),
            2 => serde_json::from_str::<InternalReply>(&payload).map(drop),
            3 => serde_json::from_str::<UnitRef>(&payload).map(drop),
            _ => serde_json::from_str::<Resume>(&payload).map(drop),
        };
        assert!(read.is_ok(), "internal sample {which}: {read:?}");
    }
}

/// The seeds of each fuzz target and every crash its fuzzer found, through its oracle.
#[test]
fn fuzz_inputs_replay() {
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 5] = [
        ("command", protocol::command),
        ("event", protocol::event),
        ("response", protocol::response),
        ("route", protocol::routing),
        ("internal", protocol::internal),
    ];
    for (target, check) in targets {
        let inputs = corpus::inputs(target);
        assert!(!inputs.is_empty(), "no seeds for the fuzz target {target}");
        corpus::replay(&inputs, check);
    }
}

/// Found by the `response` fuzzer (`fuzz/regressions/response/`), fixed: a FAILURE message
/// cut by `Outcome::failure` was longer than `MAX_ERROR_MESSAGE` with its length note, so
/// `Response::decode` cut it again and it did not read back as written.
#[test]
fn long_failure_messages_read_back() {
    for length in [MAX_ERROR_MESSAGE, MAX_ERROR_MESSAGE + 1, 5000, 600_000] {
        let long = Response {
            name: "cti.request.serverstatus".into(),
            target: "PB1.CONTROL".into(),
            request_id: "r-1".into(),
            outcome: Outcome::failure("x".repeat(length)),
        };
        assert_eq!(Response::decode(&long.encode()), Ok(long), "{length}");
    }
}

/// Found by the `route` fuzzer (`fuzz/regressions/route/`), fixed: a frame whose envelope
/// repeats `header` or `body` was refused by `route` ("payload is not a JSON object") and
/// accepted by `Command::decode` (the last one winning), and `peek_header` read the first.
/// Now every reader refuses it ("envelope has `header` more than once").
#[test]
fn a_repeated_envelope_member_is_refused_by_every_reader() {
    let frame = br#"{"header":{"type":"cti.query","name":"cti.query.capabilities","target":"PB1.CONTROL","requestId":"r"},"body":{},"header":{}}"#;
    let bad = route(frame).unwrap_err();
    assert!(
        bad.error.to_string().contains("more than once"),
        "{}",
        bad.error
    );
    let decoded = Command::decode(
        &Subjects::default(),
        "pb.control.PB1.CONTROL",
        frame,
        &Limits::default(),
    );
    assert!(decoded.is_err());
    corpus::replay(&corpus::inputs("route"), protocol::routing);
}
