//! Exhaustive damage sweeps through `verify`, driven through the library (one process, so every
//! byte position fits in CI's time): every single-byte change and every truncation of a small
//! TFRecord shard and a small LMDB shard is reported, and none crashes.
//!
//! Each sweep runs twice. With the manifest as written, the shard checksum alone must catch
//! everything. With the checksum recomputed over the damaged file, as a forger who rewrites
//! the manifest too would, only the structural and record checks are left. TFRecord still
//! catches everything (every record carries its own CRCs). LMDB has no per-record check: there
//! a change may pass only when what a reader then gets is well-formed — every record readable,
//! the same number of them, each one a valid record (`check_record`: a forger could have
//! written it; a flipped digit of a source id is one) — and the test counts those.

use dsprep::dataset::discover::explicit_split;
use dsprep::jobs::convert::{ConvertSpec, ShardTarget};
use dsprep::jobs::outdir::OutputMode;
use dsprep::jobs::verify::{self, VerifySpec};
use dsprep::jobs::NoProgress;
use dsprep::shard::checksum::checksum_bytes;
use dsprep::shard::format::{ShardFormat, ShardRef};
use dsprep::shard::manifest::{LabelMode, Manifest};
use dsprep::shard::od_example::{check_record, LabelMap};
use dsprep::shard::source::{read_records, Flow, ReadMode};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A three-image COCO folder (the 763-byte baseline fixture, with boxes) converted into one
/// shard of `format`; returns the output folder and the shard's data file.
fn small_shard(root: &Path, format: ShardFormat) -> (PathBuf, PathBuf) {
    let images = root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let jpeg =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/odd/baseline_420.jpg"))
            .unwrap();
    let mut entries = Vec::new();
    let mut anns = Vec::new();
    for i in 1..=3 {
        std::fs::write(images.join(format!("{i}.jpg")), &jpeg).unwrap();
        entries.push(json!({"id": i, "file_name": format!("{i}.jpg")}));
        anns.push(json!({"id": i, "image_id": i, "category_id": 1,
                         "bbox": [1.0 * i as f64, 2.0, 5.0, 4.0], "area": 20.0, "iscrowd": 0}));
    }
    let ann = root.join("ann.json");
    std::fs::write(
        &ann,
        json!({"images": entries, "annotations": anns,
               "categories": [{"id": 1, "name": "person"}]})
        .to_string(),
    )
    .unwrap();
    let out = root.join("out");
    let spec = ConvertSpec {
        splits: vec![explicit_split(&ann, &images, Some("val")).unwrap()],
        out_dir: out.clone(),
        format,
        shard_target: ShardTarget::Count(1),
        labels: LabelMode::Coco,
        decode_check: false,
        strict: false,
        presize: None,
        durable: false,
        output_mode: OutputMode::Fresh,
        threads: 1,
        max_image_bytes: 1 << 20,
        tasks: None,
        deal: Default::default(),
    };
    let o = dsprep::jobs::convert::run(&spec, &NoProgress).unwrap();
    assert_eq!(o.manifest.splits[0].records, 3);
    let shard = o.manifest.splits[0].shards[0].info.file.clone();
    let data = match format {
        ShardFormat::Tfrecord => out.join(shard),
        ShardFormat::Lmdb => out.join(shard).join("data.mdb"),
    };
    (out, data)
}

/// Problems `verify` reports for the folder.
fn problems(out: &Path) -> usize {
    let spec = VerifySpec {
        dir: out.to_path_buf(),
        decode: false,
        threads: 1,
    };
    match verify::run(&spec) {
        Ok(checks) => checks.iter().map(|c| c.bad.len()).sum(),
        // The folder cannot be verified at all: that is a report too (exit 2).
        Err(_) => 1,
    }
}

/// The records a reader gets from the folder's one shard, or `None` if any is unreadable.
fn records(out: &Path) -> Option<Vec<Vec<u8>>> {
    let m = Manifest::load(out).ok()??;
    let shard: ShardRef = m.shard_refs(out, None).ok()?.into_iter().next()?;
    let mut got = Vec::new();
    let mut ok = true;
    read_records(
        &shard,
        ReadMode::Sequential,
        &mut Vec::new(),
        &mut |r| {
            got.push(r.payload.to_vec());
            Flow::Continue
        },
        &mut |_| ok = false,
    );
    ok.then_some(got)
}

/// Rewrites the manifest's checksum and size of the shard to match `data` (the forger).
fn forge_checksum(out: &Path, data: &[u8]) {
    let mut m = Manifest::load(out).unwrap().unwrap();
    let info = &mut m.splits[0].shards[0].info;
    info.checksum = checksum_bytes(data);
    info.bytes = data.len() as u64;
    m.store(out).unwrap();
}

struct Sweep {
    cases: usize,
    /// Forged LMDB changes that left well-formed records (counted, allowed).
    well_formed: usize,
    missed: Vec<String>,
}

/// The label map of [`small_shard`]'s records.
fn labels() -> LabelMap {
    LabelMap::from([(1, "person".to_string())])
}

impl Sweep {
    fn new() -> Self {
        Sweep {
            cases: 0,
            well_formed: 0,
            missed: Vec::new(),
        }
    }

    /// One damaged variant: `write` puts it in place; it must be reported, unless `dead_ok`
    /// and a reader gets exactly `original` records from it.
    fn case(
        &mut self,
        what: String,
        out: &Path,
        file: &Path,
        damaged: &[u8],
        forged: Option<ShardFormat>,
        original: &[Vec<u8>],
    ) {
        self.cases += 1;
        std::fs::write(file, damaged).unwrap();
        if forged.is_some() {
            forge_checksum(out, damaged);
        }
        if problems(out) > 0 {
            return;
        }
        let well_formed = forged == Some(ShardFormat::Lmdb)
            && records(out).is_some_and(|r| {
                r.len() == original.len() && r.iter().all(|p| check_record(p, &labels()).is_ok())
            });
        if well_formed {
            self.well_formed += 1;
        } else {
            self.missed.push(what);
        }
    }

    fn finish(self, name: &str) {
        assert!(self.cases > 0);
        eprintln!(
            "{name}: {} damaged variants, {} reported, {} left well-formed records",
            self.cases,
            self.cases - self.well_formed - self.missed.len(),
            self.well_formed
        );
        assert!(
            self.missed.is_empty(),
            "{name}: {} of {} damaged variants passed verify: {:?}",
            self.missed.len(),
            self.cases,
            &self.missed[..self.missed.len().min(20)]
        );
    }
}

fn sweep(format: ShardFormat, forged: bool) {
    let forged = forged.then_some(format);
    let tmp = tempfile::tempdir().unwrap();
    let (out, file) = small_shard(tmp.path(), format);
    let good = std::fs::read(&file).unwrap();
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    let original = records(&out).unwrap();
    assert_eq!(problems(&out), 0, "the clean shard must verify");
    let mut s = Sweep::new();
    for i in 0..good.len() {
        // One single-byte change per position (every bit of the byte inverted).
        let mut b = good.clone();
        b[i] ^= 0xFF;
        s.case(format!("byte {i}"), &out, &file, &b, forged, &original);
    }
    for len in 0..good.len() {
        s.case(
            format!("cut to {len}"),
            &out,
            &file,
            &good[..len],
            forged,
            &original,
        );
    }
    std::fs::write(&file, &good).unwrap();
    std::fs::write(out.join("manifest.json"), manifest).unwrap();
    assert_eq!(problems(&out), 0, "restored shard must verify again");
    s.finish(&format!("{format} (forged checksum: {})", forged.is_some()));
}

#[test]
fn every_tfrecord_damage_is_caught() {
    sweep(ShardFormat::Tfrecord, false);
}

#[test]
fn every_tfrecord_damage_is_caught_without_the_checksum() {
    sweep(ShardFormat::Tfrecord, true);
}

#[test]
fn every_lmdb_damage_is_caught() {
    sweep(ShardFormat::Lmdb, false);
}

#[test]
fn lmdb_damage_without_the_checksum_is_caught_or_leaves_valid_records() {
    sweep(ShardFormat::Lmdb, true);
}
