//! The login storm: N agents logged in through the whole chain at once, with bounded
//! concurrency, progress while it runs, and a closing table of logins per second and
//! latency percentiles per message name.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::flow::{Driver, Latencies, LoggedIn};

/// What a storm measured.
#[derive(Debug)]
pub struct StormReport {
    pub agents: usize,
    pub concurrency: usize,
    pub logged_in: usize,
    pub failures: usize,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    pub latencies: Latencies,
}

impl StormReport {
    pub fn logins_per_second(&self) -> f64 {
        self.logged_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The closing table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "login storm: {} agents, {} in flight\nlogged in: {} (failed {}) in {:.2} s = {:.1} logins/s\n\n",
            self.agents,
            self.concurrency,
            self.logged_in,
            self.failures,
            self.elapsed.as_secs_f64(),
            self.logins_per_second()
        );
        out.push_str(&format!(
            "{:<38} {:>7} {:>8} {:>8} {:>8} {:>8}\n",
            "message", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        let mut names: Vec<_> = self.latencies.keys().copied().collect();
        names.sort_by_key(|name| ORDER.iter().position(|n| n == name).unwrap_or(usize::MAX));
        for name in names {
            let mut times = self.latencies[name].clone();
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            out.push_str(&format!(
                "{:<38} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                name,
                times.len(),
                ms(percentile(&times, 50.0)),
                ms(percentile(&times, 90.0)),
                ms(percentile(&times, 99.0)),
                ms(times.last().copied().unwrap_or_default()),
            ));
        }
        if let Some(first) = &self.first_failure {
            out.push_str(&format!("\nfirst failure: {first}\n"));
        }
        out
    }
}

/// The order of the login chain, for the table.
const ORDER: [&str; 8] = [
    "cti.request.createsession",
    "session.query.init",
    "session.request.createchannelgroup",
    "channelgroup.query.init",
    "channelgroup.request.createchannel",
    "channel.query.init",
    "channel.request.activate",
    "channel.request.ready",
];

/// The `p`th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Less a hair, so that 99.9% of 1000 is rank 999 despite floating point.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Log agents `first..first+agents` in (sessions `storm-<id>`), `concurrency` at a time;
/// `progress` says whether to show progress on standard error.
pub async fn storm(
    driver: &Driver,
    first: u64,
    agents: usize,
    concurrency: usize,
    progress: bool,
) -> (StormReport, Vec<LoggedIn>) {
    let driver = driver.clone().recording();
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let ticker = progress.then(|| tokio::spawn(show_progress(done.clone(), agents, started)));
    let results: Vec<_> = futures::stream::iter(0..agents as u64)
        .map(|i| {
            let driver = driver.clone();
            let done = done.clone();
            async move {
                let id = (first + i).to_string();
                let result = driver
                    .login(&id, &format!("pw-{id}"), &format!("storm-{id}"))
                    .await;
                done.fetch_add(1, Ordering::Relaxed);
                result
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
        eprintln!();
    }
    let mut logged = Vec::new();
    let mut failures = 0;
    let mut first_failure = None;
    for result in results {
        match result {
            Ok(l) => logged.push(l),
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let report = StormReport {
        agents,
        concurrency,
        logged_in: logged.len(),
        failures,
        first_failure,
        elapsed,
        latencies: driver.latencies(),
    };
    (report, logged)
}

async fn show_progress(done: Arc<AtomicUsize>, total: usize, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    loop {
        tokio::time::sleep(every).await;
        let n = done.load(Ordering::Relaxed);
        let width = 30;
        let filled = width * n / total.max(1);
        let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "[{}{}] {n}/{total} agents  {rate:.0}/s",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |v: u64| Duration::from_millis(v);
        let sorted: Vec<_> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), ms(50));
        assert_eq!(percentile(&sorted, 99.0), ms(99));
        assert_eq!(percentile(&sorted, 100.0), ms(100));
        let thousand: Vec<_> = (1..=1000).map(ms).collect();
        assert_eq!(percentile(&thousand, 99.9), ms(999));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
