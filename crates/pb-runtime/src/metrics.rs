//! The process's numbers, kept with `prometheus-client` (atomics per series, no lock on the
//! hot path but the family's read lock): commands by name and result, command latency
//! histograms, events published, CTI calls by operation and result, and the destinations
//! this replica answers for. A service adds its own families with [`register`] before it
//! starts serving. They are exposed in the Prometheus text format (0.0.4), or in OpenMetrics
//! for a scraper that asks for it ([`Format`]).

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

/// A text format of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format 0.0.4, what `promtool check metrics` reads.
    Prometheus,
    /// OpenMetrics 1.0.0 text, ending in `# EOF`.
    OpenMetrics,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (any version) with a quality no lower than that of
    /// the plain text (`text/plain`, `text/*` or `*/*`); the Prometheus text otherwise, with
    /// no header (empty) too.
    pub(crate) fn negotiate(accept: &str) -> Self {
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok())
                .unwrap_or(0.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }
}

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

/// Everything registered, in `format` ([`Format::content_type`]).
pub(crate) fn render(format: Format) -> String {
    LazyLock::force(&METRICS);
    let registry = REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &registry);
    drop(registry);
    match format {
        Format::OpenMetrics => {
            let _ = prometheus_client::encoding::text::encode_eof(&mut out);
            out
        }
        Format::Prometheus => prometheus_text(&out),
    }
}

/// The Prometheus text format (0.0.4) of `openmetrics`, the registry's families as
/// `prometheus-client` writes them in OpenMetrics: a counter's `# HELP` and `# TYPE` name
/// the family `x` while its samples are `x_total`, which the Prometheus format names in
/// both; `# UNIT` has no place there; an info family is a gauge `x_info`, an unknown one
/// `untyped`. Samples are the same in both (the registry holds no exemplars).
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's `# HELP`, written once its `# TYPE` (the next line) tells its name.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            if let Some((_, text)) = help.take().filter(|(name, _)| *name == family) {
                out.push_str(&format!("# HELP {family}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {family}{suffix} {kind}\n"));
        } else if !line.starts_with("# UNIT ") && line != "# EOF" {
            out.push_str(line);
            out.push('\n');
        }
    }
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
        let text = render(Format::OpenMetrics);
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

    #[test]
    fn the_prometheus_text_names_each_family_as_its_samples() {
        let m = metrics();
        m.command("session.query.init", true, Duration::from_millis(2));
        m.destinations("session", 1);
        let text = render(Format::Prometheus);
        for line in [
            "# HELP pb_commands_total Commands answered, by message name and result.",
            "# TYPE pb_commands_total counter",
            "pb_commands_total{name=\"session.query.init\",result=\"SUCCESS\"} 1",
            "# TYPE pb_command_duration_seconds histogram",
            "pb_command_duration_seconds_count{name=\"session.query.init\"} 1",
            "# TYPE pb_active_destinations gauge",
            "# TYPE pb_nats_slow_consumer_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("# EOF"), "{text}");
        // Every sample belongs to the family of the `# TYPE` line before it, which has its
        // `# HELP` (what `promtool check metrics` asks).
        let (mut family, mut kind, mut helped) = (String::new(), String::new(), Vec::new());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.push(rest.split(' ').next().unwrap().to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap();
                assert_eq!(helped.last().map(String::as_str), Some(name), "{line}");
                (family, kind) = (name.to_owned(), k.to_owned());
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                let suffixes: &[&str] = match kind.as_str() {
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                assert!(
                    suffixes.iter().any(|s| name == format!("{family}{s}")),
                    "{line} after # TYPE {family} {kind}"
                );
            }
        }
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let negotiate = Format::negotiate;
        assert_eq!(negotiate(""), Format::Prometheus);
        assert_eq!(negotiate("*/*"), Format::Prometheus);
        assert_eq!(negotiate("text/plain"), Format::Prometheus);
        assert_eq!(
            negotiate("application/openmetrics-text"),
            Format::OpenMetrics
        );
        // What Prometheus sends.
        assert_eq!(
            negotiate(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(
                "application/openmetrics-text; version=1.0.0; q=0.5, text/plain; version=0.0.4; q=0.3"
            ),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate("application/openmetrics-text;q=0.2, text/plain"),
            Format::Prometheus
        );
        assert_eq!(
            negotiate("application/openmetrics-text;q=0"),
            Format::Prometheus
        );
        assert_eq!(
            negotiate("APPLICATION/OpenMetrics-Text;Q=0.9, */*;q=0.1"),
            Format::OpenMetrics
        );
    }
}
