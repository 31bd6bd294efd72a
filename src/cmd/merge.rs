//! `dsprep merge`: plan → job → report → print.

use super::{emit, exit};
use crate::cli::MergeArgs;
use crate::report::merge::MergeReport;
use anyhow::Result;
use std::process::ExitCode;

/// Exit 0 when the merged run recorded every image, 1 when some were skipped (as `convert`),
/// 2 when the parts cannot be merged (every missing or failed task named; returned as Err).
pub fn run(args: &MergeArgs) -> Result<ExitCode> {
    let plan = crate::plan::merge::plan_merge(args)?;
    let outcome = crate::jobs::merge::run(&plan.spec)?;
    let report = MergeReport::from_outcome(&outcome);
    emit(&report, plan.json, || report.render_table())?;
    Ok(exit(report.skipped > 0))
}
