//! A unit's inbox. What the replica itself hands a unit (CTI events, re-syncs, the stop)
//! always goes in, so that one slow unit never holds up another's events; internal
//! requests, which come from the network, wait at most [`INTERNAL`] at a time, and one more
//! is refused busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::{Inbox, Job};

/// How many internal requests wait for one unit at most.
pub(super) const INTERNAL: usize = 64;

/// A new unit's inbox.
pub(super) fn mailbox() -> (Sender, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let internal = Arc::new(AtomicUsize::new(0));
    (
        Sender {
            tx,
            internal: internal.clone(),
        },
        Receiver { rx, internal },
    )
}

fn is_internal(item: &Inbox) -> bool {
    matches!(item, Inbox::Job(Job::Internal { .. }))
}

/// Why an item did not go in.
pub(super) enum Refused {
    /// As many internal requests as may wait are waiting.
    Busy(Box<Inbox>),
    /// The unit's actor is gone, or the replica takes no new unit.
    Stopping(Box<Inbox>),
}

#[derive(Debug, Clone)]
pub(super) struct Sender {
    tx: mpsc::UnboundedSender<Inbox>,
    internal: Arc<AtomicUsize>,
}

impl Sender {
    /// Hand `item` over; an internal request only while fewer than [`INTERNAL`] wait.
    pub(super) fn send(&self, item: Inbox) -> Result<(), Refused> {
        let internal = is_internal(&item);
        if internal && self.internal.fetch_add(1, Ordering::AcqRel) >= INTERNAL {
            self.internal.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Busy(Box::new(item)));
        }
        self.tx.send(item).map_err(|e| {
            if internal {
                self.internal.fetch_sub(1, Ordering::AcqRel);
            }
            Refused::Stopping(Box::new(e.0))
        })
    }

    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[derive(Debug)]
pub(super) struct Receiver {
    rx: mpsc::UnboundedReceiver<Inbox>,
    internal: Arc<AtomicUsize>,
}

impl Receiver {
    pub(super) async fn recv(&mut self) -> Option<Inbox> {
        let item = self.rx.recv().await;
        self.taken(item)
    }

    pub(super) fn try_recv(&mut self) -> Option<Inbox> {
        let item = self.rx.try_recv().ok();
        self.taken(item)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    pub(super) fn close(&mut self) {
        self.rx.close();
    }

    fn taken(&self, item: Option<Inbox>) -> Option<Inbox> {
        if item.as_ref().is_some_and(is_internal) {
            self.internal.fetch_sub(1, Ordering::AcqRel);
        }
        item
    }
}
