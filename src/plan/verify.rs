//! `verify` arguments → [`VerifyPlan`].

use super::{thread_count, PlanError};
use crate::cli::VerifyArgs;
use crate::jobs::verify::VerifySpec;

/// A validated verify invocation.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    pub spec: VerifySpec,
    pub json: bool,
}

pub fn plan_verify(args: &VerifyArgs) -> Result<VerifyPlan, PlanError> {
    if !args.dir.is_dir() {
        return Err(PlanError::NotADir(args.dir.clone()));
    }
    Ok(VerifyPlan {
        spec: VerifySpec {
            dir: args.dir.clone(),
            decode: args.decode,
            threads: thread_count(args.run.threads)?,
        },
        json: args.run.json,
    })
}
