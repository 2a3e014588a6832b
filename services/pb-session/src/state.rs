//! The session service's state: one record per agent, holding the agent's sessions.

use std::collections::BTreeMap;

use pb_protocol::Target;
use serde::{Deserialize, Serialize};

/// Every session of one agent (normally one; a reconnecting desktop may briefly have two).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentSessions {
    pub sessions: BTreeMap<Target, Session>,
}

/// One session destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    /// The CTI place the agent is logged into: the session's one channel group.
    pub place: String,
    /// `session.query.init` was answered: events may be raised.
    pub initialised: bool,
    /// The channel group destination, once created.
    pub group: Option<Target>,
    /// The desktop asked for the logout: the CTI's logged-out event is no news to it.
    pub logging_out: bool,
    /// The CTI has logged the agent out (and the bridge knows): a re-synchronisation that
    /// finds it logged out reports nothing more.
    #[serde(default)]
    pub logged_out: bool,
}
