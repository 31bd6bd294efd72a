//! `presize` arguments → [`PresizePlan`]: input kind found (COCO folder or dsprep shard
//! folder), target and quality checked, the output folder's state checked — before any image is
//! read.

pub use super::OutputMode;
use super::{output_mode, thread_count, PlanError};
use crate::cli::{PresizeArgs, PresizeMode};
use crate::dataset::{self, SplitSource};
use crate::image::presize::PresizeOptions;
use crate::image::resize::{Fit, Target};
use crate::shard::manifest::MANIFEST_FILE;
use std::path::{Path, PathBuf};

/// Memory the image workers may hold at once (input bytes, decoded planes, progressive
/// coefficient buffers), whatever the thread count: many 12k×9k images at once wait for each
/// other instead of exhausting memory. An image larger than the whole budget runs alone.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// What `presize` reads.
#[derive(Debug, Clone)]
pub enum PresizeInput {
    /// A COCO-style folder: its splits, as `convert` discovers them.
    Coco {
        root: PathBuf,
        splits: Vec<SplitSource>,
    },
    /// A folder written by `dsprep convert` (has `manifest.json` with shards).
    Shards { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct PresizePlan {
    pub input: PresizeInput,
    pub out_dir: PathBuf,
    pub options: PresizeOptions,
    pub strict: bool,
    pub output_mode: OutputMode,
    pub threads: usize,
    pub memory_budget: u64,
    pub quiet: bool,
    pub json: bool,
}

/// Invocation problems specific to presize (the shared ones are in [`PlanError`]).
#[derive(Debug, thiserror::Error)]
pub enum PresizePlanError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error("--size must be at least 1 pixel")]
    ZeroSize,
    #[error("--quality must be 1..=100 (got {0})")]
    BadQuality(u8),
    #[error("{out}: the output folder must not be the input folder or inside it ({input}); pick a folder elsewhere")]
    OutputInsideInput { out: PathBuf, input: PathBuf },
}

/// Validate once; workers trust the plan.
pub fn plan_presize(args: &PresizeArgs) -> Result<PresizePlan, PresizePlanError> {
    if args.size == 0 {
        return Err(PresizePlanError::ZeroSize);
    }
    if !(1..=100).contains(&args.quality) {
        return Err(PresizePlanError::BadQuality(args.quality));
    }
    let root = &args.input;
    if !root.is_dir() {
        return Err(PlanError::NotADir(root.clone()).into());
    }
    if inside(&args.output, root) {
        return Err(PresizePlanError::OutputInsideInput {
            out: args.output.clone(),
            input: root.clone(),
        });
    }
    let input = if is_shard_folder(root) {
        PresizeInput::Shards { dir: root.clone() }
    } else {
        PresizeInput::Coco {
            root: root.clone(),
            splits: dataset::discover_splits(root)?,
        }
    };
    let threads = thread_count(args.run.threads)?;
    let fit = match args.mode {
        PresizeMode::Longest => Fit::Longest,
        PresizeMode::Shortest => Fit::Shortest,
    };
    Ok(PresizePlan {
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
        threads,
        memory_budget: DEFAULT_MEMORY_BUDGET,
        quiet: args.run.quiet,
        json: args.run.json,
    })
}

/// A dsprep shard folder: `manifest.json` naming shards.
fn is_shard_folder(dir: &Path) -> bool {
    let Ok(text) = std::fs::read(dir.join(MANIFEST_FILE)) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return false;
    };
    v.get("splits")
        .and_then(|s| s.as_array())
        .is_some_and(|s| s.iter().any(|sp| sp.get("shards").is_some()))
}

/// Whether `out` is `input` or below it (after resolving what exists of both).
fn inside(out: &Path, input: &Path) -> bool {
    let abs = |p: &Path| -> PathBuf {
        // The output may not exist yet: resolve its deepest existing ancestor.
        let mut existing = p.to_path_buf();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name.to_os_string());
                    existing = if parent.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        parent.to_path_buf()
                    };
                }
                _ => break,
            }
        }
        let mut base = std::fs::canonicalize(&existing).unwrap_or(existing);
        for name in rest.into_iter().rev() {
            base.push(name);
        }
        base
    };
    abs(out).starts_with(abs(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_inside_input_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("in");
        std::fs::create_dir(&input).unwrap();
        assert!(inside(&input, &input));
        assert!(inside(&input.join("out"), &input));
        assert!(inside(&input.join("a/b"), &input));
        assert!(!inside(&d.path().join("out"), &input));
        assert!(!inside(&d.path().join("in2"), &input));
    }

    #[test]
    fn shard_folder_is_recognised_by_its_manifest() {
        let d = tempfile::tempdir().unwrap();
        assert!(!is_shard_folder(d.path()));
        std::fs::write(
            d.path().join(MANIFEST_FILE),
            br#"{"splits": [{"name": "val", "shards": []}]}"#,
        )
        .unwrap();
        assert!(is_shard_folder(d.path()));
        std::fs::write(d.path().join(MANIFEST_FILE), br#"{"kind": "presize"}"#).unwrap();
        assert!(!is_shard_folder(d.path()));
    }
}
