//! Property tests of what is read of the CTI adapter contract: every call (as an adapter
//! reads it), every reply (as the services read it), the agent and link events, and the
//! agent named by an event's subject. Each never panics on arbitrary bytes, arbitrary JSON
//! and valid input changed anywhere, and what it encodes it decodes back to the same.
//!
//! The oracles are the `cti` fuzz target's (`fuzz/src/cti.rs`); its committed seeds and
//! every crash it found are replayed here too ([`fuzz_inputs_replay`]).

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/cti.rs"]
mod cti;
#[path = "../../../fuzz/src/json.rs"]
mod json;
// Shared with the other crates' property tests: this one uses part of it.
#[allow(dead_code)]
#[path = "../../../fuzz/src/strategies.rs"]
mod strategies;

use pb_cti::*;
use pb_protocol::Subjects;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;
use strategies::*;

fn channel() -> impl Strategy<Value = ChannelSnapshot> {
    (
        (text(), channel_type(), proptest::option::of(text())),
        (agent_state(), proptest::option::of(text())),
        (
            proptest::option::of(agent_state()),
            proptest::option::of(text()),
        ),
        any::<u64>(),
    )
        .prop_map(
            |(
                (endpoint, media, holder),
                (agent_state, reason_code),
                (pending_state, pending_reason),
                revision,
            )| {
                ChannelSnapshot {
                    endpoint,
                    media,
                    holder,
                    agent_state,
                    reason_code,
                    pending_state,
                    pending_reason,
                    revision,
                }
            },
        )
}

fn leg() -> impl Strategy<Value = LegSnapshot> {
    (text(), conversation_role(), conversation_state(), text()).prop_map(
        |(name, role, state, remote)| LegSnapshot {
            name,
            role,
            state,
            remote,
        },
    )
}

fn interaction() -> impl Strategy<Value = InteractionSnapshot> {
    (
        (text(), text(), channel_type(), interaction_state()),
        exact_object(),
        vec(leg(), 0..3),
        any::<u64>(),
    )
        .prop_map(|((name, endpoint, media, state), data, legs, revision)| {
            InteractionSnapshot {
                name,
                endpoint,
                media,
                state,
                data,
                legs,
                revision,
            }
        })
}

fn agent() -> impl Strategy<Value = AgentSnapshot> {
    (
        (text(), any::<bool>(), text()),
        vec(channel(), 0..3),
        vec(interaction(), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |((agent_id, logged_in, place), channels, interactions, logout_pending)| {
                AgentSnapshot {
                    agent_id,
                    logged_in,
                    place,
                    channels,
                    interactions,
                    logout_pending,
                }
            },
        )
}

fn link() -> impl Strategy<Value = LinkEvent> {
    (
        any::<bool>(),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(up, reason, incarnation)| LinkEvent {
            up,
            reason,
            incarnation,
        })
}

fn agent_event() -> impl Strategy<Value = AgentEvent> {
    prop_oneof![
        (text(), text(), channel()).prop_map(|(agent_id, place, channel)| {
            AgentEvent::ChannelChanged {
                agent_id,
                place,
                channel,
            }
        }),
        (text(), text(), channel()).prop_map(|(agent_id, place, channel)| {
            AgentEvent::ChannelAdded {
                agent_id,
                place,
                channel,
            }
        }),
        (text(), text(), text(), channel_type()).prop_map(|(agent_id, place, endpoint, media)| {
            AgentEvent::ChannelRemoved {
                agent_id,
                place,
                endpoint,
                media,
            }
        }),
        (text(), interaction()).prop_map(|(agent_id, interaction)| {
            AgentEvent::InteractionChanged {
                agent_id,
                interaction,
            }
        }),
        (text(), proptest::option::of(text())).prop_map(|(agent_id, reason_code)| {
            AgentEvent::LoggedOut {
                agent_id,
                reason_code,
            }
        }),
    ]
}

fn error() -> impl Strategy<Value = CtiError> {
    let code = proptest::sample::select(vec![
        CtiErrorCode::LinkDown,
        CtiErrorCode::UnknownAgent,
        CtiErrorCode::BadCredentials,
        CtiErrorCode::Rejected,
        CtiErrorCode::InvalidState,
        CtiErrorCode::Unsupported,
        CtiErrorCode::BadRequest,
    ]);
    (code, text()).prop_map(|(code, message)| CtiError::new(code, message))
}

/// A reply: `Ok` with a value of `ok`, or a refusal.
fn reply<T: std::fmt::Debug + Clone>(
    ok: impl Strategy<Value = T>,
) -> impl Strategy<Value = CtiReply<T>> {
    prop_oneof![ok.prop_map(CtiReply::Ok), error().prop_map(CtiReply::Error)]
}

fn action() -> impl Strategy<Value = Action> {
    let leg = text;
    prop_oneof![
        Just(Action::Accept),
        Just(Action::Reject),
        Just(Action::Complete),
        exact_object().prop_map(|data| Action::SetData { data }),
        text().prop_map(|destination| Action::Consult { destination }),
        Just(Action::Transfer),
        Just(Action::Conference),
        Just(Action::Alternate),
        leg().prop_map(|leg| Action::Answer { leg }),
        leg().prop_map(|leg| Action::Release { leg }),
        leg().prop_map(|leg| Action::Hold { leg }),
        leg().prop_map(|leg| Action::Retrieve { leg }),
        (leg(), text()).prop_map(|(leg, destination)| Action::BlindTransfer { leg, destination }),
        (leg(), text()).prop_map(|(leg, destination)| Action::BlindConference { leg, destination }),
        (leg(), text()).prop_map(|(leg, digits)| Action::SendDtmf { leg, digits }),
    ]
}

fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// `value` reads back from its JSON as itself.
fn round_trips<T>(value: T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    prop_assert_eq!(read_back(&value), value);
    Ok(())
}

/// `value` through JSON and back.
fn read_back<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_slice(&serde_json::to_vec(value).unwrap()).unwrap()
}

fn decoder() -> impl Strategy<Value = &'static cti::Decoder> {
    proptest::sample::select(cti::DECODERS.iter().collect::<Vec<_>>())
}

proptest! {
    #[test]
    fn decoders_never_panic_on_bytes(decoder in decoder(), payload in vec(any::<u8>(), 0..256)) {
        (decoder.check)(&payload);
        cti::cti(&payload);
    }

    #[test]
    fn decoders_never_panic_on_json(decoder in decoder(), value in json()) {
        (decoder.check)(value.to_string().as_bytes());
    }

    #[test]
    fn samples_changed_anywhere(
        (decoder, input) in decoder().prop_flat_map(|decoder| {
            let sample: Value = serde_json::from_str(decoder.sample).unwrap();
            (Just(decoder), changed(Just(sample)))
        })
    ) {
        (decoder.check)(input.to_string().as_bytes());
    }

    #[test]
    fn events_and_replies_changed_anywhere(
        event in changed(agent_event().prop_map(|e| value(&e))),
        snapshot in changed(reply(agent()).prop_map(|r| value(&r))),
        interaction in changed(reply(interaction()).prop_map(|r| value(&r))),
        act in changed((text(), text(), action()).prop_map(|(agent_id, interaction, action)| {
            value(&Act { agent_id, interaction, action })
        })),
    ) {
        cti::agent_event(event.to_string().as_bytes());
        cti::reply::<GetSnapshot>(snapshot.to_string().as_bytes());
        cti::reply::<GetInteraction>(interaction.to_string().as_bytes());
        cti::call::<Act>(act.to_string().as_bytes());
    }

    #[test]
    fn events_round_trip(event in agent_event(), link in link()) {
        prop_assert_eq!(read_back(&event), event.clone());
        prop_assert!(cti::agent_event(&serde_json::to_vec(&event).unwrap()));
        prop_assert_eq!(read_back(&link), link);
    }

    #[test]
    fn replies_round_trip(
        snapshot in reply(agent()),
        channel in reply(channel()),
        interaction in reply(interaction()),
        link in reply(link()),
        capabilities in reply(capabilities()),
        info in reply(agent_info()),
        done in reply(Just(Done {})),
    ) {
        prop_assert_eq!(read_back(&snapshot), snapshot);
        prop_assert_eq!(read_back(&channel), channel);
        prop_assert_eq!(read_back(&interaction), interaction);
        prop_assert_eq!(read_back(&link), link);
        prop_assert_eq!(read_back(&capabilities), capabilities);
        prop_assert_eq!(read_back(&info), info);
        prop_assert_eq!(read_back(&done), done);
    }

    #[test]
    fn calls_round_trip(
        ids in (text(), text(), text()),
        password in secret(),
        reason in proptest::option::of(text()),
        state in agent_state(),
        action in action(),
    ) {
        let (a, b, c) = ids;
        round_trips(GetCapabilities {})?;
        round_trips(GetLinkStatus {})?;
        round_trips(GetAgentInfo { agent_id: a.clone(), requester_login: b.clone(), requester_password: password.clone() })?;
        round_trips(ValidateCredentials { agent_id: a.clone(), login: b.clone(), password: password.clone() })?;
        round_trips(GetSnapshot { agent_id: a.clone() })?;
        round_trips(Login { agent_id: a.clone(), password, place: reason.clone() })?;
        round_trips(Activate { agent_id: a.clone(), endpoint: b.clone() })?;
        round_trips(Deactivate { agent_id: a.clone(), endpoint: b.clone() })?;
        round_trips(Logout { agent_id: a.clone(), reason_code: reason.clone() })?;
        round_trips(SetAgentState { agent_id: a.clone(), endpoint: b.clone(), state, reason_code: reason })?;
        round_trips(GetInteraction { agent_id: a.clone(), interaction: b.clone() })?;
        round_trips(Dial { agent_id: a.clone(), endpoint: b.clone(), destination: c })?;
        round_trips(Act { agent_id: a, interaction: b, action })?;
    }

    #[test]
    fn the_agent_of_an_event_subject(event in agent_event()) {
        let subjects = Subjects::default();
        let subject = agent_event_subject(&subjects, &event);
        prop_assert_eq!(agent_of(&subjects, &subject), Some(event.agent_id().to_owned()));
        prop_assert!(cti::agent_subject(subject.as_bytes()));
    }
}

/// Each decoder's sample, from which its fuzz inputs start, is valid.
#[test]
fn every_sample_is_read() {
    for decoder in cti::DECODERS {
        assert!(
            (decoder.check)(decoder.sample.as_bytes()),
            "the sample of {} is not read",
            decoder.name
        );
    }
}

/// The `cti` fuzz target's seeds and every crash its fuzzer found, through its oracle.
#[test]
fn fuzz_inputs_replay() {
    let inputs = corpus::inputs("cti");
    assert!(!inputs.is_empty(), "no seeds for the fuzz target cti");
    corpus::replay(&inputs, cti::cti);
}
