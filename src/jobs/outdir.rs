//! The output folder, once for every command that writes one (`convert`, `presize`): which
//! mode a run is in (fresh, overwrite, resume), the lock that keeps two runs out of each
//! other's outputs, what an earlier run left there, and removing exactly what dsprep wrote.
//!
//! What dsprep wrote is what the folder's manifest records (shards, indexes, annotation files,
//! image folders), the manifest and label map themselves, and `.partial` files named after
//! those or after the shard naming of a split the manifest lists. Nothing else is ever removed,
//! and symbolic links inside the folder are removed as links, never followed.

use crate::shard::format::{self, ShardFormat, PARTIAL_SUFFIX};
use crate::shard::manifest::{load_folder_manifest, FolderManifest, Manifest, MANIFEST_FILE};
use crate::shard::ShardError;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The label map `convert` writes beside the shards.
pub const LABEL_MAP_FILE: &str = "label_map.pbtxt";

/// What to do with an existing output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// The folder is new or empty.
    Fresh,
    /// Remove dsprep's earlier outputs there first (other files stay).
    Overwrite,
    /// Keep what an interrupted run finished (checked before it is trusted).
    Resume,
}

/// What is wrong with an output folder.
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    #[error("{0}: not a folder")]
    NotADir(PathBuf),
    #[error("{0}: output folder is not empty; pass --overwrite to replace dsprep's outputs there, or --resume to continue an interrupted run")]
    NotEmpty(PathBuf),
    #[error("{0}: another dsprep run is writing this folder (it holds the folder's lock); wait for it to finish or pick another folder")]
    Locked(PathBuf),
    #[error("{path}: holds {entry:?}, which no task of a task-mode run writes; a task writes into an empty folder or one holding only other tasks' shards and parts (or pass --overwrite to replace dsprep's outputs there)")]
    NotTaskOutput { path: PathBuf, entry: String },
    #[error("{out}: the output folder must not be the input folder, inside it, or contain it ({input}); pick a folder elsewhere")]
    Overlap { out: PathBuf, input: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Shard(#[from] ShardError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutDirError + '_ {
    move |source| OutDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The mode a run is in, from its flags and what the folder holds: a non-empty folder needs
/// `--overwrite` or `--resume`; a path that is a file is an error. Called once, by the plan.
pub fn output_mode(out: &Path, overwrite: bool, resume: bool) -> Result<OutputMode, OutDirError> {
    if out.exists() && !out.is_dir() {
        return Err(OutDirError::NotADir(out.to_path_buf()));
    }
    // A folder another run is writing is refused as such, whatever the flags: its contents say
    // nothing about what this run may do with them.
    if out.is_dir() {
        let probe = File::open(out).map_err(io_err(out))?;
        if let Err(std::fs::TryLockError::WouldBlock) = probe.try_lock() {
            return Err(OutDirError::Locked(out.to_path_buf()));
        }
    }
    let non_empty = out.is_dir()
        && std::fs::read_dir(out)
            .map_err(io_err(out))?
            .next()
            .is_some();
    Ok(match (non_empty, overwrite, resume) {
        (true, true, _) => OutputMode::Overwrite,
        (true, _, true) => OutputMode::Resume,
        (false, _, _) => OutputMode::Fresh,
        (true, false, false) => return Err(OutDirError::NotEmpty(out.to_path_buf())),
    })
}

/// `path` made absolute with every existing part's symbolic links resolved (the part that does
/// not exist yet is appended as given).
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
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
}

/// Refuses an output folder that is the input folder, lies inside it, or contains it (after
/// resolving symbolic links): an overwrite would then delete input, or read its own output.
pub fn check_disjoint(input: &Path, out: &Path) -> Result<(), OutDirError> {
    let (i, o) = (resolved(input), resolved(out));
    if o.starts_with(&i) || i.starts_with(&o) {
        return Err(OutDirError::Overlap {
            out: out.to_path_buf(),
            input: input.to_path_buf(),
        });
    }
    Ok(())
}

/// An output folder a run holds: created, locked, and cleared as its mode says.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    mode: OutputMode,
    /// The manifest an earlier run left (read on resume and overwrite).
    previous: Option<FolderManifest>,
    /// Files dsprep did not write that were left in place by `--overwrite`, for the report.
    left_alone: Vec<String>,
    /// Holds the advisory lock for as long as the run holds the folder.
    _lock: File,
}

impl OutputDir {
    /// Creates the folder, takes its lock, and clears it as `mode` says: every mode removes the
    /// `.partial` files of dsprep's earlier runs (never trusted); `Overwrite` also removes what
    /// the earlier manifest records as written. `Resume` keeps everything else for the job to
    /// check.
    pub fn open(path: &Path, mode: OutputMode) -> Result<OutputDir, OutDirError> {
        std::fs::create_dir_all(path).map_err(io_err(path))?;
        let lock = File::open(path).map_err(io_err(path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OutDirError::Locked(path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path)(e)),
        }
        let previous = match mode {
            OutputMode::Fresh => None,
            OutputMode::Resume | OutputMode::Overwrite => load_folder_manifest(path)?,
        };
        let recorded = previous.as_ref().map(written_by).unwrap_or_default();
        // Folders below OUT that held recorded files: what is left in them is named too.
        let mut held: BTreeSet<PathBuf> = BTreeSet::new();
        if mode == OutputMode::Overwrite {
            for rel in &recorded {
                remove_inside(path, rel)?;
                if let Some(name) = rel.file_name() {
                    let mut partial = name.to_os_string();
                    partial.push(PARTIAL_SUFFIX);
                    remove_inside(path, &rel.with_file_name(partial))?;
                }
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    held.insert(parent.to_path_buf());
                }
            }
            // Folders emptied by the removal go too, deepest first (a folder with anything
            // left in it stays).
            for dir in held.iter().rev() {
                let _ = std::fs::remove_dir(path.join(dir));
            }
        }
        let top: BTreeSet<String> = recorded
            .iter()
            .filter(|r| r.components().count() == 1)
            .map(|r| r.to_string_lossy().into_owned())
            .collect();
        let mut left_alone = Vec::new();
        let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(path)
            .map_err(io_err(path))?
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        entries.sort();
        for (name, entry) in entries {
            let ours_partial = name
                .strip_suffix(PARTIAL_SUFFIX)
                .is_some_and(|base| top.contains(base) || is_shard_name(base, &previous));
            if ours_partial {
                remove_entry(&entry)?;
            } else if mode == OutputMode::Overwrite && !held.iter().any(|h| h.starts_with(&name)) {
                left_alone.push(name);
            }
        }
        for dir in &held {
            let Ok(rd) = std::fs::read_dir(path.join(dir)) else {
                continue;
            };
            let mut inside: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| dir.join(e.file_name()).display().to_string())
                .collect();
            inside.sort();
            left_alone.extend(inside);
        }
        Ok(OutputDir {
            path: path.to_path_buf(),
            mode,
            previous,
            left_alone,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    /// The earlier shard-folder manifest, on resume.
    pub fn resumable_shards(&self) -> Option<&Manifest> {
        match (&self.previous, self.mode) {
            (Some(FolderManifest::Shards(m)), OutputMode::Resume) => Some(m),
            _ => None,
        }
    }

    /// The earlier manifest, whichever kind (resume and overwrite).
    pub fn previous(&self) -> Option<&FolderManifest> {
        self.previous.as_ref()
    }

    /// Entries `--overwrite` found and left in place because dsprep did not write them.
    pub fn left_alone(&self) -> &[String] {
        &self.left_alone
    }
}

// ---------------------------------------------------------------------------------------------
// Task mode (`convert --tasks`): many processes share one folder; see `jobs::tasks`.
// ---------------------------------------------------------------------------------------------

/// The mode of a task-mode run, from `--overwrite` and what the folder holds. Other tasks'
/// outputs — the `dsprep-tasks/` folder and names following the shard naming of the splits being
/// converted (finished or `.partial`) — do not make the folder "not empty"; anything else (a
/// finished run's `manifest.json` included) needs `--overwrite`. `--resume` changes nothing
/// here: a task always resumes from its own part.
pub fn task_output_mode(
    out: &Path,
    overwrite: bool,
    splits: &[String],
) -> Result<OutputMode, OutDirError> {
    if out.exists() && !out.is_dir() {
        return Err(OutDirError::NotADir(out.to_path_buf()));
    }
    if overwrite {
        return Ok(OutputMode::Overwrite);
    }
    if !out.is_dir() {
        return Ok(OutputMode::Fresh);
    }
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map_err(io_err(out))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // A finished run's manifest is the entry worth naming first.
    names.sort_by_key(|n| (n != MANIFEST_FILE, n.clone()));
    for name in names {
        let base = name.strip_suffix(PARTIAL_SUFFIX).unwrap_or(&name);
        let task_output = name == crate::shard::manifest::part::TASKS_DIR
            || splits.iter().any(|s| is_split_shard_name(base, s));
        if !task_output {
            return Err(OutDirError::NotTaskOutput {
                path: out.to_path_buf(),
                entry: name,
            });
        }
    }
    Ok(OutputMode::Fresh)
}

/// Takes the folder's advisory lock without touching its contents: exclusive (`dsprep merge`,
/// like [`OutputDir::open`]), or shared (every task of a task-mode run holds it, so tasks run
/// together while a whole run or a merge is kept out). It is the same lock `open` takes, so
/// the two exclude each other.
pub fn lock_folder(path: &Path, shared: bool) -> Result<File, OutDirError> {
    let lock = File::open(path).map_err(io_err(path))?;
    let r = if shared {
        lock.try_lock_shared()
    } else {
        lock.try_lock()
    };
    match r {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(OutDirError::Locked(path.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(path)(e)),
    }
}

/// What the manifest says dsprep wrote into its folder, as plain relative paths (anything
/// absolute or with `..` is not ours to touch and is left out).
fn written_by(m: &FolderManifest) -> Vec<PathBuf> {
    let mut out = vec![MANIFEST_FILE.to_string()];
    match m {
        FolderManifest::Shards(m) => {
            out.push(LABEL_MAP_FILE.to_string());
            for s in m.splits.iter().flat_map(|s| &s.shards) {
                out.push(s.info.file.clone());
                out.extend(s.info.index.clone());
            }
        }
        FolderManifest::Presize(m) => {
            for s in &m.splits {
                out.push(s.annotations.clone());
                for name in &s.written {
                    out.push(format!("{}/{name}", s.images_dir));
                }
            }
        }
    }
    out.into_iter()
        .map(PathBuf::from)
        .filter(|p| {
            p.components().next().is_some()
                && p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
        .collect()
}

/// Whether `name` follows the shard naming of a split the previous manifest lists
/// (`<split>-NNNNN-of-NNNNN.{tfrecord,idx,lmdb}`): an unfinished shard of that run.
fn is_shard_name(name: &str, previous: &Option<FolderManifest>) -> bool {
    let Some(FolderManifest::Shards(m)) = previous else {
        return false;
    };
    m.splits.iter().any(|s| is_split_shard_name(name, &s.name))
}

/// Whether `name` follows the shard naming of split `split`
/// (`<split>-NNNNN-of-NNNNN.{tfrecord,idx,lmdb}`).
fn is_split_shard_name(name: &str, split: &str) -> bool {
    let prefix = format!("{}-", format::portable_name(split));
    let Some(rest) = name.strip_prefix(&prefix) else {
        return false;
    };
    let stem = ShardFormat::Tfrecord
        .stem_of(rest)
        .or_else(|| ShardFormat::Lmdb.stem_of(rest))
        .or_else(|| rest.strip_suffix(format::INDEX_SUFFIX));
    stem.is_some_and(|st| {
        let b = st.as_bytes();
        b.len() == 14 && b[5..9] == *b"-of-" && b[..5].iter().chain(&b[9..]).all(u8::is_ascii_digit)
    })
}

/// Removes `root/rel` when every folder on the way is a real folder of OUT (a symbolic link on
/// the way leads elsewhere: nothing there is ours to remove).
fn remove_inside(root: &Path, rel: &Path) -> Result<(), OutDirError> {
    let mut p = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    let Some((last, folders)) = parts.split_last() else {
        return Ok(());
    };
    for c in folders {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    p.push(last);
    remove_entry(&p)
}

/// Removes a file, a folder (an LMDB shard, an image folder) or a symbolic link (as a link).
pub(crate) fn remove_entry(path: &Path) -> Result<(), OutDirError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let r = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::manifest::{
        LabelMode, ManifestOptions, ShardEntry, SplitEntry, MANIFEST_FORMAT_VERSION,
    };
    use crate::shard::writer::ShardInfo;

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
            Err(OutDirError::NotEmpty(_))
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
        assert!(matches!(
            output_mode(&d.path().join("x"), true, false),
            Err(OutDirError::NotADir(_))
        ));
    }

    #[test]
    fn overlap_is_refused_both_ways_and_through_links() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("in");
        std::fs::create_dir(&input).unwrap();
        assert!(check_disjoint(&input, &input).is_err());
        assert!(check_disjoint(&input, &input.join("out")).is_err());
        assert!(check_disjoint(&input, &input.join("a/b")).is_err());
        assert!(check_disjoint(&input.join("sub"), &input).is_err());
        assert!(check_disjoint(&input, &d.path().join("out")).is_ok());
        assert!(check_disjoint(&input, &d.path().join("in2")).is_ok());
        std::os::unix::fs::symlink(&input, d.path().join("link")).unwrap();
        assert!(check_disjoint(&input, &d.path().join("link/out")).is_err());
    }

    fn manifest_with(shards: &[&str]) -> Manifest {
        Manifest {
            tool: "dsprep".into(),
            tool_version: "0".into(),
            format_version: MANIFEST_FORMAT_VERSION,
            complete: true,
            options: ManifestOptions {
                format: ShardFormat::Tfrecord,
                labels: LabelMode::Coco,
                shard_size: None,
                shards: Some(2),
                decode_check: false,
                presize: None,
                presize_mode: Default::default(),
                deal: Default::default(),
            },
            categories: vec![],
            splits: vec![SplitEntry {
                name: "val".into(),
                annotations: String::new(),
                annotations_sha256: String::new(),
                images_dir: String::new(),
                images: 0,
                records: 0,
                counts: Default::default(),
                annotations_unknown_image: 0,
                annotations_unknown_category: 0,
                duplicate_image_ids: 0,
                shards: shards
                    .iter()
                    .map(|f| ShardEntry {
                        info: ShardInfo {
                            file: format!("{f}.tfrecord"),
                            index: Some(format!("{f}.idx")),
                            records: 1,
                            bytes: 1,
                            checksum: "x".into(),
                        },
                        counts: Default::default(),
                        skipped: vec![],
                        reencoded: vec![],
                        size_mismatches: vec![],
                        dropped_boxes: vec![],
                    })
                    .collect(),
            }],
        }
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn overwrite_removes_only_what_the_manifest_records() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        manifest_with(&["val-00000-of-00002"]).store(out).unwrap();
        for f in [
            "val-00000-of-00002.tfrecord",
            "val-00000-of-00002.idx",
            "val-00001-of-00002.tfrecord.partial",
            "label_map.pbtxt",
            "other.tfrecord",
            "notes.idx",
            "mine.txt.partial",
        ] {
            std::fs::write(out.join(f), b"x").unwrap();
        }
        std::fs::create_dir(out.join("x.lmdb")).unwrap();
        let dir = OutputDir::open(out, OutputMode::Overwrite).unwrap();
        assert_eq!(
            names(out),
            ["mine.txt.partial", "notes.idx", "other.tfrecord", "x.lmdb"]
        );
        assert_eq!(dir.left_alone(), names(out));
    }

    #[test]
    fn resume_and_fresh_remove_only_our_partials() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        manifest_with(&["val-00000-of-00002"]).store(out).unwrap();
        for f in [
            "val-00000-of-00002.tfrecord",
            "val-00001-of-00002.tfrecord.partial",
            "val-00001-of-00002.idx.partial",
            "manifest.json.partial",
            "theirs.partial",
        ] {
            std::fs::write(out.join(f), b"x").unwrap();
        }
        let dir = OutputDir::open(out, OutputMode::Resume).unwrap();
        assert!(dir.resumable_shards().is_some());
        assert_eq!(
            names(out),
            [
                "manifest.json",
                "theirs.partial",
                "val-00000-of-00002.tfrecord"
            ]
        );
    }

    #[test]
    fn a_second_run_is_locked_out() {
        let d = tempfile::tempdir().unwrap();
        let first = OutputDir::open(d.path(), OutputMode::Fresh).unwrap();
        let e = OutputDir::open(d.path(), OutputMode::Fresh).unwrap_err();
        assert!(matches!(e, OutDirError::Locked(_)), "{e}");
        assert!(e.to_string().contains("another dsprep run"));
        // The plan sees it too, before any flag matters.
        let e = output_mode(d.path(), true, false).unwrap_err();
        assert!(matches!(e, OutDirError::Locked(_)), "{e}");
        drop(first);
        OutputDir::open(d.path(), OutputMode::Fresh).unwrap();
    }

    #[test]
    fn links_in_the_folder_are_removed_as_links() {
        let d = tempfile::tempdir().unwrap();
        let (out, outside) = (d.path().join("out"), d.path().join("outside"));
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep.tfrecord"), b"x").unwrap();
        std::fs::create_dir_all(&out).unwrap();
        manifest_with(&["val-00000-of-00002"]).store(&out).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("val-00000-of-00002.tfrecord")).unwrap();
        OutputDir::open(&out, OutputMode::Overwrite).unwrap();
        assert!(!out.join("val-00000-of-00002.tfrecord").exists());
        assert!(outside.join("keep.tfrecord").is_file());
    }
}
