//! Round trip of every message, and every kind of malformed command of contract §5.2.

use std::collections::BTreeSet;

use pb_protocol::channel::*;
use pb_protocol::channel_group::*;
use pb_protocol::control::*;
use pb_protocol::conversation::*;
use pb_protocol::interaction::*;
use pb_protocol::session::*;
use pb_protocol::{
    Body, Command, CommandMessage, DecodeError, Event, EventMessage, Kind, Limit, Limits, Outcome,
    Secret, Subjects, Target,
};
use serde_json::{Value, json};

fn t(s: &str) -> Target {
    Target::new(s).unwrap()
}

fn data() -> Body {
    json!({"caller": "+4930123", "account": {"id": "A-1", "tier": "gold"}})
        .as_object()
        .unwrap()
        .clone()
}

fn reason(r: Option<&str>) -> ReasonCode {
    ReasonCode {
        reason_code: r.map(str::to_owned),
    }
}

fn child() -> CreateChild {
    CreateChild {
        id: "x1".into(),
        name: "cti-x1".into(),
    }
}

/// One sample of every command, each with the target of its destination kind.
fn every_command() -> Vec<(CommandMessage, Target)> {
    let control = t("Main PB.CONTROL");
    let session = t("s-42");
    let group = t("s-42.g1");
    let channel = t("s-42.g1.c7");
    let interaction = t("s-42.g1.c7.i%1");
    let conversation = t("s-42.g1.c7.i%1.v*2");
    let dest = || Destination {
        destination: "+4930555".into(),
    };
    vec![
        (ControlCommand::Capabilities.into(), control.clone()),
        (
            ControlCommand::AgentInfo(AgentInfoQuery {
                agent_id: "1001".into(),
                requesting_agent_login: "1002".into(),
                requesting_agent_password: Secret::new("pw-1002"),
            })
            .into(),
            control.clone(),
        ),
        (
            ControlCommand::ValidateAgentCredentials(AgentCredentials {
                agent_id: "1001".into(),
                agent_login: "1001".into(),
                agent_password: Secret::new("pw-1001"),
            })
            .into(),
            control.clone(),
        ),
        (ControlCommand::ServerStatus.into(), control.clone()),
        (
            ControlCommand::CreateSession(CreateSession {
                agent_id: "1001".into(),
                agent_password: Secret::new("pw-1001"),
                session_id: "s-42".into(),
                destination: "s-42".into(),
            })
            .into(),
            control.clone(),
        ),
        (ControlCommand::Dispose.into(), control),
        (
            SessionCommand::Init(SessionInitQuery {
                name: Some("place-1001".into()),
                chat: Some(true),
                email: Some(false),
                callback: None,
            })
            .into(),
            session.clone(),
        ),
        (
            SessionCommand::CreateChannelGroup(child()).into(),
            session.clone(),
        ),
        (
            SessionCommand::Logout(reason(Some("end-of-shift"))).into(),
            session.clone(),
        ),
        (SessionCommand::Dispose.into(), session),
        (ChannelGroupCommand::Init.into(), group.clone()),
        (
            ChannelGroupCommand::CreateChannel(CreateChannel {
                id: "c7".into(),
                name: "ext-1001".into(),
                channel_type: ChannelType::Telephony,
                mobileagent_mode: Some("off".into()),
                mobileagent_dialnumber: Some("+4930777".into()),
            })
            .into(),
            group.clone(),
        ),
        (ChannelGroupCommand::Dispose.into(), group),
        (ChannelCommand::Init.into(), channel.clone()),
        (ChannelCommand::Dispose.into(), channel.clone()),
        (
            ChannelCommand::Dial(Dial {
                destination: "+4930555".into(),
            })
            .into(),
            channel.clone(),
        ),
        (ChannelCommand::Activate.into(), channel.clone()),
        (ChannelCommand::Deactivate.into(), channel.clone()),
        (ChannelCommand::Ready.into(), channel.clone()),
        (
            ChannelCommand::NotReady(reason(Some("lunch"))).into(),
            channel.clone(),
        ),
        (ChannelCommand::CreateInteraction(child()).into(), channel),
        (InteractionCommand::Init.into(), interaction.clone()),
        (
            InteractionCommand::Consult(Consult {
                destination: "1002".into(),
            })
            .into(),
            interaction.clone(),
        ),
        (InteractionCommand::Accept.into(), interaction.clone()),
        (InteractionCommand::Reject.into(), interaction.clone()),
        (InteractionCommand::Complete.into(), interaction.clone()),
        (InteractionCommand::Dispose.into(), interaction.clone()),
        (
            InteractionCommand::SetData(InteractionData { data: data() }).into(),
            interaction.clone(),
        ),
        (InteractionCommand::Transfer.into(), interaction.clone()),
        (InteractionCommand::Conference.into(), interaction.clone()),
        (InteractionCommand::Alternate.into(), interaction.clone()),
        (
            InteractionCommand::CreateConversation(child()).into(),
            interaction,
        ),
        (ConversationCommand::Init.into(), conversation.clone()),
        (ConversationCommand::Answer.into(), conversation.clone()),
        (ConversationCommand::Release.into(), conversation.clone()),
        (ConversationCommand::Hold.into(), conversation.clone()),
        (ConversationCommand::Retrieve.into(), conversation.clone()),
        (ConversationCommand::Dispose.into(), conversation.clone()),
        (
            ConversationCommand::BlindTransfer(dest()).into(),
            conversation.clone(),
        ),
        (
            ConversationCommand::BlindConference(dest()).into(),
            conversation.clone(),
        ),
        (
            ConversationCommand::SendDtmf(Dtmf {
                digits: "12#".into(),
            })
            .into(),
            conversation,
        ),
    ]
}

/// One sample of every event.
fn every_event() -> Vec<(EventMessage, Target)> {
    let endpoint = || ChannelEndpoint {
        endpoint: "ext-1001".into(),
        channel_type: ChannelType::Telephony,
    };
    let channel = t("s-42.g1.c7");
    let interaction = t("s-42.g1.c7.i1");
    vec![
        (
            ControlEvent::ServerStatusChanged(ServerStatusChanged {
                status: ServerStatus::InService,
            })
            .into(),
            t("PB1.CONTROL"),
        ),
        (
            ControlEvent::CommunicationLost(CommunicationLost {
                reason: "link dropped".into(),
            })
            .into(),
            t("PB1.CONTROL"),
        ),
        (ControlEvent::CommunicationRestored.into(), t("PB1.CONTROL")),
        (SessionEvent::LoggedOut(reason(None)).into(), t("s-42")),
        (
            ChannelGroupEvent::ChannelAdded(endpoint()).into(),
            t("s-42.g1"),
        ),
        (
            ChannelGroupEvent::ChannelRemoved(endpoint()).into(),
            t("s-42.g1"),
        ),
        (ChannelEvent::Activated.into(), channel.clone()),
        (ChannelEvent::Deactivated.into(), channel.clone()),
        (ChannelEvent::Available.into(), channel.clone()),
        (ChannelEvent::Unavailable.into(), channel.clone()),
        (ChannelEvent::Disposed.into(), channel.clone()),
        (ChannelEvent::Ready.into(), channel.clone()),
        (
            ChannelEvent::NotReady(reason(Some("break"))).into(),
            channel.clone(),
        ),
        (
            ChannelEvent::InteractionAdded(InteractionRef {
                name: "call-1".into(),
                media: ChannelType::Telephony,
            })
            .into(),
            channel,
        ),
        (InteractionEvent::Alerting.into(), interaction.clone()),
        (
            InteractionEvent::StateChanged(InteractionStateChanged {
                state: InteractionState::Started,
            })
            .into(),
            interaction.clone(),
        ),
        (
            InteractionEvent::DataChanged(InteractionData { data: data() }).into(),
            interaction.clone(),
        ),
        (
            InteractionEvent::ConversationAdded(ConversationAdded {
                name: "leg-2".into(),
                role: ConversationRole::Consult,
            })
            .into(),
            interaction,
        ),
        (
            ConversationEvent::StateChanged(ConversationStateChanged {
                state: ConversationState::Held,
            })
            .into(),
            t("s-42.g1.c7.i1.v1"),
        ),
    ]
}

fn all_names(names: fn(Kind) -> &'static [&'static str]) -> BTreeSet<&'static str> {
    Kind::ALL.into_iter().flat_map(names).copied().collect()
}

#[test]
fn every_command_round_trips_through_subject_and_payload() {
    let subjects = Subjects::default();
    let samples = every_command();
    let covered: BTreeSet<_> = samples.iter().map(|(m, _)| m.name()).collect();
    assert_eq!(
        covered,
        all_names(CommandMessage::names),
        "a command has no sample"
    );
    for (i, (message, target)) in samples.into_iter().enumerate() {
        let cmd = Command::new(format!("{{GUID-{i}}}"), target, message);
        let subject = cmd.subject(&subjects);
        let back = Command::decode(&subjects, &subject, &cmd.encode(), &Limits::default()).unwrap();
        assert_eq!(back, cmd, "{}", cmd.name());
        let json: Value = serde_json::from_slice(&cmd.encode()).unwrap();
        assert_eq!(json["header"]["name"], cmd.name());
        assert!(json["body"].is_object());
    }
}

#[test]
fn every_event_round_trips_through_subject_and_payload() {
    let subjects = Subjects::new("acme.pb").unwrap();
    let samples = every_event();
    let covered: BTreeSet<_> = samples.iter().map(|(m, _)| m.name()).collect();
    assert_eq!(
        covered,
        all_names(EventMessage::names),
        "an event has no sample"
    );
    for (message, target) in samples {
        let event = Event::new(target, message);
        let subject = event.subject(&subjects);
        assert!(subject.starts_with("acme.pb.evt."));
        let back = Event::decode(&subjects, &subject, &event.encode()).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn every_response_body_round_trips() {
    fn rt<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let body = pb_protocol::to_body(&v);
        assert_eq!(pb_protocol::from_body::<T>(body).unwrap(), v);
    }
    rt(Capabilities {
        channel_groups_supported: true,
        channel_groups_max_per_agent: 1,
        channel_groups_media_types: "TELEPHONY,EMAIL,CHAT".into(),
        single_channels_supported: false,
        single_channels_media_types: String::new(),
    });
    rt(AgentInfo {
        switch_agent_id: "sw-1001".into(),
        name: AgentName::Split {
            first: "Ada".into(),
            last: "Lovelace".into(),
        },
        cti_specific: Some(json!({"team": "billing"})),
    });
    rt(SessionInit {
        channel_groups: vec![NamedGroup {
            name: "place-1001".into(),
        }],
    });
    rt(ChannelGroupInit {
        channels: ChannelType::ALL
            .iter()
            .map(|ty| ChannelInGroup {
                end_point: format!("ep-{}", ty.as_str()),
                channel_type: *ty,
            })
            .collect(),
    });
    rt(ChannelInit {
        state: ChannelState::Active,
        agent_state: AgentState::NotReady,
        reason_code: Some("lunch".into()),
        pending_agent_state: Some(AgentState::Ready),
        interactions: Some(vec![InteractionRef {
            name: "call-1".into(),
            media: ChannelType::Telephony,
        }]),
    });
    rt(InteractionInit {
        state: InteractionState::Started,
        data: data(),
        conversations: Some(Conversations {
            primary: Some(ConversationId { id: "v1".into() }),
            consult: Some(ConversationId { id: "v2".into() }),
        }),
    });
    rt(ConversationInit {
        state: ConversationState::Connected,
        role: ConversationRole::Primary,
        remote: "+4930123".into(),
    });
}

#[test]
fn wire_spelling_of_bodies() {
    let body = pb_protocol::to_body(&ChannelInGroup {
        end_point: "ext-1001".into(),
        channel_type: ChannelType::Telephony,
    });
    assert_eq!(
        Value::Object(body),
        json!({"end-point": "ext-1001", "type": "TELEPHONY"})
    );
    let body = ChannelGroupEvent::ChannelAdded(ChannelEndpoint {
        endpoint: "ext-1001".into(),
        channel_type: ChannelType::Chat,
    })
    .to_body();
    assert_eq!(
        Value::Object(body),
        json!({"endpoint": "ext-1001", "type": "CHAT"})
    );
    let cmd = ControlCommand::AgentInfo(AgentInfoQuery {
        agent_id: "1".into(),
        requesting_agent_login: "2".into(),
        requesting_agent_password: Secret::new("p"),
    });
    assert_eq!(
        Value::Object(cmd.to_body()),
        json!({"agentId": "1", "requestingAgentLogin": "2", "requestingAgentPassword": "p"})
    );
}

#[test]
fn debug_of_a_command_never_shows_a_password() {
    for (message, target) in every_command() {
        let shown = format!("{:?}", Command::new("r", target, message));
        assert!(!shown.contains("pw-"), "{shown}");
    }
}

// ---- malformed input, contract §5.2 ----

const SUBJECT: &str = "pb.control.PB1.CONTROL";

fn decode(subject: &str, payload: &str) -> pb_protocol::BadCommand {
    *Command::decode(
        &Subjects::default(),
        subject,
        payload.as_bytes(),
        &Limits::default(),
    )
    .unwrap_err()
}

fn envelope(header: Value, body: Value) -> String {
    json!({"header": header, "body": body}).to_string()
}

fn header(type_: &str, name: &str, target: &str) -> Value {
    json!({"type": type_, "name": name, "target": target, "requestId": "r-1"})
}

#[test]
fn payload_that_is_not_json() {
    let bad = decode(SUBJECT, "{not json");
    assert!(matches!(bad.error, DecodeError::Envelope(_)));
    assert!(
        bad.error.to_string().starts_with("payload is not JSON"),
        "{}",
        bad.error
    );
    assert_eq!(bad.request_id, "");
    assert_eq!(bad.target, "PB1.CONTROL", "the subject's target is echoed");
    let r = bad.response();
    assert!(matches!(r.outcome, Outcome::Failure(_)));
}

#[test]
fn envelope_without_header_or_body_or_with_wrong_shapes() {
    for (payload, want) in [
        ("[1,2]", "payload is not a JSON object"),
        (r#"{"body":{}}"#, "envelope lacks `header`"),
        (r#"{"header":{"requestId":"r-9"}}"#, "envelope lacks `body`"),
        (
            r#"{"header":"x","body":{}}"#,
            "envelope `header` is not a JSON object",
        ),
        (
            r#"{"header":{"requestId":"r-9"},"body":[]}"#,
            "envelope `body` is not a JSON object",
        ),
    ] {
        let bad = decode(SUBJECT, payload);
        assert_eq!(bad.error.to_string(), want, "{payload}");
    }
    // requestId is echoed even when the body is missing
    assert_eq!(
        decode(SUBJECT, r#"{"header":{"requestId":"r-9"}}"#).request_id,
        "r-9"
    );
}

#[test]
fn missing_header_fields() {
    for missing in ["type", "name", "target", "requestId"] {
        let mut h = header("cti.query", "cti.query.capabilities", "PB1.CONTROL");
        h.as_object_mut().unwrap().remove(missing);
        let bad = decode(SUBJECT, &envelope(h, json!({})));
        assert_eq!(bad.error, DecodeError::MissingHeader(missing));
    }
    let mut h = header("cti.query", "cti.query.capabilities", "PB1.CONTROL");
    h["requestId"] = json!(17);
    assert_eq!(
        decode(SUBJECT, &envelope(h, json!({}))).error,
        DecodeError::MissingHeader("requestId")
    );
}

#[test]
fn wrong_or_unknown_type() {
    let bad = decode(
        SUBJECT,
        &envelope(
            header("cti.event", "cti.query.capabilities", "PB1.CONTROL"),
            json!({}),
        ),
    );
    assert_eq!(
        bad.error.to_string(),
        "header type `cti.event` does not fit `cti.query.capabilities`, which is a cti.query"
    );
    assert_eq!(bad.request_id, "r-1");
    assert_eq!(bad.name, "cti.query.capabilities");
    let bad = decode(
        SUBJECT,
        &envelope(
            header("cti.request", "cti.query.capabilities", "PB1.CONTROL"),
            json!({}),
        ),
    );
    assert!(matches!(bad.error, DecodeError::WrongType { .. }));
    let bad = decode(
        SUBJECT,
        &envelope(
            header("query", "cti.query.capabilities", "PB1.CONTROL"),
            json!({}),
        ),
    );
    assert_eq!(bad.error, DecodeError::UnknownType("query".into()));
}

#[test]
fn name_unknown_for_the_subjects_kind() {
    let cases = [
        (
            SUBJECT,
            "cti.query.nothing",
            "PB1.CONTROL",
            "`cti.query.nothing` is not a message a control destination accepts",
        ),
        (
            "pb.session.s-1",
            "cti.query.capabilities",
            "s-1",
            "`cti.query.capabilities` is not a message a session destination accepts (it is a control message)",
        ),
        (
            "pb.channel.s.g.c",
            "channel.activated",
            "s.g.c",
            "`channel.activated` is not a message a channel destination accepts (it is an event)",
        ),
        (
            "pb.channel.s.g.c",
            "",
            "s.g.c",
            "`` is not a message a channel destination accepts",
        ),
    ];
    for (subject, name, target, want) in cases {
        let bad = decode(
            subject,
            &envelope(header("cti.query", name, target), json!({})),
        );
        assert_eq!(bad.error.to_string(), want);
        assert_eq!(bad.response().name, name, "the name is echoed as read");
    }
}

#[test]
fn target_that_does_not_match_the_subject() {
    let bad = decode(
        SUBJECT,
        &envelope(
            header("cti.query", "cti.query.capabilities", "PB2.CONTROL"),
            json!({}),
        ),
    );
    assert_eq!(
        bad.error.to_string(),
        "header target `PB2.CONTROL` does not match the subject's target `PB1.CONTROL`"
    );
    assert_eq!(bad.target, "PB2.CONTROL", "the header's target is echoed");
    let bad = decode(
        SUBJECT,
        &envelope(
            header("cti.query", "cti.query.capabilities", "PB1..CONTROL"),
            json!({}),
        ),
    );
    assert!(matches!(bad.error, DecodeError::BadTarget { .. }));
    // the percent-encoded subject matches the raw header target
    let ok = Command::decode(
        &Subjects::default(),
        "pb.control.Main%20PB.CONTROL",
        envelope(
            header("cti.query", "cti.query.capabilities", "Main PB.CONTROL"),
            json!({}),
        )
        .as_bytes(),
        &Limits::default(),
    );
    assert!(ok.is_ok());
}

#[test]
fn body_missing_a_property_or_with_a_wrong_type() {
    let h = header("cti.query", "cti.query.agentinfo", "PB1.CONTROL");
    let bad = decode(
        SUBJECT,
        &envelope(
            h.clone(),
            json!({"agentId": "1001", "requestingAgentLogin": "1001"}),
        ),
    );
    assert_eq!(
        bad.error.to_string(),
        "body of `cti.query.agentinfo` is invalid: missing field `requestingAgentPassword`"
    );
    let bad = decode(
        SUBJECT,
        &envelope(
            h,
            json!({"agentId": 1001, "requestingAgentLogin": "1001", "requestingAgentPassword": "x"}),
        ),
    );
    assert_eq!(
        bad.error.to_string(),
        "body of `cti.query.agentinfo` is invalid: invalid type: integer `1001`, expected a string"
    );
    let bad = decode(
        "pb.channelgroup.s.g",
        &envelope(
            header("cti.request", "channelgroup.request.createchannel", "s.g"),
            json!({"id": "c1", "name": "ext-1", "type": "FAX"}),
        ),
    );
    assert!(
        bad.error.to_string().contains("unknown variant `FAX`"),
        "{}",
        bad.error
    );
}

#[test]
fn a_wrong_body_never_echoes_a_password() {
    let bad = decode(
        SUBJECT,
        &envelope(
            header("cti.request", "cti.request.createsession", "PB1.CONTROL"),
            json!({"agentId": "1001", "agentPassword": 4711, "sessionId": "s", "destination": "s"}),
        ),
    );
    assert!(!bad.error.to_string().contains("4711"), "{}", bad.error);
}

#[test]
fn unknown_keys_are_ignored() {
    let mut h = header("cti.request", "channel.request.notready", "s.g.c");
    h["x-extra"] = json!(true);
    let cmd = Command::decode(
        &Subjects::default(),
        "pb.channel.s.g.c",
        envelope(h, json!({"reasonCode": "lunch", "foo": [1]})).as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        cmd.message,
        ChannelCommand::NotReady(reason(Some("lunch"))).into()
    );
}

#[test]
fn subjects_that_are_not_ours() {
    let payload = envelope(
        header("cti.query", "cti.query.capabilities", "PB1.CONTROL"),
        json!({}),
    );
    for subject in [
        "other.control.PB1.CONTROL",
        "pb.agents.PB1",
        "pb.control",
        "pb.control.a%2",
    ] {
        assert!(
            matches!(decode(subject, &payload).error, DecodeError::Subject(_)),
            "{subject}"
        );
    }
}

#[test]
fn malformed_events() {
    let s = Subjects::default();
    let good = Event::new(t("s.g.c"), ChannelEvent::Activated);
    assert!(Event::decode(&s, "pb.evt.channel.s.g.c", &good.encode()).is_ok());
    assert!(matches!(
        Event::decode(&s, "pb.evt.channel.s.g.x", &good.encode()),
        Err(DecodeError::TargetMismatch { .. })
    ));
    assert!(matches!(
        Event::decode(&s, "pb.evt.session.s.g.c", &good.encode()),
        Err(DecodeError::UnknownName { .. })
    ));
    let cmd = Command::new("r", t("s.g.c"), ChannelCommand::Ready);
    assert!(matches!(
        Event::decode(&s, "pb.evt.channel.s.g.c", &cmd.encode()),
        Err(DecodeError::WrongType { .. })
    ));
}

#[test]
fn each_limit_just_under_is_read_and_just_over_is_refused_naming_it() {
    let limits = Limits::default();
    let decode_with = |subject: &str, name: &str, target: &str, request_id: &str| {
        let payload = serde_json::to_vec(&json!({
            "header": {"type": pb_protocol::MessageType::of_name(name).as_str(),
                       "name": name, "target": target, "requestId": request_id},
            "body": {}
        }))
        .unwrap();
        Command::decode(&Subjects::default(), subject, &payload, &limits)
    };
    // requestId: the 1,500-character GUID punctuation that once went unanswered.
    let at = "{".repeat(limits.request_id);
    assert!(decode_with(SUBJECT, "cti.query.capabilities", "PB1.CONTROL", &at).is_ok());
    let over = "{".repeat(1500);
    let bad = decode_with(SUBJECT, "cti.query.capabilities", "PB1.CONTROL", &over).unwrap_err();
    assert!(
        matches!(&bad.error, DecodeError::OverLimit(e) if e.limit == Limit::RequestId),
        "{}",
        bad.error
    );
    assert!(bad.error.to_string().contains("PB_MAX_REQUEST_ID_BYTES"));
    assert_eq!(
        bad.request_id, over,
        "the requestId is still echoed in the header"
    );
    // name: never quoted in full, whatever it is.
    let name = format!("cti.query.{}", "x".repeat(10_000));
    let bad = decode_with(SUBJECT, &name, "PB1.CONTROL", "r").unwrap_err();
    assert!(matches!(&bad.error, DecodeError::OverLimit(e) if e.limit == Limit::Name));
    assert!(!bad.error.to_string().contains("xxx"), "{}", bad.error);
    let name = format!("cti.query.{}", "x".repeat(600_000));
    let bad = decode_with(SUBJECT, &name, "PB1.CONTROL", "r").unwrap_err();
    assert!(matches!(&bad.error, DecodeError::OverLimit(e) if e.limit == Limit::Payload));
    assert!(bad.response().encode().len() < 1000);
    let name = format!("cti.query.{}", "x".repeat(limits.name - 10));
    let bad = decode_with(SUBJECT, &name, "PB1.CONTROL", "r").unwrap_err();
    assert!(matches!(bad.error, DecodeError::UnknownName { .. }));
    let pb_protocol::Outcome::Failure(message) = bad.response().outcome else {
        panic!("a FAILURE")
    };
    assert!(message.len() < 200, "quoted in full: {message}");
    // target: its length, a segment's and the number of segments.
    let segment = "s".repeat(limits.segment);
    let target = format!("{segment}.g");
    let subject = format!("pb.channelgroup.{target}");
    assert!(decode_with(&subject, "channelgroup.query.init", &target, "r").is_ok());
    let target = format!("{segment}s.g");
    let subject = format!("pb.channelgroup.{target}");
    let bad = decode_with(&subject, "channelgroup.query.init", &target, "r").unwrap_err();
    assert!(matches!(&bad.error, DecodeError::OverLimit(e) if e.limit == Limit::Segment));
    let target = vec!["a"; limits.segments + 1].join(".");
    let subject = format!("pb.channel.{target}");
    let bad = decode_with(&subject, "channel.query.init", &target, "r").unwrap_err();
    assert!(matches!(&bad.error, DecodeError::OverLimit(e) if e.limit == Limit::Segments));
    let target = vec!["a".repeat(100); 6].join(".");
    let subject = format!("pb.channel.{target}");
    let bad = decode_with(&subject, "channel.query.init", &target, "r").unwrap_err();
    assert!(matches!(&bad.error, DecodeError::OverLimit(e) if e.limit == Limit::Target));
    // payload: not read at all past its limit.
    let mut small = limits;
    small.payload = 100;
    let payload = envelope(
        header("cti.query", "cti.query.capabilities", "PB1.CONTROL"),
        json!({"pad": "x".repeat(100)}),
    );
    let bad =
        Command::decode(&Subjects::default(), SUBJECT, payload.as_bytes(), &small).unwrap_err();
    assert!(matches!(&bad.error, DecodeError::OverLimit(e) if e.limit == Limit::Payload));
    assert_eq!(bad.request_id, "", "a payload past its limit is not read");
}

#[test]
fn a_long_wrong_body_value_is_not_quoted_in_full() {
    let h = header("cti.query", "cti.query.agentinfo", "PB1.CONTROL");
    let bad = decode(
        SUBJECT,
        &envelope(
            h,
            json!({"agentId": "1001", "requestingAgentLogin": ["x".repeat(50_000)],
                   "requestingAgentPassword": "x"}),
        ),
    );
    assert!(bad.error.to_string().len() < 400, "{}", bad.error);
}
