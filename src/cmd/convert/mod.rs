//! `dsprep convert`: COCO splits → shards + manifest + label map.
//!
//! Parallel across shards and, inside a shard, across a bounded window of images; records are
//! appended in input order, so the bytes never depend on the thread count. Each finished shard is
//! recorded in the manifest at once (atomically), which is what `--resume` trusts.

mod image_job;
mod output;

use crate::cli::{LabelMode, ShardFormat};
use crate::cmd::progress::Progress;
use crate::dataset::{load_coco_hashed, CocoDataset, SplitSource};
use crate::plan::convert::{ConvertPlan, OutputMode, ShardTarget};
use crate::report::convert::{ConvertReport, SplitSummary};
use crate::shard::manifest::{
    label_map_pbtxt, CategoryEntry, Counts, Manifest, ManifestOptions, ShardEntry, SplitEntry,
    MANIFEST_FORMAT_VERSION,
};
use crate::shard::writer::{
    create_lmdb_sink_with, create_tfrecord_sink_with, ShardInfo, ShardSink, SinkOptions,
};
use anyhow::{bail, Context, Result};
use image_job::{process_image, JobContext};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Images decoded/encoded at once inside one shard: bounds memory whatever the dataset size.
const WINDOW: usize = 32;

/// One shard's work: the images `i ≡ shard (mod n)` of a split, in input order.
struct ShardJob {
    split: usize,
    stem: String,
    images: Vec<usize>,
}

pub fn run(plan: &ConvertPlan) -> Result<ConvertReport> {
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .context("cannot start worker threads")?;
    let out = &plan.out_dir;
    let previous = output::prepare_output_dir(out, plan.output_mode)?;

    let mut datasets = Vec::with_capacity(plan.splits.len());
    for split in &plan.splits {
        datasets.push(load_coco_hashed(&split.annotations)?);
    }
    let categories = merge_categories(&datasets.iter().map(|d| &d.0).collect::<Vec<_>>())?;
    let options = manifest_options(plan);
    let mut manifest = Manifest {
        tool: "dsprep".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        format_version: MANIFEST_FORMAT_VERSION,
        complete: false,
        options: options.clone(),
        categories: categories.clone(),
        splits: Vec::new(),
    };
    let reusable = match (&previous, plan.output_mode) {
        (Some(prev), OutputMode::Resume) => {
            output::reusable_shards(prev, &options, &datasets, out)?
        }
        _ => HashMap::new(),
    };

    let mut jobs = Vec::new();
    for (si, (split, (ds, sha))) in plan.splits.iter().zip(&datasets).enumerate() {
        if plan.strict {
            strict_parse_check(split, ds)?;
        }
        let n = shard_count(plan.shard_target, split, ds);
        for s in 0..n {
            jobs.push(ShardJob {
                split: si,
                stem: format!("{}-{:05}-of-{:05}", safe_name(&split.name), s, n),
                images: (s..ds.len()).step_by(n).collect(),
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
    manifest.store(out)?;

    let label_of: HashMap<i64, (String, i64)> = categories
        .iter()
        .map(|c| {
            let label = match plan.labels {
                LabelMode::Coco => c.id,
                LabelMode::Contiguous => i64::from(c.contiguous_label),
            };
            (c.id, (c.name.clone(), label))
        })
        .collect();
    let total_images: u64 = datasets.iter().map(|d| d.0.len() as u64).sum();
    let progress = Progress::new(total_images, plan.quiet, "converting");
    let cancel = AtomicBool::new(false);
    let shared = Mutex::new(manifest);

    let results: Vec<Result<()>> = pool.install(|| {
        jobs.par_iter()
            .map(|job| {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let file_key = shard_file_name(plan.format, &job.stem);
                let entry = match reusable.get(&file_key) {
                    Some(e) => {
                        progress.add(e.counts.records + e.counts.skipped, e.info.bytes);
                        e.clone()
                    }
                    None => {
                        let (split, (ds, _)) = (&plan.splits[job.split], &datasets[job.split]);
                        let ctx = JobContext {
                            images_dir: &split.images_dir,
                            categories: &label_of,
                            decode_check: plan.decode_check,
                            presize: plan.presize,
                        };
                        match write_shard(plan, &ctx, ds, job, &progress, &cancel) {
                            Ok(Some(entry)) => entry,
                            Ok(None) => return Ok(()), // another shard failed first
                            Err(e) => {
                                cancel.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                };
                let mut m = shared
                    .lock()
                    .map_err(|_| anyhow::anyhow!("worker panicked"))?;
                m.splits[job.split].shards.push(entry);
                m.store(out)?;
                Ok(())
            })
            .collect()
    });
    progress.finish();
    for r in results {
        r?;
    }
    let mut manifest = shared
        .into_inner()
        .map_err(|_| anyhow::anyhow!("worker panicked"))?;
    for split in &mut manifest.splits {
        split.shards.sort_by(|a, b| a.info.file.cmp(&b.info.file));
        let mut counts = Counts::default();
        for s in &split.shards {
            counts.add(&s.counts);
        }
        split.records = counts.records;
        split.counts = counts;
    }
    manifest.complete = true;
    std::fs::write(out.join("label_map.pbtxt"), label_map_pbtxt(&categories))
        .with_context(|| format!("{}: cannot write label map", out.display()))?;
    if plan.fsync {
        manifest.store_durable(out)?;
    } else {
        manifest.store(out)?;
    }
    Ok(summarise(plan, &manifest, started.elapsed().as_secs_f64()))
}

/// Convert the images of one shard and finish it under its final name.
fn write_shard(
    plan: &ConvertPlan,
    ctx: &JobContext<'_>,
    ds: &CocoDataset,
    job: &ShardJob,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Option<ShardEntry>> {
    let opts = SinkOptions {
        durable: plan.fsync,
    };
    let mut sink: Box<dyn ShardSink> = match plan.format {
        ShardFormat::Tfrecord => create_tfrecord_sink_with(&plan.out_dir, &job.stem, opts)?,
        ShardFormat::Lmdb => create_lmdb_sink_with(&plan.out_dir, &job.stem, opts)?,
    };
    let mut counts = Counts::default();
    let (mut skipped, mut reencoded, mut mismatches, mut dropped) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for window in job.images.chunks(WINDOW) {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None); // dropping the sink removes the partial files
        }
        let outcomes: Vec<_> = window
            .par_iter()
            .map(|&i| process_image(ctx, ds.sample(i)))
            .collect();
        for o in outcomes {
            if plan.strict {
                strict_image_check(&o)?;
            }
            progress.add(1, o.input_bytes);
            if let Some(payload) = &o.payload {
                sink.append_parts(&payload.parts())?;
                counts.records += 1;
            }
            if let Some(s) = o.skipped {
                counts.skipped += 1;
                skipped.push(s);
            }
            if let Some(r) = o.reencoded {
                *counts.reencoded.entry(r.reason.clone()).or_default() += 1;
                reencoded.push(r);
            }
            if let Some(m) = o.size_mismatch {
                counts.size_mismatch += 1;
                mismatches.push(m);
            }
            counts.without_annotations += u64::from(o.without_annotations && o.payload.is_some());
            counts.boxes_kept += o.kept;
            counts.boxes_clipped += o.clipped;
            for d in o.dropped {
                *counts.boxes_dropped.entry(d.reason.clone()).or_default() += 1;
                dropped.push(d);
            }
        }
    }
    let info = if counts.records == 0 {
        // Every image of this shard was skipped: write no files (DALI rejects an empty index);
        // the entry still carries the skipped images. Dropping the sink removes its partials.
        drop(sink);
        ShardInfo {
            file: shard_file_name(plan.format, &job.stem),
            index: None,
            records: 0,
            bytes: 0,
            checksum: String::new(),
        }
    } else {
        sink.finish()?
    };
    Ok(Some(ShardEntry {
        info,
        counts,
        skipped,
        reencoded,
        size_mismatches: mismatches,
        dropped_boxes: dropped,
    }))
}

/// `--strict`: any problem with an image fails the run, naming the image.
fn strict_image_check(o: &image_job::ImageOutcome) -> Result<()> {
    if let Some(s) = &o.skipped {
        bail!(
            "--strict: {} (image id {}): {}",
            s.file_name,
            s.image_id,
            s.reason
        );
    }
    if let Some(m) = &o.size_mismatch {
        bail!(
            "--strict: {} (image id {}): annotation file says {}x{}, image is {}x{}",
            m.file_name,
            m.image_id,
            m.json[0],
            m.json[1],
            m.image[0],
            m.image[1]
        );
    }
    if let Some(d) = o.dropped.first() {
        bail!(
            "--strict: {} (image id {}): box {:?} dropped ({})",
            d.file_name,
            d.image_id,
            d.bbox,
            d.reason
        );
    }
    Ok(())
}

fn strict_parse_check(split: &SplitSource, ds: &CocoDataset) -> Result<()> {
    let s = &ds.stats;
    if s.unknown_image + s.unknown_category + s.duplicate_image_ids > 0 {
        bail!(
            "--strict: {}: {} annotations point at unknown images, {} at unknown categories, {} duplicate image ids",
            split.annotations.display(),
            s.unknown_image,
            s.unknown_category,
            s.duplicate_image_ids
        );
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
            let total: u64 = ds
                .images
                .iter()
                .map(|im| {
                    std::fs::metadata(split.images_dir.join(&im.file_name)).map_or(0, |m| m.len())
                })
                .sum();
            total.div_ceil(per_shard.max(1)) as usize
        }
    };
    wanted.clamp(1, images)
}

/// Split names come from file names; keep shard names portable.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn shard_file_name(format: ShardFormat, stem: &str) -> String {
    match format {
        ShardFormat::Tfrecord => format!("{stem}.tfrecord"),
        ShardFormat::Lmdb => format!("{stem}.lmdb"),
    }
}

/// Union of all splits' categories by id; the same id with two names is an error.
fn merge_categories(datasets: &[&CocoDataset]) -> Result<Vec<CategoryEntry>> {
    let mut by_id: BTreeMap<i64, String> = BTreeMap::new();
    for ds in datasets {
        for c in &ds.categories {
            if let Some(prev) = by_id.insert(c.id, c.name.clone()) {
                if prev != c.name {
                    bail!(
                        "category id {} is {:?} in one split and {:?} in another; the splits must share one category list",
                        c.id,
                        prev,
                        c.name
                    );
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

fn manifest_options(plan: &ConvertPlan) -> ManifestOptions {
    let (shard_size, shards) = match plan.shard_target {
        ShardTarget::Bytes(b) => (Some(b), None),
        ShardTarget::Count(n) => (None, Some(n)),
    };
    ManifestOptions {
        format: match plan.format {
            ShardFormat::Tfrecord => crate::shard::format::ShardFormat::Tfrecord,
            ShardFormat::Lmdb => crate::shard::format::ShardFormat::Lmdb,
        },
        labels: match plan.labels {
            LabelMode::Coco => crate::shard::manifest::LabelMode::Coco,
            LabelMode::Contiguous => crate::shard::manifest::LabelMode::Contiguous,
        },
        shard_size,
        shards,
        decode_check: plan.decode_check,
        presize: plan.presize,
        presize_mode: crate::image::resize::Fit::Longest,
    }
}

fn summarise(plan: &ConvertPlan, m: &Manifest, seconds: f64) -> ConvertReport {
    let splits: Vec<SplitSummary> = m
        .splits
        .iter()
        .map(|s| SplitSummary {
            name: s.name.clone(),
            images: s.images,
            records: s.counts.records,
            skipped: s.counts.skipped,
            reencoded: s.counts.reencoded.values().sum(),
            without_annotations: s.counts.without_annotations,
            size_mismatch: s.counts.size_mismatch,
            boxes_kept: s.counts.boxes_kept,
            boxes_clipped: s.counts.boxes_clipped,
            boxes_dropped: s.counts.boxes_dropped_total(),
            annotations_unknown_image: s.annotations_unknown_image,
            annotations_unknown_category: s.annotations_unknown_category,
            shards: s.shards.len() as u64,
            bytes: s.shards.iter().map(|x| x.info.bytes).sum(),
        })
        .collect();
    ConvertReport::new(
        plan.out_dir.display().to_string(),
        m.options.format.name().to_string(),
        splits,
        seconds,
    )
}
