//! A typed request-reply call between processes of the system: a service calling the CTI
//! adapter (`pb_cti`), one service handing a request to another ([`crate::internal`]), a
//! tool driving the simulated CTI's admin interface (`pb_sim_admin`). The body is the
//! [`Call`] itself; [`Subjects::call`] gives its subject; `pb_runtime::call` sends it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Subjects;

/// Who answers a call, which decides the subject it is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// The CTI adapter: `P.cti.req.<op>`.
    Cti,
    /// The simulated CTI's admin interface: `P.sim.<op>`.
    Simulator,
    /// An owning service's queue group, by its name in [`crate::internal`]:
    /// `P.int.<service>.<op>`.
    Service(&'static str),
}

impl std::fmt::Display for Callee {
    /// The callee as a message names it: "no {callee} is running".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Callee::Cti => f.write_str("CTI adapter"),
            Callee::Simulator => f.write_str("simulated CTI (pb-cti-sim)"),
            Callee::Service(service) => write!(f, "{service} service"),
        }
    }
}

/// A call: its callee, its operation (the subject's last token) and the type of its reply
/// as the callee sends it.
pub trait Call: Serialize {
    const CALLEE: Callee;
    const OP: &'static str;
    /// Whether the call changes something at the callee. Such a call made for a bridge
    /// request carries the request's key (`pb_cti::REQUEST_KEY_HEADER`), so that a repeat
    /// is answered as the first time and not done again.
    const CHANGES: bool = false;
    type Reply: DeserializeOwned;
}

/// Implements [`Call`] for each row of a table of one callee's calls:
/// `Type = "op" -> Reply;`, or `Type = "op" -> Reply, changes;` for a call that changes
/// something ([`Call::CHANGES`]).
#[macro_export]
macro_rules! calls {
    ($callee:expr => { $( $ty:ty = $op:tt -> $reply:ty $(, $changes:ident)? ; )* }) => {
        $(
            impl $crate::Call for $ty {
                const CALLEE: $crate::Callee = $callee;
                const OP: &'static str = $op;
                const CHANGES: bool = $crate::calls!(@changes $($changes)?);
                type Reply = $reply;
            }
        )*
    };
    (@changes) => { false };
    (@changes changes) => { true };
}

impl Subjects {
    /// The subject of operation `op` of `callee` (`>`: every operation, what the callee
    /// subscribes to).
    pub fn call(&self, callee: Callee, op: &str) -> String {
        match callee {
            Callee::Cti => self.internal(&format!("cti.req.{op}")),
            Callee::Simulator => self.internal(&format!("sim.{op}")),
            Callee::Service(service) => self.internal_request(service, op),
        }
    }

    /// Every operation of `callee`: what it subscribes to.
    pub fn calls(&self, callee: Callee) -> String {
        self.call(callee, ">")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_callee_has_its_own_subjects() {
        let s = Subjects::new("pb").unwrap();
        assert_eq!(s.call(Callee::Cti, "login"), "pb.cti.req.login");
        assert_eq!(s.calls(Callee::Cti), "pb.cti.req.>");
        assert_eq!(s.call(Callee::Simulator, "offer"), "pb.sim.offer");
        assert_eq!(s.calls(Callee::Simulator), "pb.sim.>");
        assert_eq!(
            s.call(Callee::Service(crate::internal::SESSION_SERVICE), "create"),
            "pb.int.session.create"
        );
    }

    #[test]
    fn a_callee_names_itself_for_messages() {
        assert_eq!(Callee::Cti.to_string(), "CTI adapter");
        assert_eq!(Callee::Service("session").to_string(), "session service");
    }
}
