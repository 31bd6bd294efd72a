//! `verify`: the folder against its manifest (every listed shard present once, no shard on
//! disk unlisted, counts adding up), every shard's bytes against the checksum recorded when it
//! was written, and every record — framing and CRCs, every index line against the record it
//! points at, the record's invariants (image and sha256, sizes, boxes, labels in the label
//! map), with `decode` a full decode checked against the recorded size. Each problem names the
//! shard, the byte offset, the record number and, where it can be known, the image.

use super::deal;
use super::{pool, JobError};
use crate::dataset::{load_coco_hashed, ImageEntry};
use crate::shard::checksum::checksum_file;
use crate::shard::example::Example;
use crate::shard::format::{discover, ShardFormat, ShardRef};
use crate::shard::index::parse_index;
use crate::shard::manifest::{plain_name, LabelMode, Manifest, ShardEntry, MANIFEST_FILE};
use crate::shard::od_example::{check_record, keys, record_identity, LabelMap};
use crate::shard::source::{read_records, Flow, ReadMode, RecordProblem};
use crate::shard::tfrecord::FRAME_OVERHEAD;
use rayon::prelude::*;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
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
    /// The image the record holds: from the record itself, or, when it cannot be read, from
    /// the annotation file and the deterministic shard plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<i64>,
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
            file_name: None,
            image_id: None,
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

/// Checks every shard of the folder, and the folder against its manifest. Errors only when
/// the folder cannot be verified at all (no manifest, unfinished, corrupt manifest);
/// everything found is a problem in the result.
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
    let labels = label_map(&manifest);
    let mut folder = ShardCheck::new(MANIFEST_FILE, 0);
    let mut listed: HashSet<String> = HashSet::new();
    // (split, position in split, entry, ref); a shard listed twice is checked once.
    let mut shards: Vec<(usize, usize, &ShardEntry, ShardRef)> = Vec::new();
    for (si, split) in manifest.splits.iter().enumerate() {
        let mut records = 0;
        for (k, s) in split.shards.iter().enumerate() {
            records += s.info.records;
            let file = plain_name(&s.info.file, &manifest_path)?;
            let index = match &s.info.index {
                Some(i) => Some(dir.join(plain_name(i, &manifest_path)?)),
                None => None,
            };
            if !listed.insert(file.to_string()) {
                folder.problem(
                    None,
                    None,
                    format!("the manifest lists shard {file} more than once"),
                );
                continue;
            }
            if let Some(i) = &s.info.index {
                listed.insert(i.clone());
            }
            let shard = ShardRef {
                path: dir.join(file),
                format: manifest.options.format,
                index,
            };
            shards.push((si, k, s, shard));
        }
        if records != split.records {
            folder.problem(
                None,
                None,
                format!(
                    "split {}: the manifest counts {} records but its shards list {records}",
                    split.name, split.records
                ),
            );
        }
    }
    for unlisted in unlisted_shards(dir, &listed)? {
        folder.problem(
            None,
            None,
            format!("{unlisted} is a shard file the manifest does not list (not written by this conversion?)"),
        );
    }
    let pool = pool(spec.threads)?;
    let mut checks: Vec<ShardCheck> = pool.install(|| {
        shards
            .par_iter()
            .map(|(_, _, entry, shard)| {
                if entry.info.records == 0 && entry.info.checksum.is_empty() {
                    // All its images were skipped: convert wrote no file for it.
                    ShardCheck::new(&entry.info.file, 0).finish()
                } else {
                    check_shard(entry, shard, &labels, spec.decode)
                }
            })
            .collect()
    });
    name_unreadable_records(&manifest, &shards, &mut checks);
    if !folder.bad.is_empty() {
        checks.insert(0, folder);
    }
    Ok(checks)
}

/// Label → class text, as the records must carry them (the manifest's categories under its
/// label mode).
fn label_map(m: &Manifest) -> LabelMap {
    m.categories
        .iter()
        .map(|c| {
            let label = match m.options.labels {
                LabelMode::Coco => c.id,
                LabelMode::Contiguous => i64::from(c.contiguous_label),
            };
            (label, c.name.clone())
        })
        .collect()
}

/// Shard files in the folder (and the `.idx` of any TFRecord there) that the manifest does not
/// list, by name.
fn unlisted_shards(dir: &Path, listed: &HashSet<String>) -> Result<Vec<String>, JobError> {
    let found = discover(dir).map_err(|source| JobError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for s in found {
        let rel = s
            .path
            .strip_prefix(dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| s.name());
        if !listed.contains(&rel) {
            out.push(rel);
        }
    }
    Ok(out)
}

/// A problem before it becomes a [`BadRecord`]: offset, record number, reason, image.
struct Located {
    offset: Option<u64>,
    record: Option<u64>,
    reason: String,
    image: Option<(String, i64)>,
}

/// Compares the shard's bytes with the checksum the manifest recorded, then reads it through
/// the shard reader, checking each record and (TFRecord) each index line against where the
/// framing found the record.
fn check_shard(
    entry: &ShardEntry,
    shard: &ShardRef,
    labels: &LabelMap,
    decode: bool,
) -> ShardCheck {
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
    let lmdb = shard.format == ShardFormat::Lmdb;
    // Both callbacks add to one list, in the order the walk finds things.
    let bad: RefCell<Vec<Located>> = RefCell::new(Vec::new());
    let push = |offset, record, reason, image| {
        bad.borrow_mut().push(Located {
            offset,
            record,
            reason,
            image,
        })
    };
    let n = read_records(
        shard,
        ReadMode::Sequential,
        &mut Vec::new(),
        &mut |r| {
            if let (Some(idx), Some(offset)) = (&index, r.offset) {
                let expect = (offset, r.payload.len() as u64 + FRAME_OVERHEAD);
                match idx.get(r.number as usize) {
                    Some(&line) if line == expect => {}
                    Some(&line) => push(
                        Some(offset),
                        Some(r.number),
                        format!(
                            "index line {} says {:?}, record is at {:?}",
                            r.number + 1,
                            line,
                            expect
                        ),
                        None,
                    ),
                    None => push(
                        Some(offset),
                        Some(r.number),
                        "record missing from the index".into(),
                        None,
                    ),
                }
            }
            let (result, image) = check_payload(r.payload, labels, decode);
            if let Err(reason) = result {
                let reason = if lmdb {
                    let key = crate::shard::lmdb::record_key(r.number)
                        .map(|k| String::from_utf8_lossy(&k).into_owned())
                        .unwrap_or_default();
                    format!("key {key}: {reason}")
                } else {
                    reason
                };
                push(r.offset, Some(r.number), reason, image);
            }
            Flow::Continue
        },
        &mut |p: RecordProblem| push(p.offset, p.number, p.reason, None),
    );
    for l in bad.into_inner() {
        check.problem(l.offset, l.record, l.reason);
        if let (Some(b), Some((name, id))) = (check.bad.last_mut(), l.image) {
            b.file_name = Some(name);
            b.image_id = Some(id);
        }
    }
    // After the records: a problem with a record is named first, the whole-file evidence after.
    match checksum_file(&shard.data_file()) {
        Ok((sum, bytes)) => {
            if sum != entry.info.checksum {
                check.problem(
                    None,
                    None,
                    format!(
                        "checksum {sum} differs from the manifest's {}: the shard's bytes are not what convert wrote",
                        entry.info.checksum
                    ),
                );
            }
            if bytes != entry.info.bytes {
                check.problem(
                    None,
                    None,
                    format!(
                        "{bytes} bytes on disk, the manifest recorded {}",
                        entry.info.bytes
                    ),
                );
            }
        }
        Err(e) => check.problem(None, None, e.to_string()),
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

/// The record's invariants ([`check_record`]) and, with `decode`, a full decode checked
/// against the recorded size; with the record's image (file name, id) when it decodes.
fn check_payload(
    payload: &[u8],
    labels: &LabelMap,
    decode: bool,
) -> (Result<(), String>, Option<(String, i64)>) {
    let ex = match check_record(payload, labels) {
        Ok(ex) => ex,
        Err(reason) => {
            let image = Example::decode(payload).ok().map(|e| record_identity(&e));
            return (
                Err(reason),
                image.filter(|(n, id)| !n.is_empty() && *id >= 0),
            );
        }
    };
    let image = Some(record_identity(&ex));
    if decode {
        let encoded = ex
            .get_bytes(keys::ENCODED)
            .and_then(|v| v.first())
            .map(|v| v.as_ref())
            .unwrap_or_default();
        let img = match crate::image::decode_rgb8(encoded) {
            Ok(img) => img,
            Err(e) => return (Err(format!("image: {e}")), image),
        };
        let h = ex.get_int64s(keys::HEIGHT).and_then(|v| v.first().copied());
        let w = ex.get_int64s(keys::WIDTH).and_then(|v| v.first().copied());
        if (w, h) != (Some(i64::from(img.width)), Some(i64::from(img.height))) {
            return (
                Err(format!(
                    "image decodes to {}x{} but the record says {:?}x{:?}",
                    img.width, img.height, w, h
                )),
                image,
            );
        }
    }
    (Ok(()), image)
}

/// Names the image of every problem that has a record number but no image (the record could
/// not be read): record `r` of shard `k` of a split is the `r`-th image of that shard's deal
/// ([`crate::jobs::deal`], with the manifest's shuffle seed) that was not skipped. Needs the split's annotation
/// file as it was converted: it is read only when its SHA-256 still matches the manifest's.
fn name_unreadable_records(
    manifest: &Manifest,
    shards: &[(usize, usize, &ShardEntry, ShardRef)],
    checks: &mut [ShardCheck],
) {
    let wanted: HashSet<usize> = shards
        .iter()
        .zip(checks.iter())
        .filter(|(_, c)| {
            c.bad
                .iter()
                .any(|b| b.record.is_some() && b.file_name.is_none())
        })
        .map(|((si, ..), _)| *si)
        .collect();
    for si in wanted {
        let split = &manifest.splits[si];
        let Ok((ds, sha)) = load_coco_hashed(Path::new(&split.annotations)) else {
            continue;
        };
        if sha != split.annotations_sha256 {
            continue;
        }
        let n = split.shards.len();
        let order = deal::order(ds.len(), manifest.options.deal.shuffle_seed);
        for ((s_si, k, entry, _), check) in shards.iter().zip(checks.iter_mut()) {
            if *s_si != si {
                continue;
            }
            // Skipped images by (file name, id), each taken out once.
            let mut skipped: HashMap<(&str, i64), usize> = HashMap::new();
            for note in &entry.skipped {
                *skipped
                    .entry((note.file_name.as_str(), note.image_id))
                    .or_default() += 1;
            }
            let records: Vec<&ImageEntry> = deal::images_of(order.as_deref(), ds.len(), *k, n)
                .into_iter()
                .filter_map(|i| ds.images.get(i))
                .filter(
                    |img| match skipped.get_mut(&(img.file_name.as_str(), img.id)) {
                        Some(left) if *left > 0 => {
                            *left -= 1;
                            false
                        }
                        _ => true,
                    },
                )
                .collect();
            for b in &mut check.bad {
                if let (Some(r), None) = (b.record, &b.file_name) {
                    if let Some(img) = records.get(r as usize) {
                        b.file_name = Some(img.file_name.clone());
                        b.image_id = Some(img.id);
                    }
                }
            }
        }
    }
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
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!((bad[0].offset, bad[0].record), (Some(second), Some(1)));
        assert!(bad[0].reason.contains("CRC"), "{}", bad[0].reason);
        assert!(bad[1].reason.contains("checksum"), "{}", bad[1].reason);
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
