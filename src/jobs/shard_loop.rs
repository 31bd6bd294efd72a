//! The per-shard parallel loop shared by `convert` and `presize` of a shard folder.
//!
//! Shards are independent: each is written by one task (records in a fixed order inside it),
//! so output bytes never depend on the thread count. A task either reuses a shard an
//! interrupted run finished (resume) or writes it. Every finished shard is recorded in the
//! manifest, which is stored at once (atomically): that is what `--resume` trusts. The first
//! error stops the other tasks at their next window (they return `None`, "cancelled") and is
//! the error the loop returns.

use super::JobError;
use crate::shard::manifest::{Manifest, ShardEntry};
use crate::shard::ShardError;
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set when a task failed: the others stop early.
#[derive(Debug, Default)]
pub struct Cancel(AtomicBool);

impl Cancel {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether a shard an earlier run recorded as finished is still there as written: its bytes
/// hash to the recorded checksum and its index (if any) is present. Only such shards are kept
/// on `--resume`.
pub fn still_intact(out: &Path, entry: &ShardEntry) -> bool {
    crate::shard::writer::shard_checksum(out, &entry.info.file)
        .is_ok_and(|h| h == entry.info.checksum)
        && entry
            .info
            .index
            .as_ref()
            .is_none_or(|i| out.join(i).is_file())
}

/// What one shard task produced: its manifest entry and whatever else the job counts.
pub type Finished<X> = (ShardEntry, X);

/// Runs every task on `pool`. `split_of(task)` is the manifest split its entry belongs to;
/// `reuse(task)` gives a finished entry to keep (resume) or `None`; `work(task, cancel)`
/// writes the shard, returning `Ok(None)` when it stopped because `cancel` was set. Returns
/// the finished shards in task order.
pub fn run_shards<T, X, S, R, W>(
    pool: &rayon::ThreadPool,
    tasks: &[T],
    manifest: &Mutex<Manifest>,
    out: &Path,
    split_of: S,
    reuse: R,
    work: W,
) -> Result<Vec<Finished<X>>, JobError>
where
    T: Sync,
    X: Send,
    S: Fn(&T) -> usize + Sync,
    R: Fn(&T) -> Option<Finished<X>> + Sync,
    W: Fn(&T, &Cancel) -> Result<Option<Finished<X>>, JobError> + Sync,
{
    run_shards_with(
        pool,
        tasks,
        manifest,
        &|m| m.store(out),
        split_of,
        reuse,
        work,
    )
}

/// [`run_shards`], storing the manifest after every finished shard with `store` instead of as
/// `out/manifest.json` (a task of a task-mode run stores its part).
pub fn run_shards_with<T, X, S, R, W>(
    pool: &rayon::ThreadPool,
    tasks: &[T],
    manifest: &Mutex<Manifest>,
    store: &(dyn Fn(&Manifest) -> Result<(), ShardError> + Sync),
    split_of: S,
    reuse: R,
    work: W,
) -> Result<Vec<Finished<X>>, JobError>
where
    T: Sync,
    X: Send,
    S: Fn(&T) -> usize + Sync,
    R: Fn(&T) -> Option<Finished<X>> + Sync,
    W: Fn(&T, &Cancel) -> Result<Option<Finished<X>>, JobError> + Sync,
{
    let cancel = Cancel::default();
    let results: Vec<Result<Option<Finished<X>>, JobError>> = pool.install(|| {
        tasks
            .par_iter()
            .map(|task| {
                if cancel.is_set() {
                    return Ok(None);
                }
                let done = match reuse(task) {
                    Some(d) => d,
                    None => match work(task, &cancel) {
                        Ok(Some(d)) => d,
                        Ok(None) => return Ok(None),
                        Err(e) => {
                            cancel.set();
                            return Err(e);
                        }
                    },
                };
                let mut m = manifest.lock().map_err(|_| JobError::Panicked)?;
                if let Some(split) = m.splits.get_mut(split_of(task)) {
                    split.shards.push(done.0.clone());
                }
                if let Err(e) = store(&m) {
                    cancel.set();
                    return Err(e.into());
                }
                Ok(Some(done))
            })
            .collect()
    });
    let mut finished = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for r in results {
        match r {
            Ok(Some(d)) => finished.push(d),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if finished.len() == tasks.len() => Ok(finished),
        None => Err(JobError::Panicked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::format::ShardFormat;
    use crate::shard::manifest::{LabelMode, ManifestOptions, SplitEntry, MANIFEST_FORMAT_VERSION};
    use crate::shard::writer::ShardInfo;

    fn manifest(splits: usize) -> Manifest {
        Manifest {
            tool: "dsprep".into(),
            tool_version: "0".into(),
            format_version: MANIFEST_FORMAT_VERSION,
            complete: false,
            options: ManifestOptions {
                format: ShardFormat::Tfrecord,
                labels: LabelMode::Coco,
                shard_size: None,
                shards: None,
                decode_check: false,
                presize: None,
                presize_mode: Default::default(),
                deal: Default::default(),
            },
            categories: vec![],
            splits: (0..splits)
                .map(|i| SplitEntry {
                    name: format!("s{i}"),
                    annotations: String::new(),
                    annotations_sha256: String::new(),
                    images_dir: String::new(),
                    images: 0,
                    records: 0,
                    counts: Default::default(),
                    annotations_unknown_image: 0,
                    annotations_unknown_category: 0,
                    duplicate_image_ids: 0,
                    shards: vec![],
                })
                .collect(),
        }
    }

    fn entry(file: &str) -> ShardEntry {
        ShardEntry {
            info: ShardInfo {
                file: file.into(),
                index: None,
                records: 1,
                bytes: 1,
                checksum: "c".into(),
            },
            counts: Default::default(),
            skipped: vec![],
            reencoded: vec![],
            size_mismatches: vec![],
            dropped_boxes: vec![],
        }
    }

    #[test]
    fn results_come_back_in_task_order_and_are_recorded() {
        let d = tempfile::tempdir().unwrap();
        let m = Mutex::new(manifest(2));
        let pool = crate::jobs::pool(4).unwrap();
        let tasks: Vec<(usize, u32)> = (0..12).map(|i| (i % 2, i as u32)).collect();
        let got = run_shards(
            &pool,
            &tasks,
            &m,
            d.path(),
            |t| t.0,
            |t| (t.1 == 3).then(|| (entry("kept"), 30)),
            |t, _| {
                std::thread::sleep(std::time::Duration::from_millis(u64::from(12 - t.1)));
                Ok(Some((entry(&format!("f{}", t.1)), t.1 * 10)))
            },
        )
        .unwrap();
        let xs: Vec<u32> = got.iter().map(|g| g.1).collect();
        assert_eq!(xs, (0..12).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(got[3].0.info.file, "kept");
        let m = m.into_inner().unwrap();
        assert_eq!(m.splits[0].shards.len() + m.splits[1].shards.len(), 12);
        let stored = Manifest::load(d.path()).unwrap().unwrap();
        assert_eq!(stored.splits[1].shards.len(), 6);
    }

    #[test]
    fn first_error_cancels_the_rest_and_is_returned() {
        let d = tempfile::tempdir().unwrap();
        let m = Mutex::new(manifest(1));
        let pool = crate::jobs::pool(1).unwrap();
        let tasks: Vec<u32> = (0..5).collect();
        let started = std::sync::atomic::AtomicU32::new(0);
        let e = run_shards(
            &pool,
            &tasks,
            &m,
            d.path(),
            |_| 0,
            |_| None::<Finished<()>>,
            |t, cancel| {
                started.fetch_add(1, Ordering::Relaxed);
                if cancel.is_set() {
                    return Ok(None);
                }
                if *t == 1 {
                    return Err(JobError::Input(format!("task {t} failed")));
                }
                Ok(Some((entry("x"), ())))
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "task 1 failed");
        // One thread: tasks after the failing one were never started.
        assert_eq!(started.load(Ordering::Relaxed), 2);
    }
}
