//! `presize` arguments → [`PresizePlan`]: input kind found (COCO folder or dsprep shard
//! folder, by its typed manifest), target and quality checked, folders checked not to overlap,
//! the output folder's state checked — before any image is read.

use super::{thread_count, PlanError};
use crate::cli::{PresizeArgs, PresizeMode};
use crate::dataset;
use crate::image::presize::PresizeOptions;
use crate::image::resize::{Fit, Target};
use crate::jobs::budget::DEFAULT_MEMORY_BUDGET;
use crate::jobs::outdir::{check_disjoint, output_mode};
use crate::jobs::presize::{PresizeInput, PresizeSpec};
use crate::shard::manifest::{load_folder_manifest, FolderManifest};

/// A validated presize invocation.
#[derive(Debug, Clone)]
pub struct PresizePlan {
    pub spec: PresizeSpec,
    pub quiet: bool,
    pub json: bool,
}

pub fn plan_presize(args: &PresizeArgs) -> Result<PresizePlan, PlanError> {
    if args.size == 0 {
        return Err(PlanError::ZeroSize);
    }
    if !(1..=100).contains(&args.quality) {
        return Err(PlanError::BadQuality(args.quality));
    }
    let root = &args.input;
    if !root.is_dir() {
        return Err(PlanError::NotADir(root.clone()));
    }
    check_disjoint(root, &args.output)?;
    let input = match load_folder_manifest(root)? {
        Some(FolderManifest::Shards(m)) => {
            if !m.complete {
                return Err(PlanError::Input(format!(
                    "{}: the conversion there is not complete (manifest complete: false); finish \
                     it with `dsprep convert --resume` first",
                    root.display()
                )));
            }
            PresizeInput::Shards {
                dir: root.clone(),
                manifest: Box::new(m),
            }
        }
        // A COCO folder (a presize output is one too).
        Some(FolderManifest::Presize(_)) | None => PresizeInput::Coco {
            root: root.clone(),
            splits: dataset::discover_splits(root)?,
        },
    };
    let fit = match args.mode {
        PresizeMode::Longest => Fit::Longest,
        PresizeMode::Shortest => Fit::Shortest,
    };
    Ok(PresizePlan {
        spec: PresizeSpec {
            input,
            out_dir: args.output.clone(),
            options: PresizeOptions {
                target: Target {
                    size: args.size,
                    fit,
                },
                quality: args.quality,
                reencode: args.reencode,
            },
            strict: args.strict,
            output_mode: output_mode(&args.output, args.existing.overwrite, args.existing.resume)?,
            threads: thread_count(args.run.threads)?,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            durable: args.fsync,
            max_image_bytes: super::convert::parse_size(&args.max_image_bytes)?,
        },
        quiet: args.run.quiet,
        json: args.run.json,
    })
}
