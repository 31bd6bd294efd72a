//! `dsprep presize IN OUT --size N`: every image at most N pixels (or shorter side N), fast,
//! with the annotation file rewritten so the boxes, polygons, masks and keypoints still cover
//! the same things.
//!
//! COCO folder in → COCO folder out, same layout (annotation files and image folders at the same
//! relative paths, same `file_name`s), plus `OUT/manifest.json` accounting for every image.
//!
//! Running: images are processed on a rayon pool, results collected in input order (so the
//! annotation file and manifest are byte-identical whatever the thread count); a memory
//! budget bounds what workers hold at once (see [`DEFAULT_MEMORY_BUDGET`]). Each image is
//! written under `<name>.partial` and renamed when complete, so an interrupted run leaves only
//! complete images under their real names; `--resume` keeps them. The annotation files and the
//! manifest are written last, atomically: a manifest with `complete: true` means OUT is done.
//!
//! [`DEFAULT_MEMORY_BUDGET`]: crate::plan::presize::DEFAULT_MEMORY_BUDGET

use crate::cmd::progress::Progress;
use crate::dataset::rescale::{
    partial_name, rewrite_coco_file, ImagePlan, ImageScale, RescaleStats,
};
use crate::dataset::{load_coco, ImageEntry, SplitSource};
use crate::image::jpeg_header::parse_jpeg_header;
use crate::image::presize::{memory_estimate, presize_image, Change, PresizeOptions};
use crate::image::resize::Fit;
use crate::plan::presize::{plan_presize, OutputMode, PresizeInput, PresizePlan};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Manifest file name in OUT.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Identifies a presize manifest (a convert manifest has shards instead).
pub const MANIFEST_KIND: &str = "dsprep-presize";

/// `OUT/manifest.json` of a COCO-folder presize.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresizeManifest {
    pub kind: String,
    pub tool_version: String,
    /// False while running (written at the start) and after an interruption.
    pub complete: bool,
    pub options: ManifestOptions,
    pub splits: Vec<SplitManifest>,
}

/// Options that decide the output bytes: `--resume` refuses to mix different ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestOptions {
    pub size: u32,
    pub mode: Fit,
    pub quality: u8,
    pub reencode: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SplitManifest {
    pub name: String,
    /// Paths relative to OUT.
    pub annotations: String,
    pub images_dir: String,
    pub images: u64,
    pub resized: u64,
    pub passed_through: u64,
    /// Within the limit but rotated (EXIF), converted (PNG/CMYK/...) or re-encoded on request.
    pub rewritten_same_size: u64,
    /// Kept from an earlier interrupted run (`--resume`).
    pub resumed: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Every image not in the output, with the reason; they and their annotations are removed
    /// from the output annotation file.
    pub failures: Vec<Failure>,
    /// Images whose JSON width/height disagree with the file (after EXIF orientation);
    /// annotations were scaled from the JSON's frame.
    pub size_mismatches: Vec<SizeMismatch>,
    pub annotation_counts: RescaleStats,
    /// How many images were decoded at 1/1, 1/2, 1/4, 1/8 scale.
    pub dct_scales: BTreeMap<String, u64>,
}

/// An image not in the output, with the reason (same shape as convert's manifest notes).
pub use crate::shard::manifest::ImageNote as Failure;
/// JSON width/height that disagree with the file (same as convert's manifest).
pub use crate::shard::manifest::SizeMismatch;

/// The summary printed at the end (table, or JSON with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct PresizeReport {
    pub output: String,
    pub images: u64,
    pub resized: u64,
    pub passed_through: u64,
    pub rewritten_same_size: u64,
    pub resumed: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    pub images_per_second: f64,
    pub splits: Vec<SplitManifest>,
}

impl PresizeReport {
    fn render_table(&self) -> String {
        let mut s = format!(
            "presize → {}\n  images {}  resized {}  passed through {}  rewritten same size {}  resumed {}  failed {}\n  {:.1} MB → {:.1} MB in {:.1} s ({:.1} images/s)\n",
            self.output,
            self.images,
            self.resized,
            self.passed_through,
            self.rewritten_same_size,
            self.resumed,
            self.failed,
            self.bytes_in as f64 / 1e6,
            self.bytes_out as f64 / 1e6,
            self.seconds,
            self.images_per_second
        );
        for sp in &self.splits {
            for f in sp.failures.iter().take(20) {
                s.push_str(&format!(
                    "  FAILED {}/{}: {}\n",
                    sp.name, f.file_name, f.reason
                ));
            }
            if sp.failures.len() > 20 {
                s.push_str(&format!(
                    "  ... {} more in manifest.json\n",
                    sp.failures.len() - 20
                ));
            }
        }
        s
    }
}

/// Bounded memory for image workers: a counting semaphore over estimated bytes.
struct Budget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

struct Lease<'a> {
    budget: &'a Budget,
    amount: u64,
}

impl Budget {
    fn new(total: u64) -> Budget {
        Budget {
            total: total.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Wait until `amount` fits (an amount over the whole budget waits until nothing else
    /// runs, then runs alone).
    fn acquire(&self, amount: u64) -> Lease<'_> {
        let amount = amount.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + amount > self.total {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += amount;
        Lease {
            budget: self,
            amount,
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.amount);
        self.budget.freed.notify_all();
    }
}

/// What became of one image.
enum Outcome {
    Done {
        change: Option<Change>,
        /// Output size (displayed) and input size (displayed).
        out: (u32, u32),
        src: (u32, u32),
        bytes_in: u64,
        bytes_out: u64,
        resumed: bool,
        dct_denom: u32,
    },
    Failed(String),
    /// Not attempted: --strict stopped the run.
    Cancelled,
}

pub fn run(args: &crate::cli::PresizeArgs) -> Result<ExitCode> {
    let plan = plan_presize(args)?;
    let report = run_plan(&plan)?;
    if plan.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_table());
    }
    Ok(ExitCode::from(if report.failed > 0 {
        crate::cmd::EXIT_PROBLEMS
    } else {
        crate::cmd::EXIT_OK
    }))
}

fn manifest_options(o: &PresizeOptions) -> ManifestOptions {
    ManifestOptions {
        size: o.target.size,
        mode: o.target.fit,
        quality: o.quality,
        reencode: o.reencode,
    }
}

pub fn run_plan(plan: &PresizePlan) -> Result<PresizeReport> {
    let started = Instant::now();
    let (root, splits) = match &plan.input {
        PresizeInput::Coco { root, splits } => (root, splits),
        PresizeInput::Shards { dir } => return shards::run(plan, dir),
    };
    let out = &plan.out_dir;
    let options = manifest_options(&plan.options);
    let previous = load_manifest(out)?;
    match plan.output_mode {
        OutputMode::Resume => match &previous {
            Some(p) if p.options != options => bail!(
                "{}: the earlier run used different options ({:?}); rerun with those or use --overwrite",
                out.display(),
                p.options
            ),
            Some(_) => {}
            None => bail!(
                "{}: not a presize output (no {MANIFEST_FILE} with kind {MANIFEST_KIND:?}); \
                 nothing to resume, pick an empty folder",
                out.display()
            ),
        },
        OutputMode::Overwrite => remove_previous(out, previous.as_ref())?,
        OutputMode::Fresh => {}
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;

    // Where each split goes, relative to OUT (same layout as IN).
    let mut targets = Vec::new();
    for split in splits {
        let rel = |p: &Path| -> Result<PathBuf> {
            let r = p
                .strip_prefix(root)
                .with_context(|| format!("{}: not inside {}", p.display(), root.display()))?;
            Ok(r.to_path_buf())
        };
        targets.push((split, rel(&split.annotations)?, rel(&split.images_dir)?));
    }
    let mut manifest = PresizeManifest {
        kind: MANIFEST_KIND.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        complete: false,
        options,
        splits: targets
            .iter()
            .map(|(s, ann, img)| SplitManifest {
                name: s.name.clone(),
                annotations: ann.display().to_string(),
                images_dir: img.display().to_string(),
                ..Default::default()
            })
            .collect(),
    };
    store_manifest(out, &manifest)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .context("cannot start worker threads")?;
    let budget = Budget::new(plan.memory_budget);
    let cancel = AtomicBool::new(false);
    let mut datasets = Vec::new();
    for (split, _, _) in &targets {
        datasets.push(load_coco(&split.annotations)?);
    }
    let total: u64 = datasets.iter().map(|d| d.len() as u64).sum();
    let progress = Progress::new(total, plan.quiet, "presizing");

    for (((split, ann_rel, img_rel), ds), entry) in targets
        .iter()
        .zip(&datasets)
        .zip(manifest.splits.iter_mut())
    {
        let out_images = out.join(img_rel);
        let outcomes: Vec<Outcome> = pool.install(|| {
            ds.images
                .par_iter()
                .map(|img| {
                    if cancel.load(Ordering::Relaxed) {
                        return Outcome::Cancelled;
                    }
                    let o = process_image(plan, split, &out_images, img, &budget);
                    if let Outcome::Done { bytes_in, .. } = &o {
                        progress.add(1, *bytes_in);
                    } else {
                        progress.add(1, 0);
                    }
                    if plan.strict && matches!(o, Outcome::Failed(_)) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    o
                })
                .collect()
        });
        if plan.strict {
            if let Some((img, Outcome::Failed(reason))) = ds
                .images
                .iter()
                .zip(&outcomes)
                .find(|(_, o)| matches!(o, Outcome::Failed(_)))
            {
                progress.finish();
                bail!(
                    "--strict: {}: {reason} (split {}); nothing was written for the annotations",
                    split.images_dir.join(&img.file_name).display(),
                    split.name
                );
            }
        }
        let plans = account(ds.images.as_slice(), &outcomes, entry);
        entry.annotation_counts =
            rewrite_coco_file(&split.annotations, &out.join(ann_rel), &plans)?;
    }
    progress.finish();
    manifest.complete = true;
    store_manifest(out, &manifest)?;

    let sum = |f: fn(&SplitManifest) -> u64| manifest.splits.iter().map(f).sum::<u64>();
    let seconds = started.elapsed().as_secs_f64();
    let images = sum(|s| s.images);
    Ok(PresizeReport {
        output: out.display().to_string(),
        images,
        resized: sum(|s| s.resized),
        passed_through: sum(|s| s.passed_through),
        rewritten_same_size: sum(|s| s.rewritten_same_size),
        resumed: sum(|s| s.resumed),
        failed: sum(|s| s.failed),
        bytes_in: sum(|s| s.bytes_in),
        bytes_out: sum(|s| s.bytes_out),
        seconds,
        images_per_second: images as f64 / seconds.max(1e-9),
        splits: manifest.splits,
    })
}

/// Fill the split's counts and decide each image's fate in the annotation file.
fn account(
    images: &[ImageEntry],
    outcomes: &[Outcome],
    entry: &mut SplitManifest,
) -> HashMap<i64, ImagePlan> {
    let mut plans = HashMap::with_capacity(images.len());
    for (img, o) in images.iter().zip(outcomes) {
        entry.images += 1;
        match o {
            Outcome::Done {
                change,
                out,
                src,
                bytes_in,
                bytes_out,
                resumed,
                dct_denom,
            } => {
                match change {
                    Some(Change::Resized) => entry.resized += 1,
                    Some(_) => entry.rewritten_same_size += 1,
                    None => entry.passed_through += 1,
                }
                entry.resumed += u64::from(*resumed);
                entry.bytes_in += bytes_in;
                entry.bytes_out += bytes_out;
                if *dct_denom > 0 {
                    *entry
                        .dct_scales
                        .entry(format!("1/{dct_denom}"))
                        .or_default() += 1;
                }
                // Coordinates are in the frame the JSON describes (its width/height when
                // given), as convert normalises them.
                let frame = if img.width > 0 && img.height > 0 {
                    if (img.width, img.height) != *src {
                        entry.size_mismatches.push(SizeMismatch {
                            file_name: img.file_name.clone(),
                            image_id: img.id,
                            json: [img.width, img.height],
                            image: [src.0, src.1],
                        });
                    }
                    (img.width, img.height)
                } else {
                    *src
                };
                let scale = ImageScale {
                    sx: f64::from(out.0) / f64::from(frame.0),
                    sy: f64::from(out.1) / f64::from(frame.1),
                    width: out.0,
                    height: out.1,
                };
                plans.insert(img.id, ImagePlan::Keep(Some(scale)));
            }
            Outcome::Failed(reason) => {
                entry.failed += 1;
                entry.failures.push(Failure {
                    file_name: img.file_name.clone(),
                    image_id: img.id,
                    reason: reason.clone(),
                });
                plans.insert(img.id, ImagePlan::Drop);
            }
            Outcome::Cancelled => {
                plans.insert(img.id, ImagePlan::Drop);
            }
        }
    }
    plans
}

/// `file_name` joined under `dir`, refusing names that would escape it.
fn safe_join(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    if name.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(rel))
}

fn process_image(
    plan: &PresizePlan,
    split: &SplitSource,
    out_images: &Path,
    img: &ImageEntry,
    budget: &Budget,
) -> Outcome {
    let Some(dst) = safe_join(out_images, &img.file_name) else {
        return Outcome::Failed(
            "file_name is absolute or contains '..': refusing to write outside OUT".into(),
        );
    };
    let src_path = split.images_dir.join(&img.file_name);
    if plan.output_mode == OutputMode::Resume && dst.is_file() {
        if let Some(done) = resumed(&src_path, &dst) {
            return done;
        }
    }
    let bytes = match std::fs::read(&src_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Failed("file not found".into())
        }
        Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
    };
    let lease = budget.acquire(memory_estimate(&bytes, plan.options.target));
    let r = match presize_image(&bytes, &plan.options) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let written = r.output(&bytes);
    if let Err(e) = write_atomic(&dst, written) {
        return Outcome::Failed(format!("cannot write {}: {e}", dst.display()));
    }
    drop(lease);
    Outcome::Done {
        change: r.change,
        out: (r.width, r.height),
        src: (r.src_width, r.src_height),
        bytes_in: bytes.len() as u64,
        bytes_out: written.len() as u64,
        resumed: false,
        dct_denom: r.dct_denom,
    }
}

/// An image finished by an earlier run (complete: it only gets its name by rename). Sizes come
/// from the two headers; `None` (redo it) when either does not parse.
fn resumed(src: &Path, dst: &Path) -> Option<Outcome> {
    let out = std::fs::read(dst).ok()?;
    let input = std::fs::read(src).ok()?;
    let (ow, oh) = parse_jpeg_header(&out).ok()?.displayed_size();
    let src_size = match parse_jpeg_header(&input) {
        Ok(h) => h.displayed_size(),
        // Non-JPEG input: its size is what the full decode gives.
        Err(_) => {
            let img = crate::image::decode_rgb8_oriented(&input).ok()?;
            (img.width, img.height)
        }
    };
    let same = out == input;
    Some(Outcome::Done {
        change: if same {
            None
        } else if (ow, oh) != src_size {
            Some(Change::Resized)
        } else {
            Some(Change::Reencoded)
        },
        out: (ow, oh),
        src: src_size,
        bytes_in: input.len() as u64,
        bytes_out: out.len() as u64,
        resumed: true,
        dct_denom: 0,
    })
}

/// Write `bytes` to `<path>.partial`, then rename: a crash never leaves a half image under the
/// real name.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = partial_name(path);
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })
}

fn load_manifest(out: &Path) -> Result<Option<PresizeManifest>> {
    let path = out.join(MANIFEST_FILE);
    let Ok(text) = std::fs::read(&path) else {
        return Ok(None);
    };
    match serde_json::from_slice::<PresizeManifest>(&text) {
        Ok(m) if m.kind == MANIFEST_KIND => Ok(Some(m)),
        _ => Ok(None),
    }
}

fn store_manifest(out: &Path, m: &PresizeManifest) -> Result<()> {
    let path = out.join(MANIFEST_FILE);
    let mut text = serde_json::to_vec_pretty(m)?;
    text.push(b'\n');
    write_atomic(&path, &text).with_context(|| format!("{}: cannot write", path.display()))
}

/// `--overwrite`: remove what an earlier presize wrote (its annotation files, image folders and
/// manifest). Anything else in OUT is left alone.
fn remove_previous(out: &Path, previous: Option<&PresizeManifest>) -> Result<()> {
    let Some(prev) = previous else {
        return Ok(());
    };
    for sp in &prev.splits {
        for rel in [&sp.annotations, &sp.images_dir] {
            let Some(p) = safe_join(out, rel) else {
                continue;
            };
            if p == out {
                continue;
            }
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("{}: cannot remove", p.display())),
            }
        }
    }
    let _ = std::fs::remove_file(out.join(MANIFEST_FILE));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn names_escaping_out_are_refused() {
        let d = Path::new("/out");
        assert_eq!(safe_join(d, "a/b.jpg"), Some(PathBuf::from("/out/a/b.jpg")));
        assert_eq!(safe_join(d, "../x.jpg"), None);
        assert_eq!(safe_join(d, "/etc/passwd"), None);
        assert_eq!(safe_join(d, "a/../../x"), None);
        assert_eq!(safe_join(d, ""), None);
    }

    #[test]
    fn budget_bounds_concurrent_use() {
        let b = Arc::new(Budget::new(100));
        let peak = Arc::new(Mutex::new((0u64, 0u64))); // (now, max)
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (b, peak) = (b.clone(), peak.clone());
            handles.push(std::thread::spawn(move || {
                for _ in 0..20 {
                    let _l = b.acquire(40);
                    {
                        let mut p = peak.lock().unwrap();
                        p.0 += 40;
                        p.1 = p.1.max(p.0);
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    peak.lock().unwrap().0 -= 40;
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(peak.lock().unwrap().1 <= 80);
        // Larger than the budget: runs alone, does not deadlock.
        drop(b.acquire(1000));
    }
}

/// Shard-folder input: `dsprep convert` output in, the same shards with presized images out.
mod shards {
    use super::{Budget, OutputMode, PresizePlan, PresizeReport, SplitManifest};
    use crate::cmd::progress::Progress;
    use crate::image::presize::{memory_estimate, presize_image, Change};
    use crate::shard::example::Example;
    use crate::shard::lmdb::for_each_record;
    use crate::shard::manifest::{ImageNote, Manifest, ShardEntry};
    use crate::shard::od_example::keys;
    use crate::shard::tfrecord::RecordReader;
    use crate::shard::writer::{create_lmdb_sink, create_tfrecord_sink, shard_checksum, ShardSink};
    use anyhow::{bail, Context, Result};
    use rayon::prelude::*;
    use sha2::{Digest, Sha256};
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    /// Records presized at once inside one shard (appended in order afterwards).
    const WINDOW: usize = 16;

    /// What became of one record.
    enum RecordOutcome {
        /// The record, unchanged (image within the limit): byte-identical.
        Same,
        Rewritten {
            payload: Vec<u8>,
            change: Change,
        },
        Failed {
            note: ImageNote,
        },
    }

    fn note(ex: &Example<'_>, reason: String) -> ImageNote {
        let text = |k: &str| {
            ex.get_bytes(k)
                .and_then(|v| v.first())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        ImageNote {
            file_name: text(keys::FILENAME),
            image_id: text(keys::SOURCE_ID).parse().unwrap_or(-1),
            reason,
        }
    }

    /// Presize the image of one serialized Example; boxes are normalised (unchanged), areas
    /// scale by sx·sy, size and sha256 are rewritten.
    fn presize_record(payload: &[u8], plan: &PresizePlan, budget: &Budget) -> RecordOutcome {
        let ex = match Example::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                return RecordOutcome::Failed {
                    note: ImageNote {
                        file_name: String::new(),
                        image_id: -1,
                        reason: format!("record is not a tf.train.Example: {e}"),
                    },
                }
            }
        };
        let Some(image) = ex.get_bytes(keys::ENCODED).and_then(|v| v.first()) else {
            let n = note(&ex, "record has no image/encoded".into());
            return RecordOutcome::Failed { note: n };
        };
        let _lease = budget.acquire(memory_estimate(image, plan.options.target));
        let r = match presize_image(image, &plan.options) {
            Ok(r) => r,
            Err(e) => {
                let n = note(&ex, e.to_string());
                return RecordOutcome::Failed { note: n };
            }
        };
        let (Some(bytes), Some(change)) = (r.bytes, r.change) else {
            return RecordOutcome::Same;
        };
        let mut out = ex.clone();
        let area = ex.get_floats(keys::AREA).map(|a| {
            a.iter()
                .map(|v| (f64::from(*v) * r.sx * r.sy) as f32)
                .collect::<Vec<_>>()
        });
        out.insert_str(keys::SHA256, [hex::encode(Sha256::digest(&bytes))]);
        out.insert_int64s(keys::WIDTH, [i64::from(r.width)]);
        out.insert_int64s(keys::HEIGHT, [i64::from(r.height)]);
        if let Some(a) = area {
            out.insert_floats(keys::AREA, a);
        }
        out.insert_str(keys::FORMAT, ["jpeg"]);
        out.insert_bytes(keys::ENCODED, [bytes]);
        RecordOutcome::Rewritten {
            payload: out.to_bytes(),
            change,
        }
    }

    /// Counts per output shard, merged into the split summary.
    #[derive(Default)]
    struct ShardCounts {
        resized: u64,
        same_size: u64,
        passed: u64,
        failed: Vec<ImageNote>,
        bytes_in: u64,
        bytes_out: u64,
    }

    /// What every shard job of one run shares.
    struct ShardRun<'a> {
        plan: &'a PresizePlan,
        budget: &'a Budget,
        progress: &'a Progress,
        cancel: &'a AtomicBool,
    }

    /// Presizes one window of records in parallel and appends the results in order.
    fn presize_window(
        run: &ShardRun<'_>,
        input: &Path,
        window: &[Vec<u8>],
        sink: &mut dyn ShardSink,
        counts: &mut ShardCounts,
    ) -> Result<()> {
        let ShardRun {
            plan,
            budget,
            progress,
            cancel,
        } = *run;
        let outcomes: Vec<RecordOutcome> = window
            .par_iter()
            .map(|p| presize_record(p, plan, budget))
            .collect();
        for (payload, o) in window.iter().zip(outcomes) {
            counts.bytes_in += payload.len() as u64;
            match o {
                RecordOutcome::Same => {
                    counts.passed += 1;
                    counts.bytes_out += payload.len() as u64;
                    sink.append(payload)?;
                }
                RecordOutcome::Rewritten { payload: p, change } => {
                    if change == Change::Resized {
                        counts.resized += 1;
                    } else {
                        counts.same_size += 1;
                    }
                    counts.bytes_out += p.len() as u64;
                    sink.append(&p)?;
                }
                RecordOutcome::Failed { note } => {
                    if plan.strict {
                        cancel.store(true, Ordering::Relaxed);
                        bail!(
                            "--strict: {} record {:?} (id {}): {}",
                            input.display(),
                            note.file_name,
                            note.image_id,
                            note.reason
                        );
                    }
                    counts.failed.push(note);
                }
            }
            progress.add(1, payload.len() as u64);
        }
        if cancel.load(Ordering::Relaxed) {
            bail!("cancelled");
        }
        Ok(())
    }

    /// Presizes one input shard (TFRecord file or LMDB directory) into a shard of the same
    /// format and name under the output folder, a window of records at a time.
    fn presize_shard(
        job: &ShardRun<'_>,
        input: &Path,
        lmdb: bool,
        stem: &str,
    ) -> Result<(crate::shard::writer::ShardInfo, ShardCounts)> {
        let plan = job.plan;
        let mut sink = if lmdb {
            create_lmdb_sink(&plan.out_dir, stem)?
        } else {
            create_tfrecord_sink(&plan.out_dir, stem)?
        };
        let mut counts = ShardCounts::default();
        let mut run = |window: &[Vec<u8>], sink: &mut Box<dyn ShardSink>| {
            presize_window(job, input, window, sink.as_mut(), &mut counts)
        };
        if lmdb {
            // The reader hands records to a callback inside one read transaction: gather a
            // window there, stop at the first error.
            let mut window = Vec::with_capacity(WINDOW);
            let mut failed: Option<anyhow::Error> = None;
            for_each_record(input, |_, _, value| {
                if failed.is_some() {
                    return;
                }
                window.push(value.to_vec());
                if window.len() == WINDOW {
                    if let Err(e) = run(&window, &mut sink) {
                        failed = Some(e);
                    }
                    window.clear();
                }
            })
            .with_context(|| format!("{}: cannot read", input.display()))?;
            if let Some(e) = failed {
                return Err(e);
            }
            run(&window, &mut sink)?;
        } else {
            let file = std::fs::File::open(input)
                .with_context(|| format!("{}: cannot open", input.display()))?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut reader =
                RecordReader::with_len(std::io::BufReader::with_capacity(1 << 20, file), len);
            loop {
                let mut window = Vec::with_capacity(WINDOW);
                while window.len() < WINDOW {
                    let mut buf = Vec::new();
                    match reader.next_into(&mut buf) {
                        Ok(Some(_)) => window.push(buf),
                        Ok(None) => break,
                        Err(e) => bail!("{}: {e}", input.display()),
                    }
                }
                if window.is_empty() {
                    break;
                }
                run(&window, &mut sink)?;
            }
        }
        Ok((sink.finish()?, counts))
    }

    pub(super) fn run(plan: &PresizePlan, dir: &Path) -> Result<PresizeReport> {
        let started = Instant::now();
        let Some(input) = Manifest::load(dir)? else {
            bail!("{}: no manifest.json", dir.display());
        };
        let lmdb = input.options.format == crate::shard::format::ShardFormat::Lmdb;
        if !input.complete {
            bail!(
                "{}: the conversion there is not complete (manifest complete: false); finish \
                 it with `dsprep convert --resume` first",
                dir.display()
            );
        }
        let out = &plan.out_dir;
        let mode = plan.options.target.fit;
        let previous = Manifest::load(out).ok().flatten();
        match plan.output_mode {
            OutputMode::Fresh => {}
            OutputMode::Resume => {
                if previous.is_none() {
                    bail!("{}: no manifest.json to resume from", out.display());
                }
            }
            OutputMode::Overwrite => {
                if let Some(prev) = &previous {
                    for s in prev.splits.iter().flat_map(|s| &s.shards) {
                        let path = out.join(&s.info.file);
                        // An LMDB shard is a directory.
                        let _ = if path.is_dir() {
                            std::fs::remove_dir_all(&path)
                        } else {
                            std::fs::remove_file(&path)
                        };
                        if let Some(idx) = &s.info.index {
                            let _ = std::fs::remove_file(out.join(idx));
                        }
                    }
                }
            }
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("{}: cannot create", out.display()))?;
        let mut manifest = input.clone();
        manifest.complete = false;
        manifest.options.presize = Some(plan.options.target.size);
        manifest.options.presize_mode = mode;
        for s in &mut manifest.splits {
            s.shards.clear();
            s.records = 0;
        }
        manifest.store(out)?;
        for name in ["label_map.pbtxt"] {
            if dir.join(name).is_file() {
                std::fs::copy(dir.join(name), out.join(name))
                    .with_context(|| format!("{}: cannot copy {name}", out.display()))?;
            }
        }
        // Earlier output shards to keep on --resume: recorded, present, checksum matching.
        let keep = |file: &str| -> Option<ShardEntry> {
            if plan.output_mode != OutputMode::Resume {
                return None;
            }
            let prev = previous.as_ref()?;
            if prev.options.presize != Some(plan.options.target.size)
                || prev.options.presize_mode != mode
            {
                return None;
            }
            let e = prev
                .splits
                .iter()
                .flat_map(|s| &s.shards)
                .find(|s| s.info.file == file)?;
            (shard_checksum(out, file).ok()? == e.info.checksum).then(|| e.clone())
        };

        let jobs: Vec<(usize, usize)> = input
            .splits
            .iter()
            .enumerate()
            .flat_map(|(si, s)| (0..s.shards.len()).map(move |k| (si, k)))
            .collect();
        let total: u64 = input.splits.iter().map(|s| s.records).sum();
        let progress = Progress::new(total, plan.quiet, "presizing");
        let budget = Budget::new(plan.memory_budget);
        let cancel = AtomicBool::new(false);
        let shared = Mutex::new(manifest);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(plan.threads)
            .build()
            .context("cannot start worker threads")?;
        let results: Vec<Result<(usize, usize, ShardEntry, ShardCounts)>> = pool.install(|| {
            jobs.par_iter()
                .map(|&(si, k)| {
                    let src = &input.splits[si].shards[k];
                    let file = &src.info.file;
                    if let Some(e) = keep(file) {
                        progress.add(e.info.records, e.info.bytes);
                        let c = ShardCounts {
                            passed: e.info.records,
                            ..Default::default()
                        };
                        return Ok((si, k, e, c));
                    }
                    let stem = file
                        .strip_suffix(".tfrecord")
                        .or_else(|| file.strip_suffix(".lmdb"))
                        .unwrap_or(file);
                    let job = ShardRun {
                        plan,
                        budget: &budget,
                        progress: &progress,
                        cancel: &cancel,
                    };
                    let (info, counts) = presize_shard(&job, &dir.join(file), lmdb, stem)
                        .inspect_err(|_| cancel.store(true, Ordering::Relaxed))?;
                    let mut entry = src.clone();
                    entry.info = info;
                    entry.counts.records = entry.info.records;
                    entry.counts.skipped += counts.failed.len() as u64;
                    entry.skipped.extend(counts.failed.iter().cloned());
                    {
                        // Record each finished shard at once: what --resume trusts.
                        let mut m = shared.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(s) = m.splits.get_mut(si) {
                            s.shards.push(entry.clone());
                        }
                        m.store(out)?;
                    }
                    Ok((si, k, entry, counts))
                })
                .collect()
        });
        progress.finish();
        let mut manifest = shared.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut per_split: Vec<SplitManifest> = input
            .splits
            .iter()
            .map(|s| SplitManifest {
                name: s.name.clone(),
                ..Default::default()
            })
            .collect();
        let mut entries: Vec<Vec<Option<ShardEntry>>> = input
            .splits
            .iter()
            .map(|s| vec![None; s.shards.len()])
            .collect();
        for r in results {
            let (si, k, entry, c) = r?;
            let sm = &mut per_split[si];
            sm.images += entry.info.records + c.failed.len() as u64;
            sm.resized += c.resized;
            sm.rewritten_same_size += c.same_size;
            sm.passed_through += c.passed;
            sm.failed += c.failed.len() as u64;
            sm.bytes_in += c.bytes_in;
            sm.bytes_out += c.bytes_out;
            sm.failures
                .extend(c.failed.into_iter().map(|n| super::Failure {
                    file_name: n.file_name,
                    image_id: n.image_id,
                    reason: n.reason,
                }));
            entries[si][k] = Some(entry);
        }
        for (s, e) in manifest.splits.iter_mut().zip(entries) {
            // Input shard order, whatever order they finished in.
            s.shards = e.into_iter().flatten().collect();
            s.records = s.shards.iter().map(|x| x.info.records).sum();
        }
        manifest.complete = true;
        manifest.store(out)?;
        let sum = |f: fn(&SplitManifest) -> u64| per_split.iter().map(f).sum::<u64>();
        let seconds = started.elapsed().as_secs_f64();
        let images = sum(|s| s.images);
        Ok(PresizeReport {
            output: out.display().to_string(),
            images,
            resized: sum(|s| s.resized),
            passed_through: sum(|s| s.passed_through),
            rewritten_same_size: sum(|s| s.rewritten_same_size),
            resumed: 0,
            failed: sum(|s| s.failed),
            bytes_in: sum(|s| s.bytes_in),
            bytes_out: sum(|s| s.bytes_out),
            seconds,
            images_per_second: images as f64 / seconds.max(1e-9),
            splits: per_split,
        })
    }
}
