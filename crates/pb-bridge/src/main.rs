//! `pb-bridge`: the bridge emulator. `pb-bridge --help` lists its commands.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = pb_bridge::Cli::parse();
    match pb_bridge::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
