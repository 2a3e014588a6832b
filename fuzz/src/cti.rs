//! Oracles for what is read of the CTI adapter contract (`pb-cti`): every call as the
//! adapter reads it, every reply as `pb_runtime::cti::CtiClient` reads it
//! (`C::Reply`, a `CtiReply`), the agent and link events, the CTI events a `Resume` carries
//! (read one by one as the owning actor does) and the agent named by an event's subject.
//!
//! Each decoder is serde's, so the oracle is the round trip: what is read is written so
//! that it reads back the same ([`super::json::reads_back`]).

use pb_cti::{
    Act, Activate, AgentEvent, Deactivate, Dial, GetAgentInfo, GetCapabilities, GetInteraction,
    GetLinkStatus, GetSnapshot, LinkEvent, Login, Logout, SetAgentState, ValidateCredentials,
    agent_event_subject, agent_of,
};
use pb_protocol::internal::Resume;
use pb_protocol::target::encode_token;
use pb_protocol::{Call, Subjects};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::json::{change_of, mutate, reads_back, round_trip};

/// One decoder of the contract: what it reads, how, and a valid input for it.
#[derive(Debug)]
pub struct Decoder {
    pub name: &'static str,
    /// Reads an input through the oracle: whether it was read.
    pub check: fn(&[u8]) -> bool,
    /// A valid input, as JSON.
    pub sample: &'static str,
}

macro_rules! interaction {
    () => {
        r#"{"name": "call-1", "endpoint": "ext-1001", "media": "TELEPHONY", "state": "STARTED",
        "data": {"accountId": "A-1", "n": 1.5, "nested": {"a": [1, null, true]}},
        "legs": [{"name": "leg-1", "role": "primary", "state": "CONNECTED", "remote": "+4930123"},
                 {"name": "leg-2", "role": "consult", "state": "HELD", "remote": "1002"}],
        "revision": 9}"#
    };
}

macro_rules! channel {
    () => {
        r#"{"endpoint": "ext-1001", "media": "TELEPHONY", "holder": "1001",
        "agent_state": "NOT_READY", "reason_code": "lunch", "pending_state": "READY",
        "pending_reason": "after", "revision": 7}"#
    };
}

/// Every decoder, in the order a fuzz input's first byte picks them.
pub const DECODERS: &[Decoder] = &[
    Decoder {
        name: "capabilities call",
        check: call::<GetCapabilities>,
        sample: "{}",
    },
    Decoder {
        name: "capabilities reply",
        check: reply::<GetCapabilities>,
        sample: r#"{"ok": {"channel-groups-supported": true, "channel-groups-max-per-agent": 1,
            "channel-groups-media-types": "TELEPHONY,EMAIL,CHAT",
            "single-channels-supported": false, "single-channels-media-types": ""}}"#,
    },
    Decoder {
        name: "linkstatus call",
        check: call::<GetLinkStatus>,
        sample: "{}",
    },
    Decoder {
        name: "linkstatus reply",
        check: reply::<GetLinkStatus>,
        sample: r#"{"ok": {"up": false, "reason": "maintenance", "incarnation": "i-1"}}"#,
    },
    Decoder {
        name: "agentinfo call",
        check: call::<GetAgentInfo>,
        sample: r#"{"agent_id": "1001", "requester_login": "1002", "requester_password": "pw"}"#,
    },
    Decoder {
        name: "agentinfo reply",
        check: reply::<GetAgentInfo>,
        sample: r#"{"ok": {"switch-agent-id": "sw-1001", "first-name": "Ada",
            "last-name": "Lovelace", "cti-specific": {"skill": ["billing"]}}}"#,
    },
    Decoder {
        name: "validate call",
        check: call::<ValidateCredentials>,
        sample: r#"{"agent_id": "1001", "login": "1001", "password": "pw-1001"}"#,
    },
    Decoder {
        name: "validate reply",
        check: reply::<ValidateCredentials>,
        sample: r#"{"error": {"code": "bad-credentials", "message": "wrong password"}}"#,
    },
    Decoder {
        name: "snapshot call",
        check: call::<GetSnapshot>,
        sample: r#"{"agent_id": "1001"}"#,
    },
    Decoder {
        name: "snapshot reply",
        check: reply::<GetSnapshot>,
        sample: concat!(
            r#"{"ok": {"agent_id": "1001", "logged_in": true, "place": "place-1001", "channels": ["#,
            channel!(),
            r#"], "interactions": ["#,
            interaction!(),
            r#"], "logout_pending": true}}"#
        ),
    },
    Decoder {
        name: "login call",
        check: call::<Login>,
        sample: r#"{"agent_id": "1001", "password": "pw-1001", "place": "place-1001"}"#,
    },
    Decoder {
        name: "login reply",
        check: reply::<Login>,
        sample: concat!(
            r#"{"ok": {"agent_id": "1001", "logged_in": true, "place": "place-1001", "channels": ["#,
            channel!(),
            r#"]}}"#
        ),
    },
    Decoder {
        name: "activate call",
        check: call::<Activate>,
        sample: r#"{"agent_id": "1001", "endpoint": "ext-1001"}"#,
    },
    Decoder {
        name: "activate reply",
        check: reply::<Activate>,
        sample: concat!(r#"{"ok": "#, channel!(), "}"),
    },
    Decoder {
        name: "deactivate call",
        check: call::<Deactivate>,
        sample: r#"{"agent_id": "1001", "endpoint": "ext-1001"}"#,
    },
    Decoder {
        name: "deactivate reply",
        check: reply::<Deactivate>,
        sample: r#"{"error": {"code": "invalid-state", "message": "not held"}}"#,
    },
    Decoder {
        name: "logout call",
        check: call::<Logout>,
        sample: r#"{"agent_id": "1001", "reason_code": "end of shift"}"#,
    },
    Decoder {
        name: "logout reply",
        check: reply::<Logout>,
        sample: r#"{"ok": {"agent_id": "1001", "logged_in": false, "place": "place-1001",
            "channels": []}}"#,
    },
    Decoder {
        name: "setstate call",
        check: call::<SetAgentState>,
        sample: r#"{"agent_id": "1001", "endpoint": "ext-1001", "state": "NOT_READY",
            "reason_code": "lunch"}"#,
    },
    Decoder {
        name: "setstate reply",
        check: reply::<SetAgentState>,
        sample: concat!(r#"{"ok": "#, channel!(), "}"),
    },
    Decoder {
        name: "interaction call",
        check: call::<GetInteraction>,
        sample: r#"{"agent_id": "1001", "interaction": "call-1"}"#,
    },
    Decoder {
        name: "interaction reply",
        check: reply::<GetInteraction>,
        sample: concat!(r#"{"ok": "#, interaction!(), "}"),
    },
    Decoder {
        name: "dial call",
        check: call::<Dial>,
        sample: r#"{"agent_id": "1001", "endpoint": "ext-1001", "destination": "+4930555"}"#,
    },
    Decoder {
        name: "dial reply",
        check: reply::<Dial>,
        sample: r#"{"error": {"code": "unsupported", "message": "no dialing on email"}}"#,
    },
    Decoder {
        name: "act call",
        check: call::<Act>,
        sample: r#"{"agent_id": "1001", "interaction": "call-1",
            "action": {"action": "set-data", "data": {"k": "v", "gone": null}}}"#,
    },
    Decoder {
        name: "act reply",
        check: reply::<Act>,
        sample: concat!(r#"{"ok": "#, interaction!(), "}"),
    },
    Decoder {
        name: "agent event",
        check: agent_event,
        sample: concat!(
            r#"{"event": "interaction-changed", "agent_id": "1001", "interaction": "#,
            interaction!(),
            "}"
        ),
    },
    Decoder {
        name: "link event",
        check: link_event,
        sample: r#"{"up": true, "incarnation": "i-2"}"#,
    },
    Decoder {
        name: "resume's CTI events",
        check: resume,
        sample: concat!(
            r#"{"agent_id": "1001", "cti_events": [{"event": "channel-changed", "agent_id": "1001",
            "place": "place-1001", "channel": "#,
            channel!(),
            r#"}, {"event": "logged-out", "agent_id": "1001", "reason_code": "forced"}]}"#
        ),
    },
    Decoder {
        name: "agent of a subject",
        check: agent_subject,
        sample: r#""pb.cti.evt.agent.a%2Eb%20c.logged-out""#,
    },
];

/// One fuzz input: the first byte picks the decoder (modulo their number) and whether the
/// rest is its input (the byte divided by their number even) or a change to its sample
/// (odd).
pub fn cti(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let decoder = &DECODERS[usize::from(which) % DECODERS.len()];
    if (usize::from(which) / DECODERS.len()) & 1 == 0 {
        (decoder.check)(rest);
        return;
    }
    let mut valid: Value = serde_json::from_str(decoder.sample).expect("a sample is JSON");
    let (path, value) = change_of(rest);
    mutate(&mut valid, path, value);
    (decoder.check)(&valid.to_string().into_bytes());
}

/// A call as the adapter reads it.
pub fn call<C: Call + DeserializeOwned>(payload: &[u8]) -> bool {
    round_trip::<C>(payload).is_some()
}

/// A call's reply as the services read it.
pub fn reply<C: Call<Reply: Serialize>>(payload: &[u8]) -> bool {
    round_trip::<C::Reply>(payload).is_some()
}

/// `P.cti.evt.agent.<agentId>.<event>`: the event's tag is its subject's last token.
pub fn agent_event(payload: &[u8]) -> bool {
    let Some(event) = round_trip::<AgentEvent>(payload) else {
        return false;
    };
    let tag = serde_json::to_value(&event).expect("an event encodes")["event"].clone();
    assert_eq!(tag, event.token(), "an event's tag is not its token");
    true
}

/// `P.cti.evt.link`.
pub fn link_event(payload: &[u8]) -> bool {
    round_trip::<LinkEvent>(payload).is_some()
}

/// A `Resume` and each CTI event it carries, read from its JSON value as the actor does
/// (read when the resume and all its events are).
pub fn resume(payload: &[u8]) -> bool {
    let Some(resume) = round_trip::<Resume>(payload) else {
        return false;
    };
    let mut all = true;
    for event in resume.cti_events {
        match serde_json::from_value::<AgentEvent>(event) {
            Ok(event) => reads_back(&event),
            Err(_) => all = false,
        }
    }
    all
}

/// [`agent_of`] on a subject (the input as a JSON string, else as text): the agent it
/// reads is the one whose events are published there.
pub fn agent_subject(payload: &[u8]) -> bool {
    let subject = serde_json::from_slice::<String>(payload)
        .unwrap_or_else(|_| String::from_utf8_lossy(payload).into_owned());
    let subjects = Subjects::default();
    let Some(agent) = agent_of(&subjects, &subject) else {
        return false;
    };
    let token = subject
        .strip_prefix("pb.cti.evt.agent.")
        .and_then(|rest| rest.split('.').next())
        .expect("an agent is read from an agent event's subject");
    assert_eq!(
        encode_token(&agent),
        token,
        "the agent's token is not canonical"
    );
    let event = AgentEvent::LoggedOut {
        agent_id: agent.clone(),
        reason_code: None,
    };
    let published = agent_event_subject(&subjects, &event);
    assert_eq!(agent_of(&subjects, &published), Some(agent));
    true
}
