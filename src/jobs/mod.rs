//! The work behind each command, usable without the CLI: `convert` (COCO → shards),
//! `presize` (COCO folder or shard folder), `verify`, `index`, `merge` (task parts →
//! manifest). Each job takes a complete, typed spec built by [`crate::plan`], returns its
//! outcome as data (manifest and report values), reports progress through [`Progress`], and
//! never prints.
//!
//! - [`outdir`]: the output folder (fresh / overwrite / resume / lock), once for every job.
//! - [`record`]: reading one input image and turning a COCO sample into an OD record, shared
//!   by `convert` and `presize` (file rules, frame size, size mismatch, box outcomes).
//! - [`shard_loop`]: the parallel per-shard loop with cancel flag, resume reuse and a manifest
//!   stored after every finished shard (`convert` and `presize` of a shard folder).
//! - [`budget`]: the memory budget that bounds the decodes in flight.
//! - [`tasks`]: task mode of `convert` (`--tasks M --task K`): which task this is, the shards
//!   it owns, its locks and its part of the manifest; [`merge`] joins the parts.
//! - [`deal`]: which images go to which shard, in which order (`--shuffle`, `--shard-multiple`).

pub mod budget;
pub mod convert;
pub mod deal;
pub mod index;
pub mod merge;
pub mod outdir;
pub mod presize;
pub mod record;
pub mod shard_loop;
pub mod tasks;
pub mod verify;

use std::path::PathBuf;

/// Errors that stop a job (per-image and per-record problems are values in its outcome).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    Rescale(#[from] crate::dataset::rescale::RescaleError),
    #[error(transparent)]
    OutDir(#[from] outdir::OutDirError),
    #[error(transparent)]
    Task(#[from] tasks::TaskError),
    /// `--strict` found a problem; the text names the file and what is wrong.
    #[error("--strict: {0}")]
    Strict(String),
    /// `--resume` cannot continue this folder; the text says why and what to do.
    #[error("--resume: {0}")]
    Resume(String),
    /// The input cannot be used as given; the text names it and says what to do.
    #[error("{0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    #[error("a worker thread panicked")]
    Panicked,
}

/// Where a job reports how far it got (the command layer draws a progress bar with it).
pub trait Progress: Sync {
    /// The job now knows how many inputs it will go through.
    fn total(&self, _images: u64) {}
    /// `images` more inputs done, `bytes` more input bytes read.
    fn add(&self, images: u64, bytes: u64);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn add(&self, _images: u64, _bytes: u64) {}
}

/// A rayon pool of `threads` workers (the jobs' only parallelism).
pub(crate) fn pool(threads: usize) -> Result<rayon::ThreadPool, JobError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| JobError::Threads(e.to_string()))
}
