//! `dsprep index FILE.tfrecord...`: plan → job → print.

use crate::cli::IndexArgs;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(args: &IndexArgs) -> Result<ExitCode> {
    let tasks = crate::plan::index::plan_index(args)?;
    for (file, idx, n) in crate::jobs::index::run(&tasks)? {
        println!("{} -> {} ({n} records)", file.display(), idx.display());
    }
    Ok(ExitCode::from(super::EXIT_OK))
}
