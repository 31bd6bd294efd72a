//! `verify`: every record of every shard a folder's manifest lists — framing and CRCs, every
//! index line against the record it points at, record counts against the manifest, each image
//! against its `image/key/sha256`, and with `decode` a full decode checked against the
//! recorded size. Each problem names the shard, the byte offset and the record number.

use super::{pool, JobError};
use crate::shard::example::Example;
use crate::shard::format::ShardRef;
use crate::shard::index::parse_index;
use crate::shard::manifest::{plain_name, Manifest, ShardEntry, MANIFEST_FILE};
use crate::shard::od_example::keys;
use crate::shard::source::{read_records, Flow, ReadMode, RecordProblem};
use crate::shard::tfrecord::FRAME_OVERHEAD;
use rayon::prelude::*;
use serde::Serialize;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// A complete verify run.
#[derive(Debug, Clone)]
pub struct VerifySpec {
    pub dir: PathBuf,
    /// Also fully decode every image.
    pub decode: bool,
    pub threads: usize,
}

/// One problem, located as precisely as the format allows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadRecord {
    pub shard: String,
    /// Byte offset of the record's length field (TFRecord).
    pub offset: Option<u64>,
    /// Record number within the shard (0-based).
    pub record: Option<u64>,
    pub reason: String,
}

/// What verify found in one shard.
#[derive(Debug, Clone, Serialize)]
pub struct ShardCheck {
    pub shard: String,
    pub records_expected: u64,
    pub records_read: u64,
    pub bad: Vec<BadRecord>,
}

impl ShardCheck {
    fn new(shard: &str, expected: u64) -> Self {
        ShardCheck {
            shard: shard.to_string(),
            records_expected: expected,
            records_read: 0,
            bad: Vec::new(),
        }
    }

    fn problem(&mut self, offset: Option<u64>, record: Option<u64>, reason: String) {
        self.bad.push(BadRecord {
            shard: self.shard.clone(),
            offset,
            record,
            reason,
        });
    }

    /// Adds the count check against the manifest.
    fn finish(mut self) -> Self {
        if self.records_read != self.records_expected {
            let reason = format!(
                "manifest lists {} records, shard has {}",
                self.records_expected, self.records_read
            );
            self.problem(None, None, reason);
        }
        self
    }
}

/// Checks every shard of the folder. Errors only when the folder cannot be verified at all
/// (no manifest, unfinished, corrupt manifest); everything found in the shards is a problem in
/// the result.
pub fn run(spec: &VerifySpec) -> Result<Vec<ShardCheck>, JobError> {
    let dir = &spec.dir;
    let Some(manifest) = Manifest::load(dir)? else {
        return Err(JobError::Input(format!(
            "{}: no {MANIFEST_FILE}; is this a folder written by `dsprep convert`?",
            dir.display()
        )));
    };
    if !manifest.complete {
        return Err(JobError::Input(format!(
            "{}: the conversion did not finish (manifest says complete: false); rerun convert with --resume",
            dir.display()
        )));
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut shards: Vec<(&ShardEntry, ShardRef)> = Vec::new();
    for s in manifest.splits.iter().flat_map(|s| &s.shards) {
        let file = plain_name(&s.info.file, &manifest_path)?;
        let index = match &s.info.index {
            Some(i) => Some(dir.join(plain_name(i, &manifest_path)?)),
            None => None,
        };
        let shard = ShardRef {
            path: dir.join(file),
            format: manifest.options.format,
            index,
        };
        shards.push((s, shard));
    }
    let pool = pool(spec.threads)?;
    Ok(pool.install(|| {
        shards
            .par_iter()
            .map(|(entry, shard)| {
                if entry.info.records == 0 && entry.info.checksum.is_empty() {
                    // All its images were skipped: convert wrote no file for it.
                    ShardCheck::new(&entry.info.file, 0).finish()
                } else {
                    check_shard(entry, shard, spec.decode)
                }
            })
            .collect()
    }))
}

/// A problem before it becomes a [`BadRecord`]: offset, record number, reason.
type Located = (Option<u64>, Option<u64>, String);

/// Reads one shard through the shard reader, checking each record and (TFRecord) each index
/// line against where the framing found the record.
fn check_shard(entry: &ShardEntry, shard: &ShardRef, decode: bool) -> ShardCheck {
    let mut check = ShardCheck::new(&entry.info.file, entry.info.records);
    let index = match &shard.index {
        Some(p) => match read_index(p) {
            Ok(v) => Some(v),
            Err(reason) => {
                check.problem(None, None, reason);
                None
            }
        },
        None => None,
    };
    let lmdb = shard.index.is_none() && shard.format == crate::shard::format::ShardFormat::Lmdb;
    // Both callbacks add to one list, in the order the walk finds things.
    let bad: RefCell<Vec<Located>> = RefCell::new(Vec::new());
    let n = read_records(
        shard,
        ReadMode::Sequential,
        &mut Vec::new(),
        &mut |r| {
            if let (Some(idx), Some(offset)) = (&index, r.offset) {
                let expect = (offset, r.payload.len() as u64 + FRAME_OVERHEAD);
                match idx.get(r.number as usize) {
                    Some(&line) if line == expect => {}
                    Some(&line) => bad.borrow_mut().push((
                        Some(offset),
                        Some(r.number),
                        format!(
                            "index line {} says {:?}, record is at {:?}",
                            r.number + 1,
                            line,
                            expect
                        ),
                    )),
                    None => bad.borrow_mut().push((
                        Some(offset),
                        Some(r.number),
                        "record missing from the index".into(),
                    )),
                }
            }
            if let Err(reason) = check_payload(r.payload, decode) {
                let reason = if lmdb {
                    let key = crate::shard::lmdb::record_key(r.number)
                        .map(|k| String::from_utf8_lossy(&k).into_owned())
                        .unwrap_or_default();
                    format!("key {key}: {reason}")
                } else {
                    reason
                };
                bad.borrow_mut().push((r.offset, Some(r.number), reason));
            }
            Flow::Continue
        },
        &mut |p: RecordProblem| bad.borrow_mut().push((p.offset, p.number, p.reason)),
    );
    for (offset, record, reason) in bad.into_inner() {
        check.problem(offset, record, reason);
    }
    check.records_read = n;
    if let Some(idx) = &index {
        if idx.len() as u64 != n {
            check.problem(
                None,
                None,
                format!("index has {} lines, shard has {n} records", idx.len()),
            );
        }
    }
    check.finish()
}

fn read_index(p: &Path) -> Result<Vec<(u64, u64)>, String> {
    std::fs::read(p)
        .map_err(|e| format!("{}: cannot read index: {e}", p.display()))
        .and_then(|b| parse_index(&b, p).map_err(|e| e.to_string()))
}

/// Decode-level checks of one record: a parsable Example whose image decodes to the recorded
/// size and hashes to the recorded sha256.
fn check_payload(payload: &[u8], decode: bool) -> Result<(), String> {
    let ex = Example::decode(payload).map_err(|e| format!("not a tf.train.Example: {e}"))?;
    let encoded = ex
        .get_bytes(keys::ENCODED)
        .and_then(|v| v.first())
        .ok_or("no image/encoded feature")?;
    let sha = ex
        .get_bytes(keys::SHA256)
        .and_then(|v| v.first())
        .ok_or("no image/key/sha256 feature")?;
    use sha2::Digest;
    if hex::encode(sha2::Sha256::digest(encoded.as_ref())).as_bytes() != sha.as_ref() {
        return Err("image/encoded does not match image/key/sha256".into());
    }
    if decode {
        let img = crate::image::decode_rgb8(encoded).map_err(|e| format!("image: {e}"))?;
        let h = ex.get_int64s(keys::HEIGHT).and_then(|v| v.first().copied());
        let w = ex.get_int64s(keys::WIDTH).and_then(|v| v.first().copied());
        if (w, h) != (Some(i64::from(img.width)), Some(i64::from(img.height))) {
            return Err(format!(
                "image decodes to {}x{} but the record says {:?}x{:?}",
                img.width, img.height, w, h
            ));
        }
    }
    Ok(())
}
