//! What the long runs (the login storm, the desk) show: progress on standard error while
//! they run (indicatif), and a closing table of latency percentiles.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

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

/// Progress on standard error while a long run goes (indicatif): redrawn in place where
/// indicatif draws on standard error (a terminal), one plain line per tick elsewhere (a log
/// file, a test).
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
    in_place: bool,
}

/// The storm's progress: a bar, the agents done of the total and the rate.
const AGENTS: &str = "[{bar:30}] {pos}/{len} agents  {rate}";

impl Progress {
    /// Agents done of `total`: a bar, the count and the rate since it was made.
    pub fn agents(total: usize) -> Self {
        Self::to(stderr(), ProgressBar::new(total as u64), AGENTS)
    }

    /// A line of its own, told at each tick ([`Progress::say`]).
    pub fn line() -> Self {
        Self::to(stderr(), ProgressBar::no_length(), "{msg}")
    }

    fn to(
        (target, in_place): (ProgressDrawTarget, bool),
        bar: ProgressBar,
        template: &str,
    ) -> Self {
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#.")
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let rate = state.pos() as f64 / state.elapsed().as_secs_f64().max(1e-9);
                    let _ = write!(out, "{rate:.0}/s");
                },
            );
        bar.set_style(style);
        bar.set_draw_target(target);
        Self { bar, in_place }
    }

    /// How often to tell it.
    pub fn every(&self) -> Duration {
        if self.in_place {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        }
    }

    /// `done` agents now.
    pub fn done(&self, done: usize) {
        self.bar.set_position(done as u64);
    }

    /// The line now.
    pub fn say(&self, line: String) {
        self.bar.set_message(line);
    }

    /// The run is over: the last state stays on a terminal; no line is added elsewhere.
    pub fn finish(&self) {
        if self.in_place {
            self.bar.abandon();
        } else {
            self.bar.finish_and_clear();
        }
    }
}

/// Where progress goes: standard error where indicatif draws on it (and redraws in place),
/// else [`Lines`] on standard error.
fn stderr() -> (ProgressDrawTarget, bool) {
    let target = ProgressDrawTarget::stderr();
    if target.is_hidden() {
        (
            ProgressDrawTarget::term_like(Box::new(Lines::new(|line| eprintln!("{line}")))),
            false,
        )
    } else {
        (target, true)
    }
}

/// A terminal for indicatif that writes each drawing as one plain line to `emit`: no cursor
/// moves, no clearing, no padding.
#[derive(Debug)]
struct Lines {
    drawing: std::sync::Mutex<String>,
    emit: fn(&str),
}

impl Lines {
    fn new(emit: fn(&str)) -> Self {
        Self {
            drawing: Default::default(),
            emit,
        }
    }

    fn drawing(&self) -> std::sync::MutexGuard<'_, String> {
        self.drawing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TermLike for Lines {
    fn width(&self) -> u16 {
        200
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)?;
        self.flush()
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.drawing().push_str(s);
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let drawing = std::mem::take(&mut *self.drawing());
        let line = drawing.trim_start_matches('\r').trim_end();
        if !line.is_empty() {
            (self.emit)(line);
        }
        Ok(())
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

    static WRITTEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    fn written() -> Vec<String> {
        std::mem::take(&mut *WRITTEN.lock().unwrap())
    }

    #[test]
    fn off_a_terminal_each_tick_is_a_plain_line() {
        let lines = || {
            let lines = Lines::new(|line| WRITTEN.lock().unwrap().push(line.to_owned()));
            (ProgressDrawTarget::term_like(Box::new(lines)), false)
        };
        let storm = Progress::to(lines(), ProgressBar::new(100), AGENTS);
        assert_eq!(storm.every(), Duration::from_secs(1));
        storm.done(10);
        storm.done(50);
        storm.finish();
        let shown = written();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("[###...........................] 10/100 agents  "),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("[###############...............] 50/100 agents  "),
            "{shown:?}"
        );
        assert!(shown[1].ends_with("/s"), "{shown:?}");

        let desk = Progress::to(lines(), ProgressBar::no_length(), "{msg}");
        desk.say("desk: handled 3 (1.5/s), in progress 2, failed 0".into());
        desk.finish();
        assert_eq!(
            written(),
            ["desk: handled 3 (1.5/s), in progress 2, failed 0"]
        );
    }
}
