//! `dsprep verify-throughput` through the real binary on shards the real `dsprep convert` made
//! from fixtures/coco: the CPU path end to end (JSON and table), its exit codes, a corrupt
//! record, LMDB shards, and what happens when the GPU path is asked for on this machine.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dsprep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsprep"))
        .args(args)
        .output()
        .expect("run dsprep")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `dsprep convert fixtures/coco OUT --shards 2` (+ `extra`); returns OUT and its record count.
fn converted(root: &Path, name: &str, extra: &[&str]) -> (PathBuf, u64) {
    let coco = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/coco");
    let out = root.join(name);
    let mut args = vec![
        "convert",
        coco.to_str().unwrap(),
        out.to_str().unwrap(),
        "--shards",
        "2",
        "-q",
    ];
    args.extend_from_slice(extra);
    let o = dsprep(&args);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let records = m["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["records"].as_u64().unwrap())
        .sum();
    assert!(records >= 10, "fixtures/coco gives {records} records");
    (out, records)
}

/// `verify-throughput DIR --device cpu --json -` (+ `extra`): (exit code, report).
fn cpu_json(dir: &Path, extra: &[&str]) -> (i32, Value, Output) {
    let mut args = vec![
        "verify-throughput",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        "-",
        "-q",
        "--batch",
        "4",
        "--size",
        "32",
        "--readers",
        "1",
    ];
    args.extend_from_slice(extra);
    let o = dsprep(&args);
    let j: Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&o), stderr(&o)));
    (code(&o), j, o)
}

#[test]
fn cpu_run_counts_every_record_once_per_epoch() {
    let d = tempfile::tempdir().unwrap();
    let (out, records) = converted(d.path(), "tf", &[]);
    let (rc, j, o) = cpu_json(&out, &["--epochs", "1"]);
    assert_eq!(rc, 0, "{}", stderr(&o));
    assert_eq!(j["images"].as_u64(), Some(records), "{j}");
    assert_eq!(j["decoders"]["cpu"].as_u64(), Some(records));
    assert_eq!(j["decoders"]["hardware"], 0);
    assert_eq!(j["decoders"]["undecodable"], 0);
    assert_eq!(j["epochs_started"], 1);
    // One reader fills batches across shard ends: only the last one is partial.
    assert_eq!(j["batches"].as_u64(), Some(records.div_ceil(4)));
    assert!(j["device"].as_str().unwrap().starts_with("CPU ("), "{j}");
    assert_eq!(j["dir"].as_str(), out.to_str());
    assert_eq!(
        (j["batch"].as_u64(), j["size"].as_u64()),
        (Some(4), Some(32))
    );
    assert_eq!(
        (j["resize"].as_str(), j["dtype"].as_str()),
        (Some("stretch"), Some("fp32"))
    );
    assert_eq!(j["bad_record_count"], 0);
    assert!(
        j["fell_back_to_cpu"].is_null(),
        "--device cpu is no fallback"
    );
    assert!(j["tuning"].is_null(), "no GPU tuning on the CPU");
    assert!(j.get("per_gpu").is_none());
    // Two epochs, letterboxed fp16 BGR: twice the images, the flags in the report.
    let (rc, j, _) = cpu_json(
        &out,
        &[
            "--epochs",
            "2",
            "--resize",
            "letterbox",
            "--dtype",
            "fp16",
            "--bgr",
        ],
    );
    assert_eq!(rc, 0);
    assert_eq!(j["images"].as_u64(), Some(2 * records));
    assert_eq!(j["epochs_started"], 2);
    assert_eq!(
        (j["resize"].as_str(), j["dtype"].as_str()),
        (Some("letterbox"), Some("fp16"))
    );
    assert_eq!(j["bgr"], true);
}

#[test]
fn table_run_prints_the_same_numbers() {
    let d = tempfile::tempdir().unwrap();
    let (out, records) = converted(d.path(), "tf", &[]);
    let o = dsprep(&[
        "verify-throughput",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--size",
        "32",
        "--readers",
        "1",
        "-q",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let t = stdout(&o);
    assert!(
        t.starts_with(&format!("verify-throughput  {}\n", out.display())),
        "{t}"
    );
    assert!(t.contains("  device            CPU ("), "{t}");
    assert!(t.contains("batch 4 → 32×32 Stretch Fp32"), "{t}");
    let n = records.div_ceil(4);
    assert!(
        t.contains(&format!("images            {records} in {n} batches")),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "decoded by        hardware 0  cuda 0  cpu {records}  undecodable 0"
        )),
        "{t}"
    );
    assert!(!t.contains("bad records"), "{t}");
}

#[test]
fn bad_invocations_exit_2_naming_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = converted(d.path(), "tf", &[]);
    let dir = out.to_str().unwrap();
    for (args, says) in [
        (vec!["--batch", "0"], "--batch"),
        (vec!["--size", "2"], "--size"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--seconds=-1"], "--seconds"),
        (vec!["--resize", "squash"], "--resize"),
        (vec!["--gpus", "0,0"], "--gpus"),
    ] {
        let mut a = vec!["verify-throughput", dir, "--device", "cpu", "-q"];
        a.extend_from_slice(&args);
        let o = dsprep(&a);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(
            stdout(&o).is_empty(),
            "{args:?}: no report on a bad invocation"
        );
    }
    // A folder without shards is refused by the plan, naming the folder.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = dsprep(&[
        "verify-throughput",
        empty.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!(
            "{}: no .tfrecord or .lmdb shards found",
            empty.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_corrupt_record_is_reported_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let (out, records) = converted(d.path(), "tf", &[]);
    let shard = out.join("val-00000-of-00002.tfrecord");
    let idx = std::fs::read_to_string(out.join("val-00000-of-00002.idx")).unwrap();
    let second: u64 = idx
        .lines()
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[second as usize + 20] ^= 0x55; // inside record 1's payload: its data CRC fails
    std::fs::write(&shard, bytes).unwrap();
    let (rc, j, o) = cpu_json(&out, &["--epochs", "2"]);
    assert_eq!(rc, 1, "{}", stderr(&o));
    assert_eq!(j["images"].as_u64(), Some(2 * (records - 1)), "{j}");
    // Seen in both epochs, listed once.
    assert_eq!(j["bad_record_count"], 1, "{j}");
    let b = &j["bad_records"][0];
    assert_eq!(b["shard"].as_str(), shard.to_str());
    assert_eq!(b["offset"].as_u64(), Some(second));
    assert!(b["reason"].as_str().unwrap().contains("CRC"), "{b}");
    let o = dsprep(&[
        "verify-throughput",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "-q",
    ]);
    assert_eq!(code(&o), 1);
    let t = stdout(&o);
    assert!(t.contains("bad records       1 (the run went on):"), "{t}");
    assert!(
        t.contains(&format!("{} @ {second}: ", shard.display())),
        "{t}"
    );
}

#[test]
fn lmdb_shards_are_read_too() {
    let d = tempfile::tempdir().unwrap();
    let (out, records) = converted(d.path(), "lmdb", &["--format", "lmdb"]);
    let (rc, j, o) = cpu_json(&out, &["--epochs", "1"]);
    assert_eq!(rc, 0, "{}", stderr(&o));
    assert_eq!(j["images"].as_u64(), Some(records), "{j}");
    assert_eq!(j["bad_record_count"], 0);
}

/// What `--device gpu` and `--device auto` do depends on the machine: without a usable GPU,
/// `gpu` is refused (exit 2, saying what is missing) and `auto` measures the CPU and says why.
#[test]
fn gpu_requests_without_a_gpu_are_refused_or_fall_back() {
    let missing = dsprep::gpu::device::probe(0).missing;
    if missing.is_empty() {
        println!("skipped: this machine has a usable GPU (tests/gpu.rs covers it)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (out, records) = converted(d.path(), "tf", &[]);
    let dir = out.to_str().unwrap();
    let o = dsprep(&[
        "verify-throughput",
        dir,
        "--device",
        "gpu",
        "--epochs",
        "1",
        "-q",
    ]);
    assert_eq!(code(&o), 2);
    let e = stderr(&o);
    assert!(
        e.contains("--device gpu: the GPU path cannot run here:"),
        "{e}"
    );
    assert!(e.contains(&missing[0]), "{e}");
    let o = dsprep(&[
        "verify-throughput",
        dir,
        "--device",
        "auto",
        "--epochs",
        "1",
        "--json",
        "-",
        "-q",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("GPU path unavailable, falling back to the CPU"),
        "{}",
        stderr(&o)
    );
    let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        j["fell_back_to_cpu"].as_str(),
        Some(missing.join("; ").as_str())
    );
    assert_eq!(j["images"].as_u64(), Some(records));
}
