//! Payloads the services exchange among themselves over project-internal subjects
//! (`P.int.*`). These never reach the bridge; ARCHITECTURE.md lists them.

use serde::{Deserialize, Serialize};

use crate::{Callee, Secret, Target};

/// The owning services by the name their internal subjects, node subjects and membership
/// records carry (`P.int.<service>.*`, `P.node.<service>.*`).
pub const SESSION_SERVICE: &str = "session";
pub const CHANNEL_GROUP_SERVICE: &str = "channelgroup";
/// The control service's name in its internal subjects (`P.int.control.*`).
pub const CONTROL_SERVICE: &str = "control";

/// The internal operation every owning service has: release every destination of one
/// agent ([`UnitRef`]), sent by a replica fanning out a control dispose.
pub const RELEASE: &str = "release";

/// Internal operations every owning service has, for one agent ([`UnitRef`]), which the
/// agent's actor answers itself: after [`PAUSE`] is answered it takes nothing else until
/// [`RESUME`] (or its deadline), so that another service's response goes out before what
/// this one publishes next; [`SYNC`] is answered once the actor has finished the message
/// it was handling (its response and events are out). An agent nobody owns answers all
/// three at once.
pub const PAUSE: &str = "pause";
pub const RESUME: &str = "resume";
pub const SYNC: &str = "sync";

/// Body of [`RESUME`]: the agent, and what the CTI told the caller in the reply that
/// ended the pause (agent events, as the adapter would publish them). The actor applies
/// them before anything it held, so what the caller's command changed is reported even
/// when the CTI's own events for it arrive later than the resume (they then change
/// nothing: same revisions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cti_events: Vec<serde_json::Value>,
}

/// [`PAUSE`] one agent's channels, from the session service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause(pub UnitRef);

/// [`SYNC`] with one agent's channels, from the session service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncUnit(pub UnitRef);

/// The internal operation that creates a destination: `P.int.session.create`
/// (request-reply, queue group of the session service: control hands a validated
/// `cti.request.createsession` to the session service, which answers once the session
/// destination answers on its subject, contract §5.5), and `P.int.channelgroup.create`
/// (the session service creates a channel group destination, [`GroupCreate`]).
pub const CREATE: &str = "create";

/// `P.int.control.disposed` (publish): the bridge disposed the control destination; every
/// session of the processor is to be released.
pub const DISPOSED: &str = "disposed";

/// `P.int.control.peers.<processor>`: every live control replica answers there.
pub const PEERS: &str = "peers";

/// Body of `P.int.session.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreate {
    /// The session destination's target (`destination` of the bridge's request).
    pub target: Target,
    pub session_id: String,
    pub agent_id: String,
    pub agent_password: Secret,
}

/// The answer to an internal request: done, refused with a message for the bridge, or
/// refused without being acted on (busy, stopping, the unit moving between replicas), so
/// that the same request may be sent again as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InternalReply {
    Ok,
    Error(String),
    Again(String),
}

/// Body of [`CHANNEL_GROUP_CREATE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreate {
    pub target: Target,
    pub agent_id: String,
    /// The CTI place the group stands for.
    pub place: String,
}

/// Body of a [`RELEASE`], [`PAUSE`], [`RESUME`] or [`SYNC`] request: the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRef {
    pub agent_id: String,
}

impl From<Result<(), String>> for InternalReply {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => InternalReply::Ok,
            Err(why) => InternalReply::Error(why),
        }
    }
}

// The hand-offs: each one's operation and reply.
crate::calls!(Callee::Service(SESSION_SERVICE) => {
    SessionCreate = CREATE -> InternalReply;
});
crate::calls!(Callee::Service(CHANNEL_GROUP_SERVICE) => {
    GroupCreate = CREATE -> InternalReply;
    Pause = PAUSE -> InternalReply;
    Resume = RESUME -> InternalReply;
    SyncUnit = SYNC -> InternalReply;
});
