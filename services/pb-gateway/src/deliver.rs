//! Everything the services send to the bridge, in the order they published it (contract
//! §8.4, §8.5): the responses to the gateway's commands and every event arrive on ONE
//! subscription ([`pb_protocol::Subjects::events_and_gateway_replies`]), which NATS fills
//! in the order the server delivered them, and one task turns each into a frame in that
//! order. (Two subscriptions would be two channels, and a task reading both could not
//! tell which came first.) The same task answers the commands whose deadline passed.

use pb_protocol::limits::Excerpt;
use std::sync::Arc;
use std::time::Instant;

use async_nats::{Message, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use pb_runtime::discovery::Listed;
use tokio::sync::mpsc;

use crate::Shared;
use crate::metrics::{Answered, FrameType, metrics};
use crate::outgoing::Outgoing;

/// What the link tells the delivering task.
#[derive(Debug)]
pub(crate) enum Control {
    /// A link is up: write to it.
    Up(Outgoing),
    /// The link is gone: its commands will not be answered on it.
    Down,
}

/// Deliver until `control` closes (the lease is given up) or the subscription ends.
pub(crate) async fn deliver(
    shared: Arc<Shared>,
    mut subscription: Listed,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let replies = format!("{}.", shared.replies);
    let events = format!("{}.evt.", shared.subjects.prefix());
    let mut link: Option<Outgoing> = None;
    loop {
        let next = shared.pending().next_deadline();
        let expiry = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            command = control.recv() => match command {
                Some(Control::Up(out)) => link = Some(out),
                Some(Control::Down) => {
                    link = None;
                    shared.pending().clear();
                    metrics().in_flight.set(0);
                }
                None => return,
            },
            message = subscription.next() => match message {
                Some(message) => {
                    let token = message.subject.strip_prefix(replies.as_str()).map(|t| t.parse());
                    if let Some(token) = token {
                        respond(&shared, &mut link, token.ok(), message);
                    } else if message.subject.starts_with(events.as_str()) {
                        event(&mut link, message.payload);
                    }
                    // Else another deployment's events (a prefix differing in its first token).
                }
                None => {
                    tracing::error!("the subscription to responses and events ended");
                    return;
                }
            },
            () = expiry => expire(&shared, &mut link),
            // A command in flight again: wait for its deadline.
            () = shared.first_pending.notified() => {}
        }
    }
}

/// A response to command `token`: written, unless it came too late.
fn respond(shared: &Shared, link: &mut Option<Outgoing>, token: Option<u64>, message: Message) {
    let entry = token.and_then(|t| shared.pending().take(t));
    let Some(entry) = entry else {
        metrics().late_responses.inc();
        return;
    };
    metrics().in_flight.set(shared.pending().len() as i64);
    let frame = if message.status == Some(StatusCode::NO_RESPONDERS) {
        metrics().answered(Answered::no_responders);
        tracing::debug!(name = %Excerpt(&entry.name), target = %Excerpt(&entry.target), "no responders");
        let why = format!(
            "nobody answers {} destination `{}`: it does not exist (never created, or \
             disposed), or its service is not running",
            entry.kind.describe(),
            Excerpt(&entry.target)
        );
        Bytes::from(entry.failure(why).encode())
    } else {
        message.payload
    };
    write(link, frame, FrameType::response);
}

fn event(link: &mut Option<Outgoing>, payload: Bytes) {
    if link.is_some() {
        write(link, payload, FrameType::event);
    } else {
        metrics().events_dropped.inc();
    }
}

/// Answer FAILURE each command whose deadline has passed.
fn expire(shared: &Shared, link: &mut Option<Outgoing>) {
    let expired = shared.pending().expired(Instant::now());
    metrics().in_flight.set(shared.pending().len() as i64);
    for entry in expired {
        metrics().answered(Answered::timeout);
        tracing::warn!(name = %Excerpt(&entry.name), target = %Excerpt(&entry.target),
            request_id = %Excerpt(&entry.request_id),
            "no answer within the deadline: answered FAILURE");
        let why = format!(
            "{} was not answered within {} ms: no {} service answered in time",
            Excerpt(&entry.name),
            shared.timeout.as_millis(),
            entry.kind.describe()
        );
        write(
            link,
            Bytes::from(entry.failure(why).encode()),
            FrameType::response,
        );
    }
}

/// Queue `frame` on the link, if one is up; a full queue closes it.
fn write(link: &mut Option<Outgoing>, frame: Bytes, kind: FrameType) {
    let Some(out) = link else {
        return;
    };
    let len = frame.len();
    match out.push(frame) {
        Ok(()) => metrics().sent(kind, len),
        Err(full) => {
            tracing::error!(error = %full, "closing the link to the bridge");
            *link = None;
            return;
        }
    }
    metrics().queue_bytes.set(out.queued() as i64);
}
