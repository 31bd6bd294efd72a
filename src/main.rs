//! Thin binary: parse arguments, run, print the error chain once, map to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // CUDA reads this when a context is created; the GPU pipeline needs the maximum
    // (dsprep::gpu::connections says why). Set before any thread or CUDA call exists.
    if std::env::var_os(dsprep::gpu::connections::ENV).is_none() {
        std::env::set_var(
            dsprep::gpu::connections::ENV,
            dsprep::gpu::connections::NEEDED.to_string(),
        );
    }
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
