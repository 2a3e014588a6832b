//! `pb-cti-sim`: the simulated CTI. Configuration: README, "Configuration".

use anyhow::Context;
use pb_runtime::{Config, Shutdown, connect::connect, logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = logging::init("pb-cti-sim", "info");
    let config = Config::from_env()?;
    let sim = pb_cti_sim::SimConfig::from_lookup(&config, |v| std::env::var(v).ok())?;
    let client = connect(&config, "pb-cti-sim").await?;
    pb_cti_sim::run(client, sim, Shutdown::on_signals())
        .await
        .context("simulated CTI stopped")
}
