//! Random access to record N of a shard, for the loader's global shuffle: TFRecord through the
//! `.idx` offsets (one positioned read and both CRCs per record), LMDB through its record keys
//! (a descent of the bounds-checked tree of [`super::lmdb_read`]). Opening is cheap (the index
//! is parsed once, the LMDB meta pages are checked); reads take `&self`, so reader threads
//! share one open shard.
//!
//! A TFRecord shard without an index is walked once at open to find its record offsets (what
//! `dsprep index` would write). A record that cannot be read is an error naming the record,
//! never a panic; the caller decides what replaces it.

use super::format::{ShardFormat, ShardRef};
use super::lmdb::{record_key, DATA_FILE, LEN_KEY};
use super::lmdb_read::LmdbFile;
use super::source::{read_records, Flow, ReadMode};
use super::{index, tfrecord};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// A shard that could not be opened for random access.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
}

enum Kind {
    Tfrecord {
        file: File,
        /// (offset of the length field, framed size) of every record.
        entries: Vec<(u64, u64)>,
    },
    Lmdb {
        file: LmdbFile,
        records: u64,
    },
}

/// One shard opened for random access.
pub struct RandomShard {
    path: PathBuf,
    kind: Kind,
}

impl RandomShard {
    /// Opens `shard`: its index (or one sequential walk when it has none), or its LMDB meta
    /// pages and `__len__` entry.
    pub fn open(shard: &ShardRef) -> Result<Self, OpenError> {
        let fail = |reason: String| OpenError {
            path: shard.path.clone(),
            reason,
        };
        let kind = match shard.format {
            ShardFormat::Tfrecord => {
                let file =
                    File::open(&shard.path).map_err(|e| fail(format!("cannot open: {e}")))?;
                let entries = match &shard.index {
                    Some(idx) => index::read_index(idx).map_err(|e| fail(e.to_string()))?,
                    None => walk_offsets(shard),
                };
                Kind::Tfrecord { file, entries }
            }
            ShardFormat::Lmdb => {
                let file = LmdbFile::open(&shard.path.join(DATA_FILE))
                    .map_err(|e| fail(e.reason.clone()))?;
                let mut v = Vec::new();
                let records = match file.get_into(LEN_KEY, &mut v) {
                    Ok(true) => std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .ok_or_else(|| fail(format!("__len__ is {:?}, not a count", v)))?,
                    Ok(false) => {
                        return Err(fail(
                            "no __len__ entry (not an LMDB shard written by dsprep)".into(),
                        ))
                    }
                    Err(e) => return Err(fail(e.to_string())),
                };
                Kind::Lmdb { file, records }
            }
        };
        Ok(RandomShard {
            path: shard.path.clone(),
            kind,
        })
    }

    /// Records in the shard (index lines / `__len__`).
    pub fn len(&self) -> u64 {
        match &self.kind {
            Kind::Tfrecord { entries, .. } => entries.len() as u64,
            Kind::Lmdb { records, .. } => *records,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Where a problem with record `n` is reported: its byte offset (TFRecord) or its number
    /// (LMDB), as the sequential readers report it.
    pub fn offset_of(&self, n: u64) -> u64 {
        match &self.kind {
            Kind::Tfrecord { entries, .. } => entries.get(n as usize).map_or(n, |e| e.0),
            Kind::Lmdb { .. } => n,
        }
    }

    /// The payload (serialized `tf.train.Example`) of record `n`, read into `buf`; the error
    /// says why it cannot be used.
    pub fn read<'b>(&self, n: u64, buf: &'b mut Vec<u8>) -> Result<&'b [u8], String> {
        match &self.kind {
            Kind::Tfrecord { file, entries } => {
                let &(off, size) = entries
                    .get(n as usize)
                    .ok_or_else(|| format!("record {n} of {}", entries.len()))?;
                if size > 1 << 31 {
                    return Err(format!("index gives record {n} a size of {size} bytes"));
                }
                buf.clear();
                buf.resize(size as usize, 0);
                file.read_exact_at(buf, off)
                    .map_err(|e| format!("read of {size} bytes at {off} failed: {e}"))?;
                match tfrecord::iter_slice(buf).next() {
                    Some(Ok((_, payload))) => Ok(payload),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("empty index entry".into()),
                }
            }
            Kind::Lmdb { file, records } => {
                if n >= *records {
                    return Err(format!("record {n} of {records}"));
                }
                let key = record_key(n).ok_or_else(|| format!("record {n}: no key"))?;
                match file.get_into(&key, buf) {
                    Ok(true) => Ok(buf.as_slice()),
                    Ok(false) => Err(format!(
                        "no key {} although __len__ is {records}",
                        String::from_utf8_lossy(&key)
                    )),
                    Err(e) => Err(format!(
                        "damaged LMDB file at byte {}: {}",
                        e.offset, e.reason
                    )),
                }
            }
        }
    }
}

/// Offsets and framed sizes of every record of an index-less TFRecord shard, by one sequential
/// walk (records after a broken length field cannot be found and are not listed).
fn walk_offsets(shard: &ShardRef) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    read_records(
        shard,
        ReadMode::Sequential,
        &mut Vec::new(),
        &mut |r| {
            if let Some(off) = r.offset {
                out.push((off, r.payload.len() as u64 + tfrecord::FRAME_OVERHEAD));
            }
            Flow::Continue
        },
        &mut |_| {},
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::format::{discover, index_path_for};
    use crate::shard::writer::create_lmdb_sink;
    use std::path::Path;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                (0..(i * 131) % 7000 + 1)
                    .map(|j| (i * 7 + j) as u8)
                    .collect()
            })
            .collect()
    }

    fn write_tfrecord(dir: &Path, name: &str, pls: &[Vec<u8>], with_index: bool) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        let (mut idx, mut off) = (String::new(), 0u64);
        for pl in pls {
            let n = tfrecord::write_record(&mut f, pl).unwrap();
            idx.push_str(&format!("{off} {n}\n"));
            off += n;
        }
        if with_index {
            std::fs::write(index_path_for(&p), idx).unwrap();
        }
        p
    }

    #[test]
    fn every_record_in_any_order_for_both_formats() {
        let pls = payloads(300);
        let d = tempfile::tempdir().unwrap();
        write_tfrecord(d.path(), "a.tfrecord", &pls, true);
        write_tfrecord(d.path(), "b.tfrecord", &pls, false);
        let mut sink = create_lmdb_sink(d.path(), "c").unwrap();
        for p in &pls {
            sink.append(p).unwrap();
        }
        sink.finish().unwrap();
        let shards = discover(d.path()).unwrap();
        assert_eq!(shards.len(), 3);
        for s in &shards {
            let r = RandomShard::open(s).unwrap();
            assert_eq!(r.len(), 300, "{}", s.name());
            let mut buf = Vec::new();
            for k in 0..300u64 {
                let n = (k * 97) % 300;
                assert_eq!(r.read(n, &mut buf).unwrap(), &pls[n as usize][..]);
            }
            assert!(r.read(300, &mut buf).is_err());
        }
    }

    #[test]
    fn a_damaged_record_is_an_error_for_that_record_only() {
        let pls = payloads(5);
        let d = tempfile::tempdir().unwrap();
        let p = write_tfrecord(d.path(), "a.tfrecord", &pls, true);
        let s = &discover(d.path()).unwrap()[0];
        let off = RandomShard::open(s).unwrap().offset_of(2);
        let mut b = std::fs::read(&p).unwrap();
        b[off as usize + 13] ^= 0x20;
        std::fs::write(&p, b).unwrap();
        let r = RandomShard::open(s).unwrap();
        let mut buf = Vec::new();
        let e = r.read(2, &mut buf).unwrap_err();
        assert!(e.contains("CRC"), "{e}");
        for n in [0, 1, 3, 4] {
            assert_eq!(r.read(n, &mut buf).unwrap(), &pls[n as usize][..]);
        }
        // Truncated file: the records past the end are errors.
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        assert!(r.read(4, &mut buf).is_err());
        assert!(r.read(0, &mut buf).is_ok());
    }

    #[test]
    fn unopenable_shards_name_the_path() {
        let s = ShardRef {
            path: "/nonexistent/x.tfrecord".into(),
            format: ShardFormat::Tfrecord,
            index: None,
        };
        let e = RandomShard::open(&s).err().unwrap();
        assert!(e
            .to_string()
            .starts_with("/nonexistent/x.tfrecord: cannot open"));
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("x.lmdb")).unwrap();
        std::fs::write(d.path().join("x.lmdb/data.mdb"), vec![3u8; 9000]).unwrap();
        let s = &discover(d.path()).unwrap()[0];
        assert!(RandomShard::open(s).is_err());
    }
}
