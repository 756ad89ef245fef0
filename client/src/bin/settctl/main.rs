//! `settctl`: the command-line tool for sett.
//!
//! ```text
//! settctl engine info    --dir DIR
//! settctl engine check   --dir DIR
//! settctl engine backup  --dir DIR --out FILE [--since TS] [--workers N]
//! settctl engine restore --dir NEWDIR --in FILE [--in FILE ...]
//! settctl engine stream  --dir DIR [--prefix P] [--workers N] [--all-versions] [--out FILE]
//! settctl engine gc      --dir DIR [--ratio 0.5]
//! settctl snapshot status FILE
//! settctl snapshot restore FILE --name N --data-dir DIR --initial-cluster ... [sett flags]
//! ```
//!
//! The `engine` tools work on a database directory directly (the process
//! must be the only writer: stop the server first; `info`, `check`,
//! `backup` and `stream` open it read-only and may run beside other
//! readers). Errors go to stderr with exit code 1; progress bars go to
//! stderr when it is a terminal.

mod engine;
mod progress;
mod snapshot;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "settctl", version, about = "Command-line tool for sett")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline tools for a database directory: info, check, backup,
    /// restore, stream, gc.
    #[command(subcommand)]
    Engine(engine::EngineCommand),
    /// Snapshot files saved from a running cluster: status, restore.
    #[command(subcommand)]
    Snapshot(Box<snapshot::SnapshotCommand>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Engine(cmd) => engine::run(cmd),
        Command::Snapshot(cmd) => snapshot::run(*cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
