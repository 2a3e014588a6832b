//! Operations tools, apart from the bridge emulator: `nats-auth` renders the NATS server's
//! authorization block from [`pb_runtime::permissions`]; `probe` is the containers' health
//! check ([`probe`]).

pub mod probe;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pb_protocol::Subjects;
use pb_runtime::permissions::{Deployment, auth_conf};

/// Operations tools for a deployment of the system.
#[derive(Debug, Parser)]
#[command(name = "pb-ops", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the NATS server authorization block (one user per process, each allowed only
    /// its subjects) of production, as `deploy/base/nats/auth.conf` holds it.
    NatsAuth {
        /// The lab's instead (docker-compose, the local overlay, the tests: with the
        /// simulated CTI), as `deploy/overlays/local/nats/auth.conf` holds it.
        #[arg(long)]
        lab: bool,
        /// Subject prefix of the deployment.
        #[arg(long, env = "PB_SUBJECT_PREFIX", default_value = "pb")]
        prefix: String,
    },
    /// Exit 0 if `url` answers HTTP 200 (container health checks: no curl in the image).
    Probe {
        url: String,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
}

/// Run a tool.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::NatsAuth { lab, prefix } => {
            let deployment = if lab {
                Deployment::Lab
            } else {
                Deployment::Production
            };
            let conf = auth_conf(&Subjects::new(prefix)?, deployment);
            writeln!(std::io::stdout().lock(), "{}", conf.trim_end())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { url, timeout_ms } => {
            Ok(probe::probe(&url, Duration::from_millis(timeout_ms)).await)
        }
    }
}
