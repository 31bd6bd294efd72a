//! Task mode of `convert` (`--tasks M --task K`): one of M independent processes — a Slurm
//! job-array task, a Kubernetes Indexed Job pod, an AWS Batch array child — that writes exactly
//! the shards it owns into a shared OUT, plus its part of the manifest; `dsprep merge` joins the
//! parts afterwards ([`super::merge`]).
//!
//! No coordination and no shared state but OUT: every task parses every annotation file and
//! stats every image, so all of them compute the same plan; task K owns shard `s` of every split
//! where `s mod M = K`. Locks (advisory `flock`, see [`TaskOutput::open`]): each task holds a
//! shared lock on OUT (so a whole-folder run or a merge cannot start while tasks write) and an
//! exclusive lock on its own `dsprep-tasks/part-K-of-M.lock` (so two tasks given the same K
//! refuse to share shards). A task that died is re-run with the same command and resumes from
//! its part: finished shards whose bytes still match are kept.

use super::outdir::{self, OutDirError, OutputDir, OutputMode, LABEL_MAP_FILE};
use super::JobError;
use crate::shard::format::{shard_stem, ShardFormat};
use crate::shard::manifest::part::{
    lock_file, parse_part_name, part_file, TaskPart, MAX_TASKS, TASKS_DIR, TASK_PART_KIND,
};
use crate::shard::manifest::{
    load_folder_manifest, FolderManifest, Manifest, ManifestOptions, MANIFEST_FILE,
};
use crate::shard::ShardError;
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Which of M tasks this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TaskSlice {
    /// K, `0..count`.
    pub index: u32,
    /// M.
    pub count: u32,
}

impl TaskSlice {
    /// Whether shard `s` (of any split) is this task's.
    pub fn owns(&self, shard: usize) -> bool {
        shard % self.count as usize == self.index as usize
    }
}

/// `--tasks`: a number, or `auto` (the Slurm array's size and index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskCount {
    Auto,
    Fixed(u32),
}

/// Why a task's identity cannot be worked out; each says what to set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskIdError {
    #[error("--tasks {0:?}: give the number of tasks (1..={MAX_TASKS}) or `auto`")]
    BadCount(String),
    #[error("--task {index} is not below --tasks {count}: task indices run 0..{count}")]
    OutOfRange { index: u32, count: u32 },
    #[error("--tasks auto takes the task index from the Slurm job array; drop --task, or give --tasks M")]
    AutoWithIndex,
    #[error("--tasks auto: not inside a Slurm job array ({0} is not set); submit with sbatch --array=0-<M-1>, or give --tasks M --task K")]
    NotInArray(&'static str),
    #[error("{var}={value:?} is not a task index (a whole number)")]
    NotANumber { var: &'static str, value: String },
    #[error("the Slurm array has a step (SLURM_ARRAY_TASK_STEP={0}, e.g. --array=0-15:4): its task ids are not contiguous, so they cannot number the tasks; submit --array=0-<M-1> instead")]
    SlurmStep(u32),
    #[error("the Slurm array's ids are not contiguous (SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_MAX={max}, SLURM_ARRAY_TASK_COUNT={count}); submit --array=0-<M-1> instead")]
    SlurmGaps { min: u32, max: u32, count: u32 },
    #[error("--tasks {given}, but the Slurm array has {array} tasks (SLURM_ARRAY_TASK_COUNT); use --tasks auto or the array's size")]
    SlurmCountDiffers { given: u32, array: u32 },
    #[error("{var}={index} is not below --tasks {count}: the array or Job has more tasks than --tasks says")]
    EnvOutOfRange {
        var: &'static str,
        index: u32,
        count: u32,
    },
    #[error("--tasks {0} without --task: no task index found (none of JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, SLURM_ARRAY_TASK_ID is set); pass --task K, or run inside an Indexed Job or array")]
    NoIndex(u32),
}

/// Parses `--tasks`.
pub fn parse_task_count(text: &str) -> Result<TaskCount, TaskIdError> {
    if text.trim() == "auto" {
        return Ok(TaskCount::Auto);
    }
    match text.trim().parse::<u32>() {
        Ok(m) if (1..=MAX_TASKS).contains(&m) => Ok(TaskCount::Fixed(m)),
        _ => Err(TaskIdError::BadCount(text.to_string())),
    }
}

/// This process's task from `--tasks`, `--task` and the environment (`env` looks a variable
/// up; the plan passes the process environment, tests a map). `--tasks auto`: M =
/// `SLURM_ARRAY_TASK_COUNT`, K = `SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN`. `--tasks M`
/// without `--task`: K from `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job), else
/// `AWS_BATCH_JOB_ARRAY_INDEX`, else the Slurm variables.
pub fn resolve(
    count: TaskCount,
    task: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TaskSlice, TaskIdError> {
    let number = |var: &'static str| -> Result<Option<u32>, TaskIdError> {
        match env(var) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map(Some)
                .map_err(|_| TaskIdError::NotANumber { var, value: v }),
        }
    };
    // (count, index) of a Slurm array task, when this is one.
    let slurm = || -> Result<Option<(u32, u32)>, TaskIdError> {
        let Some(id) = number("SLURM_ARRAY_TASK_ID")? else {
            return Ok(None);
        };
        if let Some(step) = number("SLURM_ARRAY_TASK_STEP")?.filter(|&s| s != 1) {
            return Err(TaskIdError::SlurmStep(step));
        }
        let count = number("SLURM_ARRAY_TASK_COUNT")?
            .ok_or(TaskIdError::NotInArray("SLURM_ARRAY_TASK_COUNT"))?;
        let min = number("SLURM_ARRAY_TASK_MIN")?
            .ok_or(TaskIdError::NotInArray("SLURM_ARRAY_TASK_MIN"))?;
        let max = number("SLURM_ARRAY_TASK_MAX")?.unwrap_or(min + count.saturating_sub(1));
        if max < min || max - min + 1 != count || id < min || id > max {
            return Err(TaskIdError::SlurmGaps { min, max, count });
        }
        Ok(Some((count, id - min)))
    };
    let (index, count, var) = match (count, task) {
        (TaskCount::Auto, Some(_)) => return Err(TaskIdError::AutoWithIndex),
        (TaskCount::Auto, None) => {
            let (m, k) = slurm()?.ok_or(TaskIdError::NotInArray("SLURM_ARRAY_TASK_ID"))?;
            if m == 0 || m > MAX_TASKS {
                return Err(TaskIdError::BadCount(m.to_string()));
            }
            (k, m, "SLURM_ARRAY_TASK_ID")
        }
        (TaskCount::Fixed(m), Some(k)) => (k, m, "--task"),
        (TaskCount::Fixed(m), None) => {
            if let Some(k) = number("JOB_COMPLETION_INDEX")? {
                (k, m, "JOB_COMPLETION_INDEX")
            } else if let Some(k) = number("AWS_BATCH_JOB_ARRAY_INDEX")? {
                (k, m, "AWS_BATCH_JOB_ARRAY_INDEX")
            } else if let Some((array, k)) = slurm()? {
                if array != m {
                    return Err(TaskIdError::SlurmCountDiffers { given: m, array });
                }
                (k, m, "SLURM_ARRAY_TASK_ID")
            } else {
                return Err(TaskIdError::NoIndex(m));
            }
        }
    };
    if index >= count {
        return Err(if var == "--task" {
            TaskIdError::OutOfRange { index, count }
        } else {
            TaskIdError::EnvOutOfRange { var, index, count }
        });
    }
    Ok(TaskSlice { index, count })
}

/// What stops a task from using OUT; each names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {index} of {count} is already running on this folder (another process holds {lock}); two tasks with the same index would write the same shards: give each task its own --task, or wait for the other to finish")]
    AlreadyRunning {
        index: u32,
        count: u32,
        lock: PathBuf,
    },
    #[error("a task of another run with {count} tasks is writing this folder (it holds {lock}); one folder takes one task-mode run at a time")]
    OtherRun { count: u32, lock: PathBuf },
    #[error("{path} was written with other options (this run vs that part: {diff}); rerun with those, or pass --overwrite to start this task over")]
    OtherOptions { path: PathBuf, diff: String },
    #[error("{path}: {reason}; pass --overwrite to start this task over")]
    DamagedPart { path: PathBuf, reason: String },
    #[error("{0}: holds the output of `dsprep presize` of a COCO folder, not shards; pick another folder")]
    PresizeFolder(PathBuf),
    #[error("{0}: is a symbolic link or not a plain file/folder; dsprep follows no links inside its output folder: remove it")]
    NotPlain(PathBuf),
}

/// Where a convert run keeps its outputs: the whole folder, or one task's share of it.
#[derive(Debug)]
pub enum ConvertTarget {
    Whole(OutputDir),
    Task(TaskOutput),
}

impl ConvertTarget {
    /// Opens OUT for the run: [`OutputDir::open`] for a whole run, [`TaskOutput::open`] in task
    /// mode.
    pub fn open(
        out: &Path,
        mode: OutputMode,
        task: Option<TaskSlice>,
        options: &ManifestOptions,
    ) -> Result<ConvertTarget, JobError> {
        Ok(match task {
            None => ConvertTarget::Whole(OutputDir::open(out, mode)?),
            Some(t) => ConvertTarget::Task(TaskOutput::open(out, mode, t, options)?),
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            ConvertTarget::Whole(d) => d.path(),
            ConvertTarget::Task(t) => &t.path,
        }
    }

    /// The task this run is, in task mode.
    pub fn task(&self) -> Option<TaskSlice> {
        match self {
            ConvertTarget::Whole(_) => None,
            ConvertTarget::Task(t) => Some(t.slice),
        }
    }

    /// Whether this run writes shard `s` (of any split): all of them, or the task's.
    pub fn owns(&self, shard: usize) -> bool {
        self.task().is_none_or(|t| t.owns(shard))
    }

    /// The manifest whose finished shards may be kept: the folder's on `--resume`, the task's
    /// own earlier part in task mode (a re-run task always resumes).
    pub fn resumable_shards(&self) -> Option<&Manifest> {
        match self {
            ConvertTarget::Whole(d) => d.resumable_shards(),
            ConvertTarget::Task(t) => t.previous.as_ref(),
        }
    }

    /// The folder's earlier manifest, whichever kind (whole runs only).
    pub fn previous(&self) -> Option<&FolderManifest> {
        match self {
            ConvertTarget::Whole(d) => d.previous(),
            ConvertTarget::Task(_) => None,
        }
    }

    /// Entries `--overwrite` left in place because dsprep did not write them.
    pub fn left_alone(&self) -> &[String] {
        match self {
            ConvertTarget::Whole(d) => d.left_alone(),
            ConvertTarget::Task(_) => &[],
        }
    }

    /// The whole plan is known: every split's name and shard count. A task records the counts
    /// in its part and, with `--overwrite`, clears what an earlier output left that this run
    /// will not write over (see [`TaskOutput::planned`]).
    pub fn planned(&self, splits: &[(String, usize)]) -> Result<(), JobError> {
        match self {
            ConvertTarget::Whole(_) => Ok(()),
            ConvertTarget::Task(t) => t.planned(splits),
        }
    }

    /// Stores the manifest of a run in progress (after every finished shard): `manifest.json`,
    /// or the task's part.
    pub fn store(&self, m: &Manifest) -> Result<(), ShardError> {
        match self {
            ConvertTarget::Whole(d) => m.store(d.path()),
            ConvertTarget::Task(t) => t.part(m).store(&t.tasks_dir(), false),
        }
    }

    /// Stores the final manifest (`complete: true`), fsynced when `durable`.
    pub fn store_final(&self, m: &Manifest, durable: bool) -> Result<(), ShardError> {
        match self {
            ConvertTarget::Whole(d) if durable => m.store_durable(d.path()),
            ConvertTarget::Whole(d) => m.store(d.path()),
            ConvertTarget::Task(t) => t.part(m).store(&t.tasks_dir(), durable),
        }
    }
}

/// One task's hold on a shared OUT.
#[derive(Debug)]
pub struct TaskOutput {
    path: PathBuf,
    slice: TaskSlice,
    mode: OutputMode,
    /// This task's earlier part, when it is resumed (never with `--overwrite`).
    previous: Option<Manifest>,
    /// Every split's shard count, once planned.
    shard_counts: OnceLock<Vec<u64>>,
    _out_lock: File,
    _task_lock: File,
}

impl TaskOutput {
    /// Creates OUT and `OUT/dsprep-tasks/`, takes the locks (shared on OUT, exclusive on this
    /// task's lock file; a task of a run with another task count still running is refused),
    /// and reads this task's earlier part: kept for resuming when it was made with `options`,
    /// removed with the files it records on `--overwrite`.
    pub fn open(
        out: &Path,
        mode: OutputMode,
        slice: TaskSlice,
        options: &ManifestOptions,
    ) -> Result<TaskOutput, JobError> {
        std::fs::create_dir_all(out).map_err(io(out))?;
        let out_lock = outdir::lock_folder(out, true)?;
        let dir = out.join(TASKS_DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(TaskError::NotPlain(dir).into());
        }
        let lock_path = dir.join(lock_file(slice.index, slice.count));
        let task_lock = exclusive_lock(&lock_path)?.ok_or_else(|| TaskError::AlreadyRunning {
            index: slice.index,
            count: slice.count,
            lock: lock_path.clone(),
        })?;
        for (_, m, path) in part_files(&dir)? {
            let other_lock = m != slice.count && path.extension().is_some_and(|e| e == "lock");
            if other_lock && exclusive_lock(&path)?.is_none() {
                return Err(TaskError::OtherRun {
                    count: m,
                    lock: path,
                }
                .into());
            }
        }
        let part_path = dir.join(part_file(slice.index, slice.count));
        // Only this task writes its part (it holds the lock): a stale partial is ours.
        outdir::remove_entry(&crate::shard::format::partial_path(&part_path))?;
        let previous = match (TaskPart::load(&part_path), mode) {
            (Err(ShardError::Io { source, .. }), _)
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            (Ok(part), OutputMode::Overwrite) => {
                remove_recorded(out, &part.manifest, &|_| true)?;
                outdir::remove_entry(&part_path)?;
                None
            }
            (Err(_), OutputMode::Overwrite) => {
                outdir::remove_entry(&part_path)?;
                None
            }
            (Ok(part), _) if &part.manifest.options != options => {
                return Err(TaskError::OtherOptions {
                    diff: options_diff(options, &part.manifest.options),
                    path: part_path,
                }
                .into())
            }
            (Ok(part), _) => Some(part.manifest),
            (Err(e), _) => {
                return Err(TaskError::DamagedPart {
                    path: part_path,
                    reason: e.to_string(),
                }
                .into())
            }
        };
        Ok(TaskOutput {
            path: out.to_path_buf(),
            slice,
            mode,
            previous,
            shard_counts: OnceLock::new(),
            _out_lock: out_lock,
            _task_lock: task_lock,
        })
    }

    fn tasks_dir(&self) -> PathBuf {
        self.path.join(TASKS_DIR)
    }

    fn part(&self, m: &Manifest) -> TaskPart {
        TaskPart {
            kind: TASK_PART_KIND.into(),
            task: self.slice.index,
            tasks: self.slice.count,
            shard_counts: self.shard_counts.get().cloned().unwrap_or_default(),
            manifest: m.clone(),
        }
    }

    /// Records the plan's shard counts. With `--overwrite`, also clears an earlier output that
    /// is not a part of this run — a whole run's (or merged) `manifest.json` and the parts of a
    /// run with another task count that is not running — removing what those record that no
    /// task of this run writes over (names outside this plan) or that this task writes itself,
    /// then the manifest, its label map and those parts. Shards the plan gives to other tasks
    /// are left to them, so tasks clearing at the same time never remove each other's output.
    ///
    /// In every mode, the partial files of this task's own shards are removed first (as links,
    /// never followed): only this task writes those names, so whatever is there is a crashed
    /// run's, and a sink must never open a link left under such a name.
    fn planned(&self, splits: &[(String, usize)]) -> Result<(), JobError> {
        let _ = self
            .shard_counts
            .set(splits.iter().map(|(_, n)| *n as u64).collect());
        for (name, n) in splits {
            for s in (0..*n).filter(|&s| self.slice.owns(s)) {
                let stem = shard_stem(name, s, *n);
                for f in [ShardFormat::Tfrecord, ShardFormat::Lmdb] {
                    for file in [Some(f.shard_file(&stem)), f.index_file(&stem)]
                        .into_iter()
                        .flatten()
                    {
                        let partial = crate::shard::format::partial_path(&self.path.join(file));
                        outdir::remove_entry(&partial)?;
                    }
                }
            }
        }
        if self.mode != OutputMode::Overwrite {
            return Ok(());
        }
        let mut plan: HashSet<String> = HashSet::new();
        let mut mine: HashSet<String> = HashSet::new();
        for (name, n) in splits {
            for s in 0..*n {
                let stem = shard_stem(name, s, *n);
                for f in [ShardFormat::Tfrecord, ShardFormat::Lmdb] {
                    let names = [Some(f.shard_file(&stem)), f.index_file(&stem)];
                    for file in names.into_iter().flatten() {
                        if self.slice.owns(s) {
                            mine.insert(file.clone());
                        }
                        plan.insert(file);
                    }
                }
            }
        }
        let ours = |file: &str| mine.contains(file) || !plan.contains(file);
        match load_folder_manifest(&self.path)? {
            Some(FolderManifest::Shards(m)) => {
                remove_recorded(&self.path, &m, &ours)?;
                outdir::remove_entry(&self.path.join(LABEL_MAP_FILE))?;
                outdir::remove_entry(&self.path.join(MANIFEST_FILE))?;
            }
            Some(FolderManifest::Presize(_)) => {
                return Err(TaskError::PresizeFolder(self.path.clone()).into())
            }
            None => {}
        }
        let dir = self.tasks_dir();
        for (_, m, path) in part_files(&dir)? {
            if m == self.slice.count || path.extension().is_some_and(|e| e == "lock") {
                continue;
            }
            let lock = path.with_extension("lock");
            if lock.exists() && exclusive_lock(&lock)?.is_none() {
                return Err(TaskError::OtherRun { count: m, lock }.into());
            }
            if let Ok(part) = TaskPart::load(&path) {
                remove_recorded(&self.path, &part.manifest, &ours)?;
            }
            outdir::remove_entry(&path)?;
            outdir::remove_entry(&lock)?;
        }
        Ok(())
    }
}

/// The options that differ, as the manifest spells them: `labels: "contiguous" vs "coco"`.
pub fn options_diff(now: &ManifestOptions, before: &ManifestOptions) -> String {
    let (a, b) = (serde_json::to_value(now), serde_json::to_value(before));
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
        return format!("{now:?} vs {before:?}");
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let null = serde_json::Value::Null;
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.unwrap_or(&null).to_string();
            format!("{k}: {} vs {}", show(a.get(k)), show(b.get(k)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(task, tasks, path)` of every part and lock file in `dir` (a missing folder has none);
/// entries that are not plain files (links above all) are left out: nothing is read through
/// them.
pub fn part_files(dir: &Path) -> Result<Vec<(u32, u32, PathBuf)>, JobError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e).into()),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let plain = e.file_type().is_ok_and(|t| t.is_file());
        if let Some((k, m, _)) = parse_part_name(&name).filter(|_| plain) {
            out.push((k, m, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes the shards and indexes `m` records (plain names inside `out` only) that `keep_out`
/// says are this run's to remove.
fn remove_recorded(out: &Path, m: &Manifest, ours: &dyn Fn(&str) -> bool) -> Result<(), JobError> {
    let refs = m
        .splits
        .iter()
        .flat_map(|s| &s.shards)
        .flat_map(|s| std::iter::once(s.info.file.as_str()).chain(s.info.index.as_deref()));
    for name in refs {
        if crate::shard::manifest::plain_name(name, &out.join(MANIFEST_FILE)).is_ok() && ours(name)
        {
            outdir::remove_entry(&out.join(name))?;
        }
    }
    Ok(())
}

/// An exclusive lock on `path` (created if missing); `None` when another process holds it.
/// A link under that name is refused, never followed.
fn exclusive_lock(path: &Path) -> Result<Option<File>, JobError> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(TaskError::NotPlain(path.to_path_buf()).into());
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(path)(e).into()),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutDirError + '_ {
    move |source| OutDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn slurm(id: &str, min: &str, max: &str, count: &str) -> Vec<(&'static str, String)> {
        vec![
            ("SLURM_ARRAY_TASK_ID", id.into()),
            ("SLURM_ARRAY_TASK_MIN", min.into()),
            ("SLURM_ARRAY_TASK_MAX", max.into()),
            ("SLURM_ARRAY_TASK_COUNT", count.into()),
        ]
    }

    fn run(
        count: &str,
        task: Option<u32>,
        vars: &[(&str, String)],
    ) -> Result<TaskSlice, TaskIdError> {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        resolve(parse_task_count(count)?, task, &env(&vars))
    }

    fn slice(index: u32, count: u32) -> TaskSlice {
        TaskSlice { index, count }
    }

    #[test]
    fn explicit_task_and_range() {
        assert_eq!(run("4", Some(3), &[]), Ok(slice(3, 4)));
        assert_eq!(
            run("4", Some(4), &[]),
            Err(TaskIdError::OutOfRange { index: 4, count: 4 })
        );
        assert!(matches!(
            run("0", Some(0), &[]),
            Err(TaskIdError::BadCount(_))
        ));
        assert!(matches!(run("x", None, &[]), Err(TaskIdError::BadCount(_))));
        assert!(matches!(
            run("100000", None, &[]),
            Err(TaskIdError::BadCount(_))
        ));
        // An explicit --task wins over the environment.
        assert_eq!(
            run("4", Some(1), &[("JOB_COMPLETION_INDEX", "2".into())]),
            Ok(slice(1, 4))
        );
    }

    #[test]
    fn auto_takes_the_slurm_array_and_refuses_steps_and_gaps() {
        assert_eq!(
            run("auto", None, &slurm("7", "5", "8", "4")),
            Ok(slice(2, 4))
        );
        let mut stepped = slurm("4", "0", "12", "4");
        stepped.push(("SLURM_ARRAY_TASK_STEP", "4".into()));
        let e = run("auto", None, &stepped).unwrap_err();
        assert_eq!(e, TaskIdError::SlurmStep(4));
        assert!(e.to_string().contains("0-15:4"), "{e}");
        let mut unit = slurm("1", "0", "3", "4");
        unit.push(("SLURM_ARRAY_TASK_STEP", "1".into()));
        assert_eq!(run("auto", None, &unit), Ok(slice(1, 4)));
        // --array=1,3,5: three tasks spread over 1..5.
        assert!(matches!(
            run("auto", None, &slurm("3", "1", "5", "3")),
            Err(TaskIdError::SlurmGaps { .. })
        ));
        assert_eq!(
            run("auto", None, &[]),
            Err(TaskIdError::NotInArray("SLURM_ARRAY_TASK_ID"))
        );
        assert_eq!(run("auto", Some(1), &[]), Err(TaskIdError::AutoWithIndex));
        assert!(matches!(
            run("auto", None, &slurm("x", "0", "3", "4")),
            Err(TaskIdError::NotANumber {
                var: "SLURM_ARRAY_TASK_ID",
                ..
            })
        ));
    }

    #[test]
    fn fixed_count_takes_the_index_from_the_engine() {
        let k8s = [("JOB_COMPLETION_INDEX", "2".to_string())];
        assert_eq!(run("3", None, &k8s), Ok(slice(2, 3)));
        let aws = [("AWS_BATCH_JOB_ARRAY_INDEX", "1".to_string())];
        assert_eq!(run("3", None, &aws), Ok(slice(1, 3)));
        assert_eq!(run("4", None, &slurm("3", "0", "3", "4")), Ok(slice(3, 4)));
        assert_eq!(
            run("8", None, &slurm("3", "0", "3", "4")),
            Err(TaskIdError::SlurmCountDiffers { given: 8, array: 4 })
        );
        assert_eq!(
            run("2", None, &k8s),
            Err(TaskIdError::EnvOutOfRange {
                var: "JOB_COMPLETION_INDEX",
                index: 2,
                count: 2
            })
        );
        assert_eq!(run("2", None, &[]), Err(TaskIdError::NoIndex(2)));
    }

    #[test]
    fn tasks_share_the_folder_lock_that_whole_runs_and_merges_take_alone() {
        let d = tempfile::tempdir().unwrap();
        let a = outdir::lock_folder(d.path(), true).unwrap();
        let b = outdir::lock_folder(d.path(), true).unwrap();
        let e = OutputDir::open(d.path(), OutputMode::Fresh).unwrap_err();
        assert!(matches!(e, OutDirError::Locked(_)), "{e}");
        assert!(outdir::lock_folder(d.path(), false).is_err());
        drop((a, b));
        let whole = outdir::lock_folder(d.path(), false).unwrap();
        assert!(outdir::lock_folder(d.path(), true).is_err());
        drop(whole);
    }

    #[test]
    fn a_task_output_folder_may_hold_other_tasks_outputs_only() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        let splits = ["train2017".to_string()];
        for f in [
            "train2017-00003-of-00016.tfrecord",
            "train2017-00003-of-00016.idx",
            "train2017-00004-of-00016.tfrecord.partial",
            "train2017-00005-of-00016.lmdb",
            TASKS_DIR,
        ] {
            std::fs::create_dir_all(out.join(f)).unwrap();
        }
        let mode = outdir::task_output_mode(out, false, &splits).unwrap();
        assert_eq!(mode, OutputMode::Fresh);
        for foreign in [
            "val-00000-of-00001.tfrecord",
            "manifest.json",
            "train2017-1-of-2.idx",
        ] {
            std::fs::write(out.join(foreign), b"x").unwrap();
            let e = outdir::task_output_mode(out, false, &splits).unwrap_err();
            assert!(e.to_string().contains(foreign), "{e}");
            assert_eq!(
                outdir::task_output_mode(out, true, &splits).unwrap(),
                OutputMode::Overwrite
            );
            std::fs::remove_file(out.join(foreign)).unwrap();
        }
    }

    #[test]
    fn shard_ownership_is_modulo() {
        let t = slice(1, 3);
        let owned: Vec<usize> = (0..8).filter(|&s| t.owns(s)).collect();
        assert_eq!(owned, [1, 4, 7]);
    }
}
