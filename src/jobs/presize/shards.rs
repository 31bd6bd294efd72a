//! `presize` of a shard folder: a complete `dsprep convert` output (TFRecord or LMDB) in, the
//! same shards (same names and format) with presized images out. Every record is rewritten
//! with the presized image, its width/height/sha256 and areas (normalised boxes do not
//! change); records within the limit are copied byte-identical. New indexes, checksums and a
//! manifest whose `options.presize` (and `presize_mode`) say what was done.

use super::{PresizeOutcome, PresizeSpec};
use crate::image::presize::{memory_estimate, presize_image, Change};
use crate::jobs::budget::Budget;
use crate::jobs::outdir::{OutputDir, OutputMode, LABEL_MAP_FILE};
use crate::jobs::shard_loop::{run_shards, still_intact, Cancel};
use crate::jobs::{pool, JobError, Progress};
use crate::shard::atomic::write_atomic;
use crate::shard::example::Example;
use crate::shard::format::{ShardFormat, ShardRef};
use crate::shard::manifest::{ImageNote, Manifest, PresizeSplit, ShardEntry, MANIFEST_FILE};
use crate::shard::od_example::{keys, record_identity, rewrite_image};
use crate::shard::source::{read_records, Flow, ReadMode};
use crate::shard::writer::{
    create_lmdb_sink_with, create_tfrecord_sink_with, ShardInfo, ShardSink, SinkOptions,
};
use rayon::prelude::*;
use std::path::Path;
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

/// Presize the image of one serialized Example.
fn presize_record(payload: &[u8], spec: &PresizeSpec, budget: &Budget) -> RecordOutcome {
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
    let failed = |reason: String| {
        let (file_name, image_id) = record_identity(&ex);
        RecordOutcome::Failed {
            note: ImageNote {
                file_name,
                image_id,
                reason,
            },
        }
    };
    let Some(image) = ex.get_bytes(keys::ENCODED).and_then(|v| v.first()) else {
        return failed("record has no image/encoded".into());
    };
    let _lease = budget.acquire(memory_estimate(image, spec.options.target));
    let r = match presize_image(image, &spec.options) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let (Some(bytes), Some(change)) = (r.bytes, r.change) else {
        return RecordOutcome::Same;
    };
    RecordOutcome::Rewritten {
        payload: rewrite_image(&ex, bytes, r.width, r.height, r.sx, r.sy),
        change,
    }
}

/// What every shard task of one run shares.
struct ShardRun<'a> {
    spec: &'a PresizeSpec,
    out: &'a Path,
    budget: &'a Budget,
    progress: &'a dyn Progress,
    cancel: &'a Cancel,
}

impl ShardRun<'_> {
    /// Presizes one window of records in parallel and appends the results in order.
    fn window(
        &self,
        input: &ShardRef,
        window: &[Vec<u8>],
        sink: &mut dyn ShardSink,
        counts: &mut ShardCounts,
    ) -> Result<(), JobError> {
        let outcomes: Vec<RecordOutcome> = window
            .par_iter()
            .map(|p| presize_record(p, self.spec, self.budget))
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
                    if self.spec.strict {
                        return Err(JobError::Strict(format!(
                            "{} record {:?} (id {}): {}",
                            input.path.display(),
                            note.file_name,
                            note.image_id,
                            note.reason
                        )));
                    }
                    counts.failed.push(note);
                }
            }
            self.progress.add(1, payload.len() as u64);
        }
        Ok(())
    }

    /// Presizes one input shard into a shard of the same format and name under OUT, a window
    /// of records at a time. A record that cannot be read is reported (failed, with its shard
    /// and offset) and the rest of the shard goes on. `None` when another shard failed first.
    fn shard(
        &self,
        input: &ShardRef,
        stem: &str,
    ) -> Result<Option<(ShardInfo, ShardCounts)>, JobError> {
        let opts = SinkOptions {
            durable: self.spec.durable,
        };
        let mut sink = match input.format {
            ShardFormat::Tfrecord => create_tfrecord_sink_with(self.out, stem, opts)?,
            ShardFormat::Lmdb => create_lmdb_sink_with(self.out, stem, opts)?,
        };
        let mut counts = ShardCounts::default();
        let unreadable = Mutex::new(Vec::new());
        let mut failed: Option<JobError> = None;
        let mut window: Vec<Vec<u8>> = Vec::with_capacity(WINDOW);
        read_records(
            input,
            ReadMode::Indexed,
            &mut Vec::new(),
            &mut |r| {
                if self.cancel.is_set() {
                    return Flow::Stop;
                }
                window.push(r.payload.to_vec());
                if window.len() == WINDOW {
                    if let Err(e) = self.window(input, &window, sink.as_mut(), &mut counts) {
                        failed = Some(e);
                        return Flow::Stop;
                    }
                    window.clear();
                }
                Flow::Continue
            },
            &mut |p| {
                let at = match (p.number, p.offset) {
                    (Some(n), Some(o)) => format!("record {n} at offset {o}"),
                    (Some(n), None) => format!("record {n}"),
                    _ => "shard".to_string(),
                };
                if let Ok(mut u) = unreadable.lock() {
                    u.push(ImageNote {
                        file_name: String::new(),
                        image_id: -1,
                        reason: format!("{} {at}: {}", input.name(), p.reason),
                    });
                }
            },
        );
        if let Some(e) = failed {
            return Err(e);
        }
        if self.cancel.is_set() {
            return Ok(None);
        }
        self.window(input, &window, sink.as_mut(), &mut counts)?;
        let unreadable = unreadable.into_inner().map_err(|_| JobError::Panicked)?;
        if self.spec.strict {
            if let Some(n) = unreadable.first() {
                return Err(JobError::Strict(n.reason.clone()));
            }
        }
        counts.failed.extend(unreadable);
        if counts.passed + counts.resized + counts.same_size == 0 {
            // Nothing readable: write no files (DALI rejects an empty index); the entry lists
            // the failures. Dropping the sink removes its partials.
            drop(sink);
            let info = ShardInfo {
                file: input.format.shard_file(stem),
                index: None,
                records: 0,
                bytes: 0,
                checksum: String::new(),
            };
            return Ok(Some((info, counts)));
        }
        Ok(Some((sink.finish()?, counts)))
    }
}

pub fn run(
    spec: &PresizeSpec,
    dir: &Path,
    input: &Manifest,
    progress: &dyn Progress,
) -> Result<PresizeOutcome, JobError> {
    let started = Instant::now();
    let out_dir = OutputDir::open(&spec.out_dir, spec.output_mode)?;
    let out = out_dir.path();
    let size = spec.options.target.size;
    let fit = spec.options.target.fit;
    let previous = match (spec.output_mode, out_dir.resumable_shards()) {
        (OutputMode::Resume, None) => {
            return Err(JobError::Resume(format!(
                "{}: no {MANIFEST_FILE} of a shard folder to resume from",
                out.display()
            )))
        }
        (_, p) => p,
    };
    let mut manifest = input.clone();
    manifest.complete = false;
    manifest.options.presize = Some(size);
    manifest.options.presize_mode = fit;
    for s in &mut manifest.splits {
        s.shards.clear();
        s.records = 0;
    }
    manifest.store(out)?;
    let label_map = dir.join(LABEL_MAP_FILE);
    if label_map.is_file() {
        let bytes = std::fs::read(&label_map).map_err(|source| JobError::Io {
            path: label_map.clone(),
            source,
        })?;
        write_atomic(&out.join(LABEL_MAP_FILE), &bytes, spec.durable)?;
    }
    // Earlier output shards to keep on --resume: same options, recorded, checksum matching.
    let same_options =
        previous.is_some_and(|p| p.options.presize == Some(size) && p.options.presize_mode == fit);
    let keep = |file: &str| -> Option<ShardEntry> {
        let prev = previous.filter(|_| same_options)?;
        let e = prev
            .splits
            .iter()
            .flat_map(|s| &s.shards)
            .find(|s| s.info.file == file)?;
        still_intact(out, e).then(|| e.clone())
    };

    let refs = input.shard_refs(dir, None)?;
    let mut tasks: Vec<(usize, &ShardEntry, Option<&ShardRef>)> = Vec::new();
    let mut written = refs.iter();
    for (si, s) in input.splits.iter().enumerate() {
        for e in &s.shards {
            // Shards that were never written (every image skipped) have no ref.
            let r = if e.info.records == 0 && e.info.checksum.is_empty() {
                None
            } else {
                written.next()
            };
            tasks.push((si, e, r));
        }
    }
    progress.total(input.splits.iter().map(|s| s.records).sum());
    let budget = Budget::new(spec.memory_budget);
    let pool = pool(spec.threads)?;
    let shared = Mutex::new(manifest);
    let finished = run_shards(
        &pool,
        &tasks,
        &shared,
        out,
        |t| t.0,
        |t| {
            let e = keep(&t.1.info.file)?;
            progress.add(e.info.records, e.info.bytes);
            let passed = e.info.records;
            Some((
                e,
                ShardCounts {
                    passed,
                    ..Default::default()
                },
            ))
        },
        |&(_, src, shard), run_cancel| {
            let Some(shard) = shard else {
                // Nothing to presize: the entry (all images skipped) carries over as it is.
                return Ok(Some((src.clone(), ShardCounts::default())));
            };
            let stem = shard
                .format
                .stem_of(&src.info.file)
                .unwrap_or(&src.info.file)
                .to_string();
            let run = ShardRun {
                spec,
                out,
                budget: &budget,
                progress,
                cancel: run_cancel,
            };
            let Some((info, counts)) = run.shard(shard, &stem)? else {
                return Ok(None);
            };
            let mut entry = src.clone();
            entry.info = info;
            entry.counts.records = entry.info.records;
            entry.counts.skipped += counts.failed.len() as u64;
            entry.skipped.extend(counts.failed.iter().cloned());
            Ok(Some((entry, counts)))
        },
    )?;
    let mut manifest = shared.into_inner().map_err(|_| JobError::Panicked)?;
    let mut per_split: Vec<PresizeSplit> = input
        .splits
        .iter()
        .map(|s| PresizeSplit {
            name: s.name.clone(),
            ..Default::default()
        })
        .collect();
    for s in &mut manifest.splits {
        s.shards.clear();
    }
    for (&(si, _, _), (entry, c)) in tasks.iter().zip(finished) {
        let sm = &mut per_split[si];
        sm.images += entry.info.records + c.failed.len() as u64;
        sm.resized += c.resized;
        sm.rewritten_same_size += c.same_size;
        sm.passed_through += c.passed;
        sm.failed += c.failed.len() as u64;
        sm.bytes_in += c.bytes_in;
        sm.bytes_out += c.bytes_out;
        sm.failures.extend(c.failed);
        manifest.splits[si].shards.push(entry);
    }
    for s in &mut manifest.splits {
        s.records = s.shards.iter().map(|x| x.info.records).sum();
    }
    manifest.complete = true;
    if spec.durable {
        manifest.store_durable(out)?;
    } else {
        manifest.store(out)?;
    }
    Ok(PresizeOutcome {
        out_dir: out.to_path_buf(),
        splits: per_split,
        resumed: 0,
        seconds: started.elapsed().as_secs_f64(),
        left_alone: out_dir.left_alone().to_vec(),
    })
}
