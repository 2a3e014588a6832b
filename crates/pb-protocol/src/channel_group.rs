//! The channel group destination, `<session>.<group>` (reference §9.3).

use serde::{Deserialize, Serialize};

use crate::channel::ChannelType;

messages! {
    /// Queries and requests the bridge sends to a channel group.
    pub enum ChannelGroupCommand {
        Init = "channelgroup.query.init",
        CreateChannel(CreateChannel) = "channelgroup.request.createchannel",
        Dispose = "channelgroup.request.dispose",
    }
}

messages! {
    /// Events of a channel group.
    pub enum ChannelGroupEvent {
        ChannelAdded(ChannelEndpoint) = "channelgroup.channel.added",
        /// Project-defined.
        ChannelRemoved(ChannelEndpoint) = "channelgroup.channel.removed",
    }
}

/// Body of `channelgroup.request.createchannel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateChannel {
    /// The bridge's id of the channel: the last segment of its target.
    pub id: String,
    /// The CTI's identifier of the channel.
    pub name: String,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    #[serde(
        rename = "mobileagent-mode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mobileagent_mode: Option<String>,
    /// Spelled with a capital M, as the reference prints it.
    #[serde(
        rename = "Mobileagent-dialnumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mobileagent_dialnumber: Option<String>,
}

/// Body of the `channelgroup.channel.added` / `.removed` events (`endpoint`, no hyphen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEndpoint {
    pub endpoint: String,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
}

/// Response body of `channelgroup.query.init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelGroupInit {
    /// Always present, possibly empty.
    pub channels: Vec<ChannelInGroup>,
}

/// One channel of a channel group's init response (`end-point`, with a hyphen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInGroup {
    #[serde(rename = "end-point")]
    pub end_point: String,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
}
