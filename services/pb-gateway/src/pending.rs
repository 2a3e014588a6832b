//! The commands sent on and not answered yet, by the token of their reply subject, with the
//! deadline after which the gateway answers them itself (contract §8.3). Every command has
//! the same timeout, so deadlines come in the order of sending: the earliest is first.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use pb_protocol::{Kind, Outcome, Response, Routed};
use tokio::sync::OwnedSemaphorePermit;

/// One command in flight.
#[derive(Debug)]
pub struct Entry {
    pub kind: Kind,
    pub name: String,
    pub target: String,
    pub request_id: String,
    pub deadline: Instant,
    /// The gateway's span of the command: it ends when the command is answered.
    pub span: tracing::Span,
    /// Held while in flight: the link reads no more commands than it has permits.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Entry {
    pub fn new(routed: &Routed, deadline: Instant) -> Self {
        Self {
            kind: routed.kind,
            name: routed.name.clone(),
            target: routed.target.as_str().to_owned(),
            request_id: routed.request_id.clone(),
            deadline,
            span: tracing::Span::none(),
            permit: None,
        }
    }

    /// The FAILURE response the gateway answers it with, saying `why`.
    pub fn failure(&self, why: impl Into<String>) -> Response {
        Response {
            name: self.name.clone(),
            target: self.target.clone(),
            request_id: self.request_id.clone(),
            outcome: Outcome::failure(why),
        }
    }
}

/// The commands in flight.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    next: u64,
    entries: HashMap<u64, Entry>,
    /// Tokens in the order of their deadlines; some already answered.
    order: VecDeque<(Instant, u64)>,
}

impl Pending {
    /// Add a command; its token.
    pub fn insert(&mut self, entry: Entry) -> u64 {
        self.next += 1;
        let token = self.next;
        self.order.push_back((entry.deadline, token));
        self.entries.insert(token, entry);
        token
    }

    /// The command `token` stands for, if it is still waiting (it is no longer after this).
    pub fn take(&mut self, token: u64) -> Option<Entry> {
        let entry = self.entries.remove(&token);
        self.prune();
        entry
    }

    /// The commands whose deadline has passed at `now`, removed.
    pub fn expired(&mut self, now: Instant) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some(&(deadline, token)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            out.extend(self.entries.remove(&token));
        }
        out
    }

    /// When the earliest waiting command's deadline passes.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(deadline, _)| *deadline)
    }

    /// Forget every command (their link is gone).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drop answered commands from the front of the deadline order.
    fn prune(&mut self) {
        while let Some((_, token)) = self.order.front() {
            if self.entries.contains_key(token) {
                break;
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(deadline: Instant) -> Entry {
        let routed = pb_protocol::Routed {
            kind: Kind::Session,
            target: pb_protocol::Target::new("s-1").unwrap(),
            name: "session.query.init".into(),
            request_id: "r".into(),
            message_type: pb_protocol::MessageType::Query,
        };
        Entry::new(&routed, deadline)
    }

    #[test]
    fn answered_or_expired_once() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let a = pending.insert(entry(t0 + Duration::from_millis(10)));
        let b = pending.insert(entry(t0 + Duration::from_millis(20)));
        let c = pending.insert(entry(t0 + Duration::from_millis(30)));
        assert_eq!(
            pending.next_deadline(),
            Some(t0 + Duration::from_millis(10))
        );
        assert!(pending.take(a).is_some());
        assert!(pending.take(a).is_none(), "answered once");
        assert_eq!(
            pending.next_deadline(),
            Some(t0 + Duration::from_millis(20))
        );
        let expired = pending.expired(t0 + Duration::from_millis(25));
        assert_eq!(expired.len(), 1);
        assert!(
            pending.take(b).is_none(),
            "an expired command is not answered again"
        );
        assert_eq!(pending.len(), 1);
        let failure = pending.take(c).unwrap().failure("why");
        assert_eq!(failure.request_id, "r");
        assert!(pending.is_empty());
        assert_eq!(pending.next_deadline(), None);
    }
}
