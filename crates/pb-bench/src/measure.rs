//! Timing: the same two measurements for the floor and for every command, so their figures
//! compare. Sequential (one request at a time: latency percentiles) and with a fixed number
//! in flight (requests per second).

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pb_bridge::report::percentile;
use serde::{Deserialize, Serialize};

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Latency {
    /// Percentiles of `times` (any order).
    pub fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let us = |p: f64| percentile(&times, p).as_nanos() as f64 / 1000.0;
        Self {
            p50_us: us(50.0),
            p99_us: us(99.0),
            p999_us: us(99.9),
        }
    }
}

/// Run `one(i)` for `i` in `0..n`, one at a time; the latency of each. An error stops the
/// measurement: a figure with failures in it would mean nothing.
pub async fn sequential<F, Fut>(n: usize, mut one: F) -> anyhow::Result<Latency>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        one(i).await?;
        times.push(started.elapsed());
    }
    Ok(Latency::of(times))
}

/// Run `one(i)` for `i` in `0..n` with `in_flight` outstanding at a time; completed per
/// second.
pub(crate) async fn throughput<F, Fut>(n: usize, in_flight: usize, one: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(&one)
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    Ok(n as f64 / elapsed.as_secs_f64().max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_microseconds() {
        let times: Vec<_> = (1..=1000).rev().map(Duration::from_micros).collect();
        let l = Latency::of(times);
        assert_eq!((l.p50_us, l.p99_us, l.p999_us), (500.0, 990.0, 999.0));
    }

    #[tokio::test]
    async fn an_error_spoils_the_measurement() {
        let e = sequential(3, |i| async move {
            anyhow::ensure!(i != 1, "step {i} failed");
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "step 1 failed");
        let e = throughput(10, 4, |i| async move {
            anyhow::ensure!(i != 7, "step {i} failed");
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "step 7 failed");
    }
}
