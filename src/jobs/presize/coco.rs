//! `presize` of a COCO folder: every image at most N pixels (or shorter side N), with the
//! annotation file rewritten so boxes, polygons, masks and keypoints still cover the same
//! things. COCO folder in → COCO folder out, same layout (annotation files and image folders at
//! the same relative paths, same `file_name`s), plus `OUT/manifest.json` accounting for every
//! image.
//!
//! Images are processed on a rayon pool, results collected in input order (so the annotation
//! file and manifest are byte-identical whatever the thread count); a memory budget bounds what
//! workers hold at once. Each image is written atomically, so an interrupted run leaves only
//! complete images under their real names; `--resume` keeps them. The annotation files and the
//! manifest are written last: a manifest with `complete: true` means OUT is done.

use super::{PresizeOutcome, PresizeSpec};
use crate::dataset::paths::{join_inside, Root};
use crate::dataset::rescale::{rewrite_coco_file, ImagePlan, ImageScale};
use crate::dataset::{load_coco, ImageEntry, SplitSource};
use crate::image::jpeg_header::parse_jpeg_header;
use crate::image::presize::{
    memory_estimate, planned_scale, presize_image, Change, PresizeOptions,
};
use crate::jobs::budget::Budget;
use crate::jobs::outdir::{OutputDir, OutputMode};
use crate::jobs::record::{annotation_frame, read_input};
use crate::jobs::{pool, JobError, Progress};
use crate::shard::atomic::{write_atomic, AtomicFile};
use crate::shard::manifest::{
    FolderManifest, ImageNote, PresizeManifest, PresizeManifestOptions, PresizeSplit,
    MANIFEST_FILE, PRESIZE_MANIFEST_KIND,
};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
        dct_eighths: u32,
    },
    Failed(String),
    /// Not attempted: --strict stopped the run, or an output write failed.
    Cancelled,
}

fn manifest_options(spec: &PresizeSpec) -> PresizeManifestOptions {
    let o = &spec.options;
    PresizeManifestOptions {
        size: o.target.size,
        mode: o.target.fit,
        quality: o.quality,
        reencode: o.reencode,
    }
}

pub fn run(
    spec: &PresizeSpec,
    root: &Path,
    splits: &[SplitSource],
    progress: &dyn Progress,
) -> Result<PresizeOutcome, JobError> {
    let started = Instant::now();
    let options = manifest_options(spec);
    let out_dir = OutputDir::open(&spec.out_dir, spec.output_mode)?;
    let out = out_dir.path();
    if spec.output_mode == OutputMode::Resume {
        match out_dir.previous() {
            Some(FolderManifest::Presize(p)) if p.options != options => {
                return Err(JobError::Resume(format!(
                    "{}: the earlier run used different options ({:?}); rerun with those or use --overwrite",
                    out.display(),
                    p.options
                )))
            }
            Some(FolderManifest::Presize(_)) => {}
            _ => {
                return Err(JobError::Resume(format!(
                    "{}: not a presize output (no {MANIFEST_FILE} with kind {PRESIZE_MANIFEST_KIND:?}); \
                     nothing to resume, pick an empty folder",
                    out.display()
                )))
            }
        }
    }

    // Where each split goes, relative to OUT (same layout as IN).
    let mut targets = Vec::new();
    for split in splits {
        let rel = |p: &Path| -> Result<PathBuf, JobError> {
            p.strip_prefix(root).map(Path::to_path_buf).map_err(|_| {
                JobError::Input(format!("{}: not inside {}", p.display(), root.display()))
            })
        };
        targets.push((split, rel(&split.annotations)?, rel(&split.images_dir)?));
    }
    let mut manifest = PresizeManifest::new(
        options,
        targets
            .iter()
            .map(|(s, ann, img)| PresizeSplit {
                name: s.name.clone(),
                annotations: ann.display().to_string(),
                images_dir: img.display().to_string(),
                ..Default::default()
            })
            .collect(),
    );
    store_manifest(out, &manifest, false)?;

    let pool = pool(spec.threads)?;
    let budget = Budget::new(spec.memory_budget);
    let cancel = AtomicBool::new(false);
    let mut datasets = Vec::new();
    for (split, _, _) in &targets {
        datasets.push(load_coco(&split.annotations)?);
    }
    progress.total(datasets.iter().map(|d| d.len() as u64).sum());
    let resume = spec.output_mode == OutputMode::Resume;
    for (((split, ann_rel, img_rel), ds), entry) in targets
        .iter()
        .zip(&datasets)
        .zip(manifest.splits.iter_mut())
    {
        let out_images = out.join(img_rel);
        let root = Root::new(&split.images_dir);
        let outcomes: Vec<Result<Outcome, JobError>> = pool.install(|| {
            ds.images
                .par_iter()
                .enumerate()
                .map(|(i, img)| {
                    if cancel.load(Ordering::Relaxed) {
                        return Ok(Outcome::Cancelled);
                    }
                    let o = match ds.duplicate(i) {
                        Some(reason) => Ok(Outcome::Failed(reason.to_string())),
                        None => presize_one(spec, &root, &out_images, img, &budget, resume),
                    };
                    match &o {
                        Ok(Outcome::Done { bytes_in, .. }) => progress.add(1, *bytes_in),
                        Ok(Outcome::Failed(_)) if spec.strict => {
                            cancel.store(true, Ordering::Relaxed);
                            progress.add(1, 0);
                        }
                        Err(_) => cancel.store(true, Ordering::Relaxed),
                        _ => progress.add(1, 0),
                    }
                    o
                })
                .collect()
        });
        let mut done = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            done.push(o?);
        }
        if spec.strict {
            if let Some((img, Outcome::Failed(reason))) = ds
                .images
                .iter()
                .zip(&done)
                .find(|(_, o)| matches!(o, Outcome::Failed(_)))
            {
                return Err(JobError::Strict(format!(
                    "{}: {reason} (split {}); nothing was written for the annotations",
                    split.images_dir.join(&img.file_name).display(),
                    split.name
                )));
            }
        }
        let plans = account(ds.images.as_slice(), &done, entry);
        let ann_out = out.join(ann_rel);
        if let Some(parent) = ann_out.parent() {
            std::fs::create_dir_all(parent).map_err(|source| JobError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let mut file = AtomicFile::create(&ann_out)?;
        let partial = file.partial().to_path_buf();
        entry.annotation_counts =
            rewrite_coco_file(&split.annotations, &mut file, &partial, &plans)?;
        file.commit(true)?;
    }
    manifest.complete = true;
    store_manifest(out, &manifest, spec.durable)?;
    Ok(PresizeOutcome {
        out_dir: out.to_path_buf(),
        resumed: manifest.splits.iter().map(|s| s.resumed).sum(),
        splits: manifest.splits,
        seconds: started.elapsed().as_secs_f64(),
        left_alone: out_dir.left_alone().to_vec(),
    })
}

fn store_manifest(out: &Path, m: &PresizeManifest, durable: bool) -> Result<(), JobError> {
    let mut text = serde_json::to_vec_pretty(m)
        .map_err(|e| JobError::Input(format!("cannot serialise the presize manifest: {e}")))?;
    text.push(b'\n');
    Ok(write_atomic(&out.join(MANIFEST_FILE), &text, durable)?)
}

/// Fill the split's counts and decide each image's fate in the annotation file.
fn account(
    images: &[ImageEntry],
    outcomes: &[Outcome],
    entry: &mut PresizeSplit,
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
                dct_eighths,
            } => {
                match change {
                    Some(Change::Resized) => entry.resized += 1,
                    Some(_) => entry.rewritten_same_size += 1,
                    None => entry.passed_through += 1,
                }
                entry.resumed += u64::from(*resumed);
                entry.written.push(img.file_name.clone());
                entry.bytes_in += bytes_in;
                entry.bytes_out += bytes_out;
                if *dct_eighths > 0 {
                    *entry
                        .dct_scales
                        .entry(crate::image::scaled_decode::scale_name(*dct_eighths))
                        .or_default() += 1;
                }
                // Coordinates are in the frame the JSON describes, as convert normalises them.
                let (frame, mismatch) = annotation_frame(img, *src);
                entry.size_mismatches.extend(mismatch);
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
                entry.failures.push(ImageNote {
                    file_name: img.file_name.clone(),
                    image_id: img.id,
                    reason: reason.clone(),
                });
                // A later duplicate of an id keeps the first entry's plan (the rewrite drops
                // later entries of an id itself).
                plans.entry(img.id).or_insert(ImagePlan::Drop);
            }
            Outcome::Cancelled => {
                plans.entry(img.id).or_insert(ImagePlan::Drop);
            }
        }
    }
    plans
}

/// One image: kept from an interrupted run, or read, presized and written atomically. A bad
/// image is an outcome; failing to write the output is an error that stops the run.
fn presize_one(
    spec: &PresizeSpec,
    root: &Root,
    out_images: &Path,
    img: &ImageEntry,
    budget: &Budget,
    resume: bool,
) -> Result<Outcome, JobError> {
    let dst = match join_inside(out_images, &img.file_name) {
        Ok(p) => p,
        Err(e) => return Ok(Outcome::Failed(e.to_string())),
    };
    if resume && dst.is_file() {
        if let Ok(src_path) = root.resolve(&img.file_name) {
            if let Some(done) = resumed(&src_path, &dst, &spec.options) {
                return Ok(done);
            }
        }
    }
    let bytes = match read_input(root, &img.file_name, spec.max_image_bytes) {
        Ok(b) => b,
        Err(reason) => return Ok(Outcome::Failed(reason)),
    };
    let lease = budget.acquire(memory_estimate(&bytes, spec.options.target));
    let r = match presize_image(&bytes, &spec.options) {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::Failed(e.to_string())),
    };
    let written = r.output(&bytes);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|source| JobError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    write_atomic(&dst, written, false)?;
    drop(lease);
    Ok(Outcome::Done {
        change: r.change,
        out: (r.width, r.height),
        src: (r.src_width, r.src_height),
        bytes_in: bytes.len() as u64,
        bytes_out: written.len() as u64,
        resumed: false,
        dct_eighths: r.dct_eighths,
    })
}

/// An image finished by an earlier run (complete: it only gets its name by rename). Sizes come
/// from the two headers; `None` (redo it) when either does not parse.
fn resumed(src: &Path, dst: &Path, opts: &PresizeOptions) -> Option<Outcome> {
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
        // What the clean run decoded at, so the manifest does not depend on the resume.
        dct_eighths: planned_scale(&input, opts).ok()?,
    })
}
