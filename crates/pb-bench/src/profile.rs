//! What work costs, counted rather than timed: messages into the NATS server, JetStream
//! writes, the CPU time and resident memory of each process, read before and after and
//! divided by the logins (or the floor's requests). Counts do not move with the machine's
//! day; they say where the time goes. CPU time per login beside CPU time per floor request
//! (the report's ratio) compares two costs measured alike, where a rate beside a rate also
//! compares how far each is bound by waiting rather than working.

use std::collections::BTreeMap;

use pb_testkit::{Process, Stack};

use crate::report::Figures;

/// The processes whose CPU time is counted, by the prefix of their instance name (the
/// harness itself last: its client's work is part of every figure).
pub(crate) const WHO: [&str; 8] = [
    "nats-server",
    "pb-gateway",
    "pb-control",
    "pb-session",
    "pb-channel-group",
    "pb-cti-sim",
    "pb-bench-echo",
    "harness",
];

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
struct Counters {
    /// Messages the server received (`/varz` `in_msgs`).
    in_msgs: f64,
    /// Messages the server delivered (`/varz` `out_msgs`).
    out_msgs: f64,
    /// Messages ever stored in each JetStream stream (its last sequence: every key-value
    /// write, not lowered by expiry), by stream.
    js_writes: BTreeMap<String, f64>,
    /// CPU seconds so far, by [`WHO`].
    cpu: BTreeMap<&'static str, f64>,
    /// Resident memory now, KiB, by [`WHO`] (the harness's not counted).
    kib: BTreeMap<&'static str, f64>,
}

impl Counters {
    /// Read them from `stack`'s server and processes, `also` (processes outside the
    /// stack, named by their binary), and this process.
    async fn read(stack: &Stack, also: &[(&str, &Process)]) -> anyhow::Result<Self> {
        let monitoring = stack.nats.monitoring();
        let varz = json(&monitoring, "/varz").await?;
        let jsz = json(&monitoring, "/jsz?accounts=true&streams=true").await?;
        let js_writes = jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
            .filter_map(|stream| {
                let name = stream["name"].as_str()?;
                Some((name.to_owned(), stream["state"]["last_seq"].as_f64()?))
            })
            .collect();
        let mut cpu = BTreeMap::new();
        let mut kib = BTreeMap::new();
        cpu.insert("nats-server", stack.nats.cpu_seconds().unwrap_or_default());
        let processes = stack
            .processes
            .iter()
            .map(|(instance, process)| (instance.as_str(), process))
            .chain(also.iter().copied());
        for (instance, process) in processes {
            if let Some(who) = WHO.iter().find(|w| instance.starts_with(**w)) {
                *cpu.entry(*who).or_default() += process.cpu_seconds().unwrap_or_default();
                *kib.entry(*who).or_default() += process.resident_kib().unwrap_or_default() as f64;
            }
        }
        cpu.insert(
            "harness",
            pb_testkit::cpu_seconds(std::process::id()).unwrap_or_default(),
        );
        Ok(Self {
            in_msgs: varz["in_msgs"].as_f64().unwrap_or_default(),
            out_msgs: varz["out_msgs"].as_f64().unwrap_or_default(),
            js_writes,
            cpu,
            kib,
        })
    }

    /// What happened from `before` to `self`, per one of `n` logins (or requests), under
    /// `prefix`: `.in_msgs`, `.out_msgs`, `.js_writes` (and `.js_writes.<stream>`),
    /// `.cpu_us.<who>`, `.cpu_us.total` and `.kib.<who>` (resident memory growth, KiB).
    fn put_per(&self, before: &Self, n: usize, figures: &mut Figures, prefix: &str) {
        let per = |after: f64, before: f64| (after - before) / n as f64;
        figures.insert(
            format!("{prefix}.in_msgs"),
            per(self.in_msgs, before.in_msgs),
        );
        figures.insert(
            format!("{prefix}.out_msgs"),
            per(self.out_msgs, before.out_msgs),
        );
        let mut writes = 0.0;
        for (stream, &after) in &self.js_writes {
            let earlier = before.js_writes.get(stream).copied().unwrap_or_default();
            if after > earlier {
                writes += per(after, earlier);
                figures.insert(format!("{prefix}.js_writes.{stream}"), per(after, earlier));
            }
        }
        figures.insert(format!("{prefix}.js_writes"), writes);
        let mut total = 0.0;
        for who in WHO {
            let of = |map: &BTreeMap<&str, f64>| map.get(who).copied();
            let (Some(after), Some(earlier)) = (of(&self.cpu), of(&before.cpu)) else {
                continue; // not running in this phase
            };
            let us = 1e6 * per(after, earlier);
            total += us;
            figures.insert(format!("{prefix}.cpu_us.{who}"), us);
            if let (Some(after), Some(earlier)) = (of(&self.kib), of(&before.kib)) {
                figures.insert(format!("{prefix}.kib.{who}"), per(after, earlier));
            }
        }
        figures.insert(format!("{prefix}.cpu_us.total"), total);
    }
}

/// Run `work` (`n` logins or requests) and record what it cost under `prefix`
/// ([`Counters::put_per`]).
pub async fn counted<T>(
    stack: &Stack,
    also: &[(&str, &Process)],
    n: usize,
    figures: &mut Figures,
    prefix: &str,
    work: impl Future<Output = T>,
) -> anyhow::Result<T> {
    let before = Counters::read(stack, also).await?;
    let done = work.await;
    Counters::read(stack, also)
        .await?
        .put_per(&before, n, figures, prefix);
    Ok(done)
}

async fn json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = pb_testkit::try_http_get(addr, path).await?;
    anyhow::ensure!(status == 200, "{path} answered {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}
