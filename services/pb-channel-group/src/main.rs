//! `pb-channel-group`: the channel-group service. Configuration: README, "Configuration".

use anyhow::Context;
use pb_runtime::{Config, Shutdown, connect::connect, logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = logging::init("pb-channel-group", "info");
    let config = Config::from_env()?;
    let owned = pb_channel_group::owned_config(|v| std::env::var(v).ok())?;
    let client = connect(&config, "pb-channel-group").await?;
    pb_channel_group::run(client, config, owned, Shutdown::on_signals())
        .await
        .context("channel-group service stopped")
}
