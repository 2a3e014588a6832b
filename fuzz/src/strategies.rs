//! proptest strategies shared by the crates' property tests: text, JSON values (any, and
//! those that survive a round trip exactly), valid values changed anywhere, and the
//! `pb-protocol` values that other crates' messages carry.

use pb_protocol::Secret;
use pb_protocol::channel::{AgentState, ChannelState, ChannelType};
use pb_protocol::control::{AgentInfo, AgentName, Capabilities, ServerStatus};
use pb_protocol::conversation::ConversationState;
use pb_protocol::interaction::{ConversationRole, InteractionState};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::json::mutate;

/// Text of any kind: any characters, and those the codecs treat specially.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 ._%*>=\\-]{0,12}",
        "(%[0-9A-Fa-f]{0,2}|=[0-9A-F]{0,2}|[._ ]){0,6}",
    ]
}

/// Any JSON value (of a small depth), floats any finite ones.
pub fn json() -> impl Strategy<Value = Value> {
    tree(
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .boxed(),
    )
}

/// A JSON value that reads back exactly from its serialisation: floats are short binary
/// fractions (see [`super::json`] for why not any float).
pub fn exact_json() -> impl Strategy<Value = Value> {
    tree(
        (any::<i32>(), 0u32..10)
            .prop_map(|(m, e)| f64::from(m) / f64::from(1u32 << e))
            .boxed(),
    )
}

/// A JSON object of [`exact_json`] values: a body, attached data.
pub fn exact_object() -> impl Strategy<Value = Map<String, Value>> {
    vec((text(), exact_json()), 0..5).prop_map(|members| members.into_iter().collect())
}

fn tree(float: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float.prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((text(), inner), 0..5)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A value of `valid` with one node replaced by any JSON value, or removed
/// ([`mutate`]).
pub fn changed(valid: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    (valid, vec(any::<u8>(), 0..5), proptest::option::of(json())).prop_map(
        |(mut value, path, replacement)| {
            mutate(&mut value, &path, replacement);
            value
        },
    )
}

pub fn secret() -> impl Strategy<Value = Secret> {
    text().prop_map(Secret::new)
}

pub fn channel_type() -> impl Strategy<Value = ChannelType> {
    proptest::sample::select(ChannelType::ALL.to_vec())
}

pub fn channel_state() -> impl Strategy<Value = ChannelState> {
    proptest::sample::select(vec![
        ChannelState::Active,
        ChannelState::Inactive,
        ChannelState::Unavailable,
    ])
}

pub fn agent_state() -> impl Strategy<Value = AgentState> {
    proptest::sample::select(vec![
        AgentState::Ready,
        AgentState::NotReady,
        AgentState::WorkReady,
        AgentState::WorkNotReady,
    ])
}

pub fn interaction_state() -> impl Strategy<Value = InteractionState> {
    proptest::sample::select(vec![
        InteractionState::Alerting,
        InteractionState::Dialing,
        InteractionState::Started,
        InteractionState::Ended,
        InteractionState::Completed,
    ])
}

pub fn conversation_state() -> impl Strategy<Value = ConversationState> {
    proptest::sample::select(vec![
        ConversationState::Alerting,
        ConversationState::Dialing,
        ConversationState::Connected,
        ConversationState::Held,
        ConversationState::Ended,
    ])
}

pub fn conversation_role() -> impl Strategy<Value = ConversationRole> {
    proptest::sample::select(vec![ConversationRole::Primary, ConversationRole::Consult])
}

pub fn server_status() -> impl Strategy<Value = ServerStatus> {
    proptest::sample::select(vec![
        ServerStatus::StartingService,
        ServerStatus::InService,
        ServerStatus::PausingService,
        ServerStatus::StoppingService,
        ServerStatus::OutOfService,
    ])
}

pub fn capabilities() -> impl Strategy<Value = Capabilities> {
    (any::<bool>(), any::<u32>(), text(), any::<bool>(), text()).prop_map(
        |(groups, max, group_media, singles, single_media)| Capabilities {
            channel_groups_supported: groups,
            channel_groups_max_per_agent: max,
            channel_groups_media_types: group_media,
            single_channels_supported: singles,
            single_channels_media_types: single_media,
        },
    )
}

/// Agent information. `cti-specific` is never `null`: `Some(null)` is written as
/// `"cti-specific": null`, which reads back as `None` (the same on the wire).
pub fn agent_info() -> impl Strategy<Value = AgentInfo> {
    let name = prop_oneof![
        text().prop_map(AgentName::Full),
        (text(), text()).prop_map(|(first, last)| AgentName::Split { first, last }),
    ];
    let specific = proptest::option::of(exact_json().prop_filter("not null", |v| !v.is_null()));
    (text(), name, specific).prop_map(|(switch_agent_id, name, cti_specific)| AgentInfo {
        switch_agent_id,
        name,
        cti_specific,
    })
}
