//! The benchmark harness (issue 5). One run, on one machine:
//!
//! 1. a real nats-server with JetStream, the simulated CTI and every service as separate
//!    processes ([`pb_testkit::Stack`], the binaries built with the harness's own profile);
//! 2. the floor: a trivial request-reply echo ([`ECHO_SUBJECT`], answered by the separate
//!    `pb-bench-echo` process) of a message the size of a command, one at a time and with
//!    64 in flight;
//! 3. the same two measurements for a command that needs no CTI call, one that needs one,
//!    and `channel.request.ready`; login storms through the whole chain; the services'
//!    resident memory per logged-in agent; event latency from a change at the simulated
//!    CTI to the event at the bridge;
//! 4. the gateway (contract §8): the same commands through a
//!    `pb-gateway` process and the harness's TCP listener ([`TcpLink`]), right after they
//!    were measured over NATS directly; then, after the storms above, pairs of login storms
//!    of the same size, one over NATS directly and one through the gateway, with the
//!    gateway's resident memory before and after;
//! 5. on a fresh system, the interactions the bridge's automatic desk
//!    ([`pb_bridge::desk`]) handles per second while the simulator offers calls, chats and
//!    emails faster than that, and the latency of answering a call under that load.
//!
//! Every figure is set beside the floor of the same run ([`report::table`]); `--runs N`
//! repeats the whole run on a fresh system and reports medians; the figures go to a JSON
//! file that `pb-bench compare` sets beside another.
//!
//! * [`measure`]: sequential latency and in-flight throughput, for the floor and commands;
//! * [`profile`]: what a login costs in messages, JetStream writes and CPU time per process;
//! * [`report`]: figures, the table with ratios and targets, medians, comparison.

mod measure;
mod profile;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use pb_bridge::flow::{Driver, LoggedIn};
use pb_bridge::link::{Link, TcpLink, TcpOptions};
use pb_bridge::storm::{StormReport, storm};
use pb_protocol::channel::AgentState;
use pb_protocol::{Kind, Subjects, Target};
use pb_sim_admin as admin;
use pb_testkit::{Process, Stack};
use serde_json::json;

use crate::measure::{Latency, sequential, throughput};
use crate::profile::counted;
use crate::report::{Figures, Report, put_latency};

/// The subject the floor's echo process answers on.
pub const ECHO_SUBJECT: &str = "bench.echo";

/// How long the harness waits for any one response (and for the gateway to connect).
const TIMEOUT: Duration = Duration::from_secs(10);

/// `pb-bench`: measure the system against the raw NATS floor, in one run.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Compare>,
    /// Whole runs, each on a fresh system; the table shows each figure's median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Login storm sizes, in order (the first and last are compared).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub agents: Vec<usize>,
    /// Requests timed one at a time, per command (ten times as many for throughput).
    #[arg(long, default_value_t = 5000)]
    pub samples: usize,
    /// Requests (or logins) in flight for throughput and storms.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Sizes of the gateway's paired login storms, in order: for each, a storm over NATS
    /// directly, then one of the same size through pb-gateway's socket (each logged out
    /// before the next).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub gateway_agents: Vec<usize>,
    /// Replicas of each service (the local start runs two).
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Automatic agents (`pb-bridge desk`, talking 0 ms) handling the simulator's calls,
    /// chats and emails, offered faster than they can be handled.
    #[arg(long, default_value_t = 32)]
    pub desk_agents: usize,
    /// How long the automatic agents work, in seconds.
    #[arg(long, default_value_t = 10)]
    pub desk_seconds: u64,
    /// Where the figures are written as JSON.
    #[arg(long, default_value = "target/bench/latest.json")]
    pub json: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Compare {
    /// Set two JSON reports' medians side by side (after / before).
    Compare { before: PathBuf, after: PathBuf },
}

/// Run the harness as the command line says.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Compare::Compare { before, after }) = &cli.command {
        print!("{}", report::compare(&read(before)?, &read(after)?));
        return Ok(ExitCode::SUCCESS);
    }
    if cli.runs == 0
        || cli.samples == 0
        || cli.in_flight == 0
        || cli.agents.contains(&0)
        || cli.gateway_agents.contains(&0)
        || cli.desk_agents == 0
        || cli.desk_seconds == 0
    {
        bail!(
            "--runs, --samples, --in-flight, --desk-agents, --desk-seconds and every --agents and --gateway-agents size must be at least 1"
        );
    }
    let mut runs = Vec::new();
    for run in 1..=cli.runs {
        let label = format!("run {run}/{}", cli.runs);
        runs.push(one_run(&cli, &label).await.with_context(|| label.clone())?);
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = Report::new(command, runs);
    let (table, met, missed) = report::table(&report.runs);
    println!(
        "\nmedian of {} run(s), {} CPUs; ratios against the echo floor measured in the same run\n",
        cli.runs, report.cpus
    );
    print!("{table}");
    println!("\ntargets met: {met}, missed: {missed}");
    if let Some(dir) = cli.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&cli.json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", cli.json.display()))?;
    println!("figures written to {}", cli.json.display());
    Ok(ExitCode::SUCCESS)
}

fn read(path: &PathBuf) -> anyhow::Result<Report> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a pb-bench report", path.display()))
}

fn step(label: &str, what: &str) {
    eprintln!("[{label}] {what}");
}

/// One whole run on a fresh system.
async fn one_run(cli: &Cli, label: &str) -> anyhow::Result<Figures> {
    let bench_agents = cli.in_flight;
    // Every storm logs agents of its own in: the agents to work on, the storms, the
    // gateway's warm-up (as many) and its pairs.
    let sim_agents = (2 * bench_agents
        + cli.agents.iter().sum::<usize>()
        + 2 * cli.gateway_agents.iter().sum::<usize>())
    .to_string();
    step(
        label,
        "starting nats-server, the simulated CTI and the services",
    );
    let mut stack = Stack::start(
        cli.replicas,
        &[
            ("SIM_AGENTS", sim_agents.as_str()),
            ("PB_LOG", "info"),
            // The re-sync phase measures how long re-reading takes: never cut it short.
            ("PB_RESYNC_WAIT_MS", "120000"),
        ],
    )
    .await;
    let client = stack.nats.client().await;
    let mut figures = Figures::new();

    // The floor.
    let echo = Process::spawn("pb-bench-echo", &[("NATS_URL", stack.nats.url())])
        .ready()
        .await;
    let payload: bytes::Bytes = pb_protocol::envelope::raw_command(
        "channel.request.ready",
        "s-1001.g1.c1",
        &uuid::Uuid::new_v4().to_string(),
        json!({}),
    )
    .into();
    let echo_once = |_| {
        let (client, payload) = (client.clone(), payload.clone());
        async move {
            client.request(ECHO_SUBJECT, payload).await?;
            anyhow::Ok(())
        }
    };
    step(label, "floor: echo, one at a time, then in flight");
    sequential(cli.samples / 10 + 1, echo_once).await?; // warm-up
    put_latency(
        &mut figures,
        "floor.seq",
        sequential(cli.samples, echo_once).await?,
    );
    let n = cli.samples * 10;
    let echoing = throughput(n, cli.in_flight, echo_once);
    let also = [("pb-bench-echo", &echo)];
    let per_s = counted(&stack, &also, n, &mut figures, "floor.per_request", echoing).await??;
    figures.insert("floor.per_s".into(), per_s);
    drop(echo);

    // The system, warmed up, with agents to work on.
    let driver = Driver::new(
        client.clone(),
        Subjects::default(),
        Target::control("PB1")?,
        TIMEOUT,
    );
    driver
        .ok("cti.request.serverstatus", "PB1.CONTROL", json!({}))
        .await?;
    step(
        label,
        &format!("logging in {bench_agents} agents to work on"),
    );
    let (logged_report, agents) = storm(&driver, 1001, bench_agents, cli.in_flight, false).await;
    if let Some(e) = logged_report.first_failure {
        bail!("the agents to work on did not log in: {e}");
    }
    let probe = Probe::new(client.clone(), agents.clone())?;
    measure_commands(cli, &stack, label, &probe, "cmd", "", &mut figures).await?;

    // The same commands through the gateway's socket, on the system in the same state. The
    // gateway stops before the events and the storms: it would carry their events too.
    step(
        label,
        "gateway: pb-gateway connected to the harness's listener",
    );
    {
        let through = probe.via(start_gateway(&mut stack, GATEWAY_COMMANDS).await?);
        measure_commands(
            cli,
            &stack,
            label,
            &through,
            "gw.cmd",
            "through the gateway: ",
            &mut figures,
        )
        .await?;
        stop_gateway(&mut stack, GATEWAY_COMMANDS).await;
    }
    for (name, _) in report::COMMANDS {
        let p50 = |prefix: &str| figures[&format!("{prefix}.{name}.seq.p50_us")];
        let extra = (p50("gw.cmd") - p50("cmd")) / figures["floor.seq.p50_us"];
        figures.insert(format!("gw.cmd.{name}.extra_floors"), extra);
    }

    step(
        label,
        "event latency: changes made at the simulated CTI, one at a time",
    );
    let events = event_latency(&client, &agents[0], cli.samples.min(1000)).await?;
    figures.insert("event.p50_us".into(), events.p50_us);
    figures.insert("event.p99_us".into(), events.p99_us);

    // Login storms, and the memory they take.
    let resident = || -> u64 {
        stack
            .processes
            .iter()
            .filter(|(name, _)| pb_testkit::SERVICES.iter().any(|s| name.starts_with(s)))
            .filter_map(|(_, p)| p.resident_kib())
            .sum()
    };
    let start_kib = resident();
    let mut storms = Storms {
        cli,
        label,
        next: 1001 + bench_agents as u64,
    };
    for &n in &cli.agents {
        let storming = storms.run("login storm", &driver, n, resident, "");
        let costs = format!("storm.{n}.per_login");
        let storm = counted(&stack, &[], n, &mut figures, &costs, storming).await??;
        figures.insert(
            format!("storm.{n}.floor_requests_per_login"),
            figures["floor.per_s"] / storm.report.logins_per_second(),
        );
        storm.put(&mut figures, &format!("storm.{n}"));
        figures.insert(
            format!("storm.{n}.seconds"),
            storm.report.elapsed.as_secs_f64(),
        );
        figures.insert(
            format!("storm.{n}.kib_per_agent"),
            storm.kib_after.saturating_sub(storm.kib_before) as f64 / n as f64,
        );
    }
    let total: usize = cli.agents.iter().sum();
    figures.insert(
        "memory.kib_per_agent".into(),
        resident().saturating_sub(start_kib) as f64 / total as f64,
    );
    let logged_in = bench_agents + total;
    step(
        label,
        &format!("re-sync: the CTI link drops under {logged_in} logged-in agents and comes back"),
    );
    let took = resync_after_outage(&client).await?;
    eprintln!("    re-synchronised in {:.2} s", took.as_secs_f64());
    figures.insert("resync.agents".into(), logged_in as f64);
    figures.insert("resync.seconds".into(), took.as_secs_f64());
    gateway_storms(&mut stack, &driver, &mut storms, &mut figures).await?;
    drop(stack);

    // Interactions, on a fresh system whose only agents are the desk's: the simulator
    // routes its traffic to whichever agents are ready, and leaves a full queue behind.
    step(
        label,
        &format!(
            "interactions: a fresh system, {} automatic agents for {} s, offered more than they can handle",
            cli.desk_agents, cli.desk_seconds
        ),
    );
    let desk_agents = cli.desk_agents.to_string();
    let stack = Stack::start(
        cli.replicas,
        &[("SIM_AGENTS", desk_agents.as_str()), ("PB_LOG", "info")],
    )
    .await;
    let client = stack.nats.client().await;
    let driver = Driver::new(
        client.clone(),
        Subjects::default(),
        Target::control("PB1")?,
        TIMEOUT,
    );
    interactions(&client, &driver, cli, &mut figures).await?;
    Ok(figures)
}

/// How long every logged-in agent takes to be re-read from the CTI after an outage: the
/// simulated link drops (the switch working on) and comes back; from its return to
/// `cti.communicationrestored`, which the control raises once every replica has re-read
/// the CTI for all its agents.
async fn resync_after_outage(client: &async_nats::Client) -> anyhow::Result<Duration> {
    let subjects = Subjects::default();
    let mut events = client.subscribe(subjects.all_events()).await?;
    client.flush().await?;
    let link = async |link: admin::SetLink| {
        let timeout = Duration::from_secs(10);
        let switch_runs = admin::SetLink {
            switch_runs: true,
            ..link
        };
        pb_bridge::sim_admin(client, &subjects, timeout, &switch_runs).await
    };
    let wait_for = async |events: &mut async_nats::Subscriber, name: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let message = tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| anyhow::anyhow!("no {name} within 120 s"))?
                .ok_or_else(|| anyhow::anyhow!("the event subscription ended"))?;
            let event: serde_json::Value = serde_json::from_slice(&message.payload)?;
            if event["header"]["name"] == name {
                return anyhow::Ok(());
            }
        }
    };
    link(admin::SetLink::down("benchmark")).await?;
    wait_for(&mut events, "cti.communicationlost").await?;
    let started = Instant::now();
    link(admin::SetLink::up()).await?;
    wait_for(&mut events, "cti.communicationrestored").await?;
    Ok(started.elapsed())
}

/// Each of [`report::COMMANDS`] through `probe`: one at a time after a warm-up, then with
/// `--in-flight` outstanding; recorded as `<prefix>.<name>.seq.*` and `<prefix>.<name>.per_s`.
async fn measure_commands(
    cli: &Cli,
    stack: &Stack,
    label: &str,
    probe: &Probe,
    prefix: &str,
    via: &str,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    for (name, cost) in report::COMMANDS {
        step(
            label,
            &format!("{via}{name} ({cost}): one at a time, then in flight"),
        );
        let once = |i: usize| async move { probe.command(name, i).await };
        sequential(cli.samples / 10 + 1, once).await?;
        put_latency(
            figures,
            &format!("{prefix}.{name}.seq"),
            sequential(cli.samples, once).await?,
        );
        let n = cli.samples * 10;
        let costs = format!("{prefix}.{name}.per_request");
        let measuring = throughput(n, cli.in_flight, once);
        let per_s = counted(stack, &[], n, figures, &costs, measuring).await??;
        figures.insert(format!("{prefix}.{name}.per_s"), per_s);
    }
    Ok(())
}

/// The gateway that carries the commands measured through its socket.
const GATEWAY_COMMANDS: &str = "pb-gateway-commands";
/// The gateway that carries the paired storms.
const GATEWAY_STORMS: &str = "pb-gateway-storms";

/// Start pb-gateway `instance` connected to a new listener of the harness's, which
/// initialises the control on the connection as a Processor Bridge does; the listener.
async fn start_gateway(stack: &mut Stack, instance: &str) -> anyhow::Result<TcpLink> {
    let options = TcpOptions::new(Subjects::default(), Target::control("PB1")?);
    let link = TcpLink::listen("127.0.0.1:0", options)
        .await
        .context("cannot listen for the gateway")?;
    stack
        .gateway(instance, &link.local_addr().to_string(), &[])
        .await;
    link.connected(TIMEOUT).await?;
    Ok(link)
}

/// Stop gateway `instance` as an orchestrator does (TERM: it gives its lease up, so the
/// next gateway takes the link at once).
async fn stop_gateway(stack: &mut Stack, instance: &str) {
    stack.process(instance).signal("TERM");
    stack.process(instance).wait_exit(TIMEOUT).await;
    stack.processes.retain(|(name, _)| name != instance);
}

/// The gateway's paired login storms, on the system the storms before left: a new
/// pb-gateway, warmed up with `--in-flight` logins; then for each `--gateway-agents` size,
/// a storm over NATS directly and one of the same size through the gateway's socket, each
/// logged out before the next so that every storm finds the system alike; and the
/// gateway's resident memory before and after the storm it carries.
async fn gateway_storms(
    stack: &mut Stack,
    driver: &Driver,
    storms: &mut Storms<'_>,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    step(storms.label, "gateway: a new pb-gateway for the storms");
    let through = Driver::new(
        start_gateway(stack, GATEWAY_STORMS).await?,
        Subjects::default(),
        Target::control("PB1")?,
        TIMEOUT,
    );
    let (_, gateway) = stack
        .processes
        .iter()
        .find(|(name, _)| name == GATEWAY_STORMS)
        .context("the gateway is not among the processes")?;
    let resident = || gateway.resident_kib().unwrap_or_default();
    let whose = " (the gateway)";
    // Warmed up as every measurement is: in a measured storm, its memory grows only with
    // what the storm's agents take, not with its buffers' first growth.
    let what = "gateway warm-up: login storm through it";
    let in_flight = storms.cli.in_flight;
    let warm = storms
        .run(what, &through, in_flight, resident, whose)
        .await?;
    storms.log_out(&through, &warm.agents).await?;
    for &n in &storms.cli.gateway_agents {
        let what = "login storm over NATS directly, beside the gateway's";
        let direct = storms.run(what, driver, n, resident, whose).await?;
        storms.log_out(driver, &direct.agents).await?;
        let what = "login storm through the gateway";
        let gw = storms.run(what, &through, n, resident, whose).await?;
        storms.log_out(&through, &gw.agents).await?;
        direct.put(figures, &format!("gw.storm.{n}.nats"));
        gw.put(figures, &format!("gw.storm.{n}"));
        figures.insert(
            format!("gw.storm.{n}.gateway_kib_before"),
            gw.kib_before as f64,
        );
        figures.insert(format!("gw.storm.{n}.gateway_kib"), gw.kib_after as f64);
        figures.insert(
            format!("gw.storm.{n}.gateway_kib_per_1000"),
            (gw.kib_after as f64 - gw.kib_before as f64) * 1000.0 / n as f64,
        );
    }
    Ok(())
}

/// The login storms of a run: each logs new agents in, from `next` on.
struct Storms<'a> {
    cli: &'a Cli,
    label: &'a str,
    next: u64,
}

/// What one storm did.
struct Storm {
    report: StormReport,
    agents: Vec<LoggedIn>,
    worst_p99_ms: f64,
    /// What `resident` said before and after, in KiB.
    kib_before: u64,
    kib_after: u64,
}

impl Storms<'_> {
    /// A storm of `n` agents through `driver`, `--in-flight` at a time, with progress, its
    /// memory read with `resident` (of `whose`, for the progress line) before and after;
    /// fails if any login failed.
    async fn run(
        &mut self,
        what: &str,
        driver: &Driver,
        n: usize,
        resident: impl Fn() -> u64,
        whose: &str,
    ) -> anyhow::Result<Storm> {
        step(
            self.label,
            &format!("{what}: {n} agents, {} in flight", self.cli.in_flight),
        );
        let kib_before = resident();
        let (report, agents) = storm(driver, self.next, n, self.cli.in_flight, true).await;
        self.next += n as u64;
        let kib_after = resident();
        if let Some(e) = &report.first_failure {
            bail!("{} of {n} logins failed; the first: {e}", report.failures);
        }
        let (worst_p99_ms, worst_name) = worst_p99_ms(&report.latencies);
        eprintln!(
            "    {n} logged in in {:.2} s = {:.0}/s; worst p99 {worst_p99_ms:.1} ms ({worst_name}); +{} KiB resident{whose}",
            report.elapsed.as_secs_f64(),
            report.logins_per_second(),
            kib_after.saturating_sub(kib_before)
        );
        Ok(Storm {
            report,
            agents,
            worst_p99_ms,
            kib_before,
            kib_after,
        })
    }

    /// Log `agents` out through `driver`; fails if any logout failed.
    async fn log_out(&self, driver: &Driver, agents: &[LoggedIn]) -> anyhow::Result<()> {
        step(
            self.label,
            &format!("logging the {} agents out", agents.len()),
        );
        let failed = driver.logout_all(agents, self.cli.in_flight).await;
        if let Some((agent, e)) = failed.first() {
            bail!(
                "{} of {} logouts failed; the first, agent {agent}: {e}",
                failed.len(),
                agents.len()
            );
        }
        Ok(())
    }
}

impl Storm {
    /// Record its rate and worst per-command p99 under `prefix`.
    fn put(&self, figures: &mut Figures, prefix: &str) {
        figures.insert(
            format!("{prefix}.logins_per_s"),
            self.report.logins_per_second(),
        );
        figures.insert(format!("{prefix}.worst_p99_ms"), self.worst_p99_ms);
    }
}

/// The interactions the bridge's automatic desk handles per second while the simulator
/// offers calls, chats and emails faster than that (the queue stays full), and the latency
/// of its commands; fails if any interaction fails.
async fn interactions(
    client: &async_nats::Client,
    driver: &Driver,
    cli: &Cli,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    driver
        .ok("cti.request.serverstatus", "PB1.CONTROL", json!({}))
        .await?;
    let traffic = |rate: f64| admin::Traffic {
        calls: rate,
        chats: rate / 2.0,
        emails: rate / 2.0,
    };
    let (subjects, timeout) = (driver.subjects(), driver.timeout());
    pb_bridge::sim_admin(client, subjects, timeout, &traffic(400.0)).await?;
    let config = pb_bridge::desk::DeskConfig {
        first: 1001,
        agents: cli.desk_agents,
        talk: Duration::ZERO,
        disposition: "bench".into(),
        run_for: Some(Duration::from_secs(cli.desk_seconds)),
        progress: false,
    };
    let (_never, shutdown) = pb_runtime::shutdown::Shutdown::new();
    let recording = driver.clone().recording();
    let desk = pb_bridge::desk::run(&recording, &config, shutdown).await;
    pb_bridge::sim_admin(client, subjects, timeout, &traffic(0.0)).await?;
    let desk = desk?;
    if !desk.clean() {
        bail!(
            "the automatic desk did not handle everything cleanly: {}",
            desk.table()
        );
    }
    let per_s = desk.handled.len() as f64 / desk.elapsed.as_secs_f64();
    eprintln!(
        "    {} interactions handled in {:.1} s = {per_s:.0}/s",
        desk.handled.len(),
        desk.elapsed.as_secs_f64()
    );
    figures.insert("desk.handled_per_s".into(), per_s);
    if let Some(times) = desk.latencies.get("conversation.request.answer") {
        put_latency(figures, "desk.answer", Latency::of(times.clone()));
    }
    figures.insert("desk.worst_p99_ms".into(), worst_p99_ms(&desk.latencies).0);
    Ok(())
}

/// The highest p99 among the commands timed, in milliseconds, and its command.
fn worst_p99_ms(latencies: &pb_bridge::flow::Latencies) -> (f64, &'static str) {
    latencies
        .iter()
        .map(|(name, times)| (Latency::of(times.clone()).p99_us / 1000.0, *name))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or_default()
}

/// One command of a measured kind, sent as lean as the floor's echo, over NATS directly or
/// through the gateway's socket: a query's payload is built once (a query is answered
/// afresh whatever its requestId; [`Probe::query`]), a request's per call (its requestId
/// must be new); the response is decoded and must be SUCCESS. `i` spreads
/// `channel.request.ready` over the agents to work on, alternating with `notready` so
/// every request changes the agent's state.
#[derive(Debug, Clone)]
struct Probe {
    link: Link,
    subjects: Subjects,
    /// Where the queries go: the control destination's subject.
    control: String,
    agents: Vec<LoggedIn>,
    capabilities: Query,
    agent_info: Query,
}

/// A query, and its payload as sent over NATS.
#[derive(Debug, Clone)]
struct Query {
    name: &'static str,
    body: serde_json::Value,
    payload: bytes::Bytes,
}

impl Query {
    fn new(name: &'static str, body: serde_json::Value) -> Self {
        let payload =
            pb_protocol::envelope::raw_command(name, "PB1.CONTROL", "bench-query", body.clone());
        Self {
            name,
            body,
            payload: payload.into(),
        }
    }
}

impl Probe {
    fn new(link: impl Into<Link>, agents: Vec<LoggedIn>) -> anyhow::Result<Self> {
        let subjects = Subjects::default();
        Ok(Self {
            link: link.into(),
            control: subjects.command(Kind::Control, &Target::control("PB1")?),
            subjects,
            agents,
            capabilities: Query::new("cti.query.capabilities", json!({})),
            agent_info: Query::new(
                "cti.query.agentinfo",
                json!({
                    "agentId": "1002",
                    "requestingAgentLogin": "1001",
                    "requestingAgentPassword": "pw-1001",
                }),
            ),
        })
    }

    /// The same commands, sent over `link`.
    fn via(&self, link: impl Into<Link>) -> Self {
        Self {
            link: link.into(),
            ..self.clone()
        }
    }

    async fn command(&self, name: &str, i: usize) -> anyhow::Result<()> {
        let (subject, request_id, payload) = match name {
            "cti.query.capabilities" => self.query(&self.capabilities, i),
            "cti.query.agentinfo" => self.query(&self.agent_info, i),
            "channel.request.ready" => {
                let channel = &self.agents[i % self.agents.len()].channels[0].target;
                let (name, body) = if (i / self.agents.len()) % 2 == 0 {
                    ("channel.request.notready", json!({"reasonCode": "bench"}))
                } else {
                    ("channel.request.ready", json!({}))
                };
                let id = uuid::Uuid::new_v4().to_string();
                let payload = pb_protocol::envelope::raw_command(name, channel, &id, body);
                let target = Target::new(channel)?;
                (
                    self.subjects.command(Kind::Channel, &target),
                    id,
                    payload.into(),
                )
            }
            other => bail!("no way to measure {other}"),
        };
        let reply = match &self.link {
            Link::Nats(client) => client.request(subject, payload).await?.payload,
            Link::Tcp(link) => link.request(&request_id, payload, TIMEOUT).await?,
        };
        let response = pb_protocol::Response::decode(&reply)?;
        match response.outcome {
            pb_protocol::Outcome::Success(_) => Ok(()),
            pb_protocol::Outcome::Failure(why) => bail!("{name} failed: {why}"),
        }
    }

    /// Query number `i`: its subject, requestId and payload. Over NATS the payload built
    /// once; over the socket, whose listener matches each response to its command by
    /// requestId, the payload is built with a requestId of its own.
    fn query(&self, query: &Query, i: usize) -> (String, String, bytes::Bytes) {
        match self.link {
            Link::Nats(_) => (self.control.clone(), String::new(), query.payload.clone()),
            Link::Tcp(_) => {
                let id = format!("bench-query-{i}");
                let payload = pb_protocol::envelope::raw_command(
                    query.name,
                    "PB1.CONTROL",
                    &id,
                    query.body.clone(),
                );
                (self.control.clone(), id, payload.into())
            }
        }
    }
}

/// From a state change requested at the simulated CTI to the channel's event at the
/// bridge, `n` times, one at a time with a pause between (an idle system).
async fn event_latency(
    client: &async_nats::Client,
    agent: &LoggedIn,
    n: usize,
) -> anyhow::Result<Latency> {
    let channel = &agent.channels[0];
    let subjects = Subjects::default();
    let mut events = client
        .subscribe(subjects.event(Kind::Channel, &Target::new(&channel.target)?))
        .await?;
    client.flush().await?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let (state, expected) = if i % 2 == 0 {
            (AgentState::NotReady, "channel.notready")
        } else {
            (AgentState::Ready, "channel.ready")
        };
        let change = admin::ForceState {
            agent_id: agent.agent_id.clone(),
            endpoint: channel.endpoint.clone(),
            state,
            reason_code: None,
        };
        let started = Instant::now();
        // The simulator answers the request and publishes the change at the same time:
        // the clock stops when the event arrives, whichever comes first.
        let ask = pb_bridge::sim_admin(client, &subjects, Duration::from_secs(5), &change);
        let arrived = async {
            loop {
                let event = tokio::time::timeout(Duration::from_secs(5), events.next())
                    .await
                    .with_context(|| format!("no {expected} event within 5 s of the change"))?
                    .context("the event subscription ended")?;
                let event: serde_json::Value = serde_json::from_slice(&event.payload)?;
                if event["header"]["name"] == expected {
                    return anyhow::Ok(started.elapsed());
                }
            }
        };
        let (asked, arrived) = tokio::join!(ask, arrived);
        asked.context("the simulated CTI did not take the change")?;
        times.push(arrived?);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Latency::of(times))
}
