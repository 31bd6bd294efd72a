//! Shared helpers for the hostile-input suite (`tests/hostile.rs`): running the real binary
//! under a timeout and a memory ceiling, snapshots of whole folder trees, COCO folders built at
//! test time, JPEG surgery, TFRecord framing and LMDB access written independently of dsprep's
//! own readers (a test must not trust the code it checks).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// Wall-clock limit of an ordinary run (small inputs; a run that takes this long is a hang).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit of runs where the bug being specified is a hang or runaway work.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(20);
/// Address-space ceiling of every child (KiB for `ulimit -v`): a run that reads `/dev/zero`
/// or decodes a 65500² image aborts here instead of taking the shared machine's memory.
pub const CHILD_MEMORY_KIB: u64 = 3 * 1024 * 1024;

/// What a finished (or killed) run left.
#[derive(Debug)]
pub struct Out {
    /// Exit code; `None` when a signal ended the process (or the harness killed it).
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The harness killed it after the timeout.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Peak resident memory (KiB, `VmHWM` sampled while it ran; 0 if never sampled).
    pub peak_rss_kib: u64,
    pub args: String,
}

impl Out {
    /// Everything, for assertion messages.
    pub fn text(&self) -> String {
        format!(
            "`dsprep {}`: code {:?} signal {:?} timed_out {} after {:.2} s, peak RSS {} MiB\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.code,
            self.signal,
            self.timed_out,
            self.elapsed.as_secs_f64(),
            self.peak_rss_kib / 1024,
            self.stdout,
            self.stderr
        )
    }

    /// stdout + stderr.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Asserts the run ended by itself (no timeout, no signal) with one of `codes`.
    #[track_caller]
    pub fn expect(&self, codes: &[i32]) -> &Self {
        assert!(
            !self.timed_out,
            "hung (killed by the harness): {}",
            self.text()
        );
        assert!(
            self.signal.is_none() && self.code.is_some(),
            "died from a signal, never allowed: {}",
            self.text()
        );
        let c = self.code.unwrap();
        assert!(
            codes.contains(&c),
            "exit code {c}, wanted one of {codes:?}: {}",
            self.text()
        );
        self
    }

    /// Asserts stdout or stderr mentions `needle`.
    #[track_caller]
    pub fn mentions(&self, needle: &str) -> &Self {
        assert!(
            self.all().contains(needle),
            "output does not name {needle:?}: {}",
            self.text()
        );
        self
    }

    /// Asserts stdout or stderr mentions any of `needles` (case-insensitive).
    #[track_caller]
    pub fn mentions_any(&self, needles: &[&str]) -> &Self {
        let all = self.all().to_lowercase();
        assert!(
            needles.iter().any(|n| all.contains(&n.to_lowercase())),
            "output names none of {needles:?}: {}",
            self.text()
        );
        self
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dsprep")
}

/// Run `dsprep args...` with [`DEFAULT_TIMEOUT`].
pub fn dsprep<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    dsprep_t(args, DEFAULT_TIMEOUT)
}

/// Run `dsprep args...`; kill it after `timeout`.
pub fn dsprep_t<I, S>(args: I, timeout: Duration) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let child = spawn(args);
    wait_for(child, timeout)
}

/// A running child with its output being collected.
pub struct Running {
    child: std::process::Child,
    started: Instant,
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
    args: String,
}

impl Running {
    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Start `dsprep args...` under the memory ceiling (through `sh -c 'ulimit -v; exec'`, so the
/// process the harness waits for is dsprep itself and its signal is seen).
pub fn spawn<I, S>(args: I) -> Running
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {CHILD_MEMORY_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(bin())
        .args(&args)
        // glibc reserves 64 MiB of address space per malloc arena (up to 8 per core): without
        // this a many-core CI machine could hit the address-space ceiling on a normal run.
        .env("MALLOC_ARENA_MAX", "4")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn dsprep");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    Running {
        child,
        started: Instant::now(),
        out,
        err,
        args: shown,
    }
}

/// Wait for `r` at most `timeout` (polling `try_wait`), killing it on timeout.
pub fn wait_for(mut r: Running, timeout: Duration) -> Out {
    use std::os::unix::process::ExitStatusExt;
    let mut timed_out = false;
    let mut peak_rss_kib = 0;
    let status_file = format!("/proc/{}/status", r.child.id());
    let status = loop {
        match r.child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => panic!("wait: {e}"),
        }
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_rss_kib = peak_rss_kib.max(kib);
        }
        if r.started.elapsed() > timeout {
            timed_out = true;
            let _ = r.child.kill();
            break r.child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = r.started.elapsed();
    let stdout = String::from_utf8_lossy(&r.out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&r.err.join().unwrap_or_default()).into_owned();
    Out {
        code: if timed_out { None } else { status.code() },
        signal: if timed_out { None } else { status.signal() },
        timed_out,
        stdout,
        stderr,
        elapsed,
        peak_rss_kib,
        args: r.args,
    }
}

/// Collects the failures of many cases of one test, so one run shows every broken case
/// (each case's panic is caught; the test fails at the end listing them all).
#[derive(Default)]
pub struct Cases {
    failed: Vec<String>,
    ran: usize,
}

impl Cases {
    pub fn new() -> Cases {
        Cases::default()
    }

    /// Run one case; a panic inside is recorded, not propagated.
    pub fn check(&mut self, case: &str, f: impl FnOnce()) {
        self.ran += 1;
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let short: String = msg.chars().take(1500).collect();
            self.failed.push(format!("[{case}] {short}"));
        }
    }

    /// Fail listing every failed case.
    #[track_caller]
    pub fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} cases failed:\n\n{}",
            self.failed.len(),
            self.ran,
            self.failed.join("\n\n")
        );
    }
}

/// `p` as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// One entry of a tree, never following symlinks and never reading FIFOs or devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { len: u64, hash: u128, mode: u32 },
    Dir { mode: u32 },
    Link(PathBuf),
    Other(String),
}

/// Paths, sizes, hashes of a whole tree.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub root: PathBuf,
    pub entries: BTreeMap<PathBuf, Entry>,
}

fn hash_file(p: &Path) -> u128 {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.digest128()
}

impl Snapshot {
    pub fn of(root: &Path) -> Snapshot {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let mut entries = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd {
                let e = e.unwrap();
                let p = e.path();
                let md = std::fs::symlink_metadata(&p).unwrap();
                let ft = md.file_type();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                let mode = md.permissions().mode();
                let entry = if ft.is_symlink() {
                    Entry::Link(std::fs::read_link(&p).unwrap())
                } else if ft.is_dir() {
                    stack.push(p.clone());
                    Entry::Dir { mode }
                } else if ft.is_file() {
                    Entry::File {
                        len: md.len(),
                        hash: hash_file(&p),
                        mode,
                    }
                } else if ft.is_fifo() {
                    Entry::Other("fifo".into())
                } else {
                    Entry::Other(format!("{ft:?}"))
                };
                entries.insert(rel, entry);
            }
        }
        Snapshot {
            root: root.to_path_buf(),
            entries,
        }
    }

    /// Re-snapshot the root and assert nothing changed outside `allowed` (absolute paths; an
    /// allowed folder may change anywhere inside, and may appear or disappear itself).
    #[track_caller]
    pub fn assert_unchanged_except(&self, allowed: &[&Path]) {
        let now = Snapshot::of(&self.root);
        let rels: Vec<PathBuf> = allowed
            .iter()
            .map(|a| a.strip_prefix(&self.root).unwrap_or(a).to_path_buf())
            .collect();
        let free = |p: &Path| rels.iter().any(|a| p.starts_with(a));
        let mut diffs = Vec::new();
        for (p, e) in &self.entries {
            if free(p) {
                continue;
            }
            match now.entries.get(p) {
                None => diffs.push(format!("removed: {}", p.display())),
                Some(n) if n != e => {
                    diffs.push(format!("changed: {} ({e:?} -> {n:?})", p.display()))
                }
                _ => {}
            }
        }
        for p in now.entries.keys() {
            if !free(p) && !self.entries.contains_key(p) {
                diffs.push(format!("created: {}", p.display()));
            }
        }
        assert!(
            diffs.is_empty(),
            "outside the output folder(s) {allowed:?} something changed under {}:\n  {}",
            self.root.display(),
            diffs.join("\n  ")
        );
    }

    /// Assert nothing at all changed.
    #[track_caller]
    pub fn assert_unchanged(&self) {
        self.assert_unchanged_except(&[]);
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A committed fixture file's bytes (e.g. `coco/val/000001.jpg`, 64×48).
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap()
}

/// The 64×48 clean baseline JPEG used for most cases.
pub fn small_jpeg() -> Vec<u8> {
    fixture_bytes("coco/val/000001.jpg")
}

/// A baseline JPEG of `w`×`h` noise-ish pixels (so its scan is big), made with the `image`
/// crate's encoder (independent of dsprep's encoders).
pub fn noise_jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    for i in 0..w * h {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let base = ((i % w) * 255 / w.max(1)) as u8;
        px.push(base.wrapping_add((x & 63) as u8));
        px.push(((i / w) * 255 / h.max(1)) as u8);
        px.push((x >> 8) as u8 & 127);
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&px, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A baseline JPEG of a smooth gradient (small file, full decode cost).
pub fn smooth_jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            px.push((x * 255 / w.max(1)) as u8);
            px.push((y * 255 / h.max(1)) as u8);
            px.push(((x + y) * 127 / (w + h).max(1)) as u8);
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode(&px, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// Offset of the first `FF code` marker at or after `from`.
pub fn find_marker(jpeg: &[u8], code: u8, from: usize) -> Option<usize> {
    (from..jpeg.len().saturating_sub(1)).find(|&i| jpeg[i] == 0xFF && jpeg[i + 1] == code)
}

/// The same JPEG with its SOF0/SOF2 header declaring `w`×`h` (the scan is left as it is).
pub fn patch_sof(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut v = jpeg.to_vec();
    let sof = find_marker(&v, 0xC0, 2)
        .or_else(|| find_marker(&v, 0xC2, 2))
        .expect("SOF0/SOF2 marker");
    // FF C0 | len(2) | precision(1) | height(2) | width(2)
    v[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    v[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    v
}

/// The JPEG with its entropy-coded scan cut to `keep` (0..1) of its length and an end-of-image
/// marker appended: every marker intact, two thirds of the picture missing.
pub fn cut_scan(jpeg: &[u8], keep: f64) -> Vec<u8> {
    let sos = find_marker(jpeg, 0xDA, 2).expect("SOS marker");
    let len = usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
    let start = sos + 2 + len;
    let eoi = jpeg.len() - 2;
    assert_eq!(&jpeg[eoi..], &[0xFF, 0xD9], "JPEG ends with EOI");
    let mut cut = start + ((eoi - start) as f64 * keep) as usize;
    while jpeg[cut - 1] == 0xFF {
        cut -= 1;
    }
    let mut v = jpeg[..cut].to_vec();
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

/// An `images` entry.
pub fn image_entry(id: i64, file_name: &str, w: u32, h: u32) -> Value {
    json!({"id": id, "file_name": file_name, "width": w, "height": h})
}

/// An `annotations` entry with a box (category 1 = person, 3 = car).
pub fn ann_entry(id: i64, image_id: i64, cat: i64, bbox: [f64; 4]) -> Value {
    json!({"id": id, "image_id": image_id, "category_id": cat, "bbox": bbox,
           "area": bbox[2] * bbox[3], "iscrowd": 0})
}

pub fn categories() -> Value {
    json!([{"id": 1, "name": "person", "supercategory": "person"},
           {"id": 3, "name": "car", "supercategory": "vehicle"}])
}

/// Write a standard-layout COCO folder: `root/annotations/instances_val.json`, images in
/// `root/val/` (each `(file_name, bytes)`; a name may hold sub-folders).
pub fn write_coco(root: &Path, images: &[Value], anns: &[Value], files: &[(&str, &[u8])]) {
    let doc = json!({"info": {}, "licenses": [], "images": images, "annotations": anns,
                     "categories": categories()});
    write_coco_text(root, &serde_json::to_string_pretty(&doc).unwrap(), files);
}

/// Like [`write_coco`] with the annotation file's text given as is (for non-JSON tokens).
pub fn write_coco_text(root: &Path, ann_text: &str, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::create_dir_all(root.join("val")).unwrap();
    std::fs::write(root.join("annotations/instances_val.json"), ann_text).unwrap();
    for (name, bytes) in files {
        let p = root.join("val").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// A clean COCO folder of `n` distinct 64×48-ish JPEGs (`img000.jpg`...), one box each.
pub fn clean_coco(root: &Path, n: usize) {
    let mut images = Vec::new();
    let mut anns = Vec::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..n {
        let name = format!("img{i:03}.jpg");
        images.push(image_entry(i as i64 + 1, &name, 64, 48));
        anns.push(ann_entry(
            i as i64 + 1,
            i as i64 + 1,
            1 + 2 * (i as i64 % 2),
            [4.0, 6.0, 20.0, 30.0],
        ));
        files.push((name, noise_jpeg(64, 48, i as u32)));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    write_coco(root, &images, &anns, &refs);
}

/// Every file name listed under any shard's `skipped` (convert manifest), with its reason.
pub fn skipped(manifest: &Value) -> Vec<(String, String)> {
    manifest["splits"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["shards"].as_array().cloned().unwrap_or_default())
        .flat_map(|sh| sh["skipped"].as_array().cloned().unwrap_or_default())
        .map(|n| {
            (
                n["file_name"].as_str().unwrap_or_default().to_string(),
                n["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every `failures` entry of a presize manifest (COCO input), as (file_name, reason).
pub fn presize_failures(manifest: &Value) -> Vec<(String, String)> {
    manifest["splits"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["failures"].as_array().cloned().unwrap_or_default())
        .map(|n| {
            (
                n["file_name"].as_str().unwrap_or_default().to_string(),
                n["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Recursive copy (symlinks copied as symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = std::fs::symlink_metadata(&src).unwrap().file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// `mkfifo path`.
pub fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", p.display());
}

// ---------------------------------------------------------------------------------------------
// Shards, read and written independently of dsprep's readers
// ---------------------------------------------------------------------------------------------

fn masked_crc(data: &[u8]) -> u32 {
    // TensorFlow's mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8, i.e. a rotation by 17.
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One TFRecord frame (TensorFlow's framing, CRCs correct).
pub fn tf_frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut v = Vec::with_capacity(payload.len() + 16);
    v.extend_from_slice(&len);
    v.extend_from_slice(&masked_crc(&len).to_le_bytes());
    v.extend_from_slice(payload);
    v.extend_from_slice(&masked_crc(payload).to_le_bytes());
    v
}

/// (offset, payload) of every record of a TFRecord file's bytes; no CRC check.
pub fn tf_records(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 12 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap()) as usize;
        let start = off + 12;
        assert!(start + len + 4 <= bytes.len(), "framing broken at {off}");
        out.push((off as u64, bytes[start..start + len].to_vec()));
        off = start + len + 4;
    }
    out
}

/// Write `payloads` as a TFRecord shard at `path` and its DALI index beside it (`x.idx`).
pub fn write_tf_shard(path: &Path, payloads: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    let mut idx = String::new();
    for p in payloads {
        idx.push_str(&format!("{} {}\n", bytes.len(), p.len() + 16));
        bytes.extend_from_slice(&tf_frame(p));
    }
    std::fs::write(path, bytes).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let stem = name.strip_suffix(".tfrecord").unwrap();
    std::fs::write(path.with_file_name(format!("{stem}.idx")), idx).unwrap();
}

/// `xxh3-128:<hex>` of a file, as the manifest records shard checksums.
pub fn xxh3_checksum(p: &Path) -> String {
    format!("xxh3-128:{:032x}", hash_file(p))
}

/// Make the manifest in `out` agree with the bytes now on disk for shard `file` (checksum and
/// size), so only a semantic check can find what was changed.
pub fn refresh_manifest_checksum(out: &Path, file: &str, data_file: &Path) {
    let mp = out.join("manifest.json");
    let mut m = read_json(&mp);
    for split in m["splits"].as_array_mut().unwrap() {
        for sh in split["shards"].as_array_mut().unwrap() {
            if sh["file"] == file {
                sh["checksum"] = json!(xxh3_checksum(data_file));
                sh["bytes"] = json!(std::fs::metadata(data_file).unwrap().len());
            }
        }
    }
    write_json(&mp, &m);
}

/// Every (key, value) of an LMDB environment directory, through lmdb-rkv directly.
pub fn lmdb_entries(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    use lmdb::{Cursor, Transaction};
    let env = lmdb::Environment::new()
        .set_flags(lmdb::EnvironmentFlags::READ_ONLY | lmdb::EnvironmentFlags::NO_LOCK)
        .open(dir)
        .unwrap();
    let db = env.open_db(None).unwrap();
    let txn = env.begin_ro_txn().unwrap();
    let mut cur = txn.open_ro_cursor(db).unwrap();
    let v = cur
        .iter_start()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    drop(cur);
    v
}

/// Replace one value of an LMDB environment directory (a valid LMDB write: only the record's
/// meaning changes).
pub fn lmdb_put(dir: &Path, key: &[u8], value: &[u8]) {
    use lmdb::Transaction;
    let env = lmdb::Environment::new()
        .set_flags(lmdb::EnvironmentFlags::NO_LOCK)
        .set_map_size(256 << 20)
        .open(dir)
        .unwrap();
    let db = env.open_db(None).unwrap();
    let mut txn = env.begin_rw_txn().unwrap();
    txn.put(db, &key, &value, lmdb::WriteFlags::empty())
        .unwrap();
    txn.commit().unwrap();
    env.sync(true).unwrap();
}

/// Page size of dsprep's LMDB files on this machine.
pub const LMDB_PAGE: usize = 4096;

/// (page number, flags, lower, upper) of every page header of an LMDB data file.
pub fn lmdb_pages(data: &[u8]) -> Vec<(usize, u16, u16, u16)> {
    (0..data.len() / LMDB_PAGE)
        .map(|p| {
            let h = &data[p * LMDB_PAGE..p * LMDB_PAGE + 16];
            (
                p,
                u16::from_le_bytes([h[10], h[11]]),
                u16::from_le_bytes([h[12], h[13]]),
                u16::from_le_bytes([h[14], h[15]]),
            )
        })
        .collect()
}
