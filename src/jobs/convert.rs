//! `convert`: COCO splits → shards + manifest + label map.
//!
//! Parallel across shards ([`super::shard_loop`]) and, inside a shard, across a bounded window
//! of images; records are appended in input order, so the bytes never depend on the thread
//! count. Each finished shard is recorded in the manifest at once (atomically), which is what
//! `--resume` trusts.

use super::outdir::{OutputMode, LABEL_MAP_FILE};
use super::record::{finish_records, prepare_record, ImageOutcome, JobContext, Prepared};
use super::shard_loop::{run_shards_with, still_intact, Cancel};
use super::tasks::{ConvertTarget, TaskSlice};
use super::{deal, pool, JobError, NoProgress, Progress};
use crate::dataset::paths::Root;
use crate::dataset::{load_coco_hashed, CocoDataset, SplitSource};
use crate::shard::atomic::write_atomic;
use crate::shard::format::{shard_stem, ShardFormat, ShardRef};
use crate::shard::manifest::{
    label_map_pbtxt, CategoryEntry, Counts, DealOptions, FolderManifest, LabelMode, Manifest,
    ManifestOptions, ShardEntry, SplitEntry, MANIFEST_FORMAT_VERSION,
};
use crate::shard::writer::{
    create_lmdb_sink_with, create_tfrecord_sink_with, CompareSink, ShardInfo, ShardSink,
    SinkOptions,
};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// Images decoded/encoded at once inside one shard: bounds memory whatever the dataset size.
pub const WINDOW: usize = 32;

/// Images hashed at once ([`crate::shard::sha256_batch`]): a whole window when every thread has
/// a shard of its own, fewer (more batches, in parallel) when threads outnumber shards.
fn hash_batch(threads: usize, shards: usize) -> usize {
    let threads_per_shard = threads.div_ceil(shards.max(1)).max(1);
    (WINDOW / threads_per_shard).max(1)
}

/// How many shards a split gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardTarget {
    /// About this many image bytes per shard.
    Bytes(u64),
    /// Exactly this many shards (capped at the number of images: no empty shards).
    Count(u32),
}

/// A complete convert run, as the plan built it.
#[derive(Debug, Clone)]
pub struct ConvertSpec {
    pub splits: Vec<SplitSource>,
    pub out_dir: PathBuf,
    pub format: ShardFormat,
    pub shard_target: ShardTarget,
    pub labels: LabelMode,
    pub decode_check: bool,
    pub strict: bool,
    /// Longest side at most this many pixels (never upscales).
    pub presize: Option<u32>,
    /// fsync finished shards and the final manifest (power-loss safe).
    pub durable: bool,
    pub output_mode: OutputMode,
    pub threads: usize,
    /// Largest input file read; larger ones are skipped (named, with the reason).
    pub max_image_bytes: u64,
    /// Task mode (`--tasks`): write only this task's shards and its part of the manifest.
    pub tasks: Option<TaskSlice>,
    /// `--shuffle` / `--shard-multiple`.
    pub deal: DealOptions,
}

/// What a convert run did.
#[derive(Debug, Clone)]
pub struct ConvertOutcome {
    pub out_dir: PathBuf,
    /// The final manifest (`complete: true`), as written.
    pub manifest: Manifest,
    pub seconds: f64,
    /// Entries `--overwrite` left in the folder because dsprep did not write them.
    pub left_alone: Vec<String>,
    /// The task this run was (task mode): `manifest` is then its part's, with its shards only.
    pub task: Option<TaskSlice>,
}

/// One shard's work: the images dealt to it ([`super::deal`]), in record order.
struct ShardJob {
    split: usize,
    stem: String,
    images: Vec<usize>,
}

pub fn run(spec: &ConvertSpec, progress: &dyn Progress) -> Result<ConvertOutcome, JobError> {
    let started = Instant::now();
    let pool = pool(spec.threads)?;
    let out_dir = ConvertTarget::open(
        &spec.out_dir,
        spec.output_mode,
        spec.tasks,
        &manifest_options(spec),
    )?;
    let out = out_dir.path();

    let mut datasets = Vec::with_capacity(spec.splits.len());
    for split in &spec.splits {
        datasets.push(load_coco_hashed(&split.annotations)?);
    }
    let categories = merge_categories(&datasets.iter().map(|d| &d.0).collect::<Vec<_>>())?;
    let options = manifest_options(spec);
    let mut manifest = Manifest {
        tool: "dsprep".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        format_version: MANIFEST_FORMAT_VERSION,
        complete: false,
        options: options.clone(),
        categories: categories.clone(),
        splits: Vec::new(),
    };
    let reusable = match (out_dir.resumable_shards(), out_dir.previous()) {
        (Some(prev), _) => resumable_shards(prev, &options, &datasets, out)?,
        (None, Some(FolderManifest::Presize(_))) if spec.output_mode == OutputMode::Resume => {
            return Err(JobError::Resume(format!(
                "{}: holds the output of `dsprep presize` of a COCO folder, not shards; pick another folder or use --overwrite",
                out.display()
            )))
        }
        _ => HashMap::new(),
    };

    let mut jobs = Vec::new();
    let mut plan = Vec::new();
    for (si, (split, (ds, sha))) in spec.splits.iter().zip(&datasets).enumerate() {
        if spec.strict {
            strict_parse_check(split, ds)?;
        }
        let base = pool.install(|| shard_count(spec.shard_target, split, ds));
        let n = deal::shard_total(base, ds.len(), spec.deal.shard_multiple, &split.name)?;
        plan.push((split.name.clone(), n));
        let order = deal::order(ds.len(), spec.deal.shuffle_seed);
        for s in (0..n).filter(|&s| out_dir.owns(s)) {
            jobs.push(ShardJob {
                split: si,
                stem: shard_stem(&split.name, s, n),
                images: deal::images_of(order.as_deref(), ds.len(), s, n),
            });
        }
        manifest.splits.push(SplitEntry {
            name: split.name.clone(),
            annotations: split.annotations.display().to_string(),
            annotations_sha256: sha.clone(),
            images_dir: split.images_dir.display().to_string(),
            images: ds.len() as u64,
            records: 0,
            counts: Counts::default(),
            annotations_unknown_image: ds.stats.unknown_image,
            annotations_unknown_category: ds.stats.unknown_category,
            duplicate_image_ids: ds.stats.duplicate_image_ids,
            shards: Vec::new(),
        });
    }
    out_dir.planned(&plan)?;
    out_dir.store(&manifest)?;

    let label_of: HashMap<i64, (String, i64)> = categories
        .iter()
        .map(|c| {
            let label = match spec.labels {
                LabelMode::Coco => c.id,
                LabelMode::Contiguous => i64::from(c.contiguous_label),
            };
            (c.id, (c.name.clone(), label))
        })
        .collect();
    // Every image is in exactly one job; a task has only its own shards' images.
    progress.total(jobs.iter().map(|j| j.images.len() as u64).sum());
    let roots: Vec<Root> = spec
        .splits
        .iter()
        .map(|s| Root::new(&s.images_dir))
        .collect();
    let hash_batch = hash_batch(pool.current_num_threads(), jobs.len());
    let shared = Mutex::new(manifest);
    let finished = run_shards_with(
        &pool,
        &jobs,
        &shared,
        &|m| out_dir.store(m),
        |job| job.split,
        // Kept shards are re-derived by `write_shard`, not taken from the earlier manifest.
        |_| None,
        |job, cancel| {
            let kept = reusable.get(&spec.format.shard_file(&job.stem));
            let ds = &datasets[job.split].0;
            let ctx = JobContext {
                images: &roots[job.split],
                max_image_bytes: spec.max_image_bytes,
                categories: &label_of,
                decode_check: spec.decode_check,
                presize: spec.presize,
                hash_batch,
            };
            Ok(write_shard(spec, out, &ctx, ds, job, kept, progress, cancel)?.map(|e| (e, ())))
        },
    )?;
    let mut manifest = shared.into_inner().map_err(|_| JobError::Panicked)?;
    for split in &mut manifest.splits {
        split.shards.clear();
    }
    for (job, (entry, ())) in jobs.iter().zip(finished) {
        manifest.splits[job.split].shards.push(entry);
    }
    for split in &mut manifest.splits {
        let mut counts = Counts::default();
        for s in &split.shards {
            counts.add(&s.counts);
        }
        split.records = counts.records;
        split.counts = counts;
    }
    manifest.complete = true;
    // In task mode `dsprep merge` writes the label map with the merged manifest.
    if out_dir.task().is_none() {
        write_atomic(
            &out.join(LABEL_MAP_FILE),
            label_map_pbtxt(&categories).as_bytes(),
            spec.durable,
        )?;
    }
    out_dir.store_final(&manifest, spec.durable)?;
    Ok(ConvertOutcome {
        out_dir: out.to_path_buf(),
        manifest,
        seconds: started.elapsed().as_secs_f64(),
        left_alone: out_dir.left_alone().to_vec(),
        task: out_dir.task(),
    })
}

/// Converts the images of one shard and finishes it under its final name; `None` when another
/// shard failed first (the partial files are removed). With `kept` (resume: a shard an earlier
/// run finished, its bytes intact), the images are processed and compared with that shard's
/// records instead: when they are the same, the shard stays as it is and its entry is the one
/// derived now (never the one read back from the manifest); else it is written again.
#[allow(clippy::too_many_arguments)]
fn write_shard(
    spec: &ConvertSpec,
    out: &std::path::Path,
    ctx: &JobContext<'_>,
    ds: &CocoDataset,
    job: &ShardJob,
    kept: Option<&ShardEntry>,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Option<ShardEntry>, JobError> {
    if let Some(kept) = kept {
        let shard = ShardRef {
            path: out.join(&kept.info.file),
            format: spec.format,
            index: None,
        };
        if let Some(mut same) = CompareSink::of(&shard) {
            let Some(mut entry) = fill_shard(spec, ctx, ds, job, &mut same, progress, cancel)?
            else {
                return Ok(None);
            };
            if same.matched() {
                entry.info = kept.info.clone();
                return Ok(Some(entry));
            }
        }
        // Not the shard this run writes (images or options changed): written again.
        return write_shard(spec, out, ctx, ds, job, None, &NoProgress, cancel);
    }
    let opts = SinkOptions {
        durable: spec.durable,
    };
    let mut sink: Box<dyn ShardSink> = match spec.format {
        ShardFormat::Tfrecord => create_tfrecord_sink_with(out, &job.stem, opts)?,
        ShardFormat::Lmdb => create_lmdb_sink_with(out, &job.stem, opts)?,
    };
    let Some(mut entry) = fill_shard(spec, ctx, ds, job, sink.as_mut(), progress, cancel)? else {
        return Ok(None); // dropping the sink removes the partial files
    };
    if entry.counts.records > 0 {
        entry.info = sink.finish()?;
    }
    // Else every image of this shard was skipped: no files (DALI rejects an empty index); the
    // entry still carries the skipped images, and dropping the sink removes its partials.
    Ok(Some(entry))
}

/// Turns the shard's images into records appended to `sink`, a window at a time, and returns
/// the shard's entry (its `info` names the file; the caller fills in the rest); `None` when
/// another shard failed first.
fn fill_shard(
    spec: &ConvertSpec,
    ctx: &JobContext<'_>,
    ds: &CocoDataset,
    job: &ShardJob,
    sink: &mut dyn ShardSink,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Option<ShardEntry>, JobError> {
    let mut entry = ShardEntry {
        info: ShardInfo {
            file: spec.format.shard_file(&job.stem),
            index: None,
            records: 0,
            bytes: 0,
            checksum: String::new(),
        },
        counts: Counts::default(),
        skipped: Vec::new(),
        reencoded: Vec::new(),
        size_mismatches: Vec::new(),
        dropped_boxes: Vec::new(),
    };
    for window in job.images.chunks(WINDOW) {
        if cancel.is_set() {
            return Ok(None);
        }
        let prepared: Vec<Prepared<'_>> = window
            .par_iter()
            .map(|&i| match ds.duplicate(i) {
                Some(reason) => {
                    Prepared::Skipped(ImageOutcome::skip(&ds.sample(i), 0, reason.to_string()))
                }
                None => prepare_record(ctx, ds.sample(i)),
            })
            .collect();
        for o in finish_records(prepared, ctx.hash_batch) {
            if spec.strict {
                strict_image_check(&o)?;
            }
            progress.add(1, o.input_bytes);
            if let Some(payload) = &o.payload {
                sink.append_parts(&payload.parts())?;
            }
            account(&mut entry, o);
        }
    }
    Ok(Some(entry))
}

/// Adds one image's outcome to its shard's entry.
fn account(entry: &mut ShardEntry, o: ImageOutcome) {
    let counts = &mut entry.counts;
    let recorded = o.payload.is_some();
    counts.records += u64::from(recorded);
    if let Some(s) = o.skipped {
        counts.skipped += 1;
        entry.skipped.push(s);
    }
    if let Some(r) = o.reencoded {
        *counts.reencoded.entry(r.reason.clone()).or_default() += 1;
        entry.reencoded.push(r);
    }
    if let Some(m) = o.size_mismatch {
        counts.size_mismatch += 1;
        entry.size_mismatches.push(m);
    }
    counts.without_annotations += u64::from(o.without_annotations && recorded);
    counts.boxes_kept += o.kept;
    counts.boxes_clipped += o.clipped;
    for d in o.dropped {
        *counts.boxes_dropped.entry(d.reason.clone()).or_default() += 1;
        entry.dropped_boxes.push(d);
    }
}

/// `--strict`: any problem with an image fails the run, naming the image.
fn strict_image_check(o: &ImageOutcome) -> Result<(), JobError> {
    if let Some(s) = &o.skipped {
        return Err(JobError::Strict(format!(
            "{} (image id {}): {}",
            s.file_name, s.image_id, s.reason
        )));
    }
    if let Some(m) = &o.size_mismatch {
        return Err(JobError::Strict(format!(
            "{} (image id {}): annotation file says {}x{}, image is {}x{}",
            m.file_name, m.image_id, m.json[0], m.json[1], m.image[0], m.image[1]
        )));
    }
    if let Some(d) = o.dropped.first() {
        return Err(JobError::Strict(format!(
            "{} (image id {}): box {:?} dropped ({})",
            d.file_name, d.image_id, d.bbox, d.reason
        )));
    }
    Ok(())
}

fn strict_parse_check(split: &SplitSource, ds: &CocoDataset) -> Result<(), JobError> {
    let s = &ds.stats;
    if s.unknown_image + s.unknown_category + s.duplicate_image_ids > 0 {
        return Err(JobError::Strict(format!(
            "{}: {} annotations point at unknown images, {} at unknown categories, {} duplicate image ids",
            split.annotations.display(),
            s.unknown_image,
            s.unknown_category,
            s.duplicate_image_ids
        )));
    }
    Ok(())
}

/// Shards for a split: by count, or by total input bytes over the target; never more shards
/// than images (DALI rejects empty index files).
fn shard_count(target: ShardTarget, split: &SplitSource, ds: &CocoDataset) -> usize {
    let images = ds.len();
    if images == 0 {
        return 0;
    }
    let wanted = match target {
        ShardTarget::Count(n) => n as usize,
        ShardTarget::Bytes(per_shard) => {
            // Sizes of what will be read (names leaving the folder count as nothing), asked on
            // every thread: this runs before any image is read.
            let root = Root::new(&split.images_dir);
            let total: u64 = ds
                .images
                .par_iter()
                .map(|im| root.file_size(&im.file_name).unwrap_or(0))
                .sum();
            total.div_ceil(per_shard.max(1)) as usize
        }
    };
    wanted.clamp(1, images)
}

/// Union of all splits' categories by id; the same id with two names is an error.
fn merge_categories(datasets: &[&CocoDataset]) -> Result<Vec<CategoryEntry>, JobError> {
    let mut by_id: BTreeMap<i64, String> = BTreeMap::new();
    for ds in datasets {
        for c in &ds.categories {
            if let Some(prev) = by_id.insert(c.id, c.name.clone()) {
                if prev != c.name {
                    return Err(JobError::Input(format!(
                        "category id {} is {:?} in one split and {:?} in another; the splits must share one category list",
                        c.id, prev, c.name
                    )));
                }
            }
        }
    }
    Ok(by_id
        .into_iter()
        .enumerate()
        .map(|(i, (id, name))| CategoryEntry {
            id,
            name,
            contiguous_label: i as u32,
        })
        .collect())
}

/// The options that decide the output bytes, as the manifest records them.
fn manifest_options(spec: &ConvertSpec) -> ManifestOptions {
    let (shard_size, shards) = match spec.shard_target {
        ShardTarget::Bytes(b) => (Some(b), None),
        ShardTarget::Count(n) => (None, Some(n)),
    };
    ManifestOptions {
        format: spec.format,
        labels: spec.labels,
        shard_size,
        shards,
        decode_check: spec.decode_check,
        presize: spec.presize,
        presize_mode: Default::default(),
        deal: spec.deal,
    }
}

/// Shards of an interrupted run that can be kept: same options, same annotation files, and the
/// shard's bytes still hash to what was recorded when it finished.
fn resumable_shards(
    prev: &Manifest,
    options: &ManifestOptions,
    datasets: &[(CocoDataset, String)],
    out: &std::path::Path,
) -> Result<HashMap<String, ShardEntry>, JobError> {
    if &prev.options != options {
        return Err(JobError::Resume(format!(
            "{} was written with other options ({:?}); rerun with those, or use --overwrite",
            out.join(crate::shard::manifest::MANIFEST_FILE).display(),
            prev.options
        )));
    }
    let current: Vec<&String> = datasets.iter().map(|d| &d.1).collect();
    let before: Vec<&String> = prev.splits.iter().map(|s| &s.annotations_sha256).collect();
    if current != before {
        return Err(JobError::Resume(
            "the annotation files changed since the interrupted run; use --overwrite".into(),
        ));
    }
    let mut keep = HashMap::new();
    for shard in prev.splits.iter().flat_map(|s| &s.shards) {
        if still_intact(out, shard) {
            keep.insert(shard.info.file.clone(), shard.clone());
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread per shard hashes its whole window at once; threads beyond the shard count
    /// split the window so they can share it.
    #[test]
    fn hash_batches_shrink_only_when_threads_outnumber_shards() {
        assert_eq!(hash_batch(2, 2), WINDOW);
        assert_eq!(hash_batch(2, 16), WINDOW);
        assert_eq!(hash_batch(16, 16), WINDOW);
        assert_eq!(hash_batch(16, 4), WINDOW / 4);
        assert_eq!(hash_batch(16, 1), WINDOW / 16);
        assert_eq!(hash_batch(64, 1), 1);
        assert_eq!(hash_batch(1, 0), WINDOW);
    }
}
