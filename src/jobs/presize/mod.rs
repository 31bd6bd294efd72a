//! `presize`: images pre-resized to slightly above training size, annotations following
//! exactly. Two inputs: a COCO folder ([`coco`]: COCO folder out, annotation files rewritten)
//! or a dsprep shard folder ([`shards`]: the same shards with presized images out).

pub mod coco;
pub mod shards;

use super::outdir::OutputMode;
use super::{JobError, Progress};
use crate::dataset::SplitSource;
use crate::image::presize::PresizeOptions;
use crate::shard::manifest::{Manifest, PresizeSplit};
use std::path::PathBuf;

/// What `presize` reads.
#[derive(Debug, Clone)]
pub enum PresizeInput {
    /// A COCO-style folder: its splits, as `convert` discovers them.
    Coco {
        root: PathBuf,
        splits: Vec<SplitSource>,
    },
    /// A complete folder written by `dsprep convert`, with its manifest.
    Shards {
        dir: PathBuf,
        manifest: Box<Manifest>,
    },
}

/// A complete presize run, as the plan built it.
#[derive(Debug, Clone)]
pub struct PresizeSpec {
    pub input: PresizeInput,
    pub out_dir: PathBuf,
    pub options: PresizeOptions,
    pub strict: bool,
    pub output_mode: OutputMode,
    pub threads: usize,
    /// Bytes the image workers may hold at once (see [`super::budget`]).
    pub memory_budget: u64,
    /// fsync finished shards and the final manifest (power-loss safe).
    pub durable: bool,
    /// Largest input file read (COCO folders); larger ones are failures (named).
    pub max_image_bytes: u64,
}

/// What a presize run did (COCO folder or shard folder).
#[derive(Debug, Clone)]
pub struct PresizeOutcome {
    pub out_dir: PathBuf,
    /// Per split: what was done to its images (for a shard folder: to its records).
    pub splits: Vec<PresizeSplit>,
    /// Images kept from an interrupted run (`--resume`).
    pub resumed: u64,
    pub seconds: f64,
    /// Entries `--overwrite` left in the folder because dsprep did not write them.
    pub left_alone: Vec<String>,
}

pub fn run(spec: &PresizeSpec, progress: &dyn Progress) -> Result<PresizeOutcome, JobError> {
    match &spec.input {
        PresizeInput::Coco { root, splits } => coco::run(spec, root, splits, progress),
        PresizeInput::Shards { dir, manifest } => shards::run(spec, dir, manifest, progress),
    }
}
