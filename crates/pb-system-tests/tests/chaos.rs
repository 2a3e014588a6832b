//! The chaos runs (issue 12): the automatic desk handles generated calls, chats and emails
//! for `PB_CHAOS_AGENTS` agents (default 300, logged in as a storm; `scripts/soak` sets
//! thousands) with two replicas of
//! each service, while a script runs every fault once during the login storm and once per
//! round (`PB_CHAOS_ROUNDS`, default 1) while the desk works: a channel-group replica cut
//! off and let back, the CTI link dropped while the switch keeps working, a session and a
//! channel-group replica killed, CTI events lost with the link up, and, on a 3-node NATS
//! cluster, the JetStream meta leader's node killed and restarted. Meanwhile agents the
//! desk does not work are changed at the CTI.
//!
//! The test command runs it on one server (every fault but the node loss, which
//! `cluster.rs` shows under a storm of its own); `scripts/soak` runs the 3-node version.
//!
//! Checked on the bridge's side throughout ([`pb_testkit::ledger`]): each command answered
//! once (retried with the same requestId where it was not), no event repeated, none before
//! its destination's first response; the desk handles every interaction to the end; and
//! once the system has settled, each watched channel's init matches the CTI's own view.
//! (A restart of the adapter, which forgets every login, has its own test in resync.rs.)

use std::time::Duration;

use pb_bridge::desk::{self, DeskConfig};
use pb_bridge::flow::{Driver, LoggedIn};
use pb_protocol::channel::AgentState;
use pb_runtime::Shutdown;
use pb_sim_admin::{ForceState, GetStatus, LoseEvents, SetLink, Traffic};
use pb_system_tests::World;
use pb_testkit::ledger::violations;
use pb_testkit::{Bridge, Proxy, Stack};
use serde_json::{Value, json};

/// Agents the desk does not work: changed at the CTI during the faults, then compared.
const WATCHED: u64 = 20;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A change at the CTI, made by a supervisor: agent `agent` not ready on its phone.
async fn change_at_cti(bridge: &Bridge, agent: &LoggedIn, reason: &str) {
    bridge
        .admin(&ForceState {
            agent_id: agent.agent_id.to_owned(),
            endpoint: agent.channels[0].endpoint.to_owned(),
            state: AgentState::NotReady,
            reason_code: Some(reason.to_owned()),
        })
        .await
        .expect("the simulator acts");
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Every fault once; `watched` changed at the CTI along the way.
async fn faults(
    stack: &mut Stack,
    proxy: &Proxy,
    bridge: &Bridge,
    watched: &[LoggedIn],
    round: u64,
) {
    let reason = |what: &str| format!("{what}-{round}");
    let group = |i: usize| &watched[i * 4..(i + 1) * 4];
    pause(500).await;
    // A channel-group replica cut off for 3 s.
    proxy.cut();
    pause(3000).await;
    proxy.heal();
    pause(1000).await;
    // The link drops; the switch works on.
    bridge
        .admin(&SetLink {
            switch_runs: true,
            ..SetLink::down("chaos")
        })
        .await
        .expect("the simulator acts");
    for agent in group(0) {
        change_at_cti(bridge, agent, &reason("outage")).await;
    }
    pause(1500).await;
    bridge
        .admin(&SetLink::up())
        .await
        .expect("the simulator acts");
    pause(1000).await;
    // A session replica and a channel-group replica killed, changes made at once; each is
    // replaced.
    for (service, i) in [("pb-session", 1), ("pb-channel-group", 2)] {
        let victim = stack
            .processes
            .iter()
            .rev()
            .find(|(name, _)| name.starts_with(&format!("{service}-")) && !name.ends_with("cut"))
            .map(|(name, _)| name.clone())
            .expect("a replica to kill");
        stack.process(&victim).signal("KILL");
        for agent in group(i) {
            change_at_cti(bridge, agent, &reason("dead-owner")).await;
        }
        stack
            .spawn(service, &format!("{service}-r{round}-{i}"))
            .await;
        pause(1500).await;
    }
    // Events lost with the link up: the periodic re-sync finds the change.
    bridge
        .admin(&LoseEvents { lose: true })
        .await
        .expect("the simulator acts");
    for agent in group(3) {
        change_at_cti(bridge, agent, &reason("lost")).await;
    }
    bridge
        .admin(&LoseEvents { lose: false })
        .await
        .expect("the simulator acts");
    pause(1000).await;
    // The JetStream meta leader's node dies and comes back (on a cluster).
    if !stack.peers.is_empty() {
        let leader = stack.meta_leader().await;
        stack.kill_node(&leader);
        for agent in group(4) {
            change_at_cti(bridge, agent, &reason("node-lost")).await;
        }
        pause(3000).await;
        stack.restart_node(&leader);
        pause(1000).await;
    }
}

/// The simulator's status once `until` holds of it; what was waited for if it did not
/// within two minutes.
async fn wait_for(
    bridge: &Bridge,
    what: &str,
    until: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    for _ in 0..1200 {
        let status = json!(
            bridge
                .admin(&GetStatus {})
                .await
                .expect("the simulator answers")
        );
        if until(&status) {
            return Ok(status);
        }
        pause(100).await;
    }
    Err(format!("waited two minutes for {what}"))
}

/// Each watched channel's init against the CTI's own view of it.
async fn compare_with_cti(d: &Driver, bridge: &Bridge, watched: &[LoggedIn]) -> Vec<String> {
    let mut differ = Vec::new();
    for agent in watched {
        let cti = bridge
            .cti("snapshot", json!({"agent_id": agent.agent_id}))
            .await;
        for channel in &agent.channels {
            let init = d
                .ok("channel.query.init", &channel.target, json!({}))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", channel.target));
            let at_cti = cti["ok"]["channels"]
                .as_array()
                .and_then(|c| {
                    c.iter()
                        .find(|c| c["endpoint"] == channel.endpoint.as_str())
                })
                .cloned()
                .unwrap_or(Value::Null);
            let told = (init.get("agent-state"), init.get("reason-code"));
            let known = (at_cti.get("agent_state"), at_cti.get("reason_code"));
            if told != known {
                differ.push(format!("{}: told {told:?}, CTI {known:?}", channel.target));
            }
        }
    }
    differ
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_every_fault_the_bridge_sees_each_answer_once_and_the_truth_at_the_end() {
    chaos(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/soak (on a 3-node cluster: minutes, and see ARCHITECTURE.md, Testing)"]
async fn on_a_cluster_losing_a_node_too_the_bridge_sees_each_answer_once_and_the_truth() {
    chaos(3).await;
}

/// One chaos run on `nodes` NATS servers (1: a single server, no node loss).
async fn chaos(nodes: usize) {
    // 300 in the test command: with 1,000, every agent re-reading the CTI each 4 s keeps the
    // simulator (a debug build, on 2 cores) at its limit, so that on a slow day CTI calls
    // time out and the run measures the machine (seen on 2026-12-03, at the previous
    // commit too). `scripts/soak` runs release builds with thousands.
    let agents = setting("PB_CHAOS_AGENTS", 300);
    let rounds = setting("PB_CHAOS_ROUNDS", 1);
    let roster = (agents + WATCHED).to_string();
    let env = [
        ("PB_OWNER_CHECK_MS", "400"),
        ("PB_RESYNC_MS", "4000"),
        ("SIM_AGENTS", roster.as_str()),
    ];
    let World {
        mut stack,
        driver: d,
        bridge,
        proxy,
        ledger,
        ..
    } = World::builder()
        .cluster(nodes)
        .replicas(2)
        .env(&env)
        .driver_timeout(Duration::from_secs(8))
        .retrying(Duration::from_secs(40))
        .behind_proxy("pb-channel-group", "pb-channel-group-cut")
        .ledger()
        .start()
        .await;
    let proxy = proxy.expect("the replica behind the proxy");
    let ledger = ledger.expect("the ledger");
    let mut watched = Vec::new();
    for id in 1001 + agents..1001 + agents + WATCHED {
        let id = id.to_string();
        watched.push(
            d.login(&id, &format!("pw-{id}"), &format!("w-{id}"))
                .await
                .unwrap(),
        );
    }

    bridge
        .admin(&Traffic {
            calls: 20.0,
            chats: 5.0,
            emails: 5.0,
        })
        .await
        .expect("the simulator acts");
    let config = DeskConfig {
        first: 1001,
        agents: agents as usize,
        talk: Duration::from_millis(300),
        disposition: "chaos".to_owned(),
        run_for: None,
        progress: false,
    };
    let (stop_desk, desk_stops) = Shutdown::new();
    let desk = desk::run(&d, &config, desk_stops);
    let script = async {
        // During the desk's login storm,
        faults(&mut stack, &proxy, &bridge, &watched, 0).await;
        // then while it handles the traffic.
        let waited = async {
            let status = wait_for(&bridge, "the desk's agents to be logged in", |status| {
                status["logged_in"].as_u64() >= Some(agents + WATCHED)
            })
            .await?;
            let before = status["completed"].as_u64().unwrap_or_default();
            for round in 1..=rounds {
                faults(&mut stack, &proxy, &bridge, &watched, round).await;
            }
            wait_for(&bridge, "interactions to be completed", |status| {
                status["completed"].as_u64() > Some(before + 10)
            })
            .await
        }
        .await;
        bridge
            .admin(&Traffic::none())
            .await
            .expect("the simulator acts");
        stop_desk.fire();
        waited
    };
    let (report, waited) = tokio::join!(desk, script);
    // The processes' logs, for a failure to point at (too long for a panic message).
    let log_file = std::env::temp_dir().join(format!("pb-chaos-{}.log", std::process::id()));
    std::fs::write(&log_file, stack.logs()).expect("write the logs");
    let logs = format!("(every process's log: {})", log_file.display());
    let report = report.unwrap_or_else(|e| panic!("{e} {logs}"));
    eprintln!("{}", report.table());
    if !report.missed_events.is_empty() {
        eprintln!(
            "ended without their event (read from their init instead): {:?}",
            report.missed_events
        );
    }
    if let Err(e) = waited {
        panic!("{e} {logs}");
    }

    // Settled: a periodic re-sync has had time to run over every agent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let differ = compare_with_cti(&d, &bridge, &watched).await;
    let seen = ledger.stop().await;
    let broken = violations(&seen);
    // What the bridge saw, one JSON line per response or event, in order.
    let seen_file = log_file.with_extension("seen.jsonl");
    let lines: Vec<String> = seen
        .iter()
        .map(|e| json!({"subject": e.subject, "message": e.json}).to_string())
        .collect();
    std::fs::write(&seen_file, lines.join("\n")).expect("write what was seen");
    let logs = format!("{logs} (what the bridge saw: {})", seen_file.display());
    assert!(
        report.clean(),
        "the desk: {} failures (first: {:?}), {} unfinished, logouts failed: {:?}\n{logs}",
        report.failures,
        report.first_failure,
        report.unfinished,
        report.logout_failures
    );
    assert!(
        report.handled.len() > 10,
        "{} handled",
        report.handled.len()
    );
    assert!(
        broken.is_empty(),
        "{} broken: {broken:#?} {logs}",
        broken.len()
    );
    assert!(
        differ.is_empty(),
        "told otherwise than the CTI: {differ:#?} {logs}"
    );
}
