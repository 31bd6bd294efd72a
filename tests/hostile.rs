//! Hostile inputs (issue #11): the real `dsprep` binary on inputs built to break it.
//!
//! The rule every test here checks a piece of: dsprep never reads or writes outside the roots
//! it was given, never deletes what it did not write, never crashes on any input (a corrupt
//! shard is a report, not a signal), and never names a damaged or incomplete output as
//! complete. Bad input gets a clear error naming the file (and record/offset); one bad image
//! never kills a run; every input is accounted for in the manifest. Exit codes: 0 ok, 1
//! finished with skipped/bad items, 2 failure (bad invocation, unreadable input, I/O error,
//! corrupt manifest).
//!
//! Every case is built in a temp folder at test time; every child runs under a timeout and a
//! memory ceiling (tests/common). Written as the specification of issue 11 before the fixes
//! (each then failed); every one passes now and none is ignored.

mod common;

use common::*;
use dsprep::shard::example::Example;
use dsprep::shard::od_example::keys;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Small drivers
// ---------------------------------------------------------------------------------------------

fn convert(input: &Path, out: &Path, extra: &[&str]) -> Out {
    let mut a = vec!["convert", s(input), s(out), "-q"];
    a.extend_from_slice(extra);
    dsprep(a)
}

fn presize(input: &Path, out: &Path, extra: &[&str]) -> Out {
    let mut a = vec!["presize", s(input), s(out), "-q"];
    a.extend_from_slice(extra);
    dsprep(a)
}

fn verify(out: &Path, extra: &[&str]) -> Out {
    let mut a = vec!["verify", s(out), "-q"];
    a.extend_from_slice(extra);
    dsprep(a)
}

fn manifest(out: &Path) -> Value {
    read_json(&out.join("manifest.json"))
}

/// Entries of `dir` whose name ends with `suffix`, sorted.
fn entries_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Payloads of every TFRecord shard in `out`, in shard order (independent reader).
fn all_tf_payloads(out: &Path) -> Vec<Vec<u8>> {
    entries_with(out, ".tfrecord")
        .iter()
        .flat_map(|p| tf_records(&std::fs::read(p).unwrap()))
        .map(|r| r.1)
        .collect()
}

fn bytes_of<'a>(e: &'a Example<'_>, k: &str) -> &'a [u8] {
    e.get_bytes(k).and_then(|v| v.first()).map_or(&[], |b| b)
}

/// The payload with `f` applied to its Example.
fn edit_example(payload: &[u8], f: impl FnOnce(&mut Example<'static>)) -> Vec<u8> {
    let mut e = Example::decode(payload).unwrap().into_owned();
    f(&mut e);
    e.to_bytes()
}

/// Rewrite record `n` of a TFRecord shard through `f`, with correct CRCs and index: only the
/// record's meaning changes.
fn rewrite_tf_record(shard: &Path, n: usize, f: impl FnOnce(&mut Example<'static>)) {
    let mut recs: Vec<Vec<u8>> = tf_records(&std::fs::read(shard).unwrap())
        .into_iter()
        .map(|r| r.1)
        .collect();
    recs[n] = edit_example(&recs[n], f);
    write_tf_shard(shard, &recs);
}

/// Rewrite LMDB record `n` through `f` (a valid LMDB write).
fn rewrite_lmdb_record(shard: &Path, n: u64, f: impl FnOnce(&mut Example<'static>)) {
    let key = format!("{n:010}");
    let entries = lmdb_entries(shard);
    let (_, v) = entries
        .iter()
        .find(|(k, _)| k == key.as_bytes())
        .expect("record key");
    lmdb_put(shard, key.as_bytes(), &edit_example(v, f));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Every regular file below `dir` (recursively), for "appears nowhere" checks.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Six distinct clean images in `root` (COCO layout) converted to `out` with `extra` options.
fn converted(root: &Path, out: &Path, extra: &[&str]) {
    clean_coco(root, 6);
    convert(root, out, extra).expect(&[0]);
}

/// A private copy of the committed demo fixture (11 images, odd cases, all become records).
fn demo_copy(dest: &Path) {
    copy_tree(&fixtures().join("coco"), dest);
}

const SHARD0_OF2: &str = "val-00000-of-00002.tfrecord";
const LMDB_SHARD: &str = "val-00000-of-00001.lmdb";

// =============================================================================================
// 1. Paths from data resolve inside their root
// =============================================================================================

/// "Every path that comes from data resolves inside its root … a manifest naming a file
/// outside its folder is a corrupt manifest, exit 2." `presize` of a shard folder whose
/// manifest names a shard by absolute path or `../` must not read it, nor overwrite it with
/// its presized copy and index.
#[test]
fn presize_shards_refuses_manifest_names_outside_in() {
    let mut cases = Cases::new();
    for variant in ["absolute", "dotdot"] {
        cases.check(variant, || presize_shards_outside_case(variant));
    }
    cases.finish();
}

fn presize_shards_outside_case(variant: &str) {
    {
        let tmp = tempfile::tempdir().unwrap();
        let (src, conv, out) = (
            tmp.path().join("src"),
            tmp.path().join("conv"),
            tmp.path().join("out"),
        );
        converted(&src, &conv, &["--shards", "2"]);
        // A valid shard elsewhere: the victim.
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::copy(conv.join(SHARD0_OF2), victim.join("v.tfrecord")).unwrap();
        std::fs::copy(conv.join("val-00000-of-00002.idx"), victim.join("v.idx")).unwrap();
        let (file, index) = match variant {
            "absolute" => (
                s(&victim.join("v.tfrecord")).to_string(),
                s(&victim.join("v.idx")).to_string(),
            ),
            _ => ("../victim/v.tfrecord".into(), "../victim/v.idx".into()),
        };
        let mut m = manifest(&conv);
        m["splits"][0]["shards"][0]["file"] = json!(file);
        m["splits"][0]["shards"][0]["index"] = json!(index);
        write_json(&conv.join("manifest.json"), &m);

        let snap = Snapshot::of(tmp.path());
        let o = presize(&conv, &out, &["--size", "32"]);
        snap.assert_unchanged_except(&[&out]);
        o.expect(&[2]).mentions("v.tfrecord");
        assert!(
            !out.join("manifest.json").exists() || manifest(&out)["complete"] != json!(true),
            "{variant}: a refused run must not leave a complete manifest"
        );
    }
}

/// "A manifest naming a file outside its folder is a corrupt manifest, exit 2", and "no raw
/// bytes of inputs in any report": `verify` must not open a file the manifest names outside
/// OUT, nor print its first line.
#[test]
fn verify_refuses_manifest_names_outside_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    converted(&src, &out, &["--shards", "2"]);
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET-FIRSTLINE-7731\nsecond line\n").unwrap();
    let other = tmp.path().join("other");
    copy_tree(&out, &other);
    let pristine = std::fs::read(out.join("manifest.json")).unwrap();

    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "secret.txt",
            Box::new({
                let p = s(&secret).to_string();
                move |m: &mut Value| m["splits"][0]["shards"][0]["index"] = json!(p)
            }),
        ),
        (
            "../secret.txt",
            Box::new(|m: &mut Value| m["splits"][0]["shards"][0]["index"] = json!("../secret.txt")),
        ),
        (
            "../other/",
            Box::new(|m: &mut Value| {
                m["splits"][0]["shards"][0]["file"] = json!(format!("../other/{SHARD0_OF2}"))
            }),
        ),
    ];
    let mut cases = Cases::new();
    for (what, edit) in edits {
        cases.check(what, || {
            let mut m: Value = serde_json::from_slice(&pristine).unwrap();
            edit(&mut m);
            write_json(&out.join("manifest.json"), &m);
            let snap = Snapshot::of(tmp.path());
            let o = verify(&out, &[]);
            assert!(
                !o.all().contains("TOPSECRET"),
                "verify printed bytes of a file outside OUT: {}",
                o.text()
            );
            o.expect(&[2]).mentions("manifest.json");
            snap.assert_unchanged();
        });
    }
    cases.finish();
}

/// Builds `tmp/in` (COCO) whose `file_name`s leave the images root four ways (absolute, `..`,
/// a symlinked file, a symlinked folder), all pointing at a valid JPEG in `tmp/outside`, plus
/// one good image. Returns (input root, outside image bytes, the escaping names).
fn escaping_dataset(tmp: &Path) -> (PathBuf, Vec<u8>, Vec<String>) {
    let input = tmp.join("in");
    let outside = tmp.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = noise_jpeg(64, 48, 4242);
    std::fs::write(outside.join("secret.jpg"), &secret).unwrap();
    let abs = s(&outside.join("secret.jpg")).to_string();
    let names = vec![
        abs,
        "../../outside/secret.jpg".to_string(),
        "link.jpg".to_string(),
        "linkdir/secret.jpg".to_string(),
    ];
    let mut images = vec![image_entry(1, "good.jpg", 64, 48)];
    let mut anns = vec![ann_entry(1, 1, 1, [4.0, 6.0, 20.0, 30.0])];
    for (i, n) in names.iter().enumerate() {
        let id = i as i64 + 2;
        images.push(image_entry(id, n, 64, 48));
        anns.push(ann_entry(id, id, 1, [4.0, 6.0, 20.0, 30.0]));
    }
    let good = small_jpeg();
    write_coco(&input, &images, &anns, &[("good.jpg", &good)]);
    std::os::unix::fs::symlink(outside.join("secret.jpg"), input.join("val/link.jpg")).unwrap();
    std::os::unix::fs::symlink(&outside, input.join("val/linkdir")).unwrap();
    (input, secret, names)
}

/// "`convert` follows absolute paths, `..` and symlinks in COCO `file_name` and embeds files
/// from anywhere. Required: absolute, `..` and symlinks leaving the root are refused by name
/// (an image is skipped with that reason, listed in the manifest's `skipped`)."
#[test]
fn convert_refuses_image_paths_leaving_the_images_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, secret, names) = escaping_dataset(tmp.path());
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = convert(&input, &out, &[]);
    o.expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    let m = manifest(&out);
    let sk = skipped(&m);
    for n in &names {
        let hit = sk.iter().find(|(f, _)| f == n);
        assert!(
            hit.is_some_and(|(_, r)| !r.is_empty()),
            "{n} not skipped with a reason: {sk:?}"
        );
    }
    assert_eq!(m["splits"][0]["records"], json!(1), "{m}");
    for p in entries_with(&out, ".tfrecord") {
        assert!(
            !contains(&std::fs::read(&p).unwrap(), &secret[..]),
            "{} embeds the file from outside the images folder",
            p.display()
        );
    }
}

/// Same rule for `presize` of a COCO folder: the source side too (today only the destination
/// name is checked, so symlinks leaving the images folder are read and presized).
#[test]
fn presize_refuses_image_paths_leaving_the_images_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, _secret, names) = escaping_dataset(tmp.path());
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = presize(&input, &out, &["--size", "32"]);
    o.expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    let f = presize_failures(&manifest(&out));
    for n in &names {
        assert!(
            f.iter().any(|(fname, r)| fname == n && !r.is_empty()),
            "{n} not listed as a failure: {f:?}"
        );
    }
    assert!(!out.join("val/link.jpg").exists());
    assert!(!out.join("val/linkdir").exists());
    assert!(out.join("val/good.jpg").is_file());
}

/// "No raw bytes of inputs in any report or manifest": a text file named as an image, whose
/// first bytes are a secret, leaves the secret nowhere in stdout, stderr, manifest or OUT.
#[test]
fn reports_never_quote_input_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let secret = "XYZZY-SECRET-42!PASSWORD=hunter2\nmore secret text\n";
    let good = small_jpeg();
    write_coco(
        &input,
        &[
            image_entry(1, "good.jpg", 64, 48),
            image_entry(2, "notes.jpg", 64, 48),
        ],
        &[ann_entry(1, 1, 1, [4.0, 6.0, 20.0, 30.0])],
        &[("good.jpg", &good), ("notes.jpg", secret.as_bytes())],
    );
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("convert", vec!["convert"]),
        ("convert --decode-check", vec!["convert", "--decode-check"]),
        ("convert --format lmdb", vec!["convert", "--format", "lmdb"]),
        ("presize", vec!["presize", "--size", "32"]),
    ];
    let mut cases = Cases::new();
    for (i, (what, args)) in runs.into_iter().enumerate() {
        cases.check(what, || {
            let out = tmp.path().join(format!("out{i}"));
            let mut a: Vec<&str> = vec![args[0], s(&input), s(&out), "-q", "--json"];
            a.extend_from_slice(&args[1..]);
            let o = dsprep(a);
            o.expect(&[1]);
            for needle in ["XYZZY", "hunter2", "SECRET"] {
                assert!(
                    !o.all().contains(needle),
                    "{what}: output quotes the file: {}",
                    o.text()
                );
                for f in files_below(&out) {
                    assert!(
                        !contains(&std::fs::read(&f).unwrap(), needle.as_bytes()),
                        "{what}: {} quotes the input file's bytes ({needle})",
                        f.display()
                    );
                }
            }
            if what.starts_with("convert") {
                let m = manifest(&out);
                assert!(
                    skipped(&m).iter().any(|(n, _)| n == "notes.jpg"),
                    "{what}: {m}"
                );
                let v = verify(&out, &[]);
                v.expect(&[0]);
                assert!(!v.all().contains("XYZZY"), "{}", v.text());
            }
        });
    }
    cases.finish();
}

// =============================================================================================
// 2. Overlapping folders
// =============================================================================================

/// "`convert` … refuse[s] IN/OUT overlap in both directions (also through symlinks) with exit 2
/// and nothing written": OUT inside IN (plain, and through a symlink).
#[test]
fn convert_refuses_out_inside_in() {
    // (case, OUT relative to the temp root, extra args); each case in a fresh temp root with
    // IN = in/ (the demo fixture) and inlink -> in.
    let cases_list: [(&str, &str, &[&str]); 4] = [
        ("OUT inside IN", "in/out", &[]),
        ("OUT inside IN's images folder", "in/val/out", &[]),
        ("OUT inside IN through a symlink", "inlink/out", &[]),
        ("OUT is IN through a symlink", "inlink", &["--overwrite"]),
    ];
    let mut cases = Cases::new();
    for (what, out, extra) in cases_list {
        cases.check(what, || {
            let tmp = tempfile::tempdir().unwrap();
            let input = tmp.path().join("in");
            demo_copy(&input);
            std::os::unix::fs::symlink(&input, tmp.path().join("inlink")).unwrap();
            let snap = Snapshot::of(tmp.path());
            convert(&input, &tmp.path().join(out), extra).expect(&[2]);
            snap.assert_unchanged();
        });
    }
    // --images given explicitly: OUT inside the images folder.
    cases.check("--images IN/val, OUT IN/val/shards", || {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        demo_copy(&input);
        let snap = Snapshot::of(tmp.path());
        let o = dsprep([
            "convert",
            "--annotations",
            s(&input.join("annotations/instances_val.json")),
            "--images",
            s(&input.join("val")),
            s(&input.join("val/shards")),
            "-q",
        ]);
        o.expect(&[2]);
        snap.assert_unchanged();
    });
    cases.finish();
}

/// Same rule, other direction: IN inside OUT (`--overwrite` because OUT holds IN).
#[test]
fn convert_refuses_in_inside_out() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = out.join("coco");
    demo_copy(&input);
    std::os::unix::fs::symlink(&out, tmp.path().join("outlink")).unwrap();
    let mut cases = Cases::new();
    for (what, i, o) in [
        ("IN inside OUT", input.clone(), out.clone()),
        (
            "OUT through a symlink",
            input.clone(),
            tmp.path().join("outlink"),
        ),
        (
            "IN through a symlink",
            tmp.path().join("outlink/coco"),
            out.clone(),
        ),
    ] {
        // Each case on a fresh copy: an earlier case may have written.
        cases.check(what, || {
            if out.exists() {
                std::fs::remove_dir_all(&out).unwrap();
            }
            demo_copy(&input);
            let snap = Snapshot::of(tmp.path());
            convert(&i, &o, &["--overwrite"]).expect(&[2]);
            snap.assert_unchanged();
        });
    }
    cases.finish();
}

/// Presize, OUT inside IN: refused with exit 2 and nothing written — also when OUT reaches
/// into IN through a symlink.
#[test]
fn presize_refuses_out_inside_in() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    demo_copy(&input);
    std::os::unix::fs::symlink(&input, tmp.path().join("inlink")).unwrap();
    let snap = Snapshot::of(tmp.path());
    for out in [
        input.join("out"),
        input.join("val"),
        tmp.path().join("inlink/out"),
    ] {
        presize(&input, &out, &["--size", "32", "--overwrite"]).expect(&[2]);
        snap.assert_unchanged();
    }
}

/// Presize, IN inside OUT: "the first `--overwrite` run writes into the input folder, the
/// second deletes the whole input dataset." Required: exit 2, nothing written, both times.
#[test]
fn presize_refuses_in_inside_out() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = out.join("coco");
    demo_copy(&input);
    std::os::unix::fs::symlink(&out, tmp.path().join("outlink")).unwrap();
    std::os::unix::fs::symlink(&input, tmp.path().join("inlink")).unwrap();
    let mut cases = Cases::new();
    let reset = || {
        if out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        demo_copy(&input);
    };
    cases.check("IN inside OUT, run twice", || {
        reset();
        let snap = Snapshot::of(tmp.path());
        for _ in 0..2 {
            presize(&input, &out, &["--size", "32", "--overwrite"]).expect(&[2]);
            snap.assert_unchanged();
        }
    });
    cases.check("OUT through a symlink", || {
        reset();
        let snap = Snapshot::of(tmp.path());
        presize(
            &input,
            &tmp.path().join("outlink"),
            &["--size", "32", "--overwrite"],
        )
        .expect(&[2]);
        snap.assert_unchanged();
    });
    cases.check("IN through a symlink", || {
        reset();
        let snap = Snapshot::of(tmp.path());
        presize(
            &tmp.path().join("inlink"),
            &out,
            &["--size", "32", "--overwrite"],
        )
        .expect(&[2]);
        snap.assert_unchanged();
    });
    cases.finish();
}

/// "`index` writes only `.idx` files and never over an existing non-index file" — nor through
/// a symlink to somewhere else.
#[test]
fn index_never_writes_over_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    converted(&src, &out, &["--shards", "2"]);
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::copy(out.join(SHARD0_OF2), d.join("x.tfrecord")).unwrap();
    std::fs::copy(out.join(SHARD0_OF2), d.join("y.tfrecord")).unwrap();
    std::fs::write(d.join("x.idx"), "my notes, not an index\n").unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, d.join("y.idx")).unwrap();
    let snap = Snapshot::of(tmp.path());
    let mut cases = Cases::new();
    cases.check("x.idx is a text file", || {
        dsprep(["index", s(&d.join("x.tfrecord"))])
            .expect(&[2])
            .mentions("x.idx");
        snap.assert_unchanged();
    });
    cases.check("y.idx is a symlink to a file outside", || {
        dsprep(["index", s(&d.join("y.tfrecord"))])
            .expect(&[2])
            .mentions("y.idx");
        snap.assert_unchanged();
    });
    cases.finish();
}

// =============================================================================================
// 3. --overwrite deletes only what dsprep wrote
// =============================================================================================

/// Foreign files with dsprep's suffixes in OUT, for the overwrite tests.
fn plant_foreign(out: &Path) -> Vec<&'static str> {
    std::fs::write(out.join("other.tfrecord"), b"another tool's shard").unwrap();
    std::fs::write(out.join("notes.idx"), b"my notes").unwrap();
    std::fs::create_dir(out.join("x.lmdb")).unwrap();
    std::fs::write(out.join("x.lmdb/data.mdb"), b"someone's lmdb").unwrap();
    vec!["other.tfrecord", "notes.idx", "x.lmdb"]
}

/// "`--overwrite` deletes by extension today … Required: delete only files dsprep wrote there,
/// as its manifest records them, and their `.partial` files; leave everything else … and name
/// it in the output."
#[test]
fn convert_overwrite_leaves_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    let foreign = plant_foreign(&out);
    let before: Vec<(PathBuf, Entry)> = Snapshot::of(&out)
        .entries
        .into_iter()
        .filter(|(p, _)| foreign.iter().any(|f| p.starts_with(f)))
        .collect();
    let snap = Snapshot::of(tmp.path());
    let o = convert(&input, &out, &["--shards", "3", "--overwrite"]);
    o.expect(&[0]);
    snap.assert_unchanged_except(&[&out]);
    let after = Snapshot::of(&out).entries;
    for (p, e) in &before {
        assert_eq!(after.get(p), Some(e), "{} changed or gone", p.display());
    }
    for f in &foreign {
        o.mentions(f);
    }
    // dsprep's own earlier shards are gone (2 → 3 shards); the new run's shards verify, and
    // verify names the foreign shard files it finds beside them (the issue: "`verify` reports
    // a shard file that the manifest does not list; `--overwrite` leaves it").
    assert!(!out.join(SHARD0_OF2).exists());
    let v = verify(&out, &["--json"]);
    v.expect(&[1]);
    let r: Value = serde_json::from_str(&v.stdout).unwrap();
    for p in r["problems"].as_array().unwrap() {
        let reason = p["reason"].as_str().unwrap();
        assert!(
            foreign.iter().any(|f| reason.contains(f)),
            "a problem other than a foreign file: {p}"
        );
    }
}

/// Same rule for `presize` of a COCO folder: `--overwrite` removes the earlier run's whole
/// image folder today, a file of the user's in it included.
#[test]
fn presize_coco_overwrite_leaves_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    clean_coco(&input, 4);
    presize(&input, &out, &["--size", "32"]).expect(&[0]);
    std::fs::write(out.join("val/mine.txt"), b"user's file").unwrap();
    std::fs::write(out.join("val/extra.jpg"), small_jpeg()).unwrap();
    let snap = Snapshot::of(tmp.path());
    let o = presize(&input, &out, &["--size", "16", "--overwrite"]);
    o.expect(&[0]);
    snap.assert_unchanged_except(&[&out]);
    assert_eq!(
        std::fs::read(out.join("val/mine.txt")).ok().as_deref(),
        Some(&b"user's file"[..]),
        "a file dsprep did not write was removed or changed"
    );
    assert_eq!(
        std::fs::read(out.join("val/extra.jpg")).ok(),
        Some(small_jpeg()),
        "a file dsprep did not write was removed or changed"
    );
    o.mentions("mine.txt").mentions("extra.jpg");
}

/// Same rule for `presize` of a shard folder.
#[test]
fn presize_shards_overwrite_leaves_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, conv, out) = (
        tmp.path().join("in"),
        tmp.path().join("conv"),
        tmp.path().join("out"),
    );
    converted(&input, &conv, &["--shards", "2"]);
    presize(&conv, &out, &["--size", "32"]).expect(&[0]);
    let foreign = plant_foreign(&out);
    let before = Snapshot::of(&out);
    let snap = Snapshot::of(tmp.path());
    let o = presize(&conv, &out, &["--size", "16", "--overwrite"]);
    o.expect(&[0]);
    snap.assert_unchanged_except(&[&out]);
    let after = Snapshot::of(&out).entries;
    for (p, e) in before
        .entries
        .iter()
        .filter(|(p, _)| foreign.iter().any(|f| p.starts_with(f)))
    {
        assert_eq!(after.get(p), Some(e), "{} changed or gone", p.display());
    }
    for f in &foreign {
        o.mentions(f);
    }
}

/// "Never follow a symlink inside OUT (a symlink in OUT pointing at a folder outside with a
/// `.tfrecord` in it: nothing outside changes)" — and a foreign symlink is not dsprep's to
/// delete either.
#[test]
fn overwrite_never_follows_symlinks_in_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("a.tfrecord"), b"outside shard").unwrap();
    std::fs::write(elsewhere.join("b.idx"), b"0 10\n").unwrap();
    std::fs::write(elsewhere.join("c.tfrecord.partial"), b"outside partial").unwrap();
    let links = [
        "linked.lmdb",
        "linked.tfrecord",
        "linked.idx",
        "dir.tfrecord",
    ];
    use std::os::unix::fs::symlink;
    symlink(&elsewhere, out.join("linked.lmdb")).unwrap();
    symlink(elsewhere.join("a.tfrecord"), out.join("linked.tfrecord")).unwrap();
    symlink(elsewhere.join("b.idx"), out.join("linked.idx")).unwrap();
    symlink(&elsewhere, out.join("dir.tfrecord")).unwrap();
    symlink(
        elsewhere.join("c.tfrecord.partial"),
        out.join("c.tfrecord.partial"),
    )
    .unwrap();
    let snap = Snapshot::of(tmp.path());
    let o = convert(&input, &out, &["--shards", "2", "--overwrite"]);
    o.expect(&[0]);
    snap.assert_unchanged_except(&[&out]);
    for l in links {
        assert!(
            std::fs::symlink_metadata(out.join(l)).is_ok_and(|m| m.file_type().is_symlink()),
            "foreign symlink {l} removed from OUT"
        );
    }
}

/// "`verify` reports a shard file that the manifest does not list (exit 1, names it)."
#[test]
fn verify_reports_unlisted_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    std::fs::copy(
        out.join(SHARD0_OF2),
        out.join("val-00002-of-00003.tfrecord"),
    )
    .unwrap();
    let snap = Snapshot::of(tmp.path());
    verify(&out, &[])
        .expect(&[1])
        .mentions("val-00002-of-00003.tfrecord");
    snap.assert_unchanged();
}

// =============================================================================================
// 4. LMDB shards never crash a reader
// =============================================================================================

/// How strict the outcome of one damaged-LMDB case must be for readers that do not compare
/// checksums (verify-throughput, presize): `Structural` damage must be reported (1 or 2);
/// `Benign`-looking damage (unused meta page, bytes inside a value) may pass (0) — but no
/// reader may ever die from a signal.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Damage {
    Structural,
    Benign,
}

/// Run every LMDB reader on a damaged copy of `base` (an LMDB convert output).
fn lmdb_readers_survive(
    cases: &mut Cases,
    tmp: &Path,
    base: &Path,
    case: &str,
    damage: Damage,
    edit: &dyn Fn(&mut Vec<u8>),
) {
    let dir = tmp.join(format!("case-{case}"));
    copy_tree(base, &dir);
    let data = dir.join(LMDB_SHARD).join("data.mdb");
    let mut bytes = std::fs::read(&data).unwrap();
    edit(&mut bytes);
    std::fs::write(&data, &bytes).unwrap();
    let snap = Snapshot::of(tmp);
    let strict: &[i32] = &[1, 2];
    let lenient: &[i32] = if damage == Damage::Structural {
        &[1, 2]
    } else {
        &[0, 1, 2]
    };
    cases.check(&format!("{case}: verify"), || {
        verify(&dir, &[]).expect(strict).mentions(LMDB_SHARD);
    });
    cases.check(&format!("{case}: verify --decode"), || {
        verify(&dir, &["--decode"])
            .expect(strict)
            .mentions(LMDB_SHARD);
    });
    cases.check(&format!("{case}: verify-throughput --device cpu"), || {
        let o = dsprep([
            "verify-throughput",
            s(&dir),
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--size",
            "64",
            "-q",
        ]);
        o.expect(lenient);
        if o.code != Some(0) {
            o.mentions(LMDB_SHARD);
        }
    });
    cases.check(&format!("{case}: presize"), || {
        let out = tmp.join(format!("presized-{case}"));
        let o = presize(&dir, &out, &["--size", "32"]);
        o.expect(lenient);
        if o.code != Some(0) {
            o.mentions(LMDB_SHARD);
        }
        if o.code == Some(2) {
            assert!(
                !out.join("manifest.json").exists() || manifest(&out)["complete"] != json!(true),
                "{case}: failed presize left a complete manifest"
            );
        }
    });
    cases.check(&format!("{case}: nothing else touched"), || {
        snap.assert_unchanged_except(&[&tmp.join(format!("presized-{case}"))]);
    });
}

/// An LMDB convert of the demo fixture (11 inline records: two levels, a branch page).
fn lmdb_base(tmp: &Path) -> PathBuf {
    let input = tmp.join("in");
    demo_copy(&input);
    let base = tmp.join("base");
    convert(&input, &base, &["--format", "lmdb"]).expect(&[0]);
    base
}

/// "A flipped byte … of `data.mdb` kills `verify`, `verify --decode`, `verify-throughput
/// --device cpu` and `presize` with SIGSEGV/SIGBUS. Required: no signal death ever …, a message
/// naming the shard." Flips in both meta pages, a branch and a leaf page header, and inside a
/// leaf's node data; positions found from the file's own page headers.
#[test]
fn lmdb_flipped_bytes_never_crash_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let base = lmdb_base(tmp.path());
    let data = std::fs::read(base.join(LMDB_SHARD).join("data.mdb")).unwrap();
    let txn = |m: usize| {
        u64::from_le_bytes(
            data[m * LMDB_PAGE + 144..m * LMDB_PAGE + 152]
                .try_into()
                .unwrap(),
        )
    };
    let active = if txn(0) >= txn(1) { 0 } else { 1 };
    let pages = lmdb_pages(&data);
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([data[at], data[at + 1]]));
    // MDB_meta at +16: the main db record at +88, its root page number at +128.
    let root_of = |m: usize| m * LMDB_PAGE + 128;
    let root = u16_at(root_of(active));
    // Walk the live tree down its first branch to a live leaf (a branch node's child page
    // number is stored in its first 6 bytes).
    let mut branch = None;
    let mut page = root;
    while pages[page].1 & 0x01 != 0 {
        branch = Some(page);
        let node = page * LMDB_PAGE + u16_at(page * LMDB_PAGE + 16);
        page = u16_at(node) | (u16_at(node + 2) << 16);
    }
    let leaf = pages[page];
    assert!(leaf.1 & 0x02 != 0, "walked to a leaf: {leaf:?}");
    let snap = Snapshot::of(tmp.path());
    let mut cases: Vec<(String, usize, Damage)> = vec![
        (
            "active-meta-root".into(),
            root_of(active),
            Damage::Structural,
        ),
        (
            "inactive-meta-root".into(),
            root_of(1 - active),
            Damage::Benign,
        ),
        (
            "active-meta-txnid-high".into(),
            active * LMDB_PAGE + 151,
            Damage::Benign,
        ),
        (
            "leaf-header-flags".into(),
            leaf.0 * LMDB_PAGE + 10,
            Damage::Structural,
        ),
        (
            "leaf-header-lower".into(),
            leaf.0 * LMDB_PAGE + 12,
            Damage::Structural,
        ),
        (
            "leaf-node-offset".into(),
            leaf.0 * LMDB_PAGE + 16 + 2,
            Damage::Structural,
        ),
        (
            "leaf-node-data".into(),
            leaf.0 * LMDB_PAGE + usize::from(leaf.3) + (LMDB_PAGE - usize::from(leaf.3)) / 2,
            Damage::Benign,
        ),
    ];
    if let Some(b) = branch {
        cases.push((
            "branch-header-flags".into(),
            b * LMDB_PAGE + 10,
            Damage::Structural,
        ));
        let node = b * LMDB_PAGE + u16_at(b * LMDB_PAGE + 16);
        cases.push(("branch-child-pgno".into(), node, Damage::Structural));
        cases.push((
            "branch-child-pgno-high".into(),
            node + 2,
            Damage::Structural,
        ));
    }
    let mut results = Cases::new();
    for (name, at, damage) in cases {
        lmdb_readers_survive(
            &mut results,
            tmp.path(),
            &base,
            &name,
            damage,
            &|b: &mut Vec<u8>| b[at] ^= 0xFF,
        );
    }
    // Nothing outside the per-case copies and outputs changed (the base included).
    let allowed: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("case-") || n.starts_with("presized-")
        })
        .collect();
    snap.assert_unchanged_except(&allowed.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    results.finish();
}

/// Same rule for truncations of `data.mdb`: to 0, one page, half and all but one byte.
#[test]
fn lmdb_truncations_never_crash_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let base = lmdb_base(tmp.path());
    let len = std::fs::metadata(base.join(LMDB_SHARD).join("data.mdb"))
        .unwrap()
        .len() as usize;
    let mut results = Cases::new();
    for (name, keep, damage) in [
        ("zero", 0, Damage::Structural),
        ("one-page", LMDB_PAGE, Damage::Structural),
        ("half", len / 2, Damage::Structural),
        ("len-1", len - 1, Damage::Benign),
    ] {
        lmdb_readers_survive(
            &mut results,
            tmp.path(),
            &base,
            name,
            damage,
            &|b: &mut Vec<u8>| b.truncate(keep),
        );
    }
    results.finish();
}

// =============================================================================================
// 5. verify verifies what it says it does, for both formats
// =============================================================================================

/// "A changed shard byte is always reported (exit 1)" — the manifest's shard checksum is
/// compared: a record whose label was changed, with CRCs and index fixed up, is found.
#[test]
fn verify_compares_the_shard_checksum_tfrecord() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    rewrite_tf_record(&out.join(SHARD0_OF2), 1, |e| {
        let l: Vec<i64> = e
            .get_int64s(keys::CLASS_LABEL)
            .unwrap()
            .iter()
            .map(|v| v ^ 2)
            .collect();
        e.insert_int64s(keys::CLASS_LABEL, l);
    });
    let snap = Snapshot::of(tmp.path());
    verify(&out, &[]).expect(&[1]).mentions(SHARD0_OF2);
    snap.assert_unchanged();
}

/// Same for LMDB, the value rewritten through lmdb-rkv (a valid LMDB write).
#[test]
fn verify_compares_the_shard_checksum_lmdb() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--format", "lmdb"]);
    rewrite_lmdb_record(&out.join(LMDB_SHARD), 2, |e| {
        let l: Vec<i64> = e
            .get_int64s(keys::CLASS_LABEL)
            .unwrap()
            .iter()
            .map(|v| v ^ 2)
            .collect();
        e.insert_int64s(keys::CLASS_LABEL, l);
    });
    let snap = Snapshot::of(tmp.path());
    verify(&out, &[]).expect(&[1]).mentions(LMDB_SHARD);
    snap.assert_unchanged();
}

/// "Flips in boxes, labels, class text, file name, width/height or area pass as 'all OK'"
/// for LMDB. Raw byte flips inside `data.mdb` (file name, class text) and field rewrites
/// (width, area, xmin) must all be reported.
#[test]
fn lmdb_field_changes_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    demo_copy(&input);
    let base = tmp.path().join("base");
    convert(&input, &base, &["--format", "lmdb"]).expect(&[0]);
    verify(&base, &[]).expect(&[0]);
    type Edit = Box<dyn Fn(&Path)>;
    let flip_text = |needle: &'static [u8]| -> Edit {
        Box::new(move |shard: &Path| {
            let p = shard.join("data.mdb");
            let mut b = std::fs::read(&p).unwrap();
            let at = memchr::memmem::find(&b, needle).expect("text in data.mdb");
            b[at + 1] ^= 0x01;
            std::fs::write(&p, b).unwrap();
        })
    };
    let cases: Vec<(&str, Edit)> = vec![
        ("file name byte", flip_text(b"000004.jpg")),
        ("class text byte", flip_text(b"person")),
        (
            "width",
            Box::new(|sh: &Path| {
                rewrite_lmdb_record(sh, 0, |e| e.insert_int64s(keys::WIDTH, [65]))
            }),
        ),
        (
            "area",
            Box::new(|sh: &Path| {
                rewrite_lmdb_record(sh, 0, |e| {
                    let a: Vec<f32> = e
                        .get_floats(keys::AREA)
                        .unwrap()
                        .iter()
                        .map(|v| v + 1.0)
                        .collect();
                    e.insert_floats(keys::AREA, a)
                })
            }),
        ),
        (
            "xmin",
            Box::new(|sh: &Path| {
                rewrite_lmdb_record(sh, 0, |e| {
                    let a: Vec<f32> = e
                        .get_floats(keys::XMIN)
                        .unwrap()
                        .iter()
                        .map(|v| v / 2.0)
                        .collect();
                    e.insert_floats(keys::XMIN, a)
                })
            }),
        ),
    ];
    let mut results = Cases::new();
    for (i, (what, edit)) in cases.into_iter().enumerate() {
        results.check(what, || {
            let dir = tmp.path().join(format!("case{i}"));
            copy_tree(&base, &dir);
            edit(&dir.join(LMDB_SHARD));
            let snap = Snapshot::of(tmp.path());
            let o = verify(&dir, &[]);
            snap.assert_unchanged();
            assert_eq!(o.code, Some(1), "{what} change not reported: {}", o.text());
            o.mentions(LMDB_SHARD);
        });
    }
    results.finish();
}

/// A change to one record.
type RecordEdit = Box<dyn Fn(&mut Example<'static>)>;

/// Records whose boxes are semantically impossible — NaN, ±inf, out of [0, 1], xmin > xmax,
/// lists of different lengths — with every CRC, index line and the manifest checksum fixed
/// up, so only a check of the values can find them. Each is reported (exit 1) naming the
/// record.
fn bad_box_cases() -> Vec<(&'static str, RecordEdit)> {
    let set = |k: &'static str, v: f32| -> RecordEdit {
        Box::new(move |e: &mut Example<'static>| {
            let mut a = e.get_floats(k).unwrap().to_vec();
            a[0] = v;
            e.insert_floats(k, a);
        })
    };
    vec![
        ("xmin 1.5", set(keys::XMIN, 1.5)),
        ("xmin NaN", set(keys::XMIN, f32::NAN)),
        ("ymax inf", set(keys::YMAX, f32::INFINITY)),
        ("ymin -0.5", set(keys::YMIN, -0.5)),
        ("xmin > xmax", set(keys::XMIN, 0.99)),
        (
            "lists of different lengths",
            Box::new(|e: &mut Example<'static>| {
                let mut a = e.get_floats(keys::XMAX).unwrap().to_vec();
                a.push(0.5);
                e.insert_floats(keys::XMAX, a);
            }),
        ),
        (
            "labels list longer than boxes",
            Box::new(|e: &mut Example<'static>| {
                let mut a = e.get_int64s(keys::CLASS_LABEL).unwrap().to_vec();
                a.push(1);
                e.insert_int64s(keys::CLASS_LABEL, a);
            }),
        ),
    ]
}

#[test]
fn verify_checks_box_values_tfrecord() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, base) = (tmp.path().join("in"), tmp.path().join("base"));
    converted(&input, &base, &["--shards", "2"]);
    let mut cases = Cases::new();
    for (i, (what, f)) in bad_box_cases().into_iter().enumerate() {
        cases.check(what, || {
            let dir = tmp.path().join(format!("case{i}"));
            copy_tree(&base, &dir);
            let shard = dir.join(SHARD0_OF2);
            rewrite_tf_record(&shard, 1, f);
            refresh_manifest_checksum(&dir, SHARD0_OF2, &shard);
            let snap = Snapshot::of(tmp.path());
            let o = verify(&dir, &["--json"]);
            snap.assert_unchanged();
            assert_eq!(o.code, Some(1), "{what} not reported: {}", o.text());
            let r: Value = serde_json::from_str(&o.stdout).unwrap();
            let p = r["problems"].as_array().cloned().unwrap_or_default();
            assert!(
                p.iter()
                    .any(|p| p["shard"] == SHARD0_OF2 && p["record"] == json!(1)),
                "{what}: problem does not name record 1 of {SHARD0_OF2}: {r}"
            );
        });
    }
    cases.finish();
}

#[test]
fn verify_checks_box_values_lmdb() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, base) = (tmp.path().join("in"), tmp.path().join("base"));
    converted(&input, &base, &["--format", "lmdb"]);
    let mut cases = Cases::new();
    for (i, (what, f)) in bad_box_cases().into_iter().enumerate() {
        cases.check(what, || {
            let dir = tmp.path().join(format!("case{i}"));
            copy_tree(&base, &dir);
            let shard = dir.join(LMDB_SHARD);
            rewrite_lmdb_record(&shard, 3, f);
            refresh_manifest_checksum(&dir, LMDB_SHARD, &shard.join("data.mdb"));
            let snap = Snapshot::of(tmp.path());
            let o = verify(&dir, &["--json"]);
            snap.assert_unchanged();
            assert_eq!(o.code, Some(1), "{what} not reported: {}", o.text());
            let r: Value = serde_json::from_str(&o.stdout).unwrap();
            let p = r["problems"].as_array().cloned().unwrap_or_default();
            assert!(
                p.iter()
                    .any(|p| p["shard"] == LMDB_SHARD && p["record"] == json!(3)),
                "{what}: problem does not name record 3 of {LMDB_SHARD}: {r}"
            );
        });
    }
    cases.finish();
}

// =============================================================================================
// 6. Output I/O errors are failures (exit 2), never "bad images"
// =============================================================================================

fn assert_not_complete(out: &Path) {
    if out.join("manifest.json").is_file() {
        let m = manifest(out);
        assert_ne!(
            m["complete"],
            json!(true),
            "a failed run claims completeness: {m}"
        );
    }
}

/// "`presize` turns an output write error into a 'bad image': it drops the image and its
/// boxes, writes `complete: true`, exits 1 … Required: any output I/O error is exit 2 with the
/// file named and no manifest claiming completeness." OUT/val is a file where presize must
/// create the image folder.
#[test]
fn presize_output_write_error_is_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    clean_coco(&input, 3);
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("val"), b"a file where a folder must go").unwrap();
    let snap = Snapshot::of(tmp.path());
    let o = presize(&input, &out, &["--size", "32", "--overwrite"]);
    o.expect(&[2]).mentions(s(&out.join("val")));
    snap.assert_unchanged_except(&[&out]);
    assert_eq!(
        std::fs::read(out.join("val")).unwrap(),
        b"a file where a folder must go"
    );
    assert_not_complete(&out);
}

/// Same for one image: its final name is taken by a (non-empty) folder, so the rename of the
/// finished image fails.
#[test]
fn presize_image_rename_error_is_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    clean_coco(&input, 3);
    std::fs::create_dir_all(out.join("val/img001.jpg")).unwrap();
    std::fs::write(out.join("val/img001.jpg/keep"), b"x").unwrap();
    let snap = Snapshot::of(tmp.path());
    let o = presize(&input, &out, &["--size", "32", "--overwrite"]);
    o.expect(&[2]).mentions("img001.jpg");
    snap.assert_unchanged_except(&[&out]);
    assert_eq!(
        std::fs::read(out.join("val/img001.jpg/keep")).unwrap(),
        b"x"
    );
    assert_not_complete(&out);
}

/// `convert`: a shard's final name is taken by a foreign, non-empty folder. Exit 2 naming it,
/// the folder left alone, no complete manifest.
#[test]
fn convert_output_write_error_is_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    clean_coco(&input, 3);
    let blocker = out.join("val-00000-of-00001.tfrecord");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), b"x").unwrap();
    let snap = Snapshot::of(tmp.path());
    let o = convert(&input, &out, &["--overwrite"]);
    o.expect(&[2]).mentions("val-00000-of-00001.tfrecord");
    snap.assert_unchanged_except(&[&out]);
    assert_eq!(std::fs::read(blocker.join("keep")).unwrap(), b"x");
    assert_not_complete(&out);
}

/// `convert`: the manifest cannot be written (a folder has its name): exit 2 naming it.
#[test]
fn convert_unwritable_manifest_is_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    clean_coco(&input, 3);
    std::fs::create_dir_all(out.join("manifest.json")).unwrap();
    std::fs::write(out.join("manifest.json/keep"), b"x").unwrap();
    let snap = Snapshot::of(tmp.path());
    convert(&input, &out, &["--overwrite"])
        .expect(&[2])
        .mentions("manifest.json");
    snap.assert_unchanged_except(&[&out]);
    assert_eq!(std::fs::read(out.join("manifest.json/keep")).unwrap(), b"x");
}

/// `presize` of a shard folder: an output shard's final name is taken by a foreign folder.
#[test]
fn presize_shards_output_write_error_is_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, conv, out) = (
        tmp.path().join("in"),
        tmp.path().join("conv"),
        tmp.path().join("out"),
    );
    converted(&input, &conv, &["--shards", "2"]);
    std::fs::create_dir_all(out.join(SHARD0_OF2)).unwrap();
    std::fs::write(out.join(SHARD0_OF2).join("keep"), b"x").unwrap();
    let snap = Snapshot::of(tmp.path());
    presize(&conv, &out, &["--size", "32", "--overwrite"])
        .expect(&[2])
        .mentions(SHARD0_OF2);
    snap.assert_unchanged_except(&[&out]);
    assert_eq!(
        std::fs::read(out.join(SHARD0_OF2).join("keep")).unwrap(),
        b"x"
    );
    assert_not_complete(&out);
}

// =============================================================================================
// 7. Only regular files are images; bytes read per image are capped
// =============================================================================================

/// COCO folder whose second image is `make(path)` (a FIFO, a device symlink, ...).
fn dataset_with_special(tmp: &Path, name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let input = tmp.join("in");
    let good = small_jpeg();
    write_coco(
        &input,
        &[
            image_entry(1, "good.jpg", 64, 48),
            image_entry(2, name, 64, 48),
        ],
        &[ann_entry(1, 1, 1, [4.0, 6.0, 20.0, 30.0])],
        &[("good.jpg", &good)],
    );
    make(&input.join("val").join(name));
    input
}

/// "A FIFO hangs `convert` and `presize` forever. Required: refuse non-regular files at once
/// (skipped with reason)."
#[test]
fn convert_refuses_a_fifo_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset_with_special(tmp.path(), "pipe.jpg", mkfifo);
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(["convert", s(&input), s(&out), "-q"], HANG_TIMEOUT);
    o.expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    assert!(skipped(&manifest(&out))
        .iter()
        .any(|(n, r)| n == "pipe.jpg" && !r.is_empty()));
}

#[test]
fn presize_refuses_a_fifo_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset_with_special(tmp.path(), "pipe.jpg", mkfifo);
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(
        ["presize", s(&input), s(&out), "-q", "--size", "32"],
        HANG_TIMEOUT,
    );
    o.expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    let f = presize_failures(&manifest(&out));
    assert!(
        f.iter().any(|(n, r)| n == "pipe.jpg" && !r.is_empty()),
        "{f:?}"
    );
}

/// Refused "at once": in a few seconds, without reading hundreds of MiB.
#[track_caller]
fn assert_at_once(o: &Out) {
    assert!(
        o.elapsed < Duration::from_secs(5) && o.peak_rss_kib < 512 * 1024,
        "not refused at once (the device was read): {}",
        o.text()
    );
}

/// "A symlink to `/dev/zero` is read until memory runs out." (The harness's memory ceiling
/// turns today's behaviour into an abort instead of an exhausted machine.)
#[test]
fn convert_refuses_a_device_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset_with_special(tmp.path(), "zero.jpg", |p| {
        std::os::unix::fs::symlink("/dev/zero", p).unwrap()
    });
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(["convert", s(&input), s(&out), "-q"], HANG_TIMEOUT);
    o.expect(&[1]);
    assert_at_once(&o);
    snap.assert_unchanged_except(&[&out]);
    assert!(skipped(&manifest(&out))
        .iter()
        .any(|(n, r)| n == "zero.jpg" && !r.is_empty()));
}

#[test]
fn presize_refuses_a_device_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset_with_special(tmp.path(), "zero.jpg", |p| {
        std::os::unix::fs::symlink("/dev/zero", p).unwrap()
    });
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(
        ["presize", s(&input), s(&out), "-q", "--size", "32"],
        HANG_TIMEOUT,
    );
    o.expect(&[1]);
    assert_at_once(&o);
    snap.assert_unchanged_except(&[&out]);
    let f = presize_failures(&manifest(&out));
    assert!(
        f.iter().any(|(n, r)| n == "zero.jpg" && !r.is_empty()),
        "{f:?}"
    );
}

/// "Cap bytes read per image (default 256 MiB)": a valid JPEG zero-padded (sparse) past
/// 256 MiB is skipped with a reason instead of being read whole and stored.
#[test]
fn convert_caps_bytes_read_per_image() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset_with_special(tmp.path(), "huge.jpg", |p| {
        std::fs::write(p, small_jpeg()).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len((256 << 20) + 4096).unwrap();
    });
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(["convert", s(&input), s(&out), "-q"], HANG_TIMEOUT);
    o.expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    assert!(skipped(&manifest(&out))
        .iter()
        .any(|(n, r)| n == "huge.jpg" && !r.is_empty()));
    for p in entries_with(&out, ".tfrecord") {
        assert!(
            std::fs::metadata(&p).unwrap().len() < 1 << 20,
            "{} holds the huge file",
            p.display()
        );
    }
}

/// Same cap for presize (a zero-padded JPEG within the size limit would be copied whole).
#[test]
fn presize_caps_bytes_read_per_image() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset_with_special(tmp.path(), "huge.jpg", |p| {
        std::fs::write(p, small_jpeg()).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len((256 << 20) + 4096).unwrap();
    });
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(
        ["presize", s(&input), s(&out), "-q", "--size", "1000"],
        HANG_TIMEOUT,
    );
    o.expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    let f = presize_failures(&manifest(&out));
    assert!(
        f.iter().any(|(n, r)| n == "huge.jpg" && !r.is_empty()),
        "{f:?}"
    );
    assert!(
        !out.join("val/huge.jpg").exists(),
        "the huge file was copied"
    );
}

/// "An OUT path that is a file": exit 2 naming it, the file untouched (convert and presize).
#[test]
fn out_that_is_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    clean_coco(&input, 2);
    let out = tmp.path().join("out.txt");
    std::fs::write(&out, b"not a folder").unwrap();
    let snap = Snapshot::of(tmp.path());
    let mut cases = Cases::new();
    for args in [vec!["convert"], vec!["presize", "--size", "32"]] {
        cases.check(args[0], || {
            let mut a = vec![args[0], s(&input), s(&out), "-q", "--overwrite"];
            a.extend_from_slice(&args[1..]);
            dsprep(a).expect(&[2]).mentions("out.txt");
            snap.assert_unchanged();
        });
    }
    cases.finish();
}

// =============================================================================================
// 8. Declared sizes are checked before any decode
// =============================================================================================

/// "A ~634-byte JPEG declaring 65500×65500 becomes a record under plain `convert`. Required:
/// refuse what exceeds the pixel limit (268 MP) — skipped with reason."
#[test]
fn convert_refuses_declared_size_over_the_pixel_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let big = patch_sof(&small_jpeg(), 65500, 65500);
    let input = dataset_with_special(tmp.path(), "giant.jpg", |p| {
        std::fs::write(p, &big).unwrap()
    });
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    dsprep_t(["convert", s(&input), s(&out), "-q"], HANG_TIMEOUT).expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    assert!(skipped(&manifest(&out))
        .iter()
        .any(|(n, r)| n == "giant.jpg" && !r.is_empty()));
}

/// Same for presize (the decoders must not be reached).
#[test]
fn presize_refuses_declared_size_over_the_pixel_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let big = patch_sof(&small_jpeg(), 65500, 65500);
    let input = dataset_with_special(tmp.path(), "giant.jpg", |p| {
        std::fs::write(p, &big).unwrap()
    });
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    dsprep_t(
        ["presize", s(&input), s(&out), "-q", "--size", "32"],
        HANG_TIMEOUT,
    )
    .expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    let f = presize_failures(&manifest(&out));
    assert!(
        f.iter().any(|(n, r)| n == "giant.jpg" && !r.is_empty()),
        "{f:?}"
    );
}

/// "A JPEG declaring 15000×15000 with EXIF orientation 6 is fully decoded (1.3 GB, 8.5 s).
/// Required: refuse … what is too small to hold its declared scan (fewer bytes than
/// pixels/512)", before any decode; and a plain 4000×4000 declaration in a 1 KB file likewise.
#[test]
fn convert_refuses_files_too_small_for_their_declared_size() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let rot = patch_sof(&fixture_bytes("odd/exif_orientation_6.jpg"), 15000, 15000);
    let plain = patch_sof(&small_jpeg(), 4000, 4000);
    let good = small_jpeg();
    write_coco(
        &input,
        &[
            image_entry(1, "good.jpg", 64, 48),
            image_entry(2, "rot.jpg", 15000, 15000),
            image_entry(3, "plain.jpg", 4000, 4000),
        ],
        &[],
        &[
            ("good.jpg", &good),
            ("rot.jpg", &rot),
            ("plain.jpg", &plain),
        ],
    );
    let snap = Snapshot::of(tmp.path());
    for (i, extra) in [vec![], vec!["--decode-check"]].into_iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        let mut a = vec!["convert", s(&input), s(&out), "-q"];
        a.extend(extra);
        let o = dsprep_t(a, HANG_TIMEOUT);
        o.expect(&[1]);
        assert!(
            o.elapsed < Duration::from_secs(5),
            "decoded before checking: {}",
            o.text()
        );
        let sk = skipped(&manifest(&out));
        for n in ["rot.jpg", "plain.jpg"] {
            assert!(
                sk.iter().any(|(f, r)| f == n && !r.is_empty()),
                "{n}: {sk:?}"
            );
        }
        snap.assert_unchanged_except(&[&tmp.path().join("out0"), &tmp.path().join("out1")]);
    }
}

#[test]
fn presize_refuses_files_too_small_for_their_declared_size() {
    let tmp = tempfile::tempdir().unwrap();
    let rot = patch_sof(&fixture_bytes("odd/exif_orientation_6.jpg"), 15000, 15000);
    let input = dataset_with_special(tmp.path(), "rot.jpg", |p| std::fs::write(p, &rot).unwrap());
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(
        ["presize", s(&input), s(&out), "-q", "--size", "32"],
        HANG_TIMEOUT,
    );
    o.expect(&[1]);
    assert!(
        o.elapsed < Duration::from_secs(5),
        "decoded before checking: {}",
        o.text()
    );
    snap.assert_unchanged_except(&[&out]);
    let f = presize_failures(&manifest(&out));
    assert!(
        f.iter().any(|(n, r)| n == "rot.jpg" && !r.is_empty()),
        "{f:?}"
    );
}

// =============================================================================================
// 9. Mask work is bounded by the real image
// =============================================================================================

/// "`presize` resamples RLE masks at the size the JSON declares: a 3.4 KB annotation file with
/// 20 masks declared 46000×46000 took 54 s of CPU for one 100×100 image. Required: work bounded
/// by the real image … and the masks are handled or the image reported."
#[test]
fn presize_mask_work_is_bounded_by_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let img = noise_jpeg(100, 100, 9);
    let total: u64 = 46000 * 46000;
    let anns: Vec<Value> = (0..20)
        .map(|i| {
            json!({"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50],
                   "area": 2500, "iscrowd": 1,
                   "segmentation": {"size": [46000, 46000], "counts": [1000 + i, 5000, total - 6000 - i]}})
        })
        .collect();
    write_coco(
        &input,
        &[image_entry(1, "a.jpg", 100, 100)],
        &anns,
        &[("a.jpg", &img)],
    );
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let o = dsprep_t(
        ["presize", s(&input), s(&out), "-q", "--size", "50"],
        HANG_TIMEOUT,
    );
    o.expect(&[0, 1]);
    assert!(
        o.elapsed < Duration::from_secs(5),
        "work not bounded by the image: {}",
        o.text()
    );
    snap.assert_unchanged_except(&[&out]);
    let doc = read_json(&out.join("annotations/instances_val.json"));
    for a in doc["annotations"].as_array().unwrap() {
        if let Some(size) = a["segmentation"]["size"].as_array() {
            let px = size[0].as_u64().unwrap() * size[1].as_u64().unwrap();
            assert!(
                px <= 50 * 50,
                "mask larger than the output image kept: {size:?}"
            );
        }
    }
}

// =============================================================================================
// 10. A cut scan with an end-of-image marker is corrupt on every CPU decode path
// =============================================================================================

fn cut_jpeg() -> Vec<u8> {
    cut_scan(&noise_jpeg(128, 96, 77), 1.0 / 3.0)
}

/// "A JPEG cut to a third of its scan with an end-of-image marker appended passes `convert
/// --decode-check` … required: convert --decode-check skips it."
#[test]
fn convert_decode_check_catches_a_cut_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let cut = cut_jpeg();
    let input = dataset_with_special(tmp.path(), "cut.jpg", |p| std::fs::write(p, &cut).unwrap());
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    convert(&input, &out, &["--decode-check"]).expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    assert!(skipped(&manifest(&out)).iter().any(|(n, _)| n == "cut.jpg"));
}

/// "… and `verify --decode`; required: verify --decode reports it." The record is planted with
/// a matching sha256 and manifest checksum, so only the decode can find it.
#[test]
fn verify_decode_catches_a_cut_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let img = noise_jpeg(128, 96, 77);
    write_coco(
        &input,
        &[
            image_entry(1, "a.jpg", 128, 96),
            image_entry(2, "b.jpg", 128, 96),
        ],
        &[ann_entry(1, 1, 1, [4.0, 6.0, 20.0, 30.0])],
        &[("a.jpg", &img), ("b.jpg", &noise_jpeg(128, 96, 78))],
    );
    let out = tmp.path().join("out");
    convert(&input, &out, &["--shards", "1"]).expect(&[0]);
    let shard = out.join("val-00000-of-00001.tfrecord");
    let cut = cut_jpeg();
    rewrite_tf_record(&shard, 0, |e| {
        use sha2::Digest;
        e.insert_str(keys::SHA256, [hex::encode(sha2::Sha256::digest(&cut))]);
        e.insert_bytes(keys::ENCODED, [cut.clone()]);
    });
    refresh_manifest_checksum(&out, "val-00000-of-00001.tfrecord", &shard);
    let snap = Snapshot::of(tmp.path());
    let o = verify(&out, &["--decode", "--json"]);
    o.expect(&[1]).mentions("val-00000-of-00001.tfrecord");
    snap.assert_unchanged();
}

/// "… required: presize rejects it."
#[test]
fn presize_rejects_a_cut_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let cut = cut_jpeg();
    let input = dataset_with_special(tmp.path(), "cut.jpg", |p| std::fs::write(p, &cut).unwrap());
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    presize(&input, &out, &["--size", "32"]).expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    let f = presize_failures(&manifest(&out));
    assert!(f.iter().any(|(n, _)| n == "cut.jpg"), "{f:?}");
}

// =============================================================================================
// 11. verify does not say "all OK" about an inconsistent folder
// =============================================================================================

/// "`verify` says 'all OK' for a manifest with `shards: []` and two shards on disk."
#[test]
fn verify_reports_a_manifest_without_the_shards_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    let mut m = manifest(&out);
    m["splits"][0]["shards"] = json!([]);
    write_json(&out.join("manifest.json"), &m);
    let snap = Snapshot::of(tmp.path());
    let o = verify(&out, &[]);
    o.expect(&[1, 2])
        .mentions(SHARD0_OF2)
        .mentions("val-00001-of-00002.tfrecord");
    snap.assert_unchanged();
}

/// "… a duplicated shard entry."
#[test]
fn verify_reports_a_duplicated_shard_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    let mut m = manifest(&out);
    let first = m["splits"][0]["shards"][0].clone();
    m["splits"][0]["shards"][1] = first;
    write_json(&out.join("manifest.json"), &m);
    let snap = Snapshot::of(tmp.path());
    verify(&out, &[]).expect(&[1, 2]).mentions(SHARD0_OF2);
    snap.assert_unchanged();
}

/// "… an unknown format": a shard format this version does not know is a corrupt manifest.
#[test]
fn verify_rejects_an_unknown_shard_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    let mut m = manifest(&out);
    m["options"]["format"] = json!("parquet");
    write_json(&out.join("manifest.json"), &m);
    let snap = Snapshot::of(tmp.path());
    verify(&out, &[]).expect(&[2]).mentions("manifest.json");
    snap.assert_unchanged();
}

/// A manifest of a newer layout (`format_version` this build does not know) is not checked as
/// if it were the old one.
#[test]
fn verify_rejects_an_unknown_manifest_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    let mut m = manifest(&out);
    m["format_version"] = json!(99);
    write_json(&out.join("manifest.json"), &m);
    let snap = Snapshot::of(tmp.path());
    verify(&out, &[]).expect(&[1, 2]).mentions("manifest.json");
    snap.assert_unchanged();
}

/// A manifest that is not JSON: exit 2 naming it (corrupt manifest), for verify and presize.
#[test]
fn corrupt_manifest_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    std::fs::write(out.join("manifest.json"), b"{\"splits\": [").unwrap();
    let snap = Snapshot::of(tmp.path());
    verify(&out, &[]).expect(&[2]).mentions("manifest.json");
    snap.assert_unchanged();
}

// =============================================================================================
// 12. Duplicates: the first entry wins
// =============================================================================================

/// An annotation file with a duplicated `file_name` (ids 1 and 3 both `a.jpg`) and a
/// duplicated id (2 is `b.jpg`, then `c.jpg`).
fn duplicates_dataset(root: &Path) {
    let imgs: Vec<(String, Vec<u8>)> = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), noise_jpeg(64, 48, 100 + i as u32)))
        .collect();
    let refs: Vec<(&str, &[u8])> = imgs
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    write_coco(
        root,
        &[
            image_entry(1, "a.jpg", 64, 48),
            image_entry(2, "b.jpg", 64, 48),
            image_entry(3, "a.jpg", 64, 48),
            image_entry(2, "c.jpg", 64, 48),
            image_entry(4, "d.jpg", 64, 48),
        ],
        &[
            ann_entry(1, 1, 1, [1.0, 1.0, 10.0, 10.0]),
            ann_entry(2, 2, 1, [2.0, 2.0, 10.0, 10.0]),
            ann_entry(3, 3, 3, [3.0, 3.0, 10.0, 10.0]),
            ann_entry(4, 4, 3, [4.0, 4.0, 10.0, 10.0]),
        ],
        &refs,
    );
}

/// Every file below `dir` with its bytes (relative names), for run-to-run comparison.
fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_below(dir)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// "Duplicates … Required: the first entry in the annotation file wins; every later duplicate
/// is skipped and named, in `convert` and `presize` alike; results identical across runs and
/// `-j 1` vs `-j 4`." — convert.
#[test]
fn convert_duplicates_first_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    duplicates_dataset(&input);
    let snap = Snapshot::of(tmp.path());
    let mut trees = Vec::new();
    for (i, j) in ["1", "4", "1"].iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        convert(&input, &out, &["--shards", "2", "-j", j]).expect(&[1]);
        trees.push(tree_bytes(&out));
        let m = manifest(&out);
        let sk = skipped(&m);
        let notes: Vec<(String, i64)> = m["splits"][0]["shards"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["skipped"].as_array().unwrap().clone())
            .map(|n| {
                (
                    n["file_name"].as_str().unwrap().to_string(),
                    n["image_id"].as_i64().unwrap(),
                )
            })
            .collect();
        assert!(
            notes.contains(&("a.jpg".into(), 3)),
            "later a.jpg (id 3) not named: {sk:?}"
        );
        assert!(
            notes.contains(&("c.jpg".into(), 2)),
            "later id 2 (c.jpg) not named: {sk:?}"
        );
        let ids: Vec<String> = all_tf_payloads(&out)
            .iter()
            .map(|p| {
                let e = Example::decode(p).unwrap();
                String::from_utf8_lossy(bytes_of(&e, keys::SOURCE_ID)).into_owned()
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ["1", "2", "4"], "records: {ids:?}");
        // id 2 is b.jpg (the first entry), with its box.
        for p in all_tf_payloads(&out) {
            let e = Example::decode(&p).unwrap();
            if bytes_of(&e, keys::SOURCE_ID) == b"2" {
                assert_eq!(bytes_of(&e, keys::FILENAME), b"b.jpg");
            }
        }
    }
    assert!(trees[0] == trees[1], "-j 1 and -j 4 differ");
    assert!(trees[0] == trees[2], "two identical runs differ");
    snap.assert_unchanged_except(&[
        &tmp.path().join("out0"),
        &tmp.path().join("out1"),
        &tmp.path().join("out2"),
    ]);
}

/// Same rule for presize ("duplicate `file_name`s race two entries on one `.partial`;
/// duplicate image ids leave a file missing").
#[test]
fn presize_duplicates_first_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    duplicates_dataset(&input);
    let snap = Snapshot::of(tmp.path());
    let mut trees = Vec::new();
    for (i, j) in ["1", "4", "1"].iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        presize(&input, &out, &["--size", "32", "-j", j]).expect(&[1]);
        trees.push(tree_bytes(&out));
        let m = manifest(&out);
        let f: Vec<(String, i64)> = m["splits"][0]["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["file_name"].as_str().unwrap().to_string(),
                    n["image_id"].as_i64().unwrap(),
                )
            })
            .collect();
        assert!(
            f.contains(&("a.jpg".into(), 3)),
            "later a.jpg (id 3) not named: {f:?}"
        );
        assert!(
            f.contains(&("c.jpg".into(), 2)),
            "later id 2 (c.jpg) not named: {f:?}"
        );
        let doc = read_json(&out.join("annotations/instances_val.json"));
        let listed: Vec<(i64, String)> = doc["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_i64().unwrap(),
                    i["file_name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                (1, "a.jpg".to_string()),
                (2, "b.jpg".into()),
                (4, "d.jpg".into())
            ]
        );
        for n in ["a.jpg", "b.jpg", "d.jpg"] {
            assert!(out.join("val").join(n).is_file(), "{n} missing");
        }
        assert!(!out.join("val/a.jpg.partial").exists());
    }
    assert!(trees[0] == trees[1], "-j 1 and -j 4 differ");
    assert!(trees[0] == trees[2], "two identical runs differ");
    snap.assert_unchanged_except(&[
        &tmp.path().join("out0"),
        &tmp.path().join("out1"),
        &tmp.path().join("out2"),
    ]);
}

// =============================================================================================
// 13. One run at a time per OUT
// =============================================================================================

/// "No lock between runs: two `convert`s into one OUT fail with a misleading message.
/// Required: the second run (started while the first holds OUT) fails at once saying another
/// run holds it." The first run is made slow (many 1 MP images, `--decode-check`, `-j 1`).
#[test]
fn second_run_on_a_busy_out_fails_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let big = smooth_jpeg(2000, 1500);
    let n = 600;
    let images: Vec<Value> = (0..n)
        .map(|i| image_entry(i + 1, &format!("i{i:04}.jpg"), 2000, 1500))
        .collect();
    write_coco(&input, &images, &[], &[("i0000.jpg", &big)]);
    for i in 1..n {
        std::fs::hard_link(
            input.join("val/i0000.jpg"),
            input.join(format!("val/i{i:04}.jpg")),
        )
        .unwrap();
    }
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    let mut first = spawn([
        "convert",
        s(&input),
        s(&out),
        "-q",
        "--decode-check",
        "-j",
        "1",
        "--shards",
        "2",
    ]);
    let t0 = std::time::Instant::now();
    while !out.join("manifest.json").exists() {
        assert!(
            first.running(),
            "first run ended before writing its manifest"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "first run never wrote a manifest"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let plain = dsprep_t(["convert", s(&input), s(&out), "-q"], HANG_TIMEOUT);
    let over = dsprep_t(
        ["convert", s(&input), s(&out), "-q", "--overwrite"],
        HANG_TIMEOUT,
    );
    let still_running = first.running();
    let first = wait_for(first, DEFAULT_TIMEOUT);
    eprintln!(
        "first run: {:.2} s; second runs: {:.2} s, {:.2} s",
        first.elapsed.as_secs_f64(),
        plain.elapsed.as_secs_f64(),
        over.elapsed.as_secs_f64()
    );
    assert!(
        still_running,
        "the first run finished before the second ones did; the test needs a slower first run"
    );
    for o in [&plain, &over] {
        o.expect(&[2])
            .mentions_any(&["another", "lock", "in use", "busy", "running"]);
        assert!(
            o.elapsed < Duration::from_secs(5),
            "not at once: {}",
            o.text()
        );
    }
    first.expect(&[0]);
    snap.assert_unchanged_except(&[&out]);
    verify(&out, &[]).expect(&[0]);
}

// =============================================================================================
// 14. A damaged record's report names its image
// =============================================================================================

/// "When a record cannot be read, the report still names its image: `verify` of a damaged
/// record names the file_name and id (derivable from the deterministic shard plan and the
/// annotation file)." Shard 0 of 2 holds images 0, 2, 4: record 1 is img002.jpg, id 3.
#[test]
fn verify_names_the_image_of_a_damaged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    let shard = out.join(SHARD0_OF2);
    let mut b = std::fs::read(&shard).unwrap();
    let recs = tf_records(&b);
    let at = recs[1].0 as usize + 12 + 30;
    b[at] ^= 0x55;
    std::fs::write(&shard, &b).unwrap();
    let snap = Snapshot::of(tmp.path());
    let o = verify(&out, &[]);
    o.expect(&[1]).mentions(SHARD0_OF2).mentions("img002.jpg");
    assert!(
        o.all().contains("id 3")
            || o.all().contains("\"image_id\": 3")
            || o.all().contains("image_id 3"),
        "image id 3 not named: {}",
        o.text()
    );
    snap.assert_unchanged();
}

/// Same for an LMDB record whose value no longer parses.
#[test]
fn verify_names_the_image_of_a_damaged_lmdb_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--format", "lmdb"]);
    lmdb_put(
        &out.join(LMDB_SHARD),
        b"0000000002",
        b"\xff\xff\xff not an Example",
    );
    let snap = Snapshot::of(tmp.path());
    let o = verify(&out, &[]);
    o.expect(&[1]).mentions(LMDB_SHARD).mentions("img002.jpg");
    snap.assert_unchanged();
}

// =============================================================================================
// 15. Smaller ones
// =============================================================================================

/// "`-j` unbounded (allow at most 4× the cores; `-j 10000` is refused with exit 2 naming -j)."
#[test]
fn threads_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, conv) = (tmp.path().join("in"), tmp.path().join("conv"));
    converted(&input, &conv, &["--shards", "2"]);
    let snap = Snapshot::of(tmp.path());
    let out = tmp.path().join("out");
    let mut cases = Cases::new();
    for args in [
        vec!["convert", s(&input), s(&out), "-q", "-j", "10000"],
        vec!["presize", s(&input), s(&out), "-q", "-j", "10000"],
        vec!["verify", s(&conv), "-q", "-j", "10000"],
    ] {
        cases.check(args[0], || {
            dsprep(args.clone())
                .expect(&[2])
                .mentions_any(&["-j", "--threads"]);
            snap.assert_unchanged();
        });
    }
    cases.finish();
}

/// "`index --out-dir` with two inputs of the same basename overwrites silently (required:
/// refused)."
#[test]
fn index_out_dir_refuses_two_inputs_of_one_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    converted(&input, &out, &["--shards", "2"]);
    for d in ["a", "b"] {
        std::fs::create_dir(tmp.path().join(d)).unwrap();
    }
    std::fs::copy(out.join(SHARD0_OF2), tmp.path().join("a/x.tfrecord")).unwrap();
    std::fs::copy(
        out.join("val-00001-of-00002.tfrecord"),
        tmp.path().join("b/x.tfrecord"),
    )
    .unwrap();
    let d = tmp.path().join("idx");
    let snap = Snapshot::of(tmp.path());
    dsprep([
        "index",
        s(&tmp.path().join("a/x.tfrecord")),
        s(&tmp.path().join("b/x.tfrecord")),
        "--out-dir",
        s(&d),
    ])
    .expect(&[2])
    .mentions("x.tfrecord");
    snap.assert_unchanged_except(&[&d]);
    assert!(
        !d.join("x.idx").exists(),
        "refused, yet an index was written"
    );
}

/// "`index /dev/zero` writes `/dev/zero.idx` (required: refused, non-regular file)." Checked
/// through a symlink in the temp folder (so today's code writes its `.idx` there, not in /dev),
/// and with a FIFO (under the hang timeout).
#[test]
fn index_refuses_non_regular_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", tmp.path().join("zero.tfrecord")).unwrap();
    mkfifo(&tmp.path().join("pipe.tfrecord"));
    let snap = Snapshot::of(tmp.path());
    let mut cases = Cases::new();
    for name in ["zero.tfrecord", "pipe.tfrecord"] {
        cases.check(name, || {
            dsprep_t(["index", s(&tmp.path().join(name))], HANG_TIMEOUT)
                .expect(&[2])
                .mentions(name);
            snap.assert_unchanged();
        });
    }
    cases.finish();
}

/// "`convert --resume` copies kept shards' entries from a possibly edited manifest instead of
/// re-deriving them (edit a finished shard's `skipped` list in the manifest, resume, assert the
/// final manifest equals a clean run's)."
#[test]
fn convert_resume_rederives_kept_shard_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    copy_tree(&fixtures().join("coco-bad"), &input);
    let (clean, resumed) = (tmp.path().join("clean"), tmp.path().join("resumed"));
    convert(&input, &clean, &["--shards", "3"]).expect(&[1]);
    copy_tree(&clean, &resumed);
    let mut m = manifest(&resumed);
    m["complete"] = json!(false);
    let shards = m["splits"][0]["shards"].as_array_mut().unwrap();
    let edited = shards
        .iter_mut()
        .find(|s| !s["skipped"].as_array().unwrap().is_empty() && s["records"] != json!(0))
        .expect("a written shard with skipped images");
    edited["skipped"] = json!([]);
    edited["counts"]["skipped"] = json!(0);
    write_json(&resumed.join("manifest.json"), &m);
    let snap = Snapshot::of(tmp.path());
    convert(&input, &resumed, &["--shards", "3", "--resume"]).expect(&[1]);
    snap.assert_unchanged_except(&[&resumed]);
    assert_eq!(
        manifest(&resumed),
        manifest(&clean),
        "resumed manifest differs from a clean run's"
    );
}

/// "`presize --resume` writes a manifest that differs from a clean run (required: identical)."
#[test]
fn presize_resume_gives_the_clean_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    clean_coco(&input, 6);
    let (clean, part) = (tmp.path().join("clean"), tmp.path().join("part"));
    presize(&input, &clean, &["--size", "32"]).expect(&[0]);
    // An interrupted run: four images done, no annotation file, manifest not complete.
    std::fs::create_dir_all(part.join("val")).unwrap();
    for i in 0..4 {
        let n = format!("img{i:03}.jpg");
        std::fs::copy(clean.join("val").join(&n), part.join("val").join(&n)).unwrap();
    }
    let mut m = manifest(&clean);
    m["complete"] = json!(false);
    write_json(&part.join("manifest.json"), &m);
    let snap = Snapshot::of(tmp.path());
    presize(&input, &part, &["--size", "32", "--resume"]).expect(&[0]);
    snap.assert_unchanged_except(&[&part]);
    assert!(
        tree_bytes(&clean) == tree_bytes(&part),
        "resumed output (manifest included) differs"
    );
}

/// "`presize` of a shard folder aborts the whole run on one bad-CRC record although later
/// records are readable (required: that record is reported, the rest processed, exit 1)."
#[test]
fn presize_shards_reports_a_bad_record_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, conv, out) = (
        tmp.path().join("in"),
        tmp.path().join("conv"),
        tmp.path().join("out"),
    );
    converted(&input, &conv, &["--shards", "1"]);
    let shard = conv.join("val-00000-of-00001.tfrecord");
    let mut b = std::fs::read(&shard).unwrap();
    let recs = tf_records(&b);
    b[recs[2].0 as usize + 12 + 30] ^= 0x55;
    std::fs::write(&shard, &b).unwrap();
    let snap = Snapshot::of(tmp.path());
    let o = presize(&conv, &out, &["--size", "32"]);
    o.expect(&[1]);
    snap.assert_unchanged_except(&[&out]);
    let m = manifest(&out);
    assert_eq!(m["complete"], json!(true));
    assert_eq!(
        all_tf_payloads(&out).len(),
        5,
        "the readable records are all processed"
    );
    let text = format!("{}{}", o.all(), serde_json::to_string(&m).unwrap());
    assert!(
        text.contains("val-00000-of-00001.tfrecord"),
        "bad record not reported: {}",
        o.text()
    );
}

/// "Python's `NaN`/`Infinity` tokens in bbox make the whole annotation file fail although the
/// README says NaN boxes are dropped and counted (required: those boxes dropped and counted as
/// `invalid`)."
#[test]
fn nan_and_infinity_tokens_are_dropped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let text = r#"{"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
 "annotations": [
  {"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 1, 10, 10], "area": 100, "iscrowd": 0},
  {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, Infinity, 10, 10], "area": 100, "iscrowd": 0},
  {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, -Infinity, 10], "area": 100, "iscrowd": 0},
  {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}],
 "categories": [{"id": 1, "name": "person"}]}"#;
    write_coco_text(&input, text, &[("a.jpg", &small_jpeg())]);
    let out = tmp.path().join("out");
    let snap = Snapshot::of(tmp.path());
    convert(&input, &out, &[]).expect(&[0]);
    snap.assert_unchanged_except(&[&out]);
    let c = &manifest(&out)["splits"][0]["counts"];
    assert_eq!(c["boxes_kept"], json!(1), "{c}");
    assert_eq!(c["boxes_dropped"]["invalid"], json!(3), "{c}");
}
