//! The session destination: the root of an agent's chain (reference §9.2, contract §7).

use serde::{Deserialize, Serialize};

messages! {
    /// Queries and requests the bridge sends to a session.
    pub enum SessionCommand {
        Init(SessionInitQuery) = "session.query.init",
        /// Project-defined.
        CreateChannelGroup(CreateChild) = "session.request.createchannelgroup",
        /// Project-defined.
        Logout(ReasonCode) = "session.request.logout",
        /// Project-defined.
        Dispose = "session.request.dispose",
    }
}

messages! {
    /// Events of a session.
    pub enum SessionEvent {
        /// Project-defined: the agent was logged out outside the desktop.
        LoggedOut(ReasonCode) = "session.loggedout",
    }
}

/// Body of `session.query.init`: unusually for a query it has properties (reference §9.2),
/// all optional here because the stored page does not say which are required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInitQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<bool>,
}

/// Body of the create requests below the session: the bridge's `id` (the new target's last
/// segment) and the CTI `name` of the resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateChild {
    pub id: String,
    pub name: String,
}

/// A body with an optional `reasonCode`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCode {
    #[serde(
        rename = "reasonCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reason_code: Option<String>,
}

/// Response body of `session.query.init`: exactly one channel group (contract §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInit {
    #[serde(rename = "channel-groups")]
    pub channel_groups: Vec<NamedGroup>,
}

/// One channel group of a session's init response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedGroup {
    pub name: String,
}

/// Response body of `session.request.logout` (project-defined): `pending` when the agent is
/// on an interaction and the CTI logs it out once that ends (`session.loggedout` then).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutAnswer {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}
