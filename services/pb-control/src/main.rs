//! `pb-control`: the control service. Configuration: README, "Configuration".

use anyhow::Context;
use pb_runtime::{Config, Shutdown, connect::connect, logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = logging::init("pb-control", "info");
    let common = Config::from_env()?;
    let config = pb_control::ControlConfig::from_lookup(common, |v| std::env::var(v).ok())?;
    let client = connect(&config.common, "pb-control").await?;
    pb_control::run(client, config, Shutdown::on_signals())
        .await
        .context("control service stopped")
}
