//! How the bridge side reaches the system: over NATS directly (contract §3), or as a real
//! Processor Bridge does, listening on TCP for the gateway (contract §8, [`tcp`]). One
//! [`Link`] serves the CLI, the tests and the benchmark; the [`crate::flow::Driver`] sends
//! every command through it.

pub mod tcp;
pub mod tls;

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;

pub use tcp::{TcpLink, TcpOptions};

/// What kind of failure a [`LinkError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkErrorKind {
    /// Nobody subscribes to the command's subject (NATS only: over TCP the gateway answers
    /// FAILURE itself).
    NoResponders,
    /// No response within the timeout.
    TimedOut,
    /// The TCP link closed before the response came.
    Closed,
    /// No gateway is connected (TCP), or NATS cannot be reached.
    NotConnected,
    /// Anything else the transport reported.
    Other,
}

/// A command that got no response, and why.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LinkError {
    kind: LinkErrorKind,
    message: String,
}

impl LinkError {
    pub fn new(kind: LinkErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> LinkErrorKind {
        self.kind
    }
}

/// The transport.
#[derive(Debug, Clone)]
pub enum Link {
    Nats(Client),
    Tcp(TcpLink),
}

impl From<Client> for Link {
    fn from(client: Client) -> Self {
        Self::Nats(client)
    }
}

impl From<TcpLink> for Link {
    fn from(link: TcpLink) -> Self {
        Self::Tcp(link)
    }
}

/// A message the bridge received, with the subject it has (or would have) on NATS.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub subject: String,
    pub payload: Bytes,
}

/// Events as they arrive.
#[derive(Debug)]
pub enum Events {
    Nats(async_nats::Subscriber),
    Tcp(tokio::sync::mpsc::UnboundedReceiver<Delivered>),
}

impl Events {
    /// The next event; `None` once the link is gone for good.
    pub async fn next(&mut self) -> Option<Delivered> {
        match self {
            Self::Nats(subscriber) => subscriber.next().await.map(|m| Delivered {
                subject: m.subject.to_string(),
                payload: m.payload,
            }),
            Self::Tcp(receiver) => receiver.recv().await,
        }
    }
}

impl Link {
    /// Send a command envelope (`payload`, with `request_id`) that goes on `subject`, with
    /// `headers` (NATS only: the TCP link carries no trace context); its response.
    pub async fn request(
        &self,
        subject: String,
        request_id: &str,
        payload: Bytes,
        headers: async_nats::HeaderMap,
        timeout: Duration,
    ) -> Result<Bytes, LinkError> {
        match self {
            Self::Nats(client) => {
                let request = async_nats::Request::new()
                    .payload(payload)
                    .headers(headers)
                    .timeout(Some(timeout));
                match client.send_request(subject, request).await {
                    Ok(message) => Ok(message.payload),
                    Err(e) => Err(LinkError::new(
                        match e.kind() {
                            RequestErrorKind::NoResponders => LinkErrorKind::NoResponders,
                            RequestErrorKind::TimedOut => LinkErrorKind::TimedOut,
                            _ => LinkErrorKind::Other,
                        },
                        e.to_string(),
                    )),
                }
            }
            Self::Tcp(link) => link.request(request_id, payload, timeout).await,
        }
    }

    /// Start receiving the events whose subject matches `pattern` (a NATS subject pattern
    /// such as `P.evt.>`); none arriving after this returns is missed.
    pub async fn events(&self, pattern: &str) -> Result<Events, LinkError> {
        match self {
            Self::Nats(client) => {
                let other = |e: &dyn std::fmt::Display| {
                    LinkError::new(LinkErrorKind::Other, format!("cannot watch {pattern}: {e}"))
                };
                let subscriber = client
                    .subscribe(pattern.to_owned())
                    .await
                    .map_err(|e| other(&e))?;
                client.flush().await.map_err(|e| other(&e))?;
                Ok(Events::Nats(subscriber))
            }
            Self::Tcp(link) => Ok(Events::Tcp(link.events(pattern))),
        }
    }
}

/// Whether `subject` matches the NATS pattern `pattern` (`*` one token, `>` the rest).
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn nats_patterns() {
        assert!(subject_matches("pb.evt.>", "pb.evt.channel.s.g.c"));
        assert!(!subject_matches("pb.evt.>", "pb.evt"));
        assert!(subject_matches("pb.evt.*.s", "pb.evt.session.s"));
        assert!(!subject_matches("pb.evt.*.s", "pb.evt.session.s.g"));
        assert!(subject_matches("pb.evt.session.s", "pb.evt.session.s"));
        assert!(!subject_matches("pb.evt.session.s", "pb.evt.session.t"));
    }
}
