//! One link's life, from connect to close: frames read from the bridge become NATS requests
//! (contract §8.3), a writer task writes what [`crate::deliver`] and the reader queue, and
//! the link ends when the bridge closes it, a read or write fails, the outgoing queue
//! fills, the lease is lost or the gateway stops (then it drains first: the commands in
//! flight are answered and written before the socket closes).

use pb_protocol::limits::Excerpt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use pb_framing::{Frame, FrameCodec};
use pb_protocol::route::{peek_header, route};
use pb_protocol::{DecodeError, MessageType, Outcome, Response, Routed, Routing};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::connect::Link;
use crate::deliver::Control;
use crate::metrics::{Answered, Closed, FrameType, Ignored, metrics};
use crate::outgoing::{self, Outgoing, Queue};
use crate::pending::Entry;

/// What ends a link from outside.
#[derive(Debug, Clone)]
pub(crate) struct Stops {
    /// The lease was lost: close at once.
    pub lost: CancellationToken,
    /// The gateway stops: drain, then close.
    pub shutdown: CancellationToken,
}

/// Serve one link until it ends; why it ended.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    stream: Link,
    control: &mpsc::UnboundedSender<Control>,
    stops: &Stops,
) -> Closed {
    let (read, write) = tokio::io::split(stream);
    let overflow = CancellationToken::new();
    let broken = CancellationToken::new();
    let (out, queue) = outgoing::queue(shared.queue_bytes, overflow.clone());
    let _ = control.send(Control::Up(out.clone()));
    let writer = tokio::spawn(write_frames(
        write,
        queue,
        FrameCodec::new(shared.byte_order, shared.max_frame),
        broken.clone(),
    ));
    let reader = Reader {
        shared,
        out: &out,
        permits: Arc::new(Semaphore::new(shared.max_in_flight)),
        overflow: &overflow,
        broken: &broken,
        stops,
    };
    let closed = reader.run(read).await;
    if closed == Closed::shutdown {
        // Let what is in flight be answered, and written.
        let until = Instant::now() + shared.timeout;
        while !shared.pending().is_empty() && Instant::now() < until && !broken.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let _ = control.send(Control::Down);
    drop(out);
    if closed == Closed::shutdown {
        // The deliverer drops its sender at `Down`: the writer ends once the queue is written.
        let _ = tokio::time::timeout(shared.timeout, writer).await;
    } else {
        writer.abort();
    }
    metrics().queue_bytes.set(0);
    closed
}

/// Write queued frames until the queue ends or writing fails (then `broken` fires).
async fn write_frames(
    write: impl AsyncWrite + Unpin,
    mut queue: Queue,
    codec: FrameCodec,
    broken: CancellationToken,
) {
    let mut sink = FramedWrite::new(write, codec);
    while let Some(frame) = queue.next().await {
        let mut batch = vec![frame];
        while let Some(more) = queue.try_next() {
            batch.push(more);
        }
        for frame in &batch {
            if let Err(e) = sink.feed(frame.clone()).await {
                tracing::warn!(error = %e, "writing to the bridge failed");
                broken.cancel();
                return;
            }
        }
        if let Err(e) = sink.flush().await {
            tracing::warn!(error = %e, "writing to the bridge failed");
            broken.cancel();
            return;
        }
        for frame in &batch {
            queue.written(frame);
        }
        metrics().queue_bytes.set(queue.queued() as i64);
    }
    let _ = sink.close().await;
}

/// The reading side of one link.
struct Reader<'a> {
    shared: &'a Arc<Shared>,
    out: &'a Outgoing,
    permits: Arc<Semaphore>,
    overflow: &'a CancellationToken,
    broken: &'a CancellationToken,
    stops: &'a Stops,
}

impl Reader<'_> {
    async fn run(&self, read: impl AsyncRead + Unpin) -> Closed {
        let codec = FrameCodec::new(self.shared.byte_order, self.shared.max_frame);
        let mut frames = FramedRead::new(read, codec);
        loop {
            let frame = tokio::select! {
                biased;
                () = self.stops.lost.cancelled() => return Closed::lease_lost,
                () = self.overflow.cancelled() => return Closed::queue_full,
                () = self.broken.cancelled() => return Closed::write_error,
                () = self.stops.shutdown.cancelled() => return Closed::shutdown,
                frame = frames.next() => frame,
            };
            match frame {
                None => return Closed::bridge_closed,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading from the bridge failed");
                    return Closed::read_error;
                }
                Some(Ok(Frame::Empty)) => {
                    metrics().received(FrameType::invalid, 0);
                    metrics().ignored(Ignored::empty);
                }
                Some(Ok(Frame::TooLong { length, head })) => self.too_long(length, &head),
                Some(Ok(Frame::Message(bytes))) => {
                    if let Some(closed) = self.message(bytes).await {
                        return closed;
                    }
                }
            }
        }
    }

    /// One frame: sent on as a command, or answered, or (not a command) logged. `Some`
    /// when the link ended while it waited for room.
    async fn message(&self, bytes: Bytes) -> Option<Closed> {
        let routed = match route(&bytes) {
            Ok(Routing::Command(routed)) => routed,
            Ok(Routing::NotCommand { message_type, name }) => {
                metrics().received(message_type.into(), bytes.len());
                metrics().ignored(Ignored::not_a_command);
                tracing::warn!(r#type = message_type.as_str(), name = %Excerpt(&name),
                    "the bridge sent a message that is not a command: not forwarded");
                return None;
            }
            Err(bad) => {
                metrics().received(FrameType::invalid, bytes.len());
                tracing::warn!(error = %bad.error, "a frame that cannot be routed: answered FAILURE");
                self.answer(bad.response(), Answered::unroutable);
                return None;
            }
        };
        metrics().received(routed.message_type.into(), bytes.len());
        // Read no more than the permits allow: a bridge that floods waits on its socket.
        let permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => permit.ok()?,
            () = self.stops.lost.cancelled() => return Some(Closed::lease_lost),
            () = self.overflow.cancelled() => return Some(Closed::queue_full),
            () = self.broken.cancelled() => return Some(Closed::write_error),
        };
        self.send(routed, bytes, permit).await;
        None
    }

    /// Send a command on NATS with a reply subject the delivering task listens on.
    async fn send(&self, routed: Routed, bytes: Bytes, permit: tokio::sync::OwnedSemaphorePermit) {
        let shared = self.shared;
        let subject = shared.subjects.command(routed.kind, &routed.target);
        // The bridge sends no trace context: each command frame starts a trace (§8.10).
        let span = if pb_runtime::trace::enabled() {
            tracing::info_span!(
                parent: None,
                "gateway",
                pb.message = %routed.name,
                pb.target = %routed.target,
                pb.request_id = %routed.request_id,
            )
        } else {
            tracing::Span::none()
        };
        let headers = span.in_scope(pb_runtime::trace::headers);
        let mut entry = Entry::new(&routed, Instant::now() + shared.timeout);
        entry.span = span;
        entry.permit = Some(permit);
        let token = {
            let mut pending = shared.pending();
            let first = pending.is_empty();
            let token = pending.insert(entry);
            metrics().in_flight.set(pending.len() as i64);
            if first {
                shared.first_pending.notify_one();
            }
            token
        };
        let reply = format!("{}.{token}", shared.replies);
        if let Err(e) = shared
            .client
            .publish_with_reply_and_headers(subject, reply, headers, bytes)
            .await
            && let Some(entry) = shared.pending().take(token)
        {
            tracing::error!(error = %e, "cannot send a command on NATS: answered FAILURE");
            let why = format!("{} could not be sent on to the services: {e}", routed.name);
            self.answer(entry.failure(why), Answered::nats_unavailable);
        }
    }

    /// A frame over the maximum: answered when its first bytes show a command's header.
    fn too_long(&self, length: u64, head: &[u8]) {
        metrics().received(FrameType::invalid, length as usize);
        let header = peek_header(head);
        let text = |key: &str| {
            header
                .as_ref()
                .and_then(|h| h.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let command = text("type")
            .and_then(|t| MessageType::parse(&t))
            .is_some_and(|t| matches!(t, MessageType::Query | MessageType::Request));
        let limit = self.shared.max_frame as u64;
        if !command {
            metrics().ignored(Ignored::too_long);
            tracing::warn!(
                length,
                limit,
                "skipped a frame over the limit whose first bytes show no command header"
            );
            return;
        }
        tracing::warn!(length, limit, "a frame over the limit: answered FAILURE");
        let error = DecodeError::TooLong { length, limit };
        let response = Response {
            name: text("name").unwrap_or_default(),
            target: text("target").unwrap_or_default(),
            request_id: text("requestId").unwrap_or_default(),
            outcome: Outcome::failure(format!("{error} (the gateway's PB_BRIDGE_MAX_FRAME)")),
        };
        self.answer(response, Answered::too_long);
    }

    /// The gateway's own answer.
    fn answer(&self, response: Response, reason: Answered) {
        metrics().answered(reason);
        let frame = Bytes::from(response.encode());
        let len = frame.len();
        if self.out.push(frame).is_ok() {
            metrics().sent(FrameType::response, len);
        }
    }
}
