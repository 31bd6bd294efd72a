//! `merge` arguments → [`MergePlan`].

use super::PlanError;
use crate::cli::MergeArgs;
use crate::jobs::merge::MergeSpec;

/// A validated merge invocation.
#[derive(Debug, Clone)]
pub struct MergePlan {
    pub spec: MergeSpec,
    pub json: bool,
}

pub fn plan_merge(args: &MergeArgs) -> Result<MergePlan, PlanError> {
    if !args.dir.is_dir() {
        return Err(PlanError::NotADir(args.dir.clone()));
    }
    Ok(MergePlan {
        spec: MergeSpec {
            out_dir: args.dir.clone(),
            durable: args.fsync,
        },
        json: args.json,
    })
}
