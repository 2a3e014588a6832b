//! Payloads the services exchange among themselves over project-internal subjects
//! (`P.int.*`). These never reach the bridge; ARCHITECTURE.md lists them.

use serde::{Deserialize, Serialize};

use crate::{Secret, Target};

/// `P.int.session.create` (request-reply, queue group of the session service): control
/// hands a validated `cti.request.createsession` to the session service, which answers once
/// the session destination answers on its subject (contract §5.5).
pub const SESSION_CREATE: &str = "int.session.create";

/// `P.int.control.disposed` (publish): the bridge disposed the control destination; every
/// session of the processor is to be released.
pub const CONTROL_DISPOSED: &str = "int.control.disposed";

/// Body of [`SESSION_CREATE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreate {
    /// The session destination's target (`destination` of the bridge's request).
    pub target: Target,
    pub session_id: String,
    pub agent_id: String,
    pub agent_password: Secret,
}

/// The answer to an internal request: done, or refused with a message for the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InternalReply {
    Ok,
    Error(String),
}
