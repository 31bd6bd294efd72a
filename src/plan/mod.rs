//! Raw clap arguments → validated plans, once. Workers take plans and never re-validate
//! (ripgrep's lowargs → hiargs split).

pub mod convert;
pub mod presize;
pub mod throughput;

use std::path::{Path, PathBuf};

/// What to do with an existing output folder (convert and presize alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// The folder is new or empty.
    Fresh,
    /// Remove dsprep's earlier outputs there first (other files stay).
    Overwrite,
    /// Keep what an interrupted run finished (checked before it is trusted).
    Resume,
}

/// A non-empty output folder needs `--overwrite` or `--resume`; a file there is an error.
/// `-j`: 0 is refused, absent means all cores.
pub fn thread_count(threads: Option<usize>) -> Result<usize, PlanError> {
    match threads {
        Some(0) => Err(PlanError::ZeroThreads),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

pub fn output_mode(out: &Path, overwrite: bool, resume: bool) -> Result<OutputMode, PlanError> {
    if out.exists() && !out.is_dir() {
        return Err(PlanError::NotADir(out.to_path_buf()));
    }
    let non_empty = out.is_dir()
        && std::fs::read_dir(out)
            .map_err(|source| PlanError::Io {
                path: out.to_path_buf(),
                source,
            })?
            .next()
            .is_some();
    Ok(match (non_empty, overwrite, resume) {
        (true, true, _) => OutputMode::Overwrite,
        (true, _, true) => OutputMode::Resume,
        (false, _, _) => OutputMode::Fresh,
        (true, false, false) => return Err(PlanError::OutputNotEmpty(out.to_path_buf())),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_empty_output_needs_a_flag() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            output_mode(d.path(), false, false).unwrap(),
            OutputMode::Fresh
        );
        std::fs::write(d.path().join("x"), b"1").unwrap();
        assert!(matches!(
            output_mode(d.path(), false, false),
            Err(PlanError::OutputNotEmpty(_))
        ));
        assert_eq!(
            output_mode(d.path(), true, false).unwrap(),
            OutputMode::Overwrite
        );
        assert_eq!(
            output_mode(d.path(), false, true).unwrap(),
            OutputMode::Resume
        );
        assert_eq!(
            output_mode(&d.path().join("new"), false, true).unwrap(),
            OutputMode::Fresh
        );
    }
}
