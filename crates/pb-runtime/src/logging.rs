//! Logging: `tracing` to standard error, filtered by `PB_LOG` (or `RUST_LOG`), text or
//! JSON by `PB_LOG_FORMAT`. No log line carries a password: secrets are `pb_protocol::Secret`,
//! whose `Debug` prints `***`, and payloads are never logged raw.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Call once, from `main`.
pub fn init() {
    let filter = std::env::var("PB_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("PB_LOG={filter:?} is not a valid filter ({e}); using `info`");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("PB_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
