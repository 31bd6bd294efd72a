//! `index` arguments → one task per TFRecord: where its index goes (the shard layer's naming),
//! every input a regular file, no two inputs writing the same index, and never an index over a
//! file that is not one.

use super::PlanError;
use crate::cli::IndexArgs;
use crate::jobs::index::IndexTask;
use crate::shard::format::index_file_for;
use crate::shard::index::parse_index;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn plan_index(args: &IndexArgs) -> Result<Vec<IndexTask>, PlanError> {
    let mut tasks: Vec<IndexTask> = Vec::with_capacity(args.files.len());
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    for file in &args.files {
        let meta = std::fs::metadata(file)
            .map_err(|e| PlanError::Input(format!("{}: cannot read: {e}", file.display())))?;
        if !meta.is_file() {
            return Err(PlanError::Input(format!(
                "{}: not a regular file; give TFRecord files",
                file.display()
            )));
        }
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let index = match &args.out_dir {
            Some(d) => d.join(index_file_for(&name)),
            None => file.with_file_name(index_file_for(&name)),
        };
        if let Some(first) = seen.insert(index.clone(), file) {
            return Err(PlanError::Input(format!(
                "{} and {} would both write {}; index them with different --out-dir",
                first.display(),
                file.display(),
                index.display()
            )));
        }
        refuse_foreign(&index)?;
        tasks.push(IndexTask {
            tfrecord: file.clone(),
            index,
        });
    }
    if let Some(d) = &args.out_dir {
        if d.exists() && !d.is_dir() {
            return Err(PlanError::NotADir(d.clone()));
        }
    }
    Ok(tasks)
}

/// An existing file at `index` may be replaced only when it is an index (one that parses).
fn refuse_foreign(index: &Path) -> Result<(), PlanError> {
    let Ok(meta) = std::fs::symlink_metadata(index) else {
        return Ok(());
    };
    let is_index =
        meta.is_file() && std::fs::read(index).is_ok_and(|b| parse_index(&b, index).is_ok());
    if is_index {
        Ok(())
    } else {
        Err(PlanError::Input(format!(
            "{}: exists and is not an index file; move it away or pick another --out-dir",
            index.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(files: &[PathBuf], out_dir: Option<PathBuf>) -> IndexArgs {
        IndexArgs {
            files: files.to_vec(),
            out_dir,
        }
    }

    #[test]
    fn index_names_pair_with_shards() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("x-00001.tfrecord");
        let b = d.path().join("train.rec");
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let t = plan_index(&args(&[a.clone(), b.clone()], None)).unwrap();
        assert_eq!(t[0].index, d.path().join("x-00001.idx"));
        assert_eq!(t[1].index, d.path().join("train.rec.idx"));
        let t = plan_index(&args(&[b], Some(d.path().join("o")))).unwrap();
        assert_eq!(t[0].index, d.path().join("o/train.rec.idx"));
    }

    #[test]
    fn refuses_non_files_clashes_and_foreign_targets() {
        let d = tempfile::tempdir().unwrap();
        let e = plan_index(&args(&[PathBuf::from("/dev/zero")], None)).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::create_dir_all(d.path().join("p")).unwrap();
        std::fs::create_dir_all(d.path().join("q")).unwrap();
        let (p, q) = (d.path().join("p/s.tfrecord"), d.path().join("q/s.tfrecord"));
        std::fs::write(&p, b"").unwrap();
        std::fs::write(&q, b"").unwrap();
        let e = plan_index(&args(&[p.clone(), q], Some(d.path().join("o")))).unwrap_err();
        assert!(e.to_string().contains("would both write"), "{e}");
        std::fs::write(d.path().join("p/s.idx"), b"precious notes").unwrap();
        let e = plan_index(&args(std::slice::from_ref(&p), None)).unwrap_err();
        assert!(e.to_string().contains("not an index file"), "{e}");
        std::fs::write(d.path().join("p/s.idx"), b"0 16\n").unwrap();
        assert!(plan_index(&args(&[p], None)).is_ok());
    }
}
