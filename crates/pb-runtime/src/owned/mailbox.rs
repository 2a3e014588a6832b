//! A unit's inbox. What the replica itself hands a unit (CTI events, re-syncs, the stop)
//! always goes in, so that one slow unit never holds up another's events; internal
//! requests, which come from the network, wait at most [`INTERNAL`] at a time, and one more
//! is refused busy.
//!
//! > Every agent has one, idle almost always: an empty inbox holds no buffer (a queue
//! > that grows with what waits, and a wake-up), where a channel would keep a block of
//! > slots, kilobytes, for each agent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Inbox, Job};

/// How many internal requests wait for one unit at most.
pub(super) const INTERNAL: usize = 64;

/// What the senders and the receiver share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Woken when an item goes in, or the last sender goes.
    ready: Notify,
    /// Internal requests waiting.
    internal: AtomicUsize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Inbox>,
    /// The receiver closed (or dropped) it: nothing more goes in.
    closed: bool,
    senders: usize,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new unit's inbox.
pub(super) fn mailbox() -> (Sender, Receiver) {
    let shared = Arc::new(Shared::default());
    shared.queue().senders = 1;
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
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

pub(super) struct Sender {
    shared: Arc<Shared>,
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.queue().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let last = {
            let mut queue = self.shared.queue();
            queue.senders -= 1;
            queue.senders == 0
        };
        if last {
            self.shared.ready.notify_one();
        }
    }
}

impl Sender {
    /// Hand `item` over; an internal request only while fewer than [`INTERNAL`] wait.
    pub(super) fn send(&self, item: Inbox) -> Result<(), Refused> {
        let internal = is_internal(&item);
        let count = &self.shared.internal;
        if internal && count.fetch_add(1, Ordering::AcqRel) >= INTERNAL {
            count.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Busy(Box::new(item)));
        }
        {
            let mut queue = self.shared.queue();
            if queue.closed {
                drop(queue);
                if internal {
                    count.fetch_sub(1, Ordering::AcqRel);
                }
                return Err(Refused::Stopping(Box::new(item)));
            }
            queue.items.push_back(item);
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    pub(super) fn is_closed(&self) -> bool {
        self.shared.queue().closed
    }
}

pub(super) struct Receiver {
    shared: Arc<Shared>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
    }
}

impl Receiver {
    /// The next item; `None` once the inbox is empty and closed, or has no sender left.
    /// Cancel-safe: an item is only taken by a call that returns it.
    pub(super) async fn recv(&mut self) -> Option<Inbox> {
        loop {
            let woken = self.shared.ready.notified();
            {
                let mut queue = self.shared.queue();
                if let Some(item) = queue.pop() {
                    drop(queue);
                    return self.taken(item);
                }
                if queue.closed || queue.senders == 0 {
                    return None;
                }
            }
            woken.await;
        }
    }

    pub(super) fn try_recv(&mut self) -> Option<Inbox> {
        let item = self.shared.queue().pop()?;
        self.taken(item)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.shared.queue().items.is_empty()
    }

    /// Take nothing more in; what is in still comes out.
    pub(super) fn close(&mut self) {
        self.shared.queue().closed = true;
    }

    fn taken(&self, item: Inbox) -> Option<Inbox> {
        if is_internal(&item) {
            self.shared.internal.fetch_sub(1, Ordering::AcqRel);
        }
        Some(item)
    }
}

impl Queue {
    fn pop(&mut self) -> Option<Inbox> {
        let item = self.items.pop_front()?;
        if self.items.is_empty() {
            // Empty again: give its room back (an idle unit's inbox holds no buffer).
            self.items = VecDeque::new();
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal(op: &str) -> Inbox {
        Inbox::Job(Job::Internal {
            op: op.to_owned(),
            payload: bytes::Bytes::new(),
            reply: None,
            headers: None,
        })
    }

    fn op_of(item: Option<Inbox>) -> String {
        match item {
            Some(Inbox::Job(Job::Internal { op, .. })) => op,
            _ => panic!("not an internal request"),
        }
    }

    #[tokio::test]
    async fn in_order_then_none_once_every_sender_is_gone() {
        let (tx, mut rx) = mailbox();
        let other = tx.clone();
        tx.send(internal("a")).ok().unwrap();
        other.send(internal("b")).ok().unwrap();
        drop(tx);
        assert_eq!(op_of(rx.recv().await), "a");
        assert_eq!(op_of(rx.try_recv()), "b");
        assert!(rx.is_empty());
        let waiting = tokio::spawn(async move { rx.recv().await.is_none() });
        tokio::task::yield_now().await;
        drop(other);
        assert!(waiting.await.unwrap(), "no sender left: None");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = mailbox();
        let waiting = tokio::spawn(async move { op_of(rx.recv().await) });
        tokio::task::yield_now().await;
        tx.send(internal("late")).ok().unwrap();
        assert_eq!(waiting.await.unwrap(), "late");
    }

    #[tokio::test]
    async fn closed_takes_nothing_more_but_gives_what_is_in() {
        let (tx, mut rx) = mailbox();
        tx.send(internal("kept")).ok().unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert!(matches!(tx.send(internal("x")), Err(Refused::Stopping(_))));
        assert_eq!(op_of(rx.recv().await), "kept");
        assert!(rx.recv().await.is_none());
        drop(rx);
        assert!(tx.is_closed());
    }

    #[tokio::test]
    async fn internal_requests_are_bounded_the_replicas_own_work_is_not() {
        let (tx, mut rx) = mailbox();
        for _ in 0..INTERNAL {
            tx.send(internal("r")).ok().unwrap();
        }
        assert!(matches!(tx.send(internal("r")), Err(Refused::Busy(_))));
        let (stop, _) = tokio::sync::oneshot::channel();
        assert!(tx.send(Inbox::Stop(stop)).is_ok(), "a stop always goes in");
        op_of(rx.recv().await);
        assert!(
            tx.send(internal("r")).is_ok(),
            "room again after one is taken"
        );
    }

    #[tokio::test]
    async fn an_empty_inbox_gives_its_room_back() {
        let (tx, mut rx) = mailbox();
        for _ in 0..3 {
            let (stop, _) = tokio::sync::oneshot::channel();
            tx.send(Inbox::Stop(stop)).ok().unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.queue().items.capacity(), 0);
    }
}
