//! Writes the committed seed corpus, `fuzz/seeds/<target>/`: valid inputs of every fuzz
//! target (every command and event of every kind, responses, frames, internal payloads,
//! each CTI decoder's sample, keys and frame streams) and a few typical bad ones, in the
//! input format of each target (see `src/`). Run from `fuzz/`:
//! `cargo run --example seeds`; the crates' tests replay the seeds.

use std::path::Path;

use pb_fuzz::cti::DECODERS;
use pb_fuzz::protocol::sample_target;
use pb_protocol::{CommandMessage, EventMessage, Kind, MessageType};
use serde_json::{Value, json};

fn command_body(name: &str) -> Value {
    match name {
        "cti.query.agentinfo" => json!({"agentId": "1001", "requestingAgentLogin": "1002",
            "requestingAgentPassword": "pw-1002"}),
        "cti.request.validateagentcredentials" => {
            json!({"agentId": "1001", "agentLogin": "1001", "agentPassword": "pw-1001"})
        }
        "cti.request.createsession" => json!({"agentId": "1001", "agentPassword": "pw-1001",
            "sessionId": "s-1", "destination": "s-1"}),
        "session.query.init" => json!({"name": "place-1001", "chat": true, "email": false}),
        "session.request.createchannelgroup" => json!({"id": "g1", "name": "place-1001"}),
        "session.request.logout" | "channel.request.notready" => json!({"reasonCode": "lunch"}),
        "channelgroup.request.createchannel" => json!({"id": "c1", "name": "ext-1001",
            "type": "TELEPHONY", "mobileagent-mode": "off", "Mobileagent-dialnumber": "+49301"}),
        "channel.request.dial"
        | "conversation.request.blindtransfer"
        | "conversation.request.blindconference" => json!({"destination": "+4930555"}),
        "channel.request.createinteraction" => json!({"id": "i1", "name": "call-1"}),
        "interaction.request.consult" => json!({"destination": "1002"}),
        "interaction.request.setdata" => {
            json!({"interaction-data": {"accountId": "A-1", "n": 1.5, "gone": null}})
        }
        "interaction.request.createconversation" => json!({"id": "v1", "name": "leg-1"}),
        "conversation.request.senddtmf" => json!({"digits": "12#*"}),
        _ => json!({}),
    }
}

fn event_body(name: &str) -> Value {
    match name {
        "cti.serverstatuschanged" => json!({"status": "in-service"}),
        "cti.communicationlost" => json!({"reason": "link dropped"}),
        "session.loggedout" | "channel.notready" => json!({"reasonCode": "forced"}),
        "channelgroup.channel.added" | "channelgroup.channel.removed" => {
            json!({"endpoint": "ext-1001", "type": "TELEPHONY"})
        }
        "channel.interaction.added" => json!({"name": "i1", "type": "CHAT"}),
        "interaction.statechanged" => json!({"interaction-state": "STARTED"}),
        "interaction.datachanged" => json!({"interaction-data": {"a": "b"}}),
        "interaction.conversation.added" => json!({"name": "v1", "role": "primary"}),
        "conversation.statechanged" => json!({"conversation-state": "HELD"}),
        _ => json!({}),
    }
}

fn command(name: &str, target: &str) -> Value {
    json!({"header": {"type": MessageType::of_name(name).as_str(), "name": name,
        "target": target, "requestId": "{6F9619FF-8B86-D011-B42D-00C04FC964FF}"},
        "body": command_body(name)})
}

fn event(name: &str, target: &str) -> Value {
    json!({"header": {"type": "cti.event", "name": name, "target": target},
        "body": event_body(name)})
}

/// `mode` then `payload`.
fn input(mode: u8, payload: &[u8]) -> Vec<u8> {
    let mut input = vec![mode];
    input.extend_from_slice(payload);
    input
}

/// A frame: the 4-byte big-endian length and the bytes.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

fn main() -> std::io::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut written = 0;
    let mut write = |target: &str, name: &str, data: Vec<u8>| -> std::io::Result<()> {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir)?;
        written += 1;
        std::fs::write(dir.join(name), data)
    };
    let bad_commands = [
        (
            "wrong-type",
            json!({"header": {"type": "cti.event", "name": "cti.request.serverstatus",
            "target": "PB1.CONTROL", "requestId": "r"}, "body": {}}),
        ),
        (
            "unknown-name",
            json!({"header": {"type": "cti.query", "name": "session.query.init",
            "target": "PB1.CONTROL", "requestId": "r"}, "body": {}}),
        ),
        (
            "no-request-id",
            json!({"header": {"type": "cti.request",
            "name": "cti.request.serverstatus", "target": "PB1.CONTROL"}, "body": {}}),
        ),
        (
            "bad-body",
            json!({"header": {"type": "cti.query", "name": "cti.query.agentinfo",
            "target": "PB1.CONTROL", "requestId": "r"}, "body": {"agentId": 5}}),
        ),
        (
            "bad-target",
            json!({"header": {"type": "cti.request",
            "name": "cti.request.serverstatus", "target": "PB1..CONTROL", "requestId": "r"},
            "body": {}}),
        ),
    ];
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        let mode = i as u8;
        let target = sample_target(kind);
        for name in CommandMessage::names(kind) {
            let payload = command(name, target.as_str()).to_string();
            write("command", name, input(mode, payload.as_bytes()))?;
            write("route", name, input(0, payload.as_bytes()))?;
        }
        for name in EventMessage::names(kind) {
            let payload = event(name, target.as_str()).to_string();
            write("event", name, input(mode, payload.as_bytes()))?;
        }
        // On the subject its header names, with a target to percent-encode.
        let odd = format!("Main PB é*>%.{}", target.as_str().replace('.', "-"));
        let name = CommandMessage::names(kind)[0];
        let payload = command(name, &odd).to_string();
        write(
            "command",
            &format!("{name}-header-subject"),
            input(6 + mode, payload.as_bytes()),
        )?;
        // A valid header and a body (mode 2) or a change to a valid envelope (mode 3).
        write(
            "command",
            &format!("{}-body", kind.token()),
            input(12 + mode, b"\x01{\"id\":\"x\"}"),
        )?;
        write(
            "command",
            &format!("{}-changed", kind.token()),
            input(18 + mode, b"\x00\x02\x01\x00\"cti.query\""),
        )?;
        write(
            "event",
            &format!("{}-body", kind.token()),
            input(12 + mode, b"\x00{\"reasonCode\":\"x\"}"),
        )?;
        write(
            "event",
            &format!("{}-changed", kind.token()),
            input(18 + mode, b"\x00\x02\x01\x02[1]"),
        )?;
    }
    for (name, payload) in &bad_commands {
        write("command", name, input(0, payload.to_string().as_bytes()))?;
        write("route", name, input(0, payload.to_string().as_bytes()))?;
    }
    let event = event("channel.ready", "s-1.g1.c1").to_string();
    write("route", "an-event", input(0, event.as_bytes()))?;
    write("route", "changed", input(1, b"\x03\x02\x01\x00\"x\""))?;
    write(
        "route",
        "not-utf8",
        input(0, b"{\"header\":{\"name\":\"\xff\"}}"),
    )?;

    let responses = [
        (
            "success",
            json!({"header": {"type": "cti.response", "name": "cti.query.capabilities",
            "target": "PB1.CONTROL", "requestId": "r-1", "result": "SUCCESS"},
            "body": {"channel-groups-supported": true, "n": 1.5}}),
        ),
        (
            "failure",
            json!({"header": {"type": "cti.response", "name": "session.query.init",
            "target": "s-1", "requestId": "r-2", "result": "FAILURE",
            "errorMessage": "unknown session destination"}, "body": {}}),
        ),
        (
            "aliases",
            json!({"header": {"type": "cti.response", "name": "n", "target": "t",
            "requestId": "r", "cti.result": "FAILURE", "error.message": "starting"},
            "body": {}}),
        ),
        (
            "no-result",
            json!({"header": {"type": "cti.response", "name": "n", "target": "t",
            "requestId": "r"}, "body": {}}),
        ),
    ];
    for (name, payload) in &responses {
        write("response", name, input(0, payload.to_string().as_bytes()))?;
        write(
            "route",
            &format!("response-{name}"),
            input(0, payload.to_string().as_bytes()),
        )?;
    }
    write(
        "response",
        "changed-success",
        input(1, b"\x02\x01\x04\"FAILURE\""),
    )?;
    write(
        "response",
        "changed-failure",
        input(3, b"\x02\x01\x00\"a reason\""),
    )?;

    let internal = [
        json!({"target": "s-1", "session_id": "s-1", "agent_id": "1001", "agent_password": "pw"}),
        json!({"target": "s-1.g1", "agent_id": "1001", "place": "place-1001"}),
        json!({"error": "destination `s-1` is already in use"}),
        json!({"agent_id": "1001"}),
        json!({"agent_id": "1001", "cti_events": [{"event": "logged-out", "agent_id": "1001"}]}),
    ];
    for (which, payload) in internal.iter().enumerate() {
        let which = which as u8;
        write(
            "internal",
            &format!("valid-{which}"),
            input(which, payload.to_string().as_bytes()),
        )?;
        write(
            "internal",
            &format!("changed-{which}"),
            input(5 + which, b"\x01\x00null"),
        )?;
    }
    write("internal", "ok", input(2, b"\"ok\""))?;

    for (i, decoder) in DECODERS.iter().enumerate() {
        let name = decoder.name.replace(' ', "-").replace('\'', "");
        let sample: Value = serde_json::from_str(decoder.sample).expect("a sample is JSON");
        write("cti", &name, input(i as u8, sample.to_string().as_bytes()))?;
        let changed = DECODERS.len() + i;
        write(
            "cti",
            &format!("{name}-changed"),
            input(changed as u8, b"\x01\x00null"),
        )?;
    }

    for (name, text) in [
        ("plain", "PB1"),
        ("parts", "Main PB\0{6F9619FF-8B86-D011-B42D-00C04FC964FF}"),
        ("empty-parts", "\0a\0\0"),
        ("escapes", "é*>%._=\0=5F"),
        ("a-key", "Main=20PB.r=2E1._"),
    ] {
        write("kv", name, text.as_bytes().to_vec())?;
    }

    let mut stream = framed(br#"{"header":{},"body":{}}"#);
    stream.extend(framed(b""));
    stream.extend(framed(&[b'x'; 300]));
    stream.extend(framed(b"after"));
    // Big-endian, a maximum of 64, pieces of 1, 7 and 3 bytes.
    let mut frames = vec![0, 64, 0, 3, 1, 7, 3];
    frames.extend(&stream);
    write("frames", "stream", frames)?;
    // Read as little-endian, a maximum of 256, the whole stream at once.
    write("frames", "little", [&[1, 0, 1, 0][..], &stream].concat())?;
    write(
        "frames",
        "round-trip",
        [&[2, 0, 1, 2, 1, 5][..], b"one\xfftwo\xff\xffthree"].concat(),
    )?;
    println!("wrote {written} seeds under {}", seeds.display());
    Ok(())
}
