//! What the long runs (the login storm, the desk) show: progress lines on standard error
//! while they run, and a closing table of latency percentiles.

use std::io::IsTerminal;
use std::time::Duration;

use crate::flow::Latencies;

/// The `p`th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Less a hair, so that 99.9% of 1000 is rank 999 despite floating point.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A table of latencies: a header naming the first column `what`, then one row per
/// `(label, times)` with the count, p50, p90, p99 and maximum in milliseconds.
pub(crate) fn latency_table<'a>(
    what: &str,
    rows: impl IntoIterator<Item = (&'a str, &'a [Duration])>,
) -> String {
    let mut out = format!(
        "{:<38} {:>7} {:>8} {:>8} {:>8} {:>8}\n",
        what, "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (label, times) in rows {
        let mut times = times.to_vec();
        times.sort();
        out.push_str(&format!(
            "{:<38} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
            label,
            times.len(),
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 90.0)),
            ms(percentile(&times, 99.0)),
            ms(times.last().copied().unwrap_or_default()),
        ));
    }
    out
}

/// Recorded response times as table rows: the names of `order` first, in that order, then
/// any others by name.
pub(crate) fn by_message<'a>(
    latencies: &'a Latencies,
    order: &[&str],
) -> Vec<(&'a str, &'a [Duration])> {
    let mut rows: Vec<_> = latencies
        .iter()
        .map(|(name, times)| (*name, times.as_slice()))
        .collect();
    rows.sort_by_key(|(name, _)| {
        (
            order.iter().position(|n| n == name).unwrap_or(usize::MAX),
            *name,
        )
    });
    rows
}

/// Progress lines on standard error: rewritten in place on a terminal, one per tick
/// otherwise (a log file, a test).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    terminal: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress {
    /// How often to show a line.
    pub fn every(self) -> Duration {
        if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        }
    }

    pub fn show(self, line: &str) {
        if self.terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }

    /// End the line being rewritten, if any.
    pub fn finish(self) {
        if self.terminal {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<_> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), ms(50));
        assert_eq!(percentile(&sorted, 99.0), ms(99));
        assert_eq!(percentile(&sorted, 100.0), ms(100));
        let thousand: Vec<_> = (1..=1000).map(ms).collect();
        assert_eq!(percentile(&thousand, 99.9), ms(999));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn rows_follow_the_given_order_then_the_names() {
        let mut latencies = Latencies::new();
        for name in ["z.other", "b.second", "a.other", "a.first"] {
            latencies.insert(name, vec![ms(3), ms(1), ms(2)]);
        }
        let rows = by_message(&latencies, &["a.first", "b.second"]);
        let names: Vec<_> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a.first", "b.second", "a.other", "z.other"]);
        let table = latency_table("message", rows);
        assert!(
            table.contains(
                "a.first                                      3     2.00     3.00     3.00     3.00"
            ),
            "{table}"
        );
    }
}
