//! Scale-out (issue #14): `convert --tasks M --task K` + `dsprep merge`, `--shuffle`,
//! `--shard-multiple`, and the Kubernetes example run locally. The real binary throughout; every
//! merged folder is compared byte for byte, whole tree, with a one-machine run of the same
//! input and options.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------------

/// `dsprep args...` with `env` set and the array/Job variables of the test's own environment
/// removed (CI may itself run inside a Slurm job).
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).stdin(Stdio::null());
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
        "AWS_BATCH_JOB_ARRAY_INDEX",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().expect("run dsprep")
}

fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn shown(o: &Output) -> String {
    format!(
        "code {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn expect(o: &Output, codes: &[i32]) {
    assert!(
        codes.contains(&code(o)),
        "wanted exit {codes:?}: {}",
        shown(o)
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn convert_args<'a>(input: &'a Path, out: &'a Path, opts: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["convert", s(input), s(out), "-q"];
    a.extend_from_slice(opts);
    a
}

/// Every task of an M-task run at once (they share OUT), then their exit codes.
fn run_tasks(input: &Path, out: &Path, opts: &[&str], m: u32) -> Vec<Output> {
    let (ms, ks): (String, Vec<String>) = (m.to_string(), (0..m).map(|k| k.to_string()).collect());
    let children: Vec<Child> = ks
        .iter()
        .map(|k| {
            let mut a = convert_args(input, out, opts);
            a.extend(["--tasks", &ms, "--task", k]);
            command(&a, &[])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[track_caller]
fn assert_same_tree(one: &Path, merged: &Path) {
    let (a, b) = (tree(one), tree(merged));
    let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "file lists differ");
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs from the one-machine run");
    }
}

fn manifest(out: &Path) -> Value {
    read_json(&out.join("manifest.json"))
}

fn part_path(out: &Path, k: u32, m: u32) -> PathBuf {
    out.join(format!("dsprep-tasks/part-{k:05}-of-{m:05}.json"))
}

/// Two splits: `train` (23 listed images, one missing on disk so it is skipped, one without
/// annotations) and `val` (the committed fixture: EXIF, CMYK, PNG, bad boxes...).
fn dataset(root: &Path) -> PathBuf {
    let input = root.join("coco");
    let mut images = Vec::new();
    let mut anns = Vec::new();
    let mut files = Vec::new();
    for i in 0..23i64 {
        let name = format!("t{i:02}.jpg");
        images.push(image_entry(i + 1, &name, 64, 48));
        if i != 7 {
            anns.push(ann_entry(
                i + 1,
                i + 1,
                1 + 2 * (i % 2),
                [2.0, 3.0, 30.0, 20.0],
            ));
        }
        if i != 5 {
            files.push((name, noise_jpeg(64, 48, i as u32)));
        }
    }
    let doc = json!({"images": images, "annotations": anns, "categories": categories()});
    std::fs::create_dir_all(input.join("annotations")).unwrap();
    std::fs::create_dir_all(input.join("train")).unwrap();
    write_json(&input.join("annotations/instances_train.json"), &doc);
    for (n, b) in &files {
        std::fs::write(input.join("train").join(n), b).unwrap();
    }
    copy_tree(&fixtures().join("coco/val"), &input.join("val"));
    std::fs::copy(
        fixtures().join("coco/annotations/instances_val.json"),
        input.join("annotations/instances_val.json"),
    )
    .unwrap();
    input
}

// ---------------------------------------------------------------------------------------------
// Byte identity
// ---------------------------------------------------------------------------------------------

#[test]
fn merged_tasks_are_byte_identical_to_one_machine_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset(tmp.path());
    let configs: &[(&str, &[&str], &[u32])] = &[
        // 5 shards per split: M = 8 gives three tasks no shard at all.
        ("shards 5", &["--shards", "5"], &[1, 3, 8]),
        ("by size", &["--shard-size", "9k"], &[3]),
        ("lmdb", &["--format", "lmdb", "--shards", "4"], &[3]),
        (
            "shuffle + multiple",
            &["--shuffle", "11", "--shard-multiple", "4"],
            &[3, 8],
        ),
        (
            "presize",
            &["--presize", "32", "--shards", "3", "-j", "1"],
            &[2],
        ),
    ];
    let mut cases = Cases::new();
    for (ci, (name, opts, tasks)) in configs.iter().enumerate() {
        let one = tmp.path().join(format!("one{ci}"));
        let o = run(&convert_args(&input, &one, opts));
        expect(&o, &[1]); // one image is missing: exit 1, listed
        for &m in *tasks {
            cases.check(&format!("{name}, M = {m}"), || {
                let out = tmp.path().join(format!("multi{ci}-{m}"));
                for (k, o) in run_tasks(&input, &out, opts, m).iter().enumerate() {
                    assert!([0, 1].contains(&code(o)), "task {k} of {m}: {}", shown(o));
                }
                assert!(
                    !out.join("manifest.json").exists(),
                    "a task wrote manifest.json"
                );
                let merged = run(&["merge", s(&out)]);
                expect(&merged, &[1]);
                assert_same_tree(&one, &out);
                // A second merge finds the folder merged and changes nothing.
                let again = run(&["merge", s(&out), "--json"]);
                expect(&again, &[1]);
                let report: Value = serde_json::from_slice(&again.stdout).unwrap();
                assert_eq!(report["already_merged"], true, "{}", shown(&again));
                assert_same_tree(&one, &out);
            });
        }
    }
    cases.finish();
}

// ---------------------------------------------------------------------------------------------
// Merge rules
// ---------------------------------------------------------------------------------------------

#[test]
fn merge_names_every_missing_failed_or_mismatched_task_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset(tmp.path());
    let out = tmp.path().join("out");
    let opts = ["--shards", "6"];
    let task = |k: &str, extra: &[&str]| {
        let mut a = convert_args(&input, &out, &opts);
        a.extend(["--tasks", "5", "--task", k]);
        a.extend_from_slice(extra);
        run(&a)
    };
    for k in ["0", "2", "4"] {
        expect(&task(k, &[]), &[0, 1]);
    }
    expect(&task("1", &["--labels", "contiguous"]), &[0, 1]);
    // Task 3 never ran. Task 4's part is edited back to "unfinished"; one of task 2's shards
    // is lost.
    let p4 = part_path(&out, 4, 5);
    let mut v = read_json(&p4);
    v["manifest"]["complete"] = json!(false);
    write_json(&p4, &v);
    std::fs::remove_file(out.join("val-00002-of-00006.tfrecord")).unwrap();
    let before = tree(&out);

    let o = run(&["merge", s(&out)]);
    expect(&o, &[2]);
    let e = stderr(&o);
    let lines: Vec<&str> = e
        .lines()
        .filter(|l| l.trim_start().starts_with("task "))
        .collect();
    assert_eq!(lines.len(), 4, "one line per failed task: {e}");
    assert!(
        lines[0].contains("task 1") && e.contains("labels: \"contiguous\" vs \"coco\""),
        "{e}"
    );
    assert!(
        lines[1].contains("task 2") && lines[1].contains("val-00002-of-00006.tfrecord"),
        "{e}"
    );
    assert!(
        lines[2].contains("task 3") && lines[2].contains("no part"),
        "{e}"
    );
    assert!(
        lines[3].contains("task 4") && lines[3].contains("did not finish"),
        "{e}"
    );
    assert_eq!(tree(&out), before, "a failed merge changed the folder");

    // A part that differs keeps its task from resuming: it says which option differs.
    let o = task("1", &[]);
    expect(&o, &[2]);
    assert!(
        stderr(&o).contains("labels: \"coco\" vs \"contiguous\""),
        "{}",
        shown(&o)
    );
    // Re-running the named tasks (task 1 over again) mends the run.
    expect(&task("1", &["--overwrite"]), &[0, 1]);
    expect(&task("2", &[]), &[0, 1]);
    expect(&task("3", &[]), &[0, 1]);
    v["manifest"]["complete"] = json!(true);
    write_json(&p4, &v);
    expect(&run(&["merge", s(&out)]), &[1]);
    let one = tmp.path().join("one");
    expect(&run(&convert_args(&input, &one, &opts)), &[1]);
    assert_same_tree(&one, &out);
}

#[test]
fn a_merge_stopped_before_its_clean_up_is_finished_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset(tmp.path());
    let out = tmp.path().join("out");
    for o in run_tasks(&input, &out, &["--shards", "5"], 3) {
        expect(&o, &[0, 1]);
    }
    let saved = tmp.path().join("saved");
    copy_tree(&out.join("dsprep-tasks"), &saved);
    expect(&run(&["merge", s(&out)]), &[1]);
    let merged = tree(&out);
    // As if the merge had died after writing manifest.json, having removed task 1's part only.
    copy_tree(&saved, &out.join("dsprep-tasks"));
    std::fs::remove_file(part_path(&out, 1, 3)).unwrap();
    let o = run(&["merge", s(&out), "--json"]);
    expect(&o, &[1]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["already_merged"], true, "{}", shown(&o));
    assert_eq!(tree(&out), merged);
}

#[test]
fn merge_refuses_parts_of_different_task_counts_and_empty_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset(tmp.path());
    let out = tmp.path().join("out");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&["merge", s(&empty)]);
    expect(&o, &[2]);
    assert!(stderr(&o).contains("nothing to merge"), "{}", shown(&o));
    for (k, m) in [("0", "2"), ("1", "2"), ("0", "3")] {
        let mut a = convert_args(&input, &out, &["--shards", "4"]);
        a.extend(["--tasks", m, "--task", k]);
        expect(&run(&a), &[0, 1]);
    }
    let o = run(&["merge", s(&out)]);
    expect(&o, &[2]);
    assert!(
        stderr(&o).contains("different task counts"),
        "{}",
        shown(&o)
    );
    assert!(!out.join("manifest.json").exists());
    // A part file naming a task past the count is reported, not a crash.
    std::fs::remove_file(part_path(&out, 0, 3)).unwrap();
    std::fs::write(part_path(&out, 7, 2), b"{}").unwrap();
    let o = run(&["merge", s(&out)]);
    expect(&o, &[2]);
    assert!(
        stderr(&o).contains("task 7 of 2, past the last task"),
        "{}",
        shown(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// A task that dies, a task started twice, and what a running task keeps out
// ---------------------------------------------------------------------------------------------

/// 60 shards of one 1024×768 photo-sized image each, presized: slow enough (tens of ms per
/// shard on one thread) to catch a task mid-run.
fn slow_dataset(root: &Path) -> PathBuf {
    let input = root.join("slow");
    let mut images = Vec::new();
    let mut files = Vec::new();
    for i in 0..60i64 {
        let name = format!("p{i:02}.jpg");
        images.push(image_entry(i + 1, &name, 1024, 768));
        files.push((name, noise_jpeg(1024, 768, i as u32)));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    write_coco(&input, &images, &[], &refs);
    input
}

fn finished_shards(part: &Path) -> Option<(usize, bool)> {
    let v: Value = serde_json::from_slice(&std::fs::read(part).ok()?).ok()?;
    let n = v["manifest"]["splits"][0]["shards"].as_array()?.len();
    Some((n, v["manifest"]["complete"].as_bool()?))
}

#[test]
fn a_killed_task_resumes_and_a_running_task_keeps_others_out() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let input = slow_dataset(tmp.path());
    let out = tmp.path().join("out");
    let opts = [
        "--shards",
        "60",
        "--presize",
        "256",
        "--decode-check",
        "-j",
        "1",
    ];
    let task0 = {
        let mut a = convert_args(&input, &out, &opts);
        a.extend(["--tasks", "2", "--task", "0"]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let task0: Vec<&str> = task0.iter().map(|s| s.as_str()).collect();
    let mut first = command(&task0, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = part_path(&out, 0, 2);
    let started = Instant::now();
    loop {
        match finished_shards(&part) {
            Some((n, false)) if n >= 3 => break,
            Some((_, true)) => panic!("task 0 finished before the test could stop it"),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "task 0 never got going"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // While it runs: the same task again, a whole run and a merge are all refused.
    let twin = run(&task0);
    expect(&twin, &[2]);
    assert!(
        stderr(&twin).contains("task 0 of 2 is already running"),
        "{}",
        shown(&twin)
    );
    let whole = run(&convert_args(&input, &out, &["--overwrite"]));
    expect(&whole, &[2]);
    assert!(
        stderr(&whole).contains("another dsprep run"),
        "{}",
        shown(&whole)
    );
    let merge = run(&["merge", s(&out)]);
    expect(&merge, &[2]);
    assert!(
        stderr(&merge).contains("another dsprep run"),
        "{}",
        shown(&merge)
    );

    first.kill().unwrap(); // SIGKILL: no clean-up of any kind
    first.wait().unwrap();
    let (kept, complete) = finished_shards(&part).unwrap();
    assert!(!complete && kept >= 3);
    let v = read_json(&part);
    let kept_files: Vec<String> = v["manifest"]["splits"][0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap().to_string())
        .collect();
    let inode = |f: &str| std::fs::metadata(out.join(f)).unwrap().ino();
    let inodes: Vec<u64> = kept_files.iter().map(|f| inode(f)).collect();

    // The array retries the task with the same command line: it resumes.
    expect(&run(&task0), &[0]);
    let after: Vec<u64> = kept_files.iter().map(|f| inode(f)).collect();
    assert_eq!(
        inodes, after,
        "finished shards were written again instead of kept"
    );
    let mut a = convert_args(&input, &out, &opts);
    a.extend(["--tasks", "2", "--task", "1"]);
    expect(&run(&a), &[0]);
    expect(&run(&["merge", s(&out)]), &[0]);
    let one = tmp.path().join("one");
    expect(&run(&convert_args(&input, &one, &opts)), &[0]);
    assert_same_tree(&one, &out);
    let leftovers: Vec<String> = tree(&out)
        .into_keys()
        .filter(|n| n.ends_with(".partial") || n.contains("dsprep-tasks"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------------------------------------
// What a task-mode OUT may hold
// ---------------------------------------------------------------------------------------------

#[test]
fn task_mode_output_folder_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset(tmp.path());
    let task = |out: &Path, k: &str, extra: &[&str]| {
        let mut a = convert_args(&input, out, &["--shards", "4"]);
        a.extend(["--tasks", "2", "--task", k]);
        a.extend_from_slice(extra);
        run(&a)
    };
    // Someone else's file: refused, untouched.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let o = task(&foreign, "0", &[]);
    expect(&o, &[2]);
    assert!(stderr(&o).contains("notes.txt"), "{}", shown(&o));
    assert_eq!(tree(&foreign).len(), 1);

    // `dsprep-tasks` as a link out of OUT: refused by the task and by the merge, nothing
    // written or read through it.
    let linked = tmp.path().join("linked");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&linked).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, linked.join("dsprep-tasks")).unwrap();
    let o = task(&linked, "0", &[]);
    expect(&o, &[2]);
    assert!(stderr(&o).contains("symbolic link"), "{}", shown(&o));
    expect(&run(&["merge", s(&linked)]), &[2]);
    assert!(tree(&elsewhere).is_empty());
    // A link left under the name of one of the task's partial files is removed as a link.
    let out = tmp.path().join("partial-link");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(elsewhere.join("victim"), b"keep").unwrap();
    std::os::unix::fs::symlink(
        elsewhere.join("victim"),
        out.join("train-00000-of-00004.tfrecord.partial"),
    )
    .unwrap();
    expect(&task(&out, "0", &[]), &[0, 1]);
    assert_eq!(std::fs::read(elsewhere.join("victim")).unwrap(), b"keep");

    // A finished one-machine run (another shard count) needs --overwrite; then every task
    // clears what it must and the merged result is exactly a fresh run's, other files kept.
    let out = tmp.path().join("out");
    expect(&run(&convert_args(&input, &out, &["--shards", "7"])), &[1]);
    std::fs::write(out.join("keep.txt"), b"user file").unwrap();
    let o = task(&out, "0", &[]);
    expect(&o, &[2]);
    assert!(stderr(&o).contains("manifest.json"), "{}", shown(&o));
    expect(&task(&out, "0", &["--overwrite"]), &[0, 1]);
    expect(&task(&out, "1", &["--overwrite"]), &[0, 1]);
    expect(&run(&["merge", s(&out)]), &[1]);
    std::fs::remove_file(out.join("keep.txt")).unwrap();
    let one = tmp.path().join("one");
    expect(&run(&convert_args(&input, &one, &["--shards", "4"])), &[1]);
    assert_same_tree(&one, &out);
}

// ---------------------------------------------------------------------------------------------
// Task identity from the engines' variables
// ---------------------------------------------------------------------------------------------

#[test]
fn task_identity_comes_from_slurm_kubernetes_or_aws_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset(tmp.path());
    let slurm = |id: &'static str| {
        vec![
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_MAX", "12"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ]
    };
    let out = tmp.path().join("slurm");
    for id in ["10", "11", "12"] {
        let o = run_env(
            &convert_args(&input, &out, &["--shards", "4", "--tasks", "auto"]),
            &slurm(id),
        );
        expect(&o, &[0, 1]);
        let k = id.parse::<u32>().unwrap() - 10;
        assert!(part_path(&out, k, 3).is_file(), "{}", shown(&o));
    }
    expect(&run(&["merge", s(&out)]), &[1]);
    let one = tmp.path().join("one");
    expect(&run(&convert_args(&input, &one, &["--shards", "4"])), &[1]);
    assert_same_tree(&one, &out);

    for (var, name) in [
        ("JOB_COMPLETION_INDEX", "k8s"),
        ("AWS_BATCH_JOB_ARRAY_INDEX", "aws"),
    ] {
        let out = tmp.path().join(name);
        for k in ["0", "1"] {
            let o = run_env(
                &convert_args(&input, &out, &["--shards", "4", "--tasks", "2"]),
                &[(var, k)],
            );
            expect(&o, &[0, 1]);
        }
        expect(&run(&["merge", s(&out)]), &[1]);
        assert_same_tree(&one, &out);
    }

    // An array with a step is refused, naming the variable; nothing is written.
    let stepped = tmp.path().join("stepped");
    let mut env = slurm("4");
    env.retain(|(k, _)| !k.starts_with("SLURM_ARRAY_TASK_STEP"));
    env.push(("SLURM_ARRAY_TASK_STEP", "4"));
    let o = run_env(&convert_args(&input, &stepped, &["--tasks", "auto"]), &env);
    expect(&o, &[2]);
    assert!(
        stderr(&o).contains("SLURM_ARRAY_TASK_STEP=4"),
        "{}",
        shown(&o)
    );
    assert!(!stepped.exists());
    // An index past the count.
    let o = run_env(
        &convert_args(&input, &stepped, &["--tasks", "2"]),
        &[("JOB_COMPLETION_INDEX", "2")],
    );
    expect(&o, &[2]);
    assert!(
        stderr(&o).contains("JOB_COMPLETION_INDEX=2"),
        "{}",
        shown(&o)
    );
    // A plain convert inside an array job stays a whole run.
    let plain = tmp.path().join("plain");
    expect(
        &run_env(
            &convert_args(&input, &plain, &["--shards", "4"]),
            &slurm("11"),
        ),
        &[1],
    );
    assert_same_tree(&one, &plain);
}

// ---------------------------------------------------------------------------------------------
// --shuffle and --shard-multiple
// ---------------------------------------------------------------------------------------------

/// The permutation the README documents, written again here from that text: Fisher–Yates from
/// the last position down, partner ⌊r·(i+1)/2⁶⁴⌋ for SplitMix64 outputs r.
fn documented_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((u128::from(next()) * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}

/// `image/filename` of every record of a TFRecord shard, in order.
fn filenames(shard: &Path) -> Vec<String> {
    use dsprep::shard::example::Example;
    tf_records(&std::fs::read(shard).unwrap())
        .iter()
        .map(|(_, payload)| {
            let e = Example::decode(payload).unwrap();
            let v = e
                .get_bytes(dsprep::shard::od_example::keys::FILENAME)
                .unwrap();
            String::from_utf8(v[0].to_vec()).unwrap()
        })
        .collect()
}

#[test]
fn shuffle_deals_the_documented_permutation_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("coco");
    clean_coco(&input, 40);
    let opts = ["--shards", "3", "--shuffle", "20261201"];
    let (a, b, plain) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("p"),
    );
    expect(&run(&convert_args(&input, &a, &opts)), &[0]);
    expect(
        &run(&convert_args(
            &input,
            &b,
            &[opts[0], opts[1], opts[2], opts[3], "-j", "1"],
        )),
        &[0],
    );
    assert_same_tree(&a, &b);
    expect(
        &run(&convert_args(&input, &plain, &["--shards", "3"])),
        &[0],
    );
    let m = manifest(&a);
    assert_eq!(m["options"]["shuffle_seed"], 20261201);
    assert!(manifest(&plain)["options"].get("shuffle_seed").is_none());
    let perm = documented_permutation(40, 20261201);
    let mut all = Vec::new();
    for s in 0..3 {
        let got = filenames(&a.join(format!("val-{s:05}-of-00003.tfrecord")));
        let want: Vec<String> = (s..40)
            .step_by(3)
            .map(|p| format!("img{:03}.jpg", perm[p]))
            .collect();
        assert_eq!(got, want, "shard {s}");
        all.extend(got);
    }
    all.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("img{i:03}.jpg")).collect();
    assert_eq!(all, expected, "every image exactly once");
    let plain0 = filenames(&plain.join("val-00000-of-00003.tfrecord"));
    assert_eq!(plain0[..3], ["img000.jpg", "img003.jpg", "img006.jpg"]);
    // Another seed, another order.
    let c = tmp.path().join("c");
    expect(
        &run(&convert_args(
            &input,
            &c,
            &["--shards", "3", "--shuffle", "1"],
        )),
        &[0],
    );
    assert_ne!(
        filenames(&c.join("val-00000-of-00003.tfrecord")),
        filenames(&a.join("val-00000-of-00003.tfrecord"))
    );
    // Resume refuses to mix seeds.
    std::fs::remove_file(c.join("val-00002-of-00003.tfrecord")).unwrap();
    let o = run(&convert_args(
        &input,
        &c,
        &["--shards", "3", "--shuffle", "2", "--resume"],
    ));
    expect(&o, &[2]);
}

#[test]
fn shard_multiple_rounds_every_split_for_equal_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dataset(tmp.path());
    let out = tmp.path().join("out");
    expect(
        &run(&convert_args(
            &input,
            &out,
            &["--shards", "5", "--shard-multiple", "4"],
        )),
        &[1],
    );
    let m = manifest(&out);
    for split in m["splits"].as_array().unwrap() {
        assert_eq!(
            split["shards"].as_array().unwrap().len(),
            8,
            "{}",
            split["name"]
        );
    }
    assert_eq!(m["options"]["shard_multiple"], 4);
    // By size: 1 shard each, rounded up to 3.
    let out = tmp.path().join("size");
    expect(
        &run(&convert_args(&input, &out, &["--shard-multiple", "3"])),
        &[1],
    );
    let m = manifest(&out);
    let counts: Vec<usize> = m["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shards"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [3, 3]);
    // val has 11 images: a multiple of 16 cannot be met; refused by name before any shard.
    let out = tmp.path().join("tiny");
    let o = run(&convert_args(&input, &out, &["--shard-multiple", "16"]));
    expect(&o, &[2]);
    assert!(
        stderr(&o).contains("\"val\" has 11 images"),
        "{}",
        shown(&o)
    );
    let o = run(&convert_args(&input, &out, &["--shard-multiple", "0"]));
    expect(&o, &[2]);
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes example, run through task mode locally
// ---------------------------------------------------------------------------------------------

/// The `sh -c` script of the first container of every Job in a manifest file, with the Job's
/// completions (for Indexed Jobs).
fn job_scripts(path: &Path) -> Vec<(String, String, Option<i64>, String)> {
    use yaml_rust2::YamlLoader;
    let text = std::fs::read_to_string(path).unwrap();
    let mut jobs = Vec::new();
    for doc in YamlLoader::load_from_str(&text).unwrap() {
        if doc["kind"].as_str() != Some("Job") {
            continue;
        }
        let spec = &doc["spec"];
        let container = &spec["template"]["spec"]["containers"][0];
        let cmd: Vec<&str> = container["command"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            cmd[..2],
            ["sh", "-c"],
            "{}: command is sh -c SCRIPT",
            path.display()
        );
        let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
        jobs.push((
            doc["metadata"]["name"].as_str().unwrap().to_string(),
            spec["completionMode"]
                .as_str()
                .unwrap_or("NonIndexed")
                .to_string(),
            spec["completions"].as_i64(),
            cmd[2].replace(mount, "{{MOUNT}}"),
        ));
    }
    jobs
}

#[test]
fn kubernetes_indexed_job_example_runs_through_task_mode() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/k8s");
    let convert = job_scripts(&examples.join("convert-job.yaml"));
    let merge = job_scripts(&examples.join("merge-job.yaml"));
    assert_eq!(convert.len(), 1);
    assert_eq!(merge.len(), 1);
    let (_, mode, completions, script) = &convert[0];
    assert_eq!(mode, "Indexed");
    let m = completions.expect("completions") as u32;
    assert!(
        script.contains(&format!("--tasks {m}")),
        "the Job's completions and --tasks agree: {script}"
    );

    // The shared volume: a folder holding the COCO tree the scripts name.
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("data");
    let input = dataset(tmp.path());
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::rename(&input, mount.join("coco")).unwrap();
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |script: &str, env: &[(&str, String)]| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script.replace("{{MOUNT}}", s(&mount)))
            .env("PATH", &path);
        for v in [
            "SLURM_ARRAY_TASK_ID",
            "JOB_COMPLETION_INDEX",
            "AWS_BATCH_JOB_ARRAY_INDEX",
        ] {
            c.env_remove(v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // The Job controller starts pods 0..completions with JOB_COMPLETION_INDEX set.
    for k in 0..m {
        let o = sh(script, &[("JOB_COMPLETION_INDEX", k.to_string())]);
        expect(&o, &[0]);
    }
    let o = sh(&merge[0].3, &[]);
    expect(&o, &[0]);
    let out = mount.join("out");
    let one = tmp.path().join("one");
    expect(&run(&convert_args(&mount.join("coco"), &one, &[])), &[1]);
    // The Job's script sets no options beyond -q and the task flags, so it is a default run.
    assert_same_tree(&one, &out);
}
