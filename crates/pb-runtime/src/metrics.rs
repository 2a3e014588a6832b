//! The process's numbers, kept with `prometheus-client` (atomics per series, no lock on the
//! hot path but the family's read lock) and exposed in the OpenMetrics text format:
//! commands by name and result, command latency histograms, events published, CTI calls by
//! operation and result, and the destinations this replica answers for. A service adds
//! its own families with [`register`] before it starts serving.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency histogram buckets, in seconds.
pub(crate) const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The content type of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    name: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CtiLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// A histogram with the [`LATENCY_BUCKETS`].
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics every service shares.
#[derive(Debug)]
pub struct Metrics {
    commands: Family<CommandLabels, Counter>,
    latency: Family<NameLabel, Histogram, fn() -> Histogram>,
    events: Family<NameLabel, Counter>,
    cti: Family<CtiLabels, Counter>,
    destinations: Family<KindLabel, Gauge>,
    refused: Family<ReasonLabel, Counter>,
    slow_consumer: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let metrics = Metrics {
        commands: Family::default(),
        latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        events: Family::default(),
        cti: Family::default(),
        destinations: Family::default(),
        refused: Family::default(),
        slow_consumer: Counter::default(),
    };
    register(|r| {
        r.register(
            "pb_commands",
            "Commands answered, by message name and result",
            metrics.commands.clone(),
        );
        r.register(
            "pb_command_duration_seconds",
            "Time from receiving a command to publishing its response",
            metrics.latency.clone(),
        );
        r.register(
            "pb_events_published",
            "Events published, by name",
            metrics.events.clone(),
        );
        r.register(
            "pb_cti_calls",
            "Calls to the CTI adapter, by operation and result",
            metrics.cti.clone(),
        );
        r.register(
            "pb_active_destinations",
            "Destinations this replica answers for, by kind",
            metrics.destinations.clone(),
        );
        r.register(
            "pb_commands_refused",
            "Commands answered FAILURE without being acted on, by reason (busy, limit)",
            metrics.refused.clone(),
        );
        r.register(
            "pb_nats_slow_consumer",
            "Times the NATS client dropped messages of a subscription whose buffer was full",
            metrics.slow_consumer.clone(),
        );
    });
    metrics
});

/// This process's shared metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Add metric families to the process's registry (a service's own, at start).
pub fn register(add: impl FnOnce(&mut Registry)) {
    let mut registry = REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    add(&mut registry);
}

/// The OpenMetrics text of everything registered ([`CONTENT_TYPE`]).
pub(crate) fn render() -> String {
    LazyLock::force(&METRICS);
    let registry = REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

impl Metrics {
    /// A command was answered.
    pub fn command(&self, name: &'static str, success: bool, took: Duration) {
        let result = if success { "SUCCESS" } else { "FAILURE" };
        self.commands
            .get_or_create(&CommandLabels { name, result })
            .inc();
        self.latency
            .get_or_create(&NameLabel { name })
            .observe(took.as_secs_f64());
    }

    /// An event was published.
    pub fn event(&self, name: &'static str) {
        self.events.get_or_create(&NameLabel { name }).inc();
    }

    /// A CTI call ended with `result` (`ok`, or the error's kind).
    pub(crate) fn cti_call(&self, op: &'static str, result: &'static str) {
        self.cti.get_or_create(&CtiLabels { op, result }).inc();
    }

    /// This replica answers for one more (`+1`) or one fewer (`-1`) destination of `kind`.
    pub fn destinations(&self, kind: &'static str, change: i64) {
        self.destinations
            .get_or_create(&KindLabel { kind })
            .inc_by(change);
    }

    /// A command was refused unread: `busy` (too much work in flight) or `limit` (input
    /// past a configured limit).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The NATS client reported a slow consumer (a subscription's buffer overflowed and
    /// messages were dropped).
    pub(crate) fn slow_consumer(&self) {
        self.slow_consumer.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = metrics();
        m.command("channel.request.ready", true, Duration::from_millis(3));
        m.command("channel.request.ready", false, Duration::from_millis(30));
        m.event("channel.ready");
        m.cti_call("setstate", "ok");
        m.destinations("channel", 3);
        m.destinations("channel", -1);
        m.refused("busy");
        m.slow_consumer();
        let text = render();
        for line in [
            "pb_commands_total{name=\"channel.request.ready\",result=\"SUCCESS\"} 1",
            "pb_command_duration_seconds_bucket{le=\"0.005\",name=\"channel.request.ready\"} 1",
            "pb_command_duration_seconds_bucket{le=\"0.05\",name=\"channel.request.ready\"} 2",
            "pb_command_duration_seconds_count{name=\"channel.request.ready\"} 2",
            "pb_events_published_total{name=\"channel.ready\"} 1",
            "pb_cti_calls_total{op=\"setstate\",result=\"ok\"} 1",
            "pb_active_destinations{kind=\"channel\"} 2",
            "pb_commands_refused_total{reason=\"busy\"} 1",
            "pb_nats_slow_consumer_total 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
