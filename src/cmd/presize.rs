//! `dsprep presize`: plan → job → report → print.

use super::{emit, exit, progress::Bar};
use crate::cli::PresizeArgs;
use crate::report::presize::PresizeReport;
use anyhow::Result;
use std::process::ExitCode;

/// Exit 0 when every image is in the output, 1 when some failed (listed in the manifest), 2
/// on failure (returned as Err).
pub fn run(args: &PresizeArgs) -> Result<ExitCode> {
    let plan = crate::plan::presize::plan_presize(args)?;
    let bar = Bar::images(0, plan.quiet, "presizing");
    let outcome = crate::jobs::presize::run(&plan.spec, &bar);
    bar.finish();
    let report = PresizeReport::from_outcome(&outcome?);
    emit(&report, plan.json, || report.render_table())?;
    Ok(exit(report.failed > 0))
}
