//! Figures, the table that sets each beside the floor measured in the same run, the
//! targets of issue 5, and the JSON that lets two runs be compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::measure::Latency;

/// One run's figures by key (`floor.seq.p50_us`, `cmd.<name>.per_s`, `storm.<n>.seconds`, ...).
pub(crate) type Figures = BTreeMap<String, f64>;

/// The commands measured one by one and 64 at a time, with what they cost.
pub(crate) const COMMANDS: [(&str, &str); 3] = [
    ("cti.query.capabilities", "no CTI call"),
    ("cti.query.agentinfo", "one CTI call"),
    ("channel.request.ready", "CTI call, state, reply cache"),
];

/// Record a latency's percentiles under `prefix`.
pub(crate) fn put_latency(figures: &mut Figures, prefix: &str, latency: Latency) {
    figures.insert(format!("{prefix}.p50_us"), latency.p50_us);
    figures.insert(format!("{prefix}.p99_us"), latency.p99_us);
    figures.insert(format!("{prefix}.p999_us"), latency.p999_us);
}

/// What a run (or several) produced, as written to the JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    pub runs: Vec<Figures>,
    /// Each figure's median over the runs.
    pub median: Figures,
}

impl Report {
    pub fn new(command: String, runs: Vec<Figures>) -> Self {
        let mut median = Figures::new();
        let keys: std::collections::BTreeSet<&String> =
            runs.iter().flat_map(|r| r.keys()).collect();
        for key in keys {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.get(key).copied()).collect();
            median.insert(key.clone(), spread(values).0);
        }
        Self {
            command,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            runs,
            median,
        }
    }
}

/// A goal for one figure.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// The ratio to its base at most this.
    RatioAtMost(f64),
    RatioAtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::RatioAtMost(r) => format!("<= {r}x"),
            Target::RatioAtLeast(r) => format!(">= {r}x"),
            Target::AtMost(v) => format!("<= {v} {unit}"),
        }
    }

    fn met(self, value: f64, ratio: Option<f64>) -> bool {
        match self {
            Target::RatioAtMost(r) => ratio.is_some_and(|x| x <= r),
            Target::RatioAtLeast(r) => ratio.is_some_and(|x| x >= r),
            Target::AtMost(v) => value <= v,
        }
    }
}

/// One line of the table.
struct Row {
    label: String,
    key: String,
    unit: &'static str,
    base: Option<String>,
    target: Option<Target>,
}

fn row(label: impl Into<String>, key: impl Into<String>, unit: &'static str) -> Row {
    Row {
        label: label.into(),
        key: key.into(),
        unit,
        base: None,
        target: None,
    }
}

impl Row {
    fn against(mut self, base: impl Into<String>) -> Self {
        self.base = Some(base.into());
        self
    }

    fn goal(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }
}

/// The p50 target of each command measured one at a time, as a ratio to the floor's p50.
fn p50_target(name: &str) -> f64 {
    match name {
        "cti.query.capabilities" => 1.2,
        "cti.query.agentinfo" => 2.2,
        _ => 3.0,
    }
}

/// A login storm's target: at least one login per this many requests of the floor's
/// 64-in-flight throughput, measured in the same run.
pub(crate) const FLOOR_REQUESTS_PER_LOGIN: f64 = 80.0;

/// The counted costs of one unit of work under `prefix` ([`crate::profile`]): messages into
/// the server, JetStream writes, CPU time of every process (beside a floor request's, so
/// the ratio says how many floor requests' worth of CPU the unit costs).
fn costs(label: &str, prefix: &str) -> Vec<Row> {
    let mut cpu = row(
        format!("{label}: CPU time, every process"),
        format!("{prefix}.cpu_us.total"),
        "us",
    );
    if prefix != FLOOR_COSTS {
        cpu = cpu.against(format!("{FLOOR_COSTS}.cpu_us.total"));
    }
    vec![
        row(
            format!("{label}: messages into NATS"),
            format!("{prefix}.in_msgs"),
            "",
        ),
        row(
            format!("{label}: JetStream writes"),
            format!("{prefix}.js_writes"),
            "",
        ),
        cpu,
    ]
}

/// Where the floor's own costs per request are recorded.
const FLOOR_COSTS: &str = "floor.per_request";

/// The storm sizes present in `figures` under `prefix` (`storm.`, `gw.storm.`), smallest
/// first.
fn storm_sizes(figures: &Figures, prefix: &str) -> Vec<u64> {
    let mut sizes: Vec<u64> = figures
        .keys()
        .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse().ok())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn rows(figures: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for (p, label) in [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")] {
        rows.push(row(
            format!("echo floor, sequential {label}"),
            format!("floor.seq.{p}_us"),
            "us",
        ));
    }
    rows.push(row("echo floor, 64 in flight", "floor.per_s", "/s"));
    rows.extend(costs("echo floor: per request", FLOOR_COSTS));
    for (name, cost) in COMMANDS {
        for (p, label) in [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")] {
            let mut r = row(
                format!("{name} ({cost}) {label}"),
                format!("cmd.{name}.seq.{p}_us"),
                "us",
            )
            .against(format!("floor.seq.{p}_us"));
            if p == "p50" {
                r = r.goal(Target::RatioAtMost(p50_target(name)));
            }
            rows.push(r);
        }
        let mut r = row(
            format!("{name}, 64 in flight"),
            format!("cmd.{name}.per_s"),
            "/s",
        )
        .against("floor.per_s");
        if name == "cti.query.capabilities" {
            r = r.goal(Target::RatioAtLeast(0.8));
        }
        rows.push(r);
        rows.extend(costs(
            &format!("{name}: per request"),
            &format!("cmd.{name}.per_request"),
        ));
    }
    let sizes = storm_sizes(figures, "storm.");
    for &n in &sizes {
        let last = Some(n) == sizes.last().copied() && sizes.len() > 1;
        rows.push(row(
            format!("storm {n}: duration"),
            format!("storm.{n}.seconds"),
            "s",
        ));
        let mut rate = row(
            format!("storm {n}: logins per second"),
            format!("storm.{n}.logins_per_s"),
            "/s",
        );
        if last {
            rate = rate
                .against(format!("storm.{}.logins_per_s", sizes[0]))
                .goal(Target::RatioAtLeast(0.85));
        }
        rows.push(rate);
        rows.push(
            row(
                format!("storm {n}: floor requests (64 in flight) per login"),
                format!("storm.{n}.floor_requests_per_login"),
                "",
            )
            .goal(Target::AtMost(FLOOR_REQUESTS_PER_LOGIN)),
        );
        rows.push(
            row(
                format!("storm {n}: worst per-command p99"),
                format!("storm.{n}.worst_p99_ms"),
                "ms",
            )
            .goal(Target::AtMost(50.0)),
        );
        rows.push(row(
            format!("storm {n}: resident memory per agent"),
            format!("storm.{n}.kib_per_agent"),
            "KiB",
        ));
        rows.extend(costs(
            &format!("storm {n}: per login"),
            &format!("storm.{n}.per_login"),
        ));
        if Some(n) == sizes.last().copied() {
            let writes = format!("storm.{n}.per_login.js_writes.");
            for key in figures.keys().filter(|k| k.starts_with(&writes)) {
                rows.push(row(
                    format!("storm {n}: per login, writes to {}", &key[writes.len()..]),
                    key.clone(),
                    "",
                ));
            }
            for who in crate::profile::WHO {
                rows.push(row(
                    format!("storm {n}: per login, CPU of {who}"),
                    format!("storm.{n}.per_login.cpu_us.{who}"),
                    "us",
                ));
            }
            for who in crate::profile::WHO {
                rows.push(row(
                    format!("storm {n}: per login, resident memory of {who}"),
                    format!("storm.{n}.per_login.kib.{who}"),
                    "KiB",
                ));
            }
        }
    }
    rows.push(
        row(
            "resident memory per logged-in agent",
            "memory.kib_per_agent",
            "KiB",
        )
        .goal(Target::AtMost(20.0)),
    );
    if let Some(&agents) = figures.get("resync.agents") {
        rows.push(
            row(
                format!("re-sync of {agents:.0} agents after a CTI outage"),
                "resync.seconds",
                "s",
            )
            .goal(Target::AtMost(10.0 * agents / 10_000.0)),
        );
    }
    rows.extend(gateway_rows(figures));
    rows.push(row(
        "interactions handled per second (automatic desk)",
        "desk.handled_per_s",
        "/s",
    ));
    for (p, label) in [("p50", "p50"), ("p99", "p99")] {
        rows.push(
            row(
                format!("conversation.request.answer (1 CTI call) under load {label}"),
                format!("desk.answer.{p}_us"),
                "us",
            )
            .against(format!("floor.seq.{p}_us")),
        );
    }
    rows.push(row(
        "interactions: worst per-command p99",
        "desk.worst_p99_ms",
        "ms",
    ));
    rows.push(
        row("event latency (CTI -> bridge) p50", "event.p50_us", "us").against("floor.seq.p50_us"),
    );
    rows.push(
        row("event latency (CTI -> bridge) p99", "event.p99_us", "us")
            .against("floor.seq.p99_us")
            .goal(Target::AtMost(5000.0)),
    );
    rows
}

/// The gateway's rows: each command through its socket beside the same over NATS
/// directly, and each of its storms beside the NATS-direct storm of the same size.
fn gateway_rows(figures: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, _) in COMMANDS {
        for (p, label) in [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")] {
            rows.push(
                row(
                    format!("gateway: {name} {label}"),
                    format!("gw.cmd.{name}.seq.{p}_us"),
                    "us",
                )
                .against(format!("cmd.{name}.seq.{p}_us")),
            );
        }
        rows.push(
            row(
                format!("gateway: {name} p50 - NATS p50, floors"),
                format!("gw.cmd.{name}.extra_floors"),
                "floors",
            )
            .goal(Target::AtMost(1.0)),
        );
        rows.push(
            row(
                format!("gateway: {name}, 64 in flight"),
                format!("gw.cmd.{name}.per_s"),
                "/s",
            )
            .against(format!("cmd.{name}.per_s")),
        );
    }
    for n in storm_sizes(figures, "gw.storm.") {
        let key = |what: &str| format!("gw.storm.{n}.{what}");
        let label = |what: &str| format!("gateway storm {n}: {what}");
        rows.push(row(
            label("logins per second over NATS"),
            key("nats.logins_per_s"),
            "/s",
        ));
        rows.push(
            row(
                label("logins per second through the gateway"),
                key("logins_per_s"),
                "/s",
            )
            .against(key("nats.logins_per_s"))
            .goal(Target::RatioAtLeast(0.9)),
        );
        rows.push(
            row(
                label("worst per-command p99 through it"),
                key("worst_p99_ms"),
                "ms",
            )
            .against(key("nats.worst_p99_ms")),
        );
        rows.push(
            row(
                label("gateway resident memory after"),
                key("gateway_kib"),
                "KiB",
            )
            .against(key("gateway_kib_before")),
        );
        rows.push(
            row(
                label("gateway memory per 1,000 agents"),
                key("gateway_kib_per_1000"),
                "KiB",
            )
            .goal(Target::AtMost(GATEWAY_KIB_PER_1000)),
        );
    }
    rows
}

/// "Gateway resident memory flat in the number of agents": its growth during a storm it
/// carries, per 1,000 agents logged in, at most this.
const GATEWAY_KIB_PER_1000: f64 = 100.0;

/// One row's figure in each run: the value and, with a base, the ratio to it.
fn per_run(r: &Row, runs: &[Figures]) -> Vec<(f64, Option<f64>)> {
    runs.iter()
        .filter_map(|figures| {
            let value = *figures.get(&r.key)?;
            let base = r.base.as_ref().and_then(|b| figures.get(b).copied());
            Some((value, base.filter(|b| *b > 0.0).map(|b| value / b)))
        })
        .collect()
}

/// The median, minimum and maximum of `values` (not empty).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (median(&values), values[0], values[values.len() - 1])
}

/// The median of sorted `values` (not empty).
fn median(values: &[f64]) -> f64 {
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The table of `runs`: each figure's median, its floor (or base), the ratio (computed in
/// each run, against that run's own floor), the spread of the runs (the ratio's, or the
/// value's when it has no base: minimum to maximum), the target and whether the median
/// meets it. Also the number of targets met and missed.
pub fn table(runs: &[Figures]) -> (String, usize, usize) {
    let mut out = format!(
        "{:<58} {:>12} {:>10} {:>7} {:>17}  {:<12} {}\n",
        "figure", "median", "floor/base", "ratio", "min - max", "target", "met"
    );
    let (mut met, mut missed) = (0, 0);
    let Some(last) = runs.last() else {
        return (out, 0, 0);
    };
    for r in rows(last) {
        let seen = per_run(&r, runs);
        if seen.is_empty() {
            continue;
        }
        let (value, low, high) = spread(seen.iter().map(|(v, _)| *v).collect());
        let ratios: Vec<f64> = seen.iter().filter_map(|(_, ratio)| *ratio).collect();
        let ratio = (!ratios.is_empty()).then(|| spread(ratios));
        let base = r.base.as_ref().and_then(|b| {
            let bases: Vec<f64> = runs.iter().filter_map(|f| f.get(b).copied()).collect();
            (!bases.is_empty()).then(|| spread(bases).0)
        });
        let (target, verdict) = match r.target {
            Some(t) => {
                let ok = t.met(value, ratio.map(|(m, _, _)| m));
                if ok {
                    met += 1;
                } else {
                    missed += 1;
                }
                (t.describe(r.unit), if ok { "yes" } else { "NO" })
            }
            None => (String::new(), ""),
        };
        let range = match ratio {
            Some((_, lo, hi)) => format!("{lo:.2}x - {hi:.2}x"),
            None => format!("{} - {}", number(low), number(high)),
        };
        out.push_str(&format!(
            "{:<58} {:>12} {:>10} {:>7} {:>17}  {:<12} {}\n",
            r.label,
            format!("{} {}", number(value), r.unit),
            base.map(number).unwrap_or_default(),
            ratio
                .map(|(m, _, _)| format!("{m:.2}x"))
                .unwrap_or_default(),
            if runs.len() > 1 { range } else { String::new() },
            target,
            verdict
        ));
    }
    (out, met, missed)
}

fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Two reports' medians side by side: `after / before` for every figure both have.
pub fn compare(before: &Report, after: &Report) -> String {
    let mut out = format!(
        "{:<44} {:>14} {:>14} {:>9}\n",
        "figure", "before", "after", "after/bef"
    );
    for (key, b) in &before.median {
        if let Some(a) = after.median.get(key) {
            let ratio = if *b > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{key:<44} {:>14} {:>14} {ratio:>9}\n",
                number(*b),
                number(*a)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(pairs: &[(&str, f64)]) -> Figures {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn medians_per_figure() {
        let r = Report::new(
            "x".into(),
            vec![
                figures(&[("a", 3.0), ("b", 1.0)]),
                figures(&[("a", 1.0), ("b", 2.0)]),
                figures(&[("a", 2.0)]),
            ],
        );
        assert_eq!(r.median["a"], 2.0);
        assert_eq!(r.median["b"], 1.5);
    }

    /// The line of `table` that contains `needle`.
    fn line_of(table: &str, needle: &str) -> String {
        table
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line {needle} in\n{table}"))
            .to_owned()
    }

    #[test]
    fn ratios_against_the_floor_and_targets() {
        let f = figures(&[
            ("floor.seq.p50_us", 100.0),
            ("floor.per_s", 10_000.0),
            ("cmd.cti.query.capabilities.seq.p50_us", 120.0),
            ("cmd.cti.query.capabilities.per_s", 6_000.0),
            ("cmd.cti.query.agentinfo.seq.p50_us", 300.0),
            ("storm.1000.logins_per_s", 600.0),
            ("storm.1000.seconds", 1.6),
            ("storm.10000.logins_per_s", 540.0),
            ("storm.10000.seconds", 18.5),
            ("storm.10000.worst_p99_ms", 51.0),
            ("storm.1000.floor_requests_per_login", 10_000.0 / 600.0),
            ("storm.10000.floor_requests_per_login", 10_000.0 / 540.0),
        ]);
        let (table, met, missed) = table(&[f]);
        let line = |needle: &str| line_of(&table, needle);
        assert!(
            line("capabilities (no CTI call) p50").contains("1.20x"),
            "{table}"
        );
        assert!(
            line("capabilities (no CTI call) p50").ends_with("yes"),
            "{table}"
        );
        // 6000/10000 = 0.6 < 0.8
        assert!(
            line("capabilities, 64 in flight").ends_with("NO"),
            "{table}"
        );
        // 300/100 = 3 > 2.2
        assert!(
            line("agentinfo (one CTI call) p50").ends_with("NO"),
            "{table}"
        );
        // 540/600 = 0.9 >= 0.85
        assert!(
            line("storm 10000: logins per second").contains("0.90x"),
            "{table}"
        );
        assert!(
            line("storm 10000: logins per second").ends_with("yes"),
            "{table}"
        );
        assert!(line("storm 10000: worst").ends_with("NO"), "{table}");
        // 10000/600 = 16.7 requests per login <= 80
        assert!(
            line("storm 1000: floor requests").ends_with("yes"),
            "{table}"
        );
        assert_eq!((met, missed), (4, 3), "{table}");
    }

    #[test]
    fn the_gateway_beside_nats_directly() {
        let f = figures(&[
            ("floor.seq.p50_us", 190.0),
            ("cmd.cti.query.capabilities.seq.p50_us", 200.0),
            ("gw.cmd.cti.query.capabilities.seq.p50_us", 350.0),
            ("gw.cmd.cti.query.capabilities.extra_floors", 0.8),
            ("gw.cmd.cti.query.agentinfo.extra_floors", 1.2),
            ("gw.storm.1000.nats.logins_per_s", 400.0),
            ("gw.storm.1000.logins_per_s", 380.0),
            ("gw.storm.1000.gateway_kib_per_1000", 180.0),
            ("gw.storm.5000.nats.logins_per_s", 400.0),
            ("gw.storm.5000.logins_per_s", 340.0),
            ("gw.storm.5000.gateway_kib_before", 9000.0),
            ("gw.storm.5000.gateway_kib", 9020.0),
            ("gw.storm.5000.gateway_kib_per_1000", 4.0),
        ]);
        let (table, met, missed) = table(&[f]);
        let line = |needle: &str| line_of(&table, needle);
        assert!(
            line("gateway: cti.query.capabilities p50 ").contains("1.75x"),
            "{table}"
        );
        assert!(
            line("capabilities p50 - NATS p50").ends_with("yes"),
            "{table}"
        );
        assert!(line("agentinfo p50 - NATS p50").ends_with("NO"), "{table}");
        // 380/400 = 0.95, 340/400 = 0.85
        assert!(line("storm 1000: logins per second through").ends_with("yes"));
        assert!(line("storm 5000: logins per second through").contains("0.85x"));
        assert!(line("storm 5000: logins per second through").ends_with("NO"));
        assert!(
            line("storm 1000: gateway memory per").ends_with("NO"),
            "{table}"
        );
        assert!(
            line("storm 5000: gateway memory per").ends_with("yes"),
            "{table}"
        );
        assert!(line("storm 5000: gateway resident memory after").contains("1.00x"));
        // and the capabilities over NATS directly: 200/190 <= 1.2
        assert_eq!((met, missed), (4, 3), "{table}");
    }

    #[test]
    fn ratios_per_run_with_their_spread() {
        // The floor moves between runs; the ratio is taken in each run, against its own.
        let runs = [
            figures(&[
                ("floor.seq.p50_us", 100.0),
                ("cmd.cti.query.capabilities.seq.p50_us", 110.0),
            ]),
            figures(&[
                ("floor.seq.p50_us", 200.0),
                ("cmd.cti.query.capabilities.seq.p50_us", 260.0),
            ]),
            figures(&[
                ("floor.seq.p50_us", 150.0),
                ("cmd.cti.query.capabilities.seq.p50_us", 180.0),
            ]),
        ];
        let (table, met, missed) = table(&runs);
        let line = line_of(&table, "capabilities (no CTI call) p50");
        // ratios 1.10, 1.30, 1.20: median 1.20 (met), spread 1.10 to 1.30
        assert!(line.contains("1.20x"), "{table}");
        assert!(line.contains("1.10x - 1.30x"), "{table}");
        assert!(line.ends_with("yes"), "{table}");
        // a figure without a base shows the spread of its values
        let line = line_of(&table, "echo floor, sequential p50");
        assert!(line.contains("100 - 200"), "{table}");
        assert_eq!((met, missed), (1, 0), "{table}");
    }
}
