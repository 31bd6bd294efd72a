//! Command layer: orchestration, rayon pools, progress, error counting. The only place that
//! uses anyhow and indicatif.

pub mod convert;
pub mod index;
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

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Convert(args) => {
            let plan = crate::plan::convert::plan_convert(&args)?;
            let report = convert::run(&plan)?;
            emit(&report, plan.json, || report.render_table())?;
            Ok(ExitCode::from(if report.skipped > 0 {
                EXIT_PROBLEMS
            } else {
                EXIT_OK
            }))
        }
        Command::Verify(args) => {
            let report = verify::run(&args)?;
            emit(&report, args.run.json, || report.render_table())?;
            Ok(ExitCode::from(if report.ok {
                EXIT_OK
            } else {
                EXIT_PROBLEMS
            }))
        }
        Command::Index(args) => {
            for (file, idx, n) in index::run(&args)? {
                println!("{} -> {} ({n} records)", file.display(), idx.display());
            }
            Ok(ExitCode::from(EXIT_OK))
        }
        Command::Presize(args) => presize::run(&args),
        Command::VerifyThroughput(args) => verify_throughput::run(&args),
    }
}
