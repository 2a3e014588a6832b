//! The login storm: N agents logged in through the whole chain at once, with bounded
//! concurrency, progress while it runs, and a closing table of logins per second and
//! latency percentiles per message name.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::flow::{Driver, Latencies, LoggedIn};
use crate::report::{self, Progress};

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
        out.push_str(&report::latency_table(
            "message",
            report::by_message(&self.latencies, &ORDER),
        ));
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
    let progress = progress.then(|| Progress::agents(agents));
    let ticker = progress
        .clone()
        .map(|p| tokio::spawn(show_progress(p, done.clone())));
    let results = driver
        .login_range(first, agents, concurrency, "storm", &done)
        .await;
    let elapsed = started.elapsed();
    if let (Some(ticker), Some(progress)) = (ticker, progress) {
        ticker.abort();
        progress.done(done.load(Ordering::Relaxed));
        progress.finish();
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

async fn show_progress(progress: Progress, done: Arc<AtomicUsize>) {
    loop {
        tokio::time::sleep(progress.every()).await;
        progress.done(done.load(Ordering::Relaxed));
    }
}
