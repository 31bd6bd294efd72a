//! Raw clap arguments → complete, typed job specs, once. Everything that can be wrong with an
//! invocation is found here, before any work starts; jobs take specs and never re-validate or
//! re-discover (ripgrep's lowargs → hiargs split). No clap type goes below this layer: each
//! plan maps the CLI's enums to the library's own types.

pub mod convert;
pub mod index;
pub mod merge;
pub mod presize;
pub mod throughput;
pub mod verify;

use crate::jobs::outdir::OutDirError;
use std::path::PathBuf;

/// `-j`: at most this many threads per core (more only costs start-up time and memory).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// `-j`: absent means all cores; 0 and more than [`MAX_THREADS_PER_CORE`] per core are refused.
pub fn thread_count(threads: Option<usize>) -> Result<usize, PlanError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match threads {
        Some(0) => Err(PlanError::ZeroThreads),
        Some(n) if n > cores * MAX_THREADS_PER_CORE => Err(PlanError::TooManyThreads {
            asked: n,
            max: cores * MAX_THREADS_PER_CORE,
        }),
        Some(n) => Ok(n),
        None => Ok(cores),
    }
}

/// Everything that can be wrong with an invocation, found before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    #[error(transparent)]
    OutDir(#[from] OutDirError),
    #[error("{0}: not a folder")]
    NotADir(PathBuf),
    #[error("give COCO_DIR OUT_DIR, or --annotations FILE --images DIR OUT_DIR")]
    NoInput,
    #[error("{0}: give either a COCO folder or --annotations/--images, not both")]
    InputAndAnnotations(PathBuf),
    #[error("--shards must be at least 1")]
    ZeroShards,
    #[error("--shard-multiple must be at least 1")]
    ZeroShardMultiple,
    #[error(transparent)]
    Task(#[from] crate::jobs::tasks::TaskIdError),
    #[error("--presize must be at least 1 pixel")]
    ZeroPresize,
    #[error("--threads must be at least 1")]
    ZeroThreads,
    #[error("-j/--threads {asked} is more than {max} (4 per core); use fewer")]
    TooManyThreads { asked: usize, max: usize },
    #[error("bad size {0:?}: use a number with an optional unit, e.g. 256MiB, 1GB, 500k")]
    BadSize(String),
    #[error("--size must be at least 1 pixel")]
    ZeroSize,
    #[error("--quality must be 1..=100 (got {0})")]
    BadQuality(u8),
    /// The input is there but cannot be used; the text names it and says what to do.
    #[error("{0}")]
    Input(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_is_bounded() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(thread_count(None).unwrap(), cores);
        assert_eq!(thread_count(Some(1)).unwrap(), 1);
        assert!(matches!(thread_count(Some(0)), Err(PlanError::ZeroThreads)));
        let e = thread_count(Some(cores * 4 + 1)).unwrap_err();
        assert!(e.to_string().contains("-j"), "{e}");
        assert_eq!(thread_count(Some(cores * 4)).unwrap(), cores * 4);
    }
}
