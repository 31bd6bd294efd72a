//! `merge`: the parts of a task-mode convert ([`super::tasks`]) → `manifest.json` and the
//! label map, byte-identical to what a one-machine run writes.
//!
//! Rules, checked before anything is written: every task `0..M` left a part, all parts have
//! the same task count, every part is complete, and every part was made with the same tool
//! version, options, categories, annotation files (by SHA-256) and shard plan as the others;
//! each shard of the plan is recorded by the task that owns it (`s mod M`), and its files are
//! there with the recorded size (the bytes themselves are `dsprep verify`'s job: re-reading a
//! whole dataset here would make the merge as slow as the convert). Every problem is collected
//! and named by task, so one failed merge lists every task to re-run. On success the merged
//! manifest is written (atomically, last) and the parts folder is removed, leaving exactly a
//! one-machine run's files. A merge of a folder already merged says so and changes nothing.

use super::outdir::{self, OutDirError, LABEL_MAP_FILE};
use super::tasks::part_files;
use super::JobError;
use crate::shard::atomic::write_atomic;
use crate::shard::format::{shard_stem, ShardFormat, LMDB_DATA_FILE};
use crate::shard::manifest::part::{TaskPart, TASKS_DIR};
use crate::shard::manifest::{label_map_pbtxt, Counts, Manifest, ShardEntry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A merge run, as the plan built it.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    pub out_dir: PathBuf,
    /// fsync the manifest and label map.
    pub durable: bool,
}

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    pub out_dir: PathBuf,
    /// The merged manifest, as written (or as found, when already merged).
    pub manifest: Manifest,
    /// M (0 when the folder was already merged).
    pub tasks: u32,
    /// The folder held a finished manifest and no parts: nothing was done.
    pub already_merged: bool,
    /// Entries of `dsprep-tasks/` that dsprep did not write, left there (the folder stays).
    pub left_alone: Vec<String>,
    pub seconds: f64,
}

/// One thing wrong with one task (or, with `task: None`, with the run as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskProblem {
    pub task: Option<u32>,
    pub what: String,
}

impl std::fmt::Display for TaskProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.task {
            Some(k) => write!(f, "task {k}: {}", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0}: nothing to merge: no task parts ({TASKS_DIR}/part-*.json) and no finished manifest.json; run `dsprep convert IN OUT --tasks M` for every task first")]
    NoParts(PathBuf),
    #[error("{dir}: parts of runs with different task counts are here ({counts}); remove the stale ones (or re-run the tasks with --overwrite) and merge again")]
    MixedTaskCounts { dir: PathBuf, counts: String },
    #[error("{dir}: cannot merge the {tasks} tasks; nothing was written:\n  {}\nre-run the tasks named (the same command; a re-run task resumes), then merge again", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Problems {
        dir: PathBuf,
        tasks: u32,
        problems: Vec<TaskProblem>,
    },
    #[error(transparent)]
    OutDir(#[from] OutDirError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
}

pub fn run(spec: &MergeSpec) -> Result<MergeOutcome, MergeError> {
    let started = Instant::now();
    let out = spec.out_dir.as_path();
    // Exclusive: tasks hold the folder's lock shared while they run.
    let _lock = outdir::lock_folder(out, false)?;
    let dir = out.join(TASKS_DIR);
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
        return Err(JobError::from(super::tasks::TaskError::NotPlain(dir)).into());
    }
    let files = part_files(&dir)?;
    let parts: Vec<&(u32, u32, PathBuf)> = files
        .iter()
        .filter(|(_, _, p)| p.extension().is_some_and(|e| e == "json"))
        .collect();
    if parts.is_empty() {
        return match Manifest::load(out)? {
            Some(m) if m.complete => Ok(MergeOutcome {
                out_dir: out.to_path_buf(),
                manifest: m,
                tasks: 0,
                already_merged: true,
                left_alone: Vec::new(),
                seconds: started.elapsed().as_secs_f64(),
            }),
            _ => Err(MergeError::NoParts(out.to_path_buf())),
        };
    }
    let counts: BTreeMap<u32, Vec<u32>> = parts.iter().fold(BTreeMap::new(), |mut m, (k, n, _)| {
        m.entry(*n).or_insert_with(Vec::new).push(*k);
        m
    });
    if counts.len() > 1 {
        let text = counts
            .iter()
            .map(|(n, ks)| format!("{} of a {n}-task run", ks.len()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(MergeError::MixedTaskCounts { dir, counts: text });
    }
    let tasks = *counts.keys().next().unwrap_or(&1);
    let mut problems = Vec::new();
    let mut loaded: Vec<Option<TaskPart>> = (0..tasks).map(|_| None).collect();
    let mut all_load = true;
    for (k, _, path) in &parts {
        if *k >= tasks {
            all_load = false;
            problems.push(problem(
                *k,
                format!(
                    "{} names task {k} of {tasks}, past the last task; it is not a part dsprep wrote",
                    path.display()
                ),
            ));
            continue;
        }
        match TaskPart::load(path) {
            Err(e) => {
                all_load = false;
                problems.push(problem(*k, format!("part is damaged: {e}")))
            }
            Ok(p) if (p.task, p.tasks) != (*k, tasks) => problems.push(problem(
                *k,
                format!(
                    "{} says it is task {} of {}; the part was renamed or edited",
                    path.display(),
                    p.task,
                    p.tasks
                ),
            )),
            Ok(p) => loaded[*k as usize] = Some(p),
        }
    }
    for (k, slot) in loaded.iter().enumerate() {
        if slot.is_none() && !parts.iter().any(|(pk, _, _)| *pk as usize == k) {
            problems.push(problem(
                k as u32,
                "no part: it never ran, or died before it planned (check its log)".into(),
            ));
        }
    }
    // A merge that stopped after writing manifest.json but before removing every part left
    // parts that the manifest already holds: finish its clean-up instead of failing on the
    // parts it removed.
    if let Some(done) = Manifest::load(out).ok().flatten().filter(|m| m.complete) {
        if all_load
            && loaded
                .iter()
                .flatten()
                .all(|p| merged_into(&done, p, tasks))
        {
            let left_alone = remove_parts(&dir)?;
            return Ok(MergeOutcome {
                out_dir: out.to_path_buf(),
                manifest: done,
                tasks,
                already_merged: true,
                left_alone,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    let reference = loaded.iter().flatten().next().cloned();
    if let Some(r) = &reference {
        for p in loaded.iter().flatten() {
            check_part(out, r, p, tasks, &mut problems);
        }
    }
    problems.sort_by_key(|p| p.task);
    let Some(reference) = reference.filter(|_| problems.is_empty()) else {
        return Err(MergeError::Problems {
            dir: out.to_path_buf(),
            tasks,
            problems,
        });
    };
    let parts: Vec<TaskPart> = loaded.into_iter().flatten().collect();
    let manifest = merged(&reference, &parts, tasks);
    for split in &manifest.splits {
        let accounted = split.counts.records + split.counts.skipped;
        if accounted != split.images {
            problems.push(TaskProblem {
                task: None,
                what: format!(
                    "split {:?}: the parts account for {accounted} images, the annotation file lists {}",
                    split.name, split.images
                ),
            });
        }
    }
    if !problems.is_empty() {
        return Err(MergeError::Problems {
            dir: out.to_path_buf(),
            tasks,
            problems,
        });
    }
    write_atomic(
        &out.join(LABEL_MAP_FILE),
        label_map_pbtxt(&manifest.categories).as_bytes(),
        spec.durable,
    )?;
    if spec.durable {
        manifest.store_durable(out)?;
    } else {
        manifest.store(out)?;
    }
    let left_alone = remove_parts(&dir)?;
    Ok(MergeOutcome {
        out_dir: out.to_path_buf(),
        manifest,
        tasks,
        already_merged: false,
        left_alone,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn problem(task: u32, what: String) -> TaskProblem {
    TaskProblem {
        task: Some(task),
        what,
    }
}

/// What every task computes alike: the manifest without shards and without per-task counts.
fn header(m: &Manifest) -> Manifest {
    let mut h = m.clone();
    h.complete = false;
    for s in &mut h.splits {
        s.shards.clear();
        s.records = 0;
        s.counts = Counts::default();
    }
    h
}

/// Checks one part against the reference part: same run, complete, the shards it owns
/// recorded in order, their files present with the recorded size.
fn check_part(out: &Path, r: &TaskPart, p: &TaskPart, tasks: u32, problems: &mut Vec<TaskProblem>) {
    let k = p.task;
    let (hr, hp) = (header(&r.manifest), header(&p.manifest));
    if hp != hr || p.shard_counts != r.shard_counts {
        let what = if hp.options != hr.options {
            format!(
                "made with other options than task {} ({})",
                r.task,
                super::tasks::options_diff(&hp.options, &hr.options)
            )
        } else if hp.tool_version != hr.tool_version || hp.format_version != hr.format_version {
            format!(
                "made by dsprep {} (task {}: {})",
                hp.tool_version, r.task, hr.tool_version
            )
        } else if hp
            .splits
            .iter()
            .map(|s| &s.annotations_sha256)
            .ne(hr.splits.iter().map(|s| &s.annotations_sha256))
        {
            format!("made from other annotation files than task {}", r.task)
        } else {
            format!(
                "made with another plan than task {} (splits, categories, image folders or shard counts differ)",
                r.task
            )
        };
        problems.push(problem(k, what));
        return;
    }
    if !p.manifest.complete {
        let done: usize = p.manifest.splits.iter().map(|s| s.shards.len()).sum();
        problems.push(problem(
            k,
            format!(
                "did not finish ({done} of {} shards done): it is still failing, was killed, or is still queued",
                owned(&p.shard_counts, k, tasks)
            ),
        ));
        return;
    }
    let format = p.manifest.options.format;
    for (split, &n) in p.manifest.splits.iter().zip(&p.shard_counts) {
        let want: Vec<String> = (0..n as usize)
            .filter(|s| *s % tasks as usize == k as usize)
            .map(|s| format.shard_file(&shard_stem(&split.name, s, n as usize)))
            .collect();
        let have: Vec<&str> = split.shards.iter().map(|s| s.info.file.as_str()).collect();
        if have != want {
            problems.push(problem(
                k,
                format!(
                    "split {:?}: records shards {have:?}, but owns {want:?}",
                    split.name
                ),
            ));
            continue;
        }
        for shard in &split.shards {
            if let Some(what) = missing_files(out, format, shard) {
                problems.push(problem(k, what));
            }
        }
    }
}

/// How many shards of the plan task `k` of `tasks` owns.
fn owned(shard_counts: &[u64], k: u32, tasks: u32) -> u64 {
    shard_counts
        .iter()
        .map(|&n| (n + u64::from(tasks) - 1 - u64::from(k)) / u64::from(tasks))
        .sum()
}

/// What is wrong with a recorded shard's files, if anything: missing, or another size.
fn missing_files(out: &Path, format: ShardFormat, shard: &ShardEntry) -> Option<String> {
    if shard.info.records == 0 && shard.info.checksum.is_empty() {
        return None; // every image skipped: never written
    }
    let name = &shard.info.file;
    let data = match format {
        ShardFormat::Tfrecord => out.join(name),
        ShardFormat::Lmdb => out.join(name).join(LMDB_DATA_FILE),
    };
    match std::fs::metadata(&data) {
        Err(e) => return Some(format!("{name}: {e}")),
        Ok(m) if m.len() != shard.info.bytes => {
            return Some(format!(
                "{name}: {} bytes, the part recorded {} (changed after the task finished?)",
                m.len(),
                shard.info.bytes
            ))
        }
        Ok(_) => {}
    }
    match &shard.info.index {
        Some(i) if !out.join(i).is_file() => Some(format!("{i}: missing (index of {name})")),
        _ => None,
    }
}

/// Whether a finished part is already in the merged manifest `done`: same run, and its shards
/// are exactly the manifest's shards it owns.
fn merged_into(done: &Manifest, p: &TaskPart, tasks: u32) -> bool {
    let m = tasks as usize;
    p.manifest.complete
        && header(&p.manifest) == header(done)
        && p.manifest.splits.len() == p.shard_counts.len()
        && p.manifest
            .splits
            .iter()
            .zip(&done.splits)
            .zip(&p.shard_counts)
            .all(|((mine, all), &n)| {
                all.shards.len() as u64 == n
                    && mine.shards.len() == (p.task as usize..n as usize).step_by(m).count()
                    && mine
                        .shards
                        .iter()
                        .zip(all.shards.iter().skip(p.task as usize).step_by(m))
                        .all(|(a, b)| a == b)
            })
}

/// The whole run's manifest: the reference header, every split's shards in shard order (shard
/// `s` is entry `s / M` of task `s mod M`), the split counts summed as convert sums them.
fn merged(reference: &TaskPart, parts: &[TaskPart], tasks: u32) -> Manifest {
    let mut m = header(&reference.manifest);
    let m_tasks = tasks as usize;
    for (si, split) in m.splits.iter_mut().enumerate() {
        let n = reference.shard_counts[si] as usize;
        split.shards = (0..n)
            .map(|s| parts[s % m_tasks].manifest.splits[si].shards[s / m_tasks].clone())
            .collect();
        let mut counts = Counts::default();
        for s in &split.shards {
            counts.add(&s.counts);
        }
        split.records = counts.records;
        split.counts = counts;
    }
    m.complete = true;
    m
}

/// Removes the parts, locks and their partial files from `dsprep-tasks/`, then the folder if
/// nothing else is in it; returns what was left (not written by dsprep).
fn remove_parts(dir: &Path) -> Result<Vec<String>, MergeError> {
    let mut left = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| JobError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let base = name
            .strip_suffix(crate::shard::format::PARTIAL_SUFFIX)
            .unwrap_or(&name);
        if crate::shard::manifest::part::parse_part_name(base).is_some() {
            outdir::remove_entry(&dir.join(&name))?;
        } else {
            left.push(name);
        }
    }
    if left.is_empty() {
        std::fs::remove_dir(dir).map_err(|source| JobError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_counts_shards_modulo() {
        // 5 shards over 3 tasks: 2, 2, 1; 2 shards over 8 tasks: tasks 2.. own none.
        assert_eq!(owned(&[5], 0, 3), 2);
        assert_eq!(owned(&[5], 2, 3), 1);
        assert_eq!(owned(&[2, 5], 7, 8), 0);
        assert_eq!(owned(&[2, 5], 1, 8), 2);
    }
}
