//! What waits to be written to the bridge, bounded in bytes (contract §8.7): pushing never
//! waits (the task that orders responses and events must never stall); a push that would
//! pass the bound closes the link instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The link's queue is full: the bridge does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the outgoing queue is full ({queued} bytes waiting, limit {limit}): the bridge does not read"
)]
pub struct Full {
    pub queued: usize,
    pub limit: usize,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outgoing {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    /// Cancelled when the queue overflows: the link then closes.
    overflow: CancellationToken,
}

/// The writing side.
#[derive(Debug)]
pub struct Queue {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `limit` bytes; `overflow` is cancelled when a push would pass it.
pub fn queue(limit: usize, overflow: CancellationToken) -> (Outgoing, Queue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outgoing {
            tx,
            queued: queued.clone(),
            limit,
            overflow,
        },
        Queue { rx, queued },
    )
}

impl Outgoing {
    /// Queue `frame` for writing, or refuse it (and close the link) when that would pass
    /// the limit. A closed link takes nothing, silently: its frames have nowhere to go.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.overflow.cancel();
            return Err(Full {
                queued: before,
                limit: self.limit,
            });
        }
        if self.tx.send(frame).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Bytes waiting now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl Queue {
    /// The next frame to write; `None` once every sender is gone and the queue is empty.
    pub async fn next(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// The next frame if one is waiting now.
    pub(crate) fn try_next(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    /// Bytes waiting now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// `frame` has been handed to the socket: it no longer counts as waiting.
    pub fn written(&self, frame: &Bytes) {
        self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bound_closes_the_link_instead_of_growing() {
        let overflow = CancellationToken::new();
        let (out, mut queue) = queue(10, overflow.clone());
        out.push(Bytes::from_static(b"123456")).unwrap();
        assert_eq!(
            out.push(Bytes::from_static(b"12345")),
            Err(Full {
                queued: 6,
                limit: 10
            })
        );
        assert!(overflow.is_cancelled());
        let frame = queue.next().await.unwrap();
        queue.written(&frame);
        assert_eq!(out.queued(), 0);
        out.push(Bytes::from_static(b"1234567890")).unwrap();
        assert_eq!(out.queued(), 10);
    }
}
