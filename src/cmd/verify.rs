//! `dsprep verify`: plan → job → report → print.

use super::{emit, exit};
use crate::cli::VerifyArgs;
use crate::report::verify::VerifyReport;
use anyhow::Result;
use std::process::ExitCode;

/// Exit 0 when every check passed, 1 when problems were found (listed), 2 when the folder
/// cannot be verified (returned as Err).
pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
    let plan = crate::plan::verify::plan_verify(args)?;
    let checks = crate::jobs::verify::run(&plan.spec)?;
    let report = VerifyReport::new(plan.spec.dir.display().to_string(), checks);
    emit(&report, plan.json, || report.render_table())?;
    Ok(exit(!report.ok))
}
