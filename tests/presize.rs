//! Integration tests for `dsprep presize`: the real binary on fixtures/presize (made by
//! fixtures/presize/make_presize.py; see its docstring for what each image exercises).

use dsprep::image::jpeg_header::{parse_jpeg_header, Process, Subsampling};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/presize")
}

fn presize(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsprep"))
        .arg("presize")
        .arg(fixture())
        .arg(out)
        .args(["--quiet"])
        .args(extra)
        .output()
        .expect("run dsprep")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn input_json() -> Value {
    json_file(&fixture().join("annotations/instances_val.json"))
}

fn out_json(out: &Path) -> Value {
    json_file(&out.join("annotations/instances_val.json"))
}

fn image<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file_name"] == name)
}

fn anns_of(doc: &Value, image_id: i64) -> Vec<Value> {
    doc["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["image_id"] == image_id)
        .cloned()
        .collect()
}

fn header(out: &Path, name: &str) -> dsprep::image::JpegHeader {
    parse_jpeg_header(&std::fs::read(out.join("val").join(name)).unwrap()).unwrap()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

/// One full run shared by the read-only checks (the binary is fast; each test still gets its
/// own output folder so tests can run in parallel).
fn fresh(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Output) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = presize(&out, extra);
    (d, out, o)
}

#[test]
fn resizes_rewrites_annotations_and_reports_bad_images() {
    let (_d, out, o) = fresh(&["--size", "32"]);
    // Three bad images → finished with problems (exit 1), not a failure.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let doc = out_json(&out);
    let src = input_json();

    // Unknown/top-level fields survive.
    assert_eq!(doc["info"], src["info"]);
    assert_eq!(doc["licenses"], src["licenses"]);
    assert_eq!(doc["categories"], src["categories"]);
    assert_eq!(doc["vendor_extension"], json!({"kept": true}));
    assert_eq!(image(&doc, "big.jpg").unwrap()["flickr_url"], "keep-me");

    // big.jpg 128x64 → 32x16 (factor 1/4 on both axes), baseline 4:2:0, no EXIF.
    let big = image(&doc, "big.jpg").unwrap();
    assert_eq!(
        (big["width"].clone(), big["height"].clone()),
        (json!(32), json!(16))
    );
    let h = header(&out, "big.jpg");
    assert_eq!((h.width, h.height), (32, 16));
    assert_eq!(h.process, Process::Baseline);
    assert_eq!(h.subsampling, Subsampling::S420);
    assert!(h.hardware_decodable());
    let a = anns_of(&doc, 100);
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["bbox"], json!([8.0, 4.0, 16.0, 8.0]));
    assert!(close(&a[0]["area"], 64.0 * 32.0 / 16.0));
    assert_eq!(
        a[0]["segmentation"],
        json!([[8.0, 4.0, 24.0, 4.0, 24.0, 12.0, 8.0, 12.0]])
    );
    assert_eq!(
        a[0]["keypoints"],
        json!([10.0, 5.0, 2, 0, 0, 0, 20.0, 11.0, 1])
    );
    assert_eq!(a[0]["num_keypoints"], json!(2));
    // RLE rectangle x∈[32,96), y∈[16,48) of 64x128 → x∈[8,24), y∈[4,12) of 16x32: column-major
    // counts 8 columns of background (8*16) + 4 rows, then 8 ones / 8 zeros per column.
    let mut expect = vec![8 * 16 + 4];
    for col in 0..16 {
        expect.push(8);
        expect.push(if col == 15 { 4 + 8 * 16 } else { 8 });
    }
    assert_eq!(a[1]["segmentation"]["size"], json!([16, 32]));
    assert_eq!(a[1]["segmentation"]["counts"], json!(expect));
    // The compressed-string RLE is resampled the same way and stays a string.
    assert!(a[2]["segmentation"]["counts"].is_string());
    let decoded = dsprep::dataset::rescale::decode_rle_string(
        a[2]["segmentation"]["counts"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(decoded, expect);

    // wide.jpg 96x64 → 32x21: factors 32/96 and 21/64 exactly.
    let w = image(&doc, "wide.jpg").unwrap();
    assert_eq!(
        (w["width"].as_u64(), w["height"].as_u64()),
        (Some(32), Some(21))
    );
    let (sx, sy) = (32.0 / 96.0, 21.0 / 64.0);
    let wa = &anns_of(&doc, 101)[0];
    let b: Vec<f64> = wa["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want = [12.5 * sx, 10.0 * sy, 30.0 * sx, 20.0 * sy];
    for (g, e) in b.iter().zip(want) {
        assert!((g - e).abs() < 1e-9, "{b:?} vs {want:?}");
    }
    assert!(close(&wa["area"], 600.0 * sx * sy));

    // rot6.jpg: stored 64x32 with EXIF 6 → displayed 32x64 → 16x32, tag gone.
    let h = header(&out, "rot6.jpg");
    assert_eq!((h.width, h.height), (16, 32));
    assert!(!h.exif);
    assert_eq!(anns_of(&doc, 103)[0]["bbox"], json!([2.0, 4.0, 10.0, 20.0]));
    // rot8_small.jpg: within the limit but rotated: pixels rotated, size 10x20.
    let h = header(&out, "rot8_small.jpg");
    assert_eq!((h.width, h.height, h.exif), (10, 20, false));
    assert_eq!(anns_of(&doc, 104)[0]["bbox"], json!([1, 2, 5, 6]));

    // Odd inputs come out as baseline JPEGs.
    let g = header(&out, "gray.jpg");
    assert_eq!(
        (g.width, g.height, g.subsampling),
        (32, 16, Subsampling::Gray)
    );
    let p = header(&out, "progressive.jpg");
    assert_eq!((p.width, p.height, p.process), (32, 32, Process::Baseline));
    let png = header(&out, "png_as.jpg");
    assert_eq!((png.width, png.height), (32, 24));
    let cmyk = header(&out, "cmyk.jpg");
    assert_eq!(
        (cmyk.width, cmyk.height, cmyk.subsampling),
        (32, 32, Subsampling::S420)
    );

    // Bad images: not in the output, listed with name and reason, their annotations removed.
    for name in ["truncated.jpg", "text.jpg", "missing.jpg"] {
        assert!(image(&doc, name).is_none(), "{name} still listed");
        assert!(!out.join("val").join(name).exists());
    }
    assert!(anns_of(&doc, 109).is_empty() && anns_of(&doc, 111).is_empty());
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["complete"], json!(true));
    let failures = m["splits"][0]["failures"].as_array().unwrap();
    let names: Vec<&str> = failures
        .iter()
        .map(|f| f["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["truncated.jpg", "text.jpg", "missing.jpg"]);
    assert!(failures[0]["reason"]
        .as_str()
        .unwrap()
        .contains("truncated"));
    assert!(failures[2]["reason"]
        .as_str()
        .unwrap()
        .contains("not found"));
    assert_eq!(
        m["splits"][0]["annotation_counts"]["annotations_dropped"],
        json!(2)
    );
    // No temporary files left.
    for e in std::fs::read_dir(out.join("val")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".partial"), "{name}");
    }
}

#[test]
fn small_images_pass_through_byte_identical_and_never_upscale() {
    let (_d, out, o) = fresh(&["--size", "1000", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["resized"], json!(0));
    for name in [
        "big.jpg",
        "wide.jpg",
        "small.jpg",
        "gray.jpg",
        "progressive.jpg",
    ] {
        let a = std::fs::read(fixture().join("val").join(name)).unwrap();
        let b = std::fs::read(out.join("val").join(name)).unwrap();
        assert!(a == b, "{name} not byte-identical");
    }
    // Annotations of passed-through images are untouched, to the byte of each number.
    let (doc, src) = (out_json(&out), input_json());
    assert_eq!(anns_of(&doc, 100), anns_of(&src, 100));
    assert_eq!(anns_of(&doc, 101), anns_of(&src, 101));
    // Rotated, PNG and CMYK inputs are rewritten at their (displayed) size.
    assert_eq!(
        (
            header(&out, "rot6.jpg").width,
            header(&out, "rot6.jpg").height
        ),
        (32, 64)
    );
    assert_eq!(header(&out, "png_as.jpg").width, 40);
    assert_eq!(report["rewritten_same_size"], json!(4));
}

#[test]
fn reencode_rewrites_even_small_images() {
    let (_d, out, o) = fresh(&["--size", "1000", "--reencode", "--quality", "80"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let a = std::fs::read(fixture().join("val/small.jpg")).unwrap();
    let b = std::fs::read(out.join("val/small.jpg")).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        (
            header(&out, "small.jpg").width,
            header(&out, "small.jpg").height
        ),
        (24, 16)
    );
}

#[test]
fn shortest_mode_sets_the_short_side() {
    let (_d, out, _o) = fresh(&["--size", "16", "--mode", "shortest"]);
    let h = header(&out, "big.jpg");
    assert_eq!((h.width, h.height), (32, 16));
    let h = header(&out, "wide.jpg");
    assert_eq!((h.width, h.height), (24, 16));
    let h = header(&out, "rot6.jpg");
    assert_eq!((h.width, h.height), (16, 32));
}

#[test]
fn strict_fails_cleanly_naming_the_file() {
    let (_d, out, o) = fresh(&["--size", "32", "--strict"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("truncated.jpg"), "{err}");
    // Not marked complete; no annotation file claims a finished dataset.
    assert!(!out.join("annotations/instances_val.json").exists());
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["complete"], json!(false));
}

#[test]
fn output_is_independent_of_thread_count_and_resume_completes_the_same() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
    assert_eq!(
        presize(&a, &["--size", "32", "-j", "1"]).status.code(),
        Some(1)
    );
    assert_eq!(
        presize(&b, &["--size", "32", "-j", "3"]).status.code(),
        Some(1)
    );
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        for sub in ["val", "annotations"] {
            let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            for n in names {
                let bytes = std::fs::read(dir.join(sub).join(&n)).unwrap();
                v.push((format!("{sub}/{n}"), bytes));
            }
        }
        v.push((
            "manifest".into(),
            std::fs::read(dir.join("manifest.json")).unwrap(),
        ));
        v
    };
    assert!(files(&a) == files(&b), "output depends on the thread count");

    // Simulate an interruption: copy a's images minus two, no annotation file, an
    // incomplete manifest; --resume must finish with the same bytes.
    std::fs::create_dir_all(c.join("val")).unwrap();
    for (name, bytes) in files(&a) {
        if let Some(n) = name.strip_prefix("val/") {
            if n != "big.jpg" && n != "wide.jpg" {
                std::fs::write(c.join("val").join(n), bytes).unwrap();
            }
        }
    }
    let mut m = json_file(&a.join("manifest.json"));
    m["complete"] = json!(false);
    std::fs::write(c.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    // Without a flag a non-empty output is refused.
    assert_eq!(presize(&c, &["--size", "32"]).status.code(), Some(2));
    // Different options are refused on resume.
    assert_eq!(
        presize(&c, &["--size", "33", "--resume"]).status.code(),
        Some(2)
    );
    let o = presize(&c, &["--size", "32", "--resume", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["resumed"], json!(7));
    let strip = |v: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        v.into_iter().filter(|(n, _)| n != "manifest").collect()
    };
    assert!(strip(files(&a)) == strip(files(&c)), "resume differs");
    // --overwrite replaces a previous presize output.
    let o = presize(&c, &["--size", "16", "--overwrite"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(header(&c, "big.jpg").width, 16);
}

#[test]
fn bad_invocations_fail_before_work() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    assert_eq!(presize(&out, &["--size", "0"]).status.code(), Some(2));
    assert_eq!(presize(&out, &["--quality", "0"]).status.code(), Some(2));
    assert!(!out.exists());
    // Output inside the input folder.
    let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
        .args(["presize", "--quiet"])
        .arg(fixture())
        .arg(fixture().join("nested-out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!fixture().join("nested-out").exists());
}

/// The entries of `dir` ending in `.ext` (shard files or LMDB shard directories), sorted.
fn shards_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut shards: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    shards.sort();
    shards
}

/// Every record of every `.tfrecord` in `dir`, in shard-name order.
fn records(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in shards_with(dir, "tfrecord") {
        let bytes = std::fs::read(&s).unwrap();
        for r in dsprep::shard::tfrecord::iter_slice(&bytes) {
            out.push(r.unwrap().1.to_vec());
        }
    }
    out
}

#[test]
fn shard_folder_in_shard_folder_out() {
    use dsprep::shard::example::Example;
    use dsprep::shard::od_example::keys;
    let d = tempfile::tempdir().unwrap();
    let (conv, out) = (d.path().join("conv"), d.path().join("small"));
    let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
        .args(["convert", "--quiet", "--shards", "2"])
        .arg(fixture())
        .arg(&conv)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o)); // bad images skipped
    let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
        .args(["presize", "--quiet", "--size", "32", "--json"])
        .arg(&conv)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let (before, after) = (records(&conv), records(&out));
    assert_eq!(before.len(), after.len());
    assert_eq!(report["images"], json!(before.len()));
    let mut resized = 0;
    for (a, b) in before.iter().zip(&after) {
        let (ea, eb) = (Example::decode(a).unwrap(), Example::decode(b).unwrap());
        let int = |e: &Example<'_>, k| e.get_int64s(k).unwrap()[0];
        let img = &eb.get_bytes(keys::ENCODED).unwrap()[0];
        let h = parse_jpeg_header(img).unwrap();
        assert_eq!(
            (i64::from(h.width), i64::from(h.height)),
            (int(&eb, keys::WIDTH), int(&eb, keys::HEIGHT))
        );
        assert!(h.width.max(h.height) <= 32);
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(img));
        assert_eq!(
            eb.get_bytes(keys::SHA256).unwrap()[0].as_ref(),
            sha.as_bytes()
        );
        // Normalised boxes are unchanged; areas follow the pixels.
        for k in [keys::XMIN, keys::XMAX, keys::YMIN, keys::YMAX] {
            assert_eq!(ea.get_floats(k), eb.get_floats(k));
        }
        if a != b {
            resized += 1;
            let s = (int(&eb, keys::WIDTH) * int(&eb, keys::HEIGHT)) as f64
                / (int(&ea, keys::WIDTH) * int(&ea, keys::HEIGHT)) as f64;
            for (x, y) in ea
                .get_floats(keys::AREA)
                .unwrap()
                .iter()
                .zip(eb.get_floats(keys::AREA).unwrap())
            {
                assert!((f64::from(*x) * s - f64::from(*y)).abs() <= 1e-3 * f64::from(*x).max(1.0));
            }
        } else {
            assert!(int(&ea, keys::WIDTH).max(int(&ea, keys::HEIGHT)) <= 32);
        }
    }
    assert_eq!(report["resized"], json!(resized));
    // The new folder is a valid dsprep shard folder: indexes, CRCs, counts.
    let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
        .args(["verify", "--quiet", "--decode"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["options"]["presize"], json!(32));
    assert_eq!(m["complete"], json!(true));
    assert!(out.join("label_map.pbtxt").is_file());
}

/// Every record of every `.lmdb` shard directory in `dir`, in shard-name order.
fn lmdb_records(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in shards_with(dir, "lmdb") {
        dsprep::shard::lmdb::for_each_record(&s, |_, _, v| {
            out.push(v.to_vec());
            dsprep::shard::source::Flow::Continue
        })
        .unwrap();
    }
    out
}

#[test]
fn lmdb_shard_folder_in_lmdb_out_and_shortest_mode() {
    use dsprep::shard::example::Example;
    use dsprep::shard::od_example::keys;
    let d = tempfile::tempdir().unwrap();
    let conv = d.path().join("conv");
    let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
        .args(["convert", "--quiet", "--shards", "2", "--format", "lmdb"])
        .arg(fixture())
        .arg(&conv)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o)); // bad images skipped
    let before = lmdb_records(&conv);
    assert!(before.len() >= 4, "fixture gives several records");
    for (mode, size) in [("longest", 32u32), ("shortest", 24)] {
        let out = d.path().join(mode);
        let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
            .args(["presize", "--quiet", "--json", "--mode", mode])
            .args(["--size", &size.to_string()])
            .arg(&conv)
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{mode}: {}", text(&o));
        let after = lmdb_records(&out);
        assert_eq!(before.len(), after.len(), "{mode}");
        let mut resized = 0;
        for (a, b) in before.iter().zip(&after) {
            let (ea, eb) = (Example::decode(a).unwrap(), Example::decode(b).unwrap());
            let int = |e: &Example<'_>, k| e.get_int64s(k).unwrap()[0] as u32;
            let (w0, h0) = (int(&ea, keys::WIDTH), int(&ea, keys::HEIGHT));
            let img = &eb.get_bytes(keys::ENCODED).unwrap()[0];
            let h = parse_jpeg_header(img).unwrap();
            assert_eq!(
                (h.width, h.height),
                (int(&eb, keys::WIDTH), int(&eb, keys::HEIGHT))
            );
            let limit = if mode == "longest" {
                w0.max(h0)
            } else {
                w0.min(h0)
            };
            let got = if mode == "longest" {
                h.width.max(h.height)
            } else {
                h.width.min(h.height)
            };
            if limit > size {
                resized += 1;
                assert!(
                    got.abs_diff(size) <= 1,
                    "{mode}: {w0}x{h0} -> {}x{}",
                    h.width,
                    h.height
                );
            } else {
                assert_eq!(a, b, "{mode}: within the limit, record byte-identical");
            }
            for k in [keys::XMIN, keys::XMAX, keys::YMIN, keys::YMAX] {
                assert_eq!(ea.get_floats(k), eb.get_floats(k), "{mode}");
            }
        }
        assert!(resized > 0, "{mode}: something was resized");
        let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
            .args(["verify", "--quiet", "--decode"])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{mode}: {}", text(&o));
        let m = json_file(&out.join("manifest.json"));
        assert_eq!(m["options"]["format"], json!("lmdb"));
        assert_eq!(m["options"]["presize"], json!(size));
        let want_mode = if mode == "shortest" {
            json!("shortest")
        } else {
            Value::Null
        };
        assert_eq!(m["options"]["presize_mode"], want_mode);
        // --resume of a finished run keeps every shard and gives the same bytes.
        let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
            .args(["presize", "--quiet", "--resume", "--mode", mode])
            .args(["--size", &size.to_string()])
            .arg(&conv)
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{mode} resume: {}", text(&o));
        assert_eq!(lmdb_records(&out), after, "{mode}: resume changes nothing");
        // --overwrite replaces LMDB shard directories.
        let o = Command::new(env!("CARGO_BIN_EXE_dsprep"))
            .args(["presize", "--quiet", "--overwrite", "--mode", mode])
            .args(["--size", &size.to_string()])
            .arg(&conv)
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{mode} overwrite: {}", text(&o));
        assert_eq!(lmdb_records(&out), after, "{mode}: deterministic");
    }
}
