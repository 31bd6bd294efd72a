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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::manifest::{
        CategoryEntry, LabelMode, ManifestOptions, SplitEntry, MANIFEST_FORMAT_VERSION,
    };
    use crate::shard::od_example::OdRecord;
    use crate::shard::writer::{create_lmdb_sink, create_tfrecord_sink};

    fn record(i: u8) -> Vec<u8> {
        let image = vec![0xFF, 0xD8, i, 0xFF, 0xD9];
        use sha2::Digest;
        let r = OdRecord {
            height: 1,
            width: 1,
            filename: "f.jpg",
            source_id: i.to_string(),
            sha256_hex: hex::encode(sha2::Sha256::digest(&image)),
            encoded: &image,
            format: "jpeg",
            objects: vec![],
        };
        let mut out = Vec::new();
        r.encode_into(&mut out);
        out
    }

    /// A folder with one shard of `n` records in `format`, and its manifest.
    fn folder(format: ShardFormat, n: u8) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let mut sink = match format {
            ShardFormat::Tfrecord => create_tfrecord_sink(d.path(), "val-00000-of-00001"),
            ShardFormat::Lmdb => create_lmdb_sink(d.path(), "val-00000-of-00001"),
        }
        .unwrap();
        for i in 0..n {
            sink.append(&record(i)).unwrap();
        }
        let info = sink.finish().unwrap();
        let m = Manifest {
            tool: "dsprep".into(),
            tool_version: "0".into(),
            format_version: MANIFEST_FORMAT_VERSION,
            complete: true,
            options: ManifestOptions {
                format,
                labels: LabelMode::Coco,
                shard_size: None,
                shards: Some(1),
                decode_check: false,
                presize: None,
                presize_mode: Default::default(),
                deal: Default::default(),
            },
            categories: vec![CategoryEntry {
                id: 1,
                name: "a".into(),
                contiguous_label: 0,
            }],
            splits: vec![SplitEntry {
                name: "val".into(),
                annotations: String::new(),
                annotations_sha256: String::new(),
                images_dir: String::new(),
                images: u64::from(n),
                records: u64::from(n),
                counts: Default::default(),
                annotations_unknown_image: 0,
                annotations_unknown_category: 0,
                duplicate_image_ids: 0,
                shards: vec![ShardEntry {
                    info,
                    counts: Default::default(),
                    skipped: vec![],
                    reencoded: vec![],
                    size_mismatches: vec![],
                    dropped_boxes: vec![],
                }],
            }],
        };
        m.store(d.path()).unwrap();
        d
    }

    fn verify(d: &Path) -> Result<Vec<BadRecord>, JobError> {
        let spec = VerifySpec {
            dir: d.to_path_buf(),
            decode: false,
            threads: 1,
        };
        Ok(run(&spec)?.into_iter().flat_map(|c| c.bad).collect())
    }

    use crate::shard::format::ShardFormat;

    #[test]
    fn clean_shards_of_both_formats_pass() {
        for f in [ShardFormat::Tfrecord, ShardFormat::Lmdb] {
            let d = folder(f, 4);
            assert_eq!(verify(d.path()).unwrap(), vec![], "{f}");
        }
    }

    #[test]
    fn a_damaged_record_is_located_and_the_rest_read() {
        let d = folder(ShardFormat::Tfrecord, 4);
        let p = d.path().join("val-00000-of-00001.tfrecord");
        let idx = std::fs::read_to_string(d.path().join("val-00000-of-00001.idx")).unwrap();
        let second: u64 = idx
            .lines()
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut b = std::fs::read(&p).unwrap();
        b[second as usize + 20] ^= 0x55; // inside record 1's payload
        std::fs::write(&p, b).unwrap();
        let bad = verify(d.path()).unwrap();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].offset, bad[0].record), (Some(second), Some(1)));
        assert!(bad[0].reason.contains("CRC"), "{}", bad[0].reason);
    }

    #[test]
    fn index_lines_and_counts_are_checked() {
        let d = folder(ShardFormat::Tfrecord, 3);
        let idx = d.path().join("val-00000-of-00001.idx");
        let text = std::fs::read_to_string(&idx).unwrap();
        let first_two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(&idx, first_two).unwrap();
        let bad = verify(d.path()).unwrap();
        assert!(
            bad.iter()
                .any(|b| b.reason == "record missing from the index"),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|b| b.reason.contains("index has 2 lines")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_manifest_naming_a_file_outside_its_folder_is_corrupt() {
        let d = folder(ShardFormat::Tfrecord, 1);
        let mut m = Manifest::load(d.path()).unwrap().unwrap();
        m.splits[0].shards[0].info.index = Some("../../etc/hostname".into());
        m.store(d.path()).unwrap();
        let e = verify(d.path()).unwrap_err();
        assert!(e.to_string().contains("not a plain file name"), "{e}");
    }
}
