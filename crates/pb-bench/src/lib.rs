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
//! 4. on a fresh system, the interactions the bridge's automatic desk
//!    ([`pb_bridge::desk`]) handles per second while the simulator offers calls, chats and
//!    emails faster than that, and the latency of answering a call under that load.
//!
//! Every figure is set beside the floor of the same run ([`report::table`]); `--runs N`
//! repeats the whole run on a fresh system and reports medians; the figures go to a JSON
//! file that `pb-bench compare` sets beside another.
//!
//! * [`measure`]: sequential latency and in-flight throughput, for the floor and commands;
//! * [`report`]: figures, the table with ratios and targets, medians, comparison.

pub mod measure;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use pb_bridge::flow::{Driver, LoggedIn};
use pb_bridge::storm::storm;
use pb_cti_sim::admin::{self, AdminOp};
use pb_protocol::channel::AgentState;
use pb_protocol::{Kind, Subjects, Target};
use pb_testkit::{Process, Stack};
use serde_json::json;

use crate::measure::{Latency, sequential, throughput};
use crate::report::{Figures, Report, put_latency};

/// The subject the floor's echo process answers on.
pub const ECHO_SUBJECT: &str = "bench.echo";

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
        || cli.desk_agents == 0
        || cli.desk_seconds == 0
    {
        bail!(
            "--runs, --samples, --in-flight, --desk-agents, --desk-seconds and every --agents size must be at least 1"
        );
    }
    let mut runs = Vec::new();
    for run in 1..=cli.runs {
        let label = format!("run {run}/{}", cli.runs);
        runs.push(one_run(&cli, &label).await.with_context(|| label.clone())?);
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = Report::new(command, runs);
    let (table, met, missed) = report::table(&report.median);
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
    let sim_agents = (bench_agents + cli.agents.iter().sum::<usize>()).to_string();
    step(
        label,
        "starting nats-server, the simulated CTI and the services",
    );
    let stack = Stack::start(
        cli.replicas,
        &[("SIM_AGENTS", sim_agents.as_str()), ("PB_LOG", "info")],
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
    let per_s = throughput(cli.samples * 10, cli.in_flight, echo_once).await?;
    figures.insert("floor.per_s".into(), per_s);
    drop(echo);

    // The system, warmed up, with agents to work on.
    let driver = Driver::new(
        client.clone(),
        Subjects::default(),
        Target::control("PB1")?,
        Duration::from_secs(10),
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
    for (name, cost) in report::COMMANDS {
        step(
            label,
            &format!("{name} ({cost}): one at a time, then in flight"),
        );
        let once = |i: usize| {
            let probe = &probe;
            async move { probe.command(name, i).await }
        };
        sequential(cli.samples / 10 + 1, once).await?;
        put_latency(
            &mut figures,
            &format!("cmd.{name}.seq"),
            sequential(cli.samples, once).await?,
        );
        let per_s = throughput(cli.samples * 10, cli.in_flight, once).await?;
        figures.insert(format!("cmd.{name}.per_s"), per_s);
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
    let mut first = 1001 + bench_agents as u64;
    for &n in &cli.agents {
        step(
            label,
            &format!("login storm: {n} agents, {} in flight", cli.in_flight),
        );
        let before = resident();
        let (report, _) = storm(&driver, first, n, cli.in_flight, true).await;
        first += n as u64;
        let after = resident();
        if let Some(e) = &report.first_failure {
            bail!("{} of {n} logins failed; the first: {e}", report.failures);
        }
        let (ms, worst_name) = worst_p99_ms(&report.latencies);
        eprintln!(
            "    {n} logged in in {:.2} s = {:.0}/s; worst p99 {ms:.1} ms ({worst_name}); +{} KiB resident",
            report.elapsed.as_secs_f64(),
            report.logins_per_second(),
            after.saturating_sub(before)
        );
        figures.insert(format!("storm.{n}.seconds"), report.elapsed.as_secs_f64());
        figures.insert(
            format!("storm.{n}.logins_per_s"),
            report.logins_per_second(),
        );
        figures.insert(format!("storm.{n}.worst_p99_ms"), ms);
        figures.insert(
            format!("storm.{n}.kib_per_agent"),
            after.saturating_sub(before) as f64 / n as f64,
        );
    }
    let total: usize = cli.agents.iter().sum();
    figures.insert(
        "memory.kib_per_agent".into(),
        resident().saturating_sub(start_kib) as f64 / total as f64,
    );
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
        Duration::from_secs(10),
    );
    interactions(&client, &driver, cli, &mut figures).await?;
    Ok(figures)
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

/// One command of a measured kind, sent as lean as the floor's echo: a query's payload is
/// built once (a query is answered afresh whatever its requestId), a request's per call
/// (its requestId must be new); the response is decoded and must be SUCCESS. `i` spreads
/// `channel.request.ready` over the agents to work on, alternating with `notready` so
/// every request changes the agent's state.
#[derive(Debug, Clone)]
struct Probe {
    client: async_nats::Client,
    subjects: Subjects,
    /// Where the queries go: the control destination's subject.
    control: String,
    agents: Vec<LoggedIn>,
    capabilities: bytes::Bytes,
    agent_info: bytes::Bytes,
}

impl Probe {
    fn new(client: async_nats::Client, agents: Vec<LoggedIn>) -> anyhow::Result<Self> {
        let query = |name: &str, body: serde_json::Value| -> bytes::Bytes {
            pb_protocol::envelope::raw_command(name, "PB1.CONTROL", "bench-query", body).into()
        };
        let subjects = Subjects::default();
        Ok(Self {
            client,
            control: subjects.command(Kind::Control, &Target::control("PB1")?),
            subjects,
            agents,
            capabilities: query("cti.query.capabilities", json!({})),
            agent_info: query(
                "cti.query.agentinfo",
                json!({
                    "agentId": "1002",
                    "requestingAgentLogin": "1001",
                    "requestingAgentPassword": "pw-1001",
                }),
            ),
        })
    }

    async fn command(&self, name: &str, i: usize) -> anyhow::Result<()> {
        let (subject, payload) = match name {
            "cti.query.capabilities" => (self.control.clone(), self.capabilities.clone()),
            "cti.query.agentinfo" => (self.control.clone(), self.agent_info.clone()),
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
                    payload.into(),
                )
            }
            other => bail!("no way to measure {other}"),
        };
        let reply = self.client.request(subject, payload).await?;
        let response = pb_protocol::Response::decode(&reply.payload)?;
        match response.outcome {
            pb_protocol::Outcome::Success(_) => Ok(()),
            pb_protocol::Outcome::Failure(why) => bail!("{name} failed: {why}"),
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
        let ask = client.request(
            admin::subject(&subjects, admin::ForceState::OP),
            serde_json::to_vec(&change)?.into(),
        );
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
        let asked = asked.context("the simulated CTI did not take the change")?;
        if let pb_cti::CtiReply::Error(e) =
            serde_json::from_slice::<pb_cti::CtiReply<pb_cti::Done>>(&asked.payload)?
        {
            bail!("the simulated CTI refused the change: {}", e.message);
        }
        times.push(arrived?);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Latency::of(times))
}
