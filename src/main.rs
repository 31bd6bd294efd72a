//! Thin binary: parse arguments, run, print the error chain once, map to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = dsprep::cli::Cli::parse();
    match dsprep::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(dsprep::cmd::EXIT_FAILURE)
        }
    }
}
