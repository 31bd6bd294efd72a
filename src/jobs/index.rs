//! `index`: DALI `.idx` files for TFRecords made by other tools, streaming (constant memory
//! whatever the shard size). The plan has checked every input and target already.

use super::JobError;
use std::path::PathBuf;

/// One TFRecord and where its index goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTask {
    pub tfrecord: PathBuf,
    pub index: PathBuf,
}

/// What `index` wrote: (TFRecord, index, records) per input.
pub type Indexed = Vec<(PathBuf, PathBuf, u64)>;

pub fn run(tasks: &[IndexTask]) -> Result<Indexed, JobError> {
    let mut done = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Some(d) = t.index.parent() {
            std::fs::create_dir_all(d).map_err(|source| JobError::Io {
                path: d.to_path_buf(),
                source,
            })?;
        }
        let n = crate::shard::index::index_tfrecord(&t.tfrecord, &t.index)?;
        done.push((t.tfrecord.clone(), t.index.clone(), n));
    }
    Ok(done)
}
