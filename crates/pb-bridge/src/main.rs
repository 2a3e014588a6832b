//! `pb-bridge`: the bridge emulator. `pb-bridge --help` lists its commands.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = pb_bridge::Cli::parse();
    // Warnings only on standard error; traces when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let _telemetry = pb_runtime::logging::init("pb-bridge", "warn");
    match pb_bridge::run(cli).await {
        Ok(code) => code,
        // The reader went away (`pb-bridge watch | head`): nothing more to say.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
