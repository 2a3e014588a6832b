//! `login`, `logout`: one agent through the whole chain; `storm`: many at once; `desk`: an
//! automatic agent desk.

use std::io::Write;
use std::process::ExitCode;

use crate::emulator::Emulator;
use crate::{desk, storm};

/// `login`: session, channel group, every channel initialised, activated and ready.
pub(super) async fn login(
    bridge: &Emulator,
    agent_id: &str,
    password: Option<String>,
    session: Option<String>,
) -> anyhow::Result<ExitCode> {
    let password = password.unwrap_or_else(|| format!("pw-{agent_id}"));
    let session = session.unwrap_or_else(|| format!("s-{agent_id}"));
    let logged = bridge
        .driver()
        .await?
        .login(agent_id, &password, &session)
        .await?;
    say!(
        "agent {} logged in: session {}, channel group {}",
        logged.agent_id,
        logged.session,
        logged.group
    )?;
    for channel in &logged.channels {
        say!(
            "  {:<24} {:<14} {:<11} ACTIVE READY",
            channel.target,
            channel.endpoint,
            channel.media.as_str()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `logout`: the agent logged out at the CTI, then its destinations disposed.
pub(super) async fn logout(bridge: &Emulator, session: &str) -> anyhow::Result<ExitCode> {
    let disposed = bridge.driver().await?.logout_session(session).await?;
    say!(
        "session {session} logged out; disposed: {}",
        disposed.join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `storm`: log `agents` in, `concurrency` at a time, and print the report.
pub(super) async fn storm(
    bridge: &Emulator,
    agents: usize,
    concurrency: usize,
    first: u64,
    keep: bool,
) -> anyhow::Result<ExitCode> {
    let driver = bridge.driver_for_agents(first, agents).await?;
    eprintln!("logging {agents} agents in, {concurrency} at a time...");
    let (report, logged) = storm::storm(&driver, first, agents, concurrency, true).await;
    say!("{}", report.table())?;
    if !keep {
        eprintln!("logging them out again (not timed)...");
        for (agent, e) in driver.logout_all(&logged, concurrency).await {
            eprintln!("logout of {agent} failed: {e}");
        }
    }
    Ok(if report.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `desk`: log the agents in and handle what reaches them until stopped.
pub(super) async fn desk(bridge: &Emulator, config: &desk::DeskConfig) -> anyhow::Result<ExitCode> {
    let driver = bridge
        .driver_for_agents(config.first, config.agents)
        .await?;
    // Listening for Ctrl-C from now on: the agents are logged out however the desk stops.
    let shutdown = pb_runtime::shutdown::Shutdown::on_signals();
    eprintln!(
        "desk: logging agents {} to {} in, then handling what reaches them (Ctrl-C stops)",
        config.first,
        config.first + config.agents as u64 - 1
    );
    let report = desk::run(&driver, config, shutdown).await?;
    say!("{}", report.table())?;
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
