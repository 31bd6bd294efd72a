//! Command layer: one short file per subcommand wiring plan → job → report → print, plus the
//! progress bar. The only place that uses anyhow and indicatif, and the only place that prints.

pub mod convert;
pub mod index;
pub mod merge;
pub mod presize;
pub mod progress;
pub mod verify;
pub mod verify_throughput;

use crate::cli::{Cli, Command};
use anyhow::Result;
use std::process::ExitCode;

/// Everything went through.
pub const EXIT_OK: u8 = 0;
/// The command finished, but some input was skipped (convert) or found bad (verify).
pub const EXIT_PROBLEMS: u8 = 1;
/// The command failed (bad invocation, unreadable input, I/O error, --strict violation).
pub const EXIT_FAILURE: u8 = 2;

/// Print a report as JSON (stdout) or as its table (stdout).
fn emit<T: serde::Serialize>(report: &T, json: bool, table: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", table());
    }
    Ok(())
}

/// Exit 1 when the run finished with problems, else 0.
fn exit(problems: bool) -> ExitCode {
    ExitCode::from(if problems { EXIT_PROBLEMS } else { EXIT_OK })
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Convert(args) => convert::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Index(args) => index::run(&args),
        Command::Presize(args) => presize::run(&args),
        Command::VerifyThroughput(args) => verify_throughput::run(&args),
        Command::Merge(args) => merge::run(&args),
    }
}
