//! Integration tests: the real `dsprep` binary on the committed fixtures.

use dsprep::shard::example::Example;
use dsprep::shard::od_example::keys;
use dsprep::shard::tfrecord::iter_slice;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsprep"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run dsprep")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn convert(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "convert",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

/// All records of all TFRecord shards in `out`, in shard order.
fn records(out: &Path) -> Vec<Vec<u8>> {
    let mut shards: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tfrecord"))
        .collect();
    shards.sort();
    let mut all = Vec::new();
    for s in shards {
        let bytes = std::fs::read(&s).unwrap();
        for r in iter_slice(&bytes) {
            all.push(r.unwrap().1.to_vec());
        }
    }
    all
}

fn by_filename(recs: &[Vec<u8>], name: &str) -> Example<'static> {
    recs.iter()
        .map(|r| Example::decode(r).unwrap().into_owned())
        .find(|e| {
            e.get_bytes(keys::FILENAME)
                .is_some_and(|v| v[0].as_ref() == name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no record for {name}"))
}

fn int(e: &Example<'_>, k: &str) -> i64 {
    e.get_int64s(k).unwrap()[0]
}

fn shard_bytes(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.ends_with(".tfrecord") || n.ends_with(".idx")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn converts_the_demo_fixture_with_every_odd_case_accounted_for() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = convert(&fixture("coco"), &out, &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(out.join("val-00000-of-00001.tfrecord").is_file());
    assert!(out.join("val-00000-of-00001.idx").is_file());
    let label_map = std::fs::read_to_string(out.join("label_map.pbtxt")).unwrap();
    assert!(
        label_map.contains("name: \"toothbrush\"\n  id: 90"),
        "{label_map}"
    );

    let m = manifest(&out);
    assert_eq!(m["complete"], true);
    let s = &m["splits"][0];
    assert_eq!(s["name"], "val");
    assert_eq!(s["images"], 11);
    assert_eq!(s["records"], 11);
    let c = &s["counts"];
    assert_eq!(c["skipped"], 0);
    assert_eq!(c["without_annotations"], 1);
    assert_eq!(c["size_mismatch"], 1);
    assert_eq!(c["boxes_kept"], 11, "{c}");
    assert_eq!(c["boxes_clipped"], 1);
    assert_eq!(c["boxes_dropped"]["degenerate"], 2);
    assert_eq!(c["boxes_dropped"]["outside_image"], 1);
    let reenc: u64 = c["reencoded"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(reenc, 3, "exif + cmyk + png: {c}");
    assert_eq!(s["annotations_unknown_image"], 1);
    assert_eq!(s["annotations_unknown_category"], 1);

    let recs = records(&out);
    assert_eq!(recs.len(), 11);
    // EXIF orientation 6: stored upright, 48 wide and 64 tall.
    let rot = by_filename(&recs, "000007.jpg");
    assert_eq!((int(&rot, keys::WIDTH), int(&rot, keys::HEIGHT)), (48, 64));
    // Clean JPEGs are stored byte-identical.
    let plain = by_filename(&recs, "000001.jpg");
    let original = std::fs::read(fixture("coco/val/000001.jpg")).unwrap();
    assert_eq!(
        plain.get_bytes(keys::ENCODED).unwrap()[0].as_ref(),
        &original[..]
    );
    // Boxes: 1 kept + 1 clipped; degenerate/outside ones gone; clipped box ends exactly at 1.0.
    let xmax = plain.get_floats(keys::XMAX).unwrap();
    assert_eq!(xmax.len(), 2);
    assert_eq!(xmax[1], 1.0);
    assert_eq!(plain.get_floats(keys::XMIN).unwrap()[0], 4.0 / 64.0);
    assert_eq!(plain.get_int64s(keys::CLASS_LABEL).unwrap(), &[1, 3]);
    // Image without annotations: a record with empty lists.
    let empty = by_filename(&recs, "000003.jpg");
    assert_eq!(empty.get_floats(keys::XMIN).unwrap().len(), 0);
    // UTF-8 file name in a sub-folder; source_id is the COCO id.
    let uni = by_filename(&recs, "sub/ñandú 10.jpg");
    assert_eq!(uni.get_bytes(keys::FORMAT).unwrap()[0].as_ref(), b"jpeg");
    // Re-encoded PNG is a JPEG now.
    let png = by_filename(&recs, "000009.jpg");
    assert_eq!(&png.get_bytes(keys::ENCODED).unwrap()[0][..2], b"\xff\xd8");
}

#[test]
fn output_is_byte_identical_whatever_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert_eq!(
        code(&convert(
            &fixture("coco"),
            &a,
            &["--shards", "3", "-j", "1"]
        )),
        0
    );
    assert_eq!(
        code(&convert(
            &fixture("coco"),
            &b,
            &["--shards", "3", "-j", "2"]
        )),
        0
    );
    let (sa, sb) = (shard_bytes(&a), shard_bytes(&b));
    assert_eq!(sa.len(), 6);
    assert_eq!(sa, sb);
    assert_eq!(
        std::fs::read(a.join("manifest.json")).unwrap().len(),
        std::fs::read(b.join("manifest.json")).unwrap().len()
    );
}

#[test]
fn bad_inputs_are_skipped_reported_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = convert(&fixture("coco-bad"), &out, &[]);
    assert_eq!(
        code(&o),
        1,
        "skips must show in the exit code: {}",
        text(&o)
    );
    let m = manifest(&out);
    let split = &m["splits"][0];
    assert_eq!(split["images"], 7);
    let skipped: Vec<(String, String)> = split["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["skipped"].as_array().unwrap().clone())
        .map(|n| {
            (
                n["file_name"].as_str().unwrap().to_string(),
                n["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = skipped.iter().map(|s| s.0.as_str()).collect();
    for bad in ["empty.jpg", "truncated.jpg", "text.jpg", "missing.jpg"] {
        assert!(names.contains(&bad), "{bad} not reported: {skipped:?}");
    }
    assert!(
        !names.contains(&"corrupt_data.jpg"),
        "the cheap check must pass intact markers; only --decode-check decodes"
    );
    let reason = |n: &str| skipped.iter().find(|s| s.0 == n).unwrap().1.to_lowercase();
    assert!(reason("missing.jpg").contains("not found"));
    assert!(reason("empty.jpg").contains("empty"));
    assert!(reason("truncated.jpg").contains("truncated"));
    // records + skipped = every input image.
    assert_eq!(
        split["records"].as_u64().unwrap() + skipped.len() as u64,
        7,
        "{split}"
    );
    assert_eq!(
        records(&out).len() as u64,
        split["records"].as_u64().unwrap()
    );
}

#[test]
fn decode_check_catches_corrupt_entropy_data() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = convert(&fixture("coco-bad"), &out, &["--decode-check"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let m = manifest(&out);
    let skipped = m["splits"][0]["counts"]["skipped"].as_u64().unwrap();
    assert_eq!(skipped, 5, "corrupt_data.jpg must be skipped too: {m}");
}

#[test]
fn strict_fails_cleanly_and_leaves_no_complete_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = convert(&fixture("coco-bad"), &out, &["--strict"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--strict"), "{err}");
    assert!(err.contains(".jpg"), "names the file: {err}");
    for e in std::fs::read_dir(&out).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            !n.ends_with(".tfrecord") && !n.ends_with(".partial"),
            "left {n}"
        );
    }
}

#[test]
fn refuses_non_empty_output_without_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let o = convert(&fixture("coco"), &out, &[]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    let o = convert(&fixture("coco"), &out, &["--overwrite"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        std::fs::read(out.join("keep.txt")).unwrap(),
        b"mine",
        "only dsprep's files go"
    );
}

#[test]
fn resume_after_a_crash_gives_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (full, crashed) = (tmp.path().join("full"), tmp.path().join("crashed"));
    assert_eq!(
        code(&convert(&fixture("coco"), &full, &["--shards", "4"])),
        0
    );
    assert_eq!(
        code(&convert(&fixture("coco"), &crashed, &["--shards", "4"])),
        0
    );
    // Simulate a crash mid-run: one shard never finished (partial left behind), one finished
    // but got damaged on disk, manifest not complete.
    let s1 = crashed.join("val-00001-of-00004.tfrecord");
    std::fs::rename(&s1, crashed.join("val-00001-of-00004.tfrecord.partial")).unwrap();
    let s2 = crashed.join("val-00002-of-00004.tfrecord");
    let mut b = std::fs::read(&s2).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    std::fs::write(&s2, b).unwrap();
    let mut m = manifest(&crashed);
    m["complete"] = Value::Bool(false);
    std::fs::write(crashed.join("manifest.json"), m.to_string()).unwrap();

    let o = convert(&fixture("coco"), &crashed, &["--shards", "4", "--resume"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(shard_bytes(&full), shard_bytes(&crashed));
    assert!(!crashed.join("val-00001-of-00004.tfrecord.partial").exists());
    // Resuming with other options is refused.
    let o = convert(&fixture("coco"), &crashed, &["--shards", "2", "--resume"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

#[test]
fn verify_passes_clean_output_and_pinpoints_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_eq!(
        code(&convert(&fixture("coco"), &out, &["--shards", "2"])),
        0
    );
    let o = run(&["verify", out.to_str().unwrap(), "--decode", "-q"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("all OK"));

    // Damage one payload byte of the second record of shard 0.
    let shard = out.join("val-00000-of-00002.tfrecord");
    let idx = std::fs::read_to_string(out.join("val-00000-of-00002.idx")).unwrap();
    let second: Vec<u64> = idx
        .lines()
        .nth(1)
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    let mut b = std::fs::read(&shard).unwrap();
    b[(second[0] + 40) as usize] ^= 0x55;
    std::fs::write(&shard, &b).unwrap();
    let o = run(&["verify", out.to_str().unwrap(), "--json", "-q"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["ok"], false);
    let p = &r["problems"][0];
    assert_eq!(p["shard"], "val-00000-of-00002.tfrecord");
    assert_eq!(p["offset"], second[0]);
    assert_eq!(p["record"], 1);
}

#[test]
fn index_command_matches_the_index_written_while_converting() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_eq!(code(&convert(&fixture("coco"), &out, &[])), 0);
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let shard = other.join("copy.tfrecord");
    std::fs::copy(out.join("val-00000-of-00001.tfrecord"), &shard).unwrap();
    let o = run(&["index", shard.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        std::fs::read(other.join("copy.idx")).unwrap(),
        std::fs::read(out.join("val-00000-of-00001.idx")).unwrap()
    );
}

#[test]
fn lmdb_output_verifies_and_holds_the_same_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (tf, lm) = (tmp.path().join("tf"), tmp.path().join("lm"));
    assert_eq!(code(&convert(&fixture("coco"), &tf, &[])), 0);
    let o = convert(&fixture("coco"), &lm, &["--format", "lmdb"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(lm
        .join("val-00000-of-00001.lmdb")
        .join("data.mdb")
        .is_file());
    let o = run(&["verify", lm.to_str().unwrap(), "-q"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let m = manifest(&lm);
    assert_eq!(m["splits"][0]["shards"][0]["records"], 11);
    assert_eq!(m["options"]["format"], "lmdb");
}

#[test]
fn roboflow_layout_and_split_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = convert(&fixture("roboflow"), &out, &["--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = r["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["train", "valid"]);
    assert_eq!(r["records"], 5);
    let o = convert(
        &fixture("roboflow"),
        &tmp.path().join("x"),
        &["--split", "nope"],
    );
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("train") && err.contains("valid"),
        "lists found splits: {err}"
    );
}

#[test]
fn contiguous_labels_and_explicit_annotation_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let ann = fixture("coco/annotations/instances_val.json");
    let img = fixture("coco/val");
    let o = run(&[
        "convert",
        "--annotations",
        ann.to_str().unwrap(),
        "--images",
        img.to_str().unwrap(),
        out.to_str().unwrap(),
        "--labels",
        "contiguous",
        "-q",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let recs = records(&out);
    let labels: Vec<i64> = recs
        .iter()
        .flat_map(|r| {
            Example::decode(r)
                .unwrap()
                .get_int64s(keys::CLASS_LABEL)
                .unwrap()
                .to_vec()
        })
        .collect();
    assert!(!labels.is_empty());
    assert!(labels.iter().all(|l| (0..4).contains(l)), "{labels:?}");
    let m = manifest(&out);
    assert_eq!(m["categories"][3]["id"], 90);
    assert_eq!(m["categories"][3]["contiguous_label"], 3);
}

#[test]
fn missing_input_gives_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = convert(&tmp.path().join("nope"), &tmp.path().join("out"), &[]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = convert(&empty, &tmp.path().join("out2"), &[]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no COCO split"));
}

#[test]
fn convert_with_presize_shrinks_images_and_keeps_boxes() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain, small) = (tmp.path().join("plain"), tmp.path().join("small"));
    assert_eq!(code(&convert(&fixture("coco"), &plain, &[])), 0);
    let o = convert(&fixture("coco"), &small, &["--presize", "32"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let (a, b) = (records(&plain), records(&small));
    assert_eq!(a.len(), b.len());
    let full = by_filename(&a, "000001.jpg");
    let shrunk = by_filename(&b, "000001.jpg");
    assert_eq!(
        (int(&shrunk, keys::WIDTH), int(&shrunk, keys::HEIGHT)),
        (32, 24)
    );
    // Normalised boxes do not change with the pixel size; areas scale with it.
    assert_eq!(full.get_floats(keys::XMIN), shrunk.get_floats(keys::XMIN));
    assert_eq!(full.get_floats(keys::YMAX), shrunk.get_floats(keys::YMAX));
    let (fa, sa) = (
        full.get_floats(keys::AREA).unwrap()[0],
        shrunk.get_floats(keys::AREA).unwrap()[0],
    );
    assert!((sa - fa / 4.0).abs() < 1e-3, "{fa} -> {sa}");
    // Never upscaled: a 40x40 image under a 64 limit passes through byte-identical.
    let big = tmp.path().join("big");
    assert_eq!(
        code(&convert(&fixture("coco"), &big, &["--presize", "64"])),
        0
    );
    let kept = by_filename(&records(&big), "000003.jpg");
    let original = std::fs::read(fixture("coco/val/000003.jpg")).unwrap();
    assert_eq!(
        kept.get_bytes(keys::ENCODED).unwrap()[0].as_ref(),
        &original[..]
    );
    for r in records(&small) {
        let e = Example::decode(&r).unwrap();
        assert!(int(&e, keys::WIDTH).max(int(&e, keys::HEIGHT)) <= 32);
    }
}

#[test]
fn shards_whose_images_were_all_skipped_are_not_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // 7 images, 7 shards: one image each, so the bad ones leave shards with no record.
    let o = convert(&fixture("coco-bad"), &out, &["--shards", "7"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let m = manifest(&out);
    let shards = m["splits"][0]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 7);
    let mut written = 0;
    for s in shards {
        let file = out.join(s["file"].as_str().unwrap());
        if s["records"] == 0 {
            assert!(!file.exists(), "empty shard written: {}", file.display());
            assert_eq!(s["skipped"].as_array().unwrap().len(), 1);
        } else {
            assert!(file.is_file());
            let idx = std::fs::read_to_string(out.join(s["index"].as_str().unwrap())).unwrap();
            assert!(!idx.is_empty(), "no empty index files");
            written += 1;
        }
    }
    assert_eq!(
        written, 3,
        "good1, good2 and corrupt_data (cheap check) are records"
    );
    let o = run(&["verify", out.to_str().unwrap(), "-q"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}
