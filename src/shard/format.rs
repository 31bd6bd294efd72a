//! Shard containers and every naming rule of a shard folder, in one place: what a shard, its
//! index and its LMDB data file are called, how a split's shards are numbered, where a file is
//! written before it is renamed into place, and how a folder's shards are found again.
//!
//! Writers ([`super::writer`], [`super::lmdb`]), readers ([`super::source`]), the manifest,
//! `--resume`, `--overwrite` and `dsprep index` all name files through these functions, so
//! `x.tfrecord` always pairs with `x.idx` (DALI pairs them by name, and a mis-paired index
//! surfaces there as a protobuf error far from the cause).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The container of a shard folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardFormat {
    /// `<stem>.tfrecord` + DALI `<stem>.idx` pairs.
    Tfrecord,
    /// One LMDB environment per shard, a folder `<stem>.lmdb/` holding `data.mdb`.
    Lmdb,
}

/// Suffix of a TFRecord shard.
pub const TFRECORD_SUFFIX: &str = ".tfrecord";
/// Suffix of a TFRecord shard's index.
pub const INDEX_SUFFIX: &str = ".idx";
/// Suffix of an LMDB shard folder.
pub const LMDB_SUFFIX: &str = ".lmdb";
/// The data file inside an LMDB shard folder (no `lock.mdb` is written).
pub const LMDB_DATA_FILE: &str = "data.mdb";
/// Suffix of a file being written; renamed away once complete.
pub const PARTIAL_SUFFIX: &str = ".partial";

impl ShardFormat {
    /// The name the manifest and `--format` use.
    pub fn name(self) -> &'static str {
        match self {
            ShardFormat::Tfrecord => "tfrecord",
            ShardFormat::Lmdb => "lmdb",
        }
    }

    /// The shard's file (TFRecord) or folder (LMDB) name for a stem.
    pub fn shard_file(self, stem: &str) -> String {
        match self {
            ShardFormat::Tfrecord => format!("{stem}{TFRECORD_SUFFIX}"),
            ShardFormat::Lmdb => format!("{stem}{LMDB_SUFFIX}"),
        }
    }

    /// The index file written beside a shard (TFRecord only).
    pub fn index_file(self, stem: &str) -> Option<String> {
        match self {
            ShardFormat::Tfrecord => Some(format!("{stem}{INDEX_SUFFIX}")),
            ShardFormat::Lmdb => None,
        }
    }

    /// The stem of a shard file name of this format (`val-00000-of-00002.tfrecord` →
    /// `val-00000-of-00002`); `None` when the name has the other format's suffix or none.
    pub fn stem_of(self, file: &str) -> Option<&str> {
        match self {
            ShardFormat::Tfrecord => file.strip_suffix(TFRECORD_SUFFIX),
            ShardFormat::Lmdb => file.strip_suffix(LMDB_SUFFIX),
        }
        .filter(|s| !s.is_empty())
    }
}

impl std::fmt::Display for ShardFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Stem of shard `k` of `n` of a split: `<split>-00003-of-00016` (TF OD converter style;
/// zero-padded so names sort in shard order). The split name is made portable first.
pub fn shard_stem(split: &str, k: usize, n: usize) -> String {
    format!("{}-{k:05}-of-{n:05}", portable_name(split))
}

/// Split names come from file names; keep shard names portable (ASCII letters, digits, `-`,
/// `_`, `.`; anything else becomes `_`).
pub fn portable_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The index that pairs with a TFRecord file: `x.tfrecord` → `x.idx`; any other name gets
/// `.idx` appended (`train.rec` → `train.rec.idx`), as DALI's `tfrecord2idx` users expect.
pub fn index_file_for(tfrecord_name: &str) -> String {
    match tfrecord_name.strip_suffix(TFRECORD_SUFFIX) {
        Some(stem) if !stem.is_empty() => format!("{stem}{INDEX_SUFFIX}"),
        _ => format!("{tfrecord_name}{INDEX_SUFFIX}"),
    }
}

/// [`index_file_for`] on a path (same folder).
pub fn index_path_for(tfrecord: &Path) -> PathBuf {
    let name = tfrecord
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tfrecord.with_file_name(index_file_for(&name))
}

/// `<path>.partial`: where a file is written before it is renamed into place.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

/// Whether a directory entry name is a file dsprep is writing (or left behind when killed).
pub fn is_partial_name(name: &str) -> bool {
    name.ends_with(PARTIAL_SUFFIX)
}

/// A shard on disk, as readers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRef {
    /// The TFRecord file or the LMDB folder.
    pub path: PathBuf,
    pub format: ShardFormat,
    /// The `.idx` beside a TFRecord shard, when there is one.
    pub index: Option<PathBuf>,
}

impl ShardRef {
    /// The shard's name as reports show it (its file or folder name).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// The file whose bytes the manifest's checksum covers (`data.mdb` for LMDB).
    pub fn data_file(&self) -> PathBuf {
        match self.format {
            ShardFormat::Tfrecord => self.path.clone(),
            ShardFormat::Lmdb => self.path.join(LMDB_DATA_FILE),
        }
    }
}

/// Shards found by looking at a folder (the folder itself and one level of split folders),
/// sorted by path: `*.tfrecord`, `*.tfrecords`, `*.tfrecord-*` files (with their `.idx` when
/// present) and LMDB folders (`*.lmdb`, or any folder holding `data.mdb`). For folders written
/// by other tools; a dsprep folder's shards are listed by its manifest.
pub fn discover(dir: &Path) -> std::io::Result<Vec<ShardRef>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    for _depth in 0..2 {
        let mut next = Vec::new();
        for d in dirs {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for p in entries {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if p.is_dir() {
                    if name.ends_with(LMDB_SUFFIX) || p.join(LMDB_DATA_FILE).is_file() {
                        out.push(ShardRef {
                            path: p,
                            format: ShardFormat::Lmdb,
                            index: None,
                        });
                    } else {
                        next.push(p);
                    }
                } else if name.ends_with(TFRECORD_SUFFIX)
                    || name.contains(".tfrecord-")
                    || name.ends_with(".tfrecords")
                {
                    let idx = index_path_for(&p);
                    out.push(ShardRef {
                        path: p,
                        format: ShardFormat::Tfrecord,
                        index: idx.is_file().then_some(idx),
                    });
                }
            }
        }
        dirs = next;
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pair_and_round_trip() {
        let stem = shard_stem("val 2017/x", 3, 16);
        assert_eq!(stem, "val_2017_x-00003-of-00016");
        let f = ShardFormat::Tfrecord;
        assert_eq!(f.shard_file(&stem), "val_2017_x-00003-of-00016.tfrecord");
        assert_eq!(
            f.index_file(&stem).as_deref(),
            Some("val_2017_x-00003-of-00016.idx")
        );
        assert_eq!(f.stem_of(&f.shard_file(&stem)), Some(stem.as_str()));
        assert_eq!(f.stem_of("a.lmdb"), None);
        assert_eq!(f.stem_of(".tfrecord"), None);
        let l = ShardFormat::Lmdb;
        assert_eq!(l.shard_file("a"), "a.lmdb");
        assert_eq!(l.index_file("a"), None);
        assert_eq!(l.stem_of("a.lmdb"), Some("a"));
        assert_eq!(index_file_for("x-00001.tfrecord"), "x-00001.idx");
        assert_eq!(index_file_for("train.rec"), "train.rec.idx");
        assert_eq!(
            index_path_for(Path::new("a/b.tfrecord")),
            PathBuf::from("a/b.idx")
        );
        assert_eq!(
            partial_path(Path::new("a/b.idx")),
            PathBuf::from("a/b.idx.partial")
        );
        assert!(is_partial_name("b.idx.partial") && !is_partial_name("b.idx"));
    }

    #[test]
    fn format_serialises_as_its_name() {
        for f in [ShardFormat::Tfrecord, ShardFormat::Lmdb] {
            let j = serde_json::to_string(&f).unwrap();
            assert_eq!(j, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<ShardFormat>(&j).unwrap(), f);
        }
        assert!(serde_json::from_str::<ShardFormat>("\"parquet\"").is_err());
    }

    #[test]
    fn discover_finds_both_formats_one_level_down() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.tfrecord"), b"").unwrap();
        std::fs::write(d.path().join("b.idx"), b"").unwrap();
        std::fs::write(d.path().join("a.tfrecord"), b"").unwrap();
        std::fs::create_dir_all(d.path().join("val/c.lmdb")).unwrap();
        std::fs::create_dir_all(d.path().join("x/y/deep.tfrecord")).unwrap();
        std::fs::write(d.path().join("notes.txt"), b"").unwrap();
        let s = discover(d.path()).unwrap();
        let names: Vec<String> = s.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["a.tfrecord", "b.tfrecord", "c.lmdb"]);
        assert_eq!(s[0].index, None);
        assert_eq!(s[1].index, Some(d.path().join("b.idx")));
        assert_eq!(s[2].format, ShardFormat::Lmdb);
        assert_eq!(s[2].data_file(), d.path().join("val/c.lmdb/data.mdb"));
    }
}
