//! Raw clap arguments → validated plans, once. Workers take plans and never re-validate
//! (ripgrep's lowargs → hiargs split).

#[cfg(any())] // WIP-lead
pub mod convert;
pub mod throughput;

use std::path::PathBuf;

/// Everything that can be wrong with an invocation, found before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("{0}: not a folder")]
    NotADir(PathBuf),
    #[error("no input: give a COCO folder, or --annotations FILE --images DIR")]
    NoInput,
    #[error("--shards must be at least 1")]
    ZeroShards,
    #[error("--presize must be at least 1 pixel")]
    ZeroPresize,
    #[error("--threads must be at least 1")]
    ZeroThreads,
    #[error("bad size {0:?}: use a number with an optional unit, e.g. 256MiB, 1GB, 500k")]
    BadSize(String),
    #[error("{0}: output folder is not empty; pass --overwrite to replace dsprep's outputs there, or --resume to continue an interrupted run")]
    OutputNotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
