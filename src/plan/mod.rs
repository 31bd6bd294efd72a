//! Raw clap arguments → validated plans, once. Workers take plans and never re-validate
//! (ripgrep's lowargs → hiargs split).

pub mod convert;
pub mod presize;
pub mod throughput;

use std::path::PathBuf;

/// Everything that can be wrong with an invocation, found before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("{0}: not a folder")]
    NotADir(PathBuf),
    #[error("give COCO_DIR OUT_DIR, or --annotations FILE --images DIR OUT_DIR")]
    NoInput,
    #[error("{0}: give either a COCO folder or --annotations/--images, not both")]
    InputAndAnnotations(PathBuf),
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
