//! The bridge's end of the TCP link, as a real Processor Bridge has it (reference §2,
//! contract §8): it listens, the gateway connects, and each new connection starts with the
//! control initialisation (`cti.request.serverstatus`, its `cti.serverstatuschanged`,
//! then `cti.query.capabilities`, reference §6.3). Then commands are frames, matched to
//! their responses by `requestId`, and events are handed to whoever watches them.
//!
//! For tests it also counts connections (how many were open at once, above all), lets
//! anything be sent as a raw frame, and taps every frame read in the order it came.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use pb_framing::{ByteOrder, Frame, FrameCodec};
use pb_protocol::{Kind, MessageType, Response, Subjects, Target};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::{Delivered, LinkError, LinkErrorKind, subject_matches};

/// How the listener works.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    pub byte_order: ByteOrder,
    /// The longest frame read whole.
    pub max_frame: usize,
    /// TLS, as the server ([`super::tls::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The control destination to initialise on each new connection; `None`: none (a
    /// test that sends raw frames).
    pub control: Option<Target>,
    /// The deployment's subjects: events are told apart by the subject they would have.
    pub subjects: Subjects,
    /// How long each step of the initialisation may take.
    pub timeout: Duration,
}

impl TcpOptions {
    /// Plain TCP, big-endian, 8 MiB frames, initialising `control`.
    pub fn new(subjects: Subjects, control: Target) -> Self {
        Self {
            byte_order: ByteOrder::Big,
            max_frame: 8 << 20,
            tls: None,
            control: Some(control),
            subjects,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The listening bridge; cheap to clone. Stops listening and closes its connection when
/// the last clone is dropped (or at [`TcpLink::close`]).
#[derive(Debug, Clone)]
pub struct TcpLink {
    inner: Arc<Inner>,
    _open: Arc<CloseOnDrop>,
}

#[derive(Debug)]
struct CloseOnDrop(CancellationToken);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

type Sender = mpsc::UnboundedSender<Bytes>;

#[derive(Debug)]
struct Inner {
    local: SocketAddr,
    options: TcpOptions,
    closed: CancellationToken,
    /// The connection commands go to, once initialised: its number and its writer.
    ready: watch::Sender<Option<(u64, Sender)>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Bytes>>>,
    watchers: Mutex<Vec<(String, mpsc::UnboundedSender<Delivered>)>>,
    taps: Mutex<Vec<mpsc::UnboundedSender<Bytes>>>,
    accepted: AtomicU64,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

/// A boxed byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

impl TcpLink {
    /// Listen on `addr` (`127.0.0.1:0` for a free port).
    pub async fn listen(addr: &str, options: TcpOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let closed = CancellationToken::new();
        let inner = Arc::new(Inner {
            local,
            options,
            closed: closed.clone(),
            ready: watch::Sender::new(None),
            pending: Mutex::default(),
            watchers: Mutex::default(),
            taps: Mutex::default(),
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            most_open: AtomicUsize::new(0),
        });
        tokio::spawn(accept(inner.clone(), listener));
        Ok(Self {
            inner,
            _open: Arc::new(CloseOnDrop(closed)),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Stop listening and close the connection.
    pub fn close(&self) {
        self.inner.closed.cancel();
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// The most connections that were ever open at the same time.
    pub fn most_open(&self) -> usize {
        self.inner.most_open.load(Ordering::Relaxed)
    }

    /// Wait until a gateway is connected and the connection initialised.
    pub async fn connected(&self, timeout: Duration) -> Result<(), LinkError> {
        self.writer(timeout).await.map(|_| ())
    }

    async fn writer(&self, timeout: Duration) -> Result<Sender, LinkError> {
        let mut ready = self.inner.ready.subscribe();
        let waited = tokio::time::timeout(timeout, ready.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(current)) => Ok(current.as_ref().map(|(_, tx)| tx.clone()).expect("is_some")),
            _ => Err(LinkError::new(
                LinkErrorKind::NotConnected,
                format!(
                    "no gateway connected to {} within {timeout:?}: is pb-gateway running with \
                     PB_BRIDGE_ADDR pointing here?",
                    self.inner.local
                ),
            )),
        }
    }

    /// Send a command (`payload`, whose requestId is `request_id`); its response.
    pub async fn request(
        &self,
        request_id: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, LinkError> {
        let writer = self.writer(timeout).await?;
        self.inner
            .exchange(&writer, request_id, payload, timeout)
            .await
    }

    /// The events whose subject would match `pattern`, from now on.
    pub fn events(&self, pattern: &str) -> mpsc::UnboundedReceiver<Delivered> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.watchers).push((pattern.to_owned(), tx));
        rx
    }

    /// Every frame read from now on, responses and events, in the order of the socket.
    pub fn tap(&self) -> mpsc::UnboundedReceiver<Bytes> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.taps).push(tx);
        rx
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = inner.closed.cancelled() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                tokio::spawn(connection(inner.clone(), socket, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One gateway connection: read frames, write what is queued, initialise the control.
async fn connection(inner: Arc<Inner>, socket: TcpStream, peer: SocketAddr) {
    let id = inner.accepted.fetch_add(1, Ordering::Relaxed) + 1;
    let open = inner.open.fetch_add(1, Ordering::Relaxed) + 1;
    inner.most_open.fetch_max(open, Ordering::Relaxed);
    let _ = socket.set_nodelay(true);
    let stream: Pin<Box<dyn Stream>> = match &inner.options.tls {
        None => Box::pin(socket),
        Some(config) => {
            match tokio_rustls::TlsAcceptor::from(config.clone())
                .accept(socket)
                .await
            {
                Ok(tls) => Box::pin(tls),
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "TLS handshake refused");
                    inner.open.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    };
    tracing::info!(%peer, id, "gateway connected");
    let (read, write) = tokio::io::split(stream);
    let codec = || FrameCodec::new(inner.options.byte_order, inner.options.max_frame);
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn({
        let mut sink = FramedWrite::new(write, codec());
        async move {
            while let Some(frame) = rx.recv().await {
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
        }
    });
    let initialise = {
        let inner = inner.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Some(control) = inner.options.control.clone()
                && let Err(e) = inner.initialise(&tx, &control).await
            {
                tracing::warn!(error = %e, "the control initialisation failed");
            }
            inner.ready.send_replace(Some((id, tx)));
        })
    };
    let mut frames = FramedRead::new(read, codec());
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = inner.closed.cancelled() => break,
        };
        match frame {
            Some(Ok(Frame::Message(bytes))) => inner.dispatch(bytes),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading from the gateway failed");
                break;
            }
            None => break,
        }
    }
    initialise.abort();
    writer.abort();
    inner.ready.send_if_modified(|current| {
        let ours = matches!(current, Some((n, _)) if *n == id);
        if ours {
            *current = None;
        }
        ours
    });
    // Whatever waited for an answer on this link will not get one.
    if inner.ready.borrow().is_none() {
        lock(&inner.pending).clear();
    }
    inner.open.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(%peer, id, "gateway disconnected");
}

impl Inner {
    /// Write `payload` on `writer` and wait for the response with `request_id`.
    async fn exchange(
        &self,
        writer: &Sender,
        request_id: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, LinkError> {
        let (tx, rx) = oneshot::channel();
        {
            // Responses are matched by requestId on the socket: two commands in flight
            // with one requestId could not be told apart.
            match lock(&self.pending).entry(request_id.to_owned()) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    return Err(LinkError::new(
                        LinkErrorKind::Other,
                        format!(
                            "a command with requestId `{request_id}` is already waiting for its response"
                        ),
                    ));
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(tx);
                }
            }
        }
        let closed = || LinkError::new(LinkErrorKind::Closed, "the link to the gateway closed");
        if writer.send(payload).is_err() {
            lock(&self.pending).remove(request_id);
            return Err(closed());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(closed()),
            Err(_) => {
                lock(&self.pending).remove(request_id);
                Err(LinkError::new(
                    LinkErrorKind::TimedOut,
                    format!("no response within {timeout:?}"),
                ))
            }
        }
    }

    /// A frame read: to the taps, then to whoever waits for it.
    fn dispatch(&self, bytes: Bytes) {
        lock(&self.taps).retain(|tap| tap.send(bytes.clone()).is_ok());
        let Some(header) = pb_protocol::route::peek_header(&bytes) else {
            return;
        };
        let text = |key: &str| header.get(key).and_then(Value::as_str);
        match text("type").and_then(MessageType::parse) {
            Some(MessageType::Response) => {
                let waiting = lock(&self.pending).remove(text("requestId").unwrap_or_default());
                if let Some(waiting) = waiting {
                    let _ = waiting.send(bytes);
                }
            }
            Some(MessageType::Event) => {
                let (Some(kind), Ok(target)) = (
                    text("name").and_then(Kind::of_name),
                    Target::new(text("target").unwrap_or_default()),
                ) else {
                    return;
                };
                let subject = self.options.subjects.event(kind, &target);
                lock(&self.watchers).retain(|(pattern, watcher)| {
                    !subject_matches(pattern, &subject)
                        || watcher
                            .send(Delivered {
                                subject: subject.clone(),
                                payload: bytes.clone(),
                            })
                            .is_ok()
                });
            }
            _ => {}
        }
    }

    /// The control initialisation a bridge runs on a new connection (reference §6.3).
    async fn initialise(&self, writer: &Sender, control: &Target) -> Result<(), String> {
        let (tx, mut status) = mpsc::unbounded_channel();
        let pattern = self.options.subjects.event(Kind::Control, control);
        lock(&self.watchers).push((pattern, tx));
        let timeout = self.options.timeout;
        let ask = |name: &str| {
            let id = uuid::Uuid::new_v4().to_string();
            let payload =
                pb_protocol::envelope::raw_command(name, control.as_str(), &id, json!({}));
            (id, Bytes::from(payload))
        };
        let check = |name: &str, response: Bytes| match Response::decode(&response) {
            Ok(r) if r.outcome.is_success() => Ok(()),
            Ok(r) => Err(format!("{name} was answered {:?}", r.outcome)),
            Err(e) => Err(format!("{name}: {e}")),
        };
        let (id, payload) = ask("cti.request.serverstatus");
        let response = self
            .exchange(writer, &id, payload, timeout)
            .await
            .map_err(|e| e.to_string())?;
        check("cti.request.serverstatus", response)?;
        let changed = tokio::time::timeout(timeout, async {
            while let Some(event) = status.recv().await {
                if pb_protocol::route::peek_header(&event.payload)
                    .is_some_and(|h| h.get("name") == Some(&json!("cti.serverstatuschanged")))
                {
                    return true;
                }
            }
            false
        })
        .await;
        if !matches!(changed, Ok(true)) {
            return Err("no cti.serverstatuschanged followed the server status".into());
        }
        let (id, payload) = ask("cti.query.capabilities");
        let response = self
            .exchange(writer, &id, payload, timeout)
            .await
            .map_err(|e| e.to_string())?;
        check("cti.query.capabilities", response)
    }
}
