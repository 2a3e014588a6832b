//! The gateway's own numbers, beside the shared ones in the process's registry: frames and
//! bytes by direction and message type, commands it answered itself by reason, frames it
//! did not forward, the link's state, connections and failed attempts, closes by reason,
//! events dropped while no link is up, late responses and the outgoing queue.

use std::sync::LazyLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// What a frame carries.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FrameType {
    query,
    request,
    response,
    event,
    /// Not readable as a message.
    invalid,
}

impl From<pb_protocol::MessageType> for FrameType {
    fn from(t: pb_protocol::MessageType) -> Self {
        match t {
            pb_protocol::MessageType::Query => Self::query,
            pb_protocol::MessageType::Request => Self::request,
            pb_protocol::MessageType::Response => Self::response,
            pb_protocol::MessageType::Event => Self::event,
        }
    }
}

/// Why the gateway answered a command itself.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Answered {
    /// The frame could not be placed on a subject (contract §8.3).
    unroutable,
    /// Longer than the maximum, header readable (§8.6).
    too_long,
    /// Nobody subscribes to the destination's subject.
    no_responders,
    /// No answer within the deadline plus the margin.
    timeout,
    /// The command could not be sent on NATS.
    nats_unavailable,
}

/// Why a frame from the bridge was neither forwarded nor answered.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Ignored {
    /// A zero-length frame.
    empty,
    /// Longer than the maximum, header not readable in its first bytes.
    too_long,
    /// A response or an event: the bridge sends neither.
    not_a_command,
}

/// Why a link ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Closed {
    /// The bridge closed the socket.
    bridge_closed,
    /// Reading failed (a reset, a frame cut short, TLS).
    read_error,
    /// Writing failed.
    write_error,
    /// The bridge did not read and the outgoing queue filled.
    queue_full,
    /// The lease was lost.
    lease_lost,
    /// The gateway is stopping.
    shutdown,
}

/// Why an attempt to connect to the bridge failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ConnectFailed {
    /// TCP: refused, unreachable, no such host.
    tcp,
    /// The TLS handshake failed (a certificate not trusted, or refused).
    tls,
    /// No connection within `PB_BRIDGE_CONNECT_TIMEOUT_MS`.
    timeout,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: FrameType,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnsweredLabel {
    reason: Answered,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IgnoredLabel {
    reason: Ignored,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabel {
    reason: Closed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailedLabel {
    reason: ConnectFailed,
}

/// The gateway's metric families.
#[derive(Debug)]
pub struct GatewayMetrics {
    frames_in: Family<TypeLabel, Counter>,
    bytes_in: Family<TypeLabel, Counter>,
    frames_out: Family<TypeLabel, Counter>,
    bytes_out: Family<TypeLabel, Counter>,
    answered: Family<AnsweredLabel, Counter>,
    ignored: Family<IgnoredLabel, Counter>,
    closed: Family<ClosedLabel, Counter>,
    connect_failures: Family<FailedLabel, Counter>,
    pub link_up: Gauge,
    pub active: Gauge,
    pub connects: Counter,
    pub reconnects: Counter,
    pub events_dropped: Counter,
    pub late_responses: Counter,
    pub queue_bytes: Gauge,
    pub in_flight: Gauge,
}

static METRICS: LazyLock<GatewayMetrics> = LazyLock::new(|| {
    let m = GatewayMetrics {
        frames_in: Family::default(),
        bytes_in: Family::default(),
        frames_out: Family::default(),
        bytes_out: Family::default(),
        answered: Family::default(),
        ignored: Family::default(),
        closed: Family::default(),
        connect_failures: Family::default(),
        link_up: Gauge::default(),
        active: Gauge::default(),
        connects: Counter::default(),
        reconnects: Counter::default(),
        events_dropped: Counter::default(),
        late_responses: Counter::default(),
        queue_bytes: Gauge::default(),
        in_flight: Gauge::default(),
    };
    pb_runtime::metrics::register(|r| {
        r.register(
            "pb_gateway_frames_received",
            "Frames read from the bridge, by message type",
            m.frames_in.clone(),
        );
        r.register(
            "pb_gateway_bytes_received",
            "Bytes of frames read from the bridge (length field included), by message type",
            m.bytes_in.clone(),
        );
        r.register(
            "pb_gateway_frames_sent",
            "Frames written to the bridge, by message type",
            m.frames_out.clone(),
        );
        r.register(
            "pb_gateway_bytes_sent",
            "Bytes of frames written to the bridge (length field included), by message type",
            m.bytes_out.clone(),
        );
        r.register(
            "pb_gateway_answered",
            "Commands the gateway answered FAILURE itself, by reason",
            m.answered.clone(),
        );
        r.register(
            "pb_gateway_ignored_frames",
            "Frames from the bridge neither forwarded nor answered, by reason",
            m.ignored.clone(),
        );
        r.register(
            "pb_gateway_link_closed",
            "Links that ended, by reason",
            m.closed.clone(),
        );
        r.register(
            "pb_gateway_link_up",
            "1 while this replica's link to the bridge is up",
            m.link_up.clone(),
        );
        r.register(
            "pb_gateway_active",
            "1 while this replica holds the link's lease (0: standing by)",
            m.active.clone(),
        );
        r.register(
            "pb_gateway_connects",
            "Connections to the bridge made",
            m.connects.clone(),
        );
        r.register(
            "pb_gateway_connect_failures",
            "Attempts to connect to the bridge that failed, by reason",
            m.connect_failures.clone(),
        );
        r.register(
            "pb_gateway_reconnects",
            "Connections to the bridge made after an earlier one ended",
            m.reconnects.clone(),
        );
        r.register(
            "pb_gateway_events_dropped",
            "Events raised while no link was up (counted, not replayed)",
            m.events_dropped.clone(),
        );
        r.register(
            "pb_gateway_late_responses",
            "Responses that came after the gateway had answered or their link had ended",
            m.late_responses.clone(),
        );
        r.register(
            "pb_gateway_queue_bytes",
            "Bytes waiting to be written to the bridge",
            m.queue_bytes.clone(),
        );
        r.register(
            "pb_gateway_in_flight",
            "Commands sent on and not answered yet",
            m.in_flight.clone(),
        );
    });
    m
});

/// The gateway's metrics.
pub fn metrics() -> &'static GatewayMetrics {
    &METRICS
}

impl GatewayMetrics {
    /// A frame of `len` bytes (payload) read, of type `t`.
    pub fn received(&self, t: FrameType, len: usize) {
        let label = TypeLabel { r#type: t };
        self.frames_in.get_or_create(&label).inc();
        self.bytes_in
            .get_or_create(&label)
            .inc_by((len + pb_framing::LENGTH_BYTES) as u64);
    }

    /// A frame of `len` bytes (payload) queued for writing, of type `t`.
    pub fn sent(&self, t: FrameType, len: usize) {
        let label = TypeLabel { r#type: t };
        self.frames_out.get_or_create(&label).inc();
        self.bytes_out
            .get_or_create(&label)
            .inc_by((len + pb_framing::LENGTH_BYTES) as u64);
    }

    pub fn answered(&self, reason: Answered) {
        self.answered.get_or_create(&AnsweredLabel { reason }).inc();
    }

    pub fn ignored(&self, reason: Ignored) {
        self.ignored.get_or_create(&IgnoredLabel { reason }).inc();
    }

    pub fn closed(&self, reason: Closed) {
        self.closed.get_or_create(&ClosedLabel { reason }).inc();
    }

    pub(crate) fn connect_failed(&self, reason: ConnectFailed) {
        self.connect_failures
            .get_or_create(&FailedLabel { reason })
            .inc();
    }
}
