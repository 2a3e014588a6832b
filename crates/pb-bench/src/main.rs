//! `pb-bench`: the benchmark harness. `pb-bench --help` lists its options; README
//! "Benchmarks" says how to run it (a release build: `scripts/bench`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = pb_bench::Cli::parse();
    let _telemetry = pb_runtime::logging::init("pb-bench", "warn");
    match pb_bench::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
