//! The process's numbers, in the Prometheus text format: commands by name and result,
//! command latency histograms, events published, CTI calls by operation and result, and the
//! destinations this replica answers for. One registry per process ([`metrics`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    commands: BTreeMap<(String, &'static str), u64>,
    latency: BTreeMap<String, Histogram>,
    events: BTreeMap<String, u64>,
    cti: BTreeMap<(String, String), u64>,
    destinations: BTreeMap<&'static str, i64>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// This process's registry.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    /// A command was answered.
    pub fn command(&self, name: &str, success: bool, took: Duration) {
        self.with(|m| {
            let result = if success { "SUCCESS" } else { "FAILURE" };
            *m.commands.entry((name.to_owned(), result)).or_default() += 1;
            let h = m.latency.entry(name.to_owned()).or_default();
            let seconds = took.as_secs_f64();
            for (count, bound) in h.counts.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *count += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        });
    }

    /// An event was published.
    pub fn event(&self, name: &str) {
        self.with(|m| *m.events.entry(name.to_owned()).or_default() += 1);
    }

    /// A CTI call ended with `result` (`ok`, or the error's kind).
    pub fn cti_call(&self, op: &str, result: &str) {
        self.with(|m| *m.cti.entry((op.to_owned(), result.to_owned())).or_default() += 1);
    }

    /// This replica answers for one more (`+1`) or one fewer (`-1`) destination of `kind`.
    pub fn destinations(&self, kind: &'static str, change: i64) {
        self.with(|m| *m.destinations.entry(kind).or_default() += change);
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        family(
            &mut out,
            "pb_commands_total",
            "counter",
            "Commands answered, by message name and result.",
        );
        for ((name, result), n) in &m.commands {
            let _ = writeln!(
                out,
                "pb_commands_total{{name=\"{name}\",result=\"{result}\"}} {n}"
            );
        }
        family(
            &mut out,
            "pb_command_duration_seconds",
            "histogram",
            "Time from receiving a command to publishing its response.",
        );
        for (name, h) in &m.latency {
            for (count, bound) in h.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "pb_command_duration_seconds_bucket{{name=\"{name}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "pb_command_duration_seconds_bucket{{name=\"{name}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "pb_command_duration_seconds_sum{{name=\"{name}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "pb_command_duration_seconds_count{{name=\"{name}\"}} {}",
                h.count
            );
        }
        family(
            &mut out,
            "pb_events_published_total",
            "counter",
            "Events published, by name.",
        );
        for (name, n) in &m.events {
            let _ = writeln!(out, "pb_events_published_total{{name=\"{name}\"}} {n}");
        }
        family(
            &mut out,
            "pb_cti_calls_total",
            "counter",
            "Calls to the CTI adapter, by operation and result.",
        );
        for ((op, result), n) in &m.cti {
            let _ = writeln!(
                out,
                "pb_cti_calls_total{{op=\"{op}\",result=\"{result}\"}} {n}"
            );
        }
        family(
            &mut out,
            "pb_active_destinations",
            "gauge",
            "Destinations this replica answers for, by kind.",
        );
        for (kind, n) in &m.destinations {
            let _ = writeln!(out, "pb_active_destinations{{kind=\"{kind}\"}} {n}");
        }
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.command("channel.request.ready", true, Duration::from_millis(3));
        m.command("channel.request.ready", false, Duration::from_millis(30));
        m.event("channel.ready");
        m.cti_call("setstate", "ok");
        m.destinations("channel", 3);
        m.destinations("channel", -1);
        let text = m.render();
        assert!(
            text.contains("pb_commands_total{name=\"channel.request.ready\",result=\"SUCCESS\"} 1")
        );
        assert!(text.contains(
            "pb_command_duration_seconds_bucket{name=\"channel.request.ready\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "pb_command_duration_seconds_bucket{name=\"channel.request.ready\",le=\"0.05\"} 2"
        ));
        assert!(
            text.contains("pb_command_duration_seconds_count{name=\"channel.request.ready\"} 2")
        );
        assert!(text.contains("pb_events_published_total{name=\"channel.ready\"} 1"));
        assert!(text.contains("pb_cti_calls_total{op=\"setstate\",result=\"ok\"} 1"));
        assert!(text.contains("pb_active_destinations{kind=\"channel\"} 2"));
    }
}
