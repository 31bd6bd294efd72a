//! `dsprep convert`: plan → job → report → print.

use super::{emit, exit, progress::Bar};
use crate::cli::ConvertArgs;
use crate::report::convert::ConvertReport;
use anyhow::Result;
use std::process::ExitCode;

/// Exit 0 when every image became a record, 1 when some were skipped (listed in the
/// manifest), 2 on failure (returned as Err).
pub fn run(args: &ConvertArgs) -> Result<ExitCode> {
    let plan = crate::plan::convert::plan_convert(args)?;
    let bar = Bar::images(0, plan.quiet, "converting");
    let outcome = crate::jobs::convert::run(&plan.spec, &bar);
    bar.finish();
    let report = ConvertReport::from_outcome(&outcome?);
    emit(&report, plan.json, || report.render_table())?;
    Ok(exit(report.skipped > 0))
}
