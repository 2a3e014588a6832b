//! `pb-session`: the session service. Configuration: README, "Configuration".

use anyhow::Context;
use pb_runtime::{Config, Shutdown, connect::connect, logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = logging::init("pb-session", "info");
    let config = Config::from_env()?;
    let owned = pb_session::owned_config(|v| std::env::var(v).ok())?;
    let client = connect(&config, "pb-session").await?;
    pb_session::run(client, config, owned, Shutdown::on_signals())
        .await
        .context("session service stopped")
}
