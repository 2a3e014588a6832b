//! `pb-gateway`: holds the TCP link to a real Processor Bridge. Configuration: README,
//! "Configuration".

use anyhow::Context;
use pb_runtime::{Config, Shutdown, connect::connect, logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = logging::init("pb-gateway", "info");
    let common = Config::from_env()?;
    let gateway = pb_gateway::GatewayConfig::from_lookup(|v| std::env::var(v).ok())?;
    let client = connect(&common, "pb-gateway").await?;
    pb_gateway::run(client, common, gateway, Shutdown::on_signals())
        .await
        .context("gateway stopped")
}
