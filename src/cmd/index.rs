//! `dsprep index FILE.tfrecord...`: DALI `.idx` files for TFRecords made by other tools,
//! streaming (constant memory whatever the shard size).

use crate::cli::IndexArgs;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `x.tfrecord` → `x.idx`; other names get `.idx` appended.
fn index_path(file: &Path, out_dir: Option<&Path>) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let idx = match name.strip_suffix(".tfrecord") {
        Some(stem) => format!("{stem}.idx"),
        None => format!("{name}.idx"),
    };
    match out_dir {
        Some(d) => d.join(idx),
        None => file.with_file_name(idx),
    }
}

/// Returns (file, index, records) per input.
pub fn run(args: &IndexArgs) -> Result<Vec<(PathBuf, PathBuf, u64)>> {
    if let Some(d) = &args.out_dir {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let mut done = Vec::new();
    for file in &args.files {
        let idx = index_path(file, args.out_dir.as_deref());
        let n = crate::shard::index::index_tfrecord(file, &idx)?;
        done.push((file.clone(), idx, n));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_pair_with_shards() {
        assert_eq!(
            index_path(Path::new("a/x-00001.tfrecord"), None),
            PathBuf::from("a/x-00001.idx")
        );
        assert_eq!(
            index_path(Path::new("a/train.rec"), Some(Path::new("o"))),
            PathBuf::from("o/train.rec.idx")
        );
    }
}
