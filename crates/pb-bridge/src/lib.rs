//! The bridge emulator: plays the Processor Bridge against a running system. It sends any
//! query or request by name with a JSON body, watches events, runs the control
//! initialisation, logs agents in, handles interactions and conversations one request at a
//! time or as an automatic desk, and drives the simulated CTI.
//!
//! * [`cli`]: the arguments; `commands`: one module per group of commands; `print`: what
//!   they print; `emulator`: the connection and the one way a command is sent;
//! * [`flow`], [`interaction`], [`storm`], [`desk`]: the bridge's sequences, also used by
//!   the benchmark and the tests; [`link`]: NATS or a TCP link a gateway connects to;
//!   [`report`]: latencies and tables.

/// `println!` that returns an error instead of panicking (a closed pipe, for example).
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

mod cli;
mod commands;
pub mod desk;
mod emulator;
pub mod flow;
mod interaction;
pub mod link;
mod print;
pub mod report;
pub mod storm;

pub use cli::Cli;
pub use commands::run;
pub use commands::sim::sim_admin;
