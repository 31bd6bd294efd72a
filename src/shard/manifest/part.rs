//! A task's part of the manifest (`convert --tasks M --task K`), and the folder the parts live
//! in until `dsprep merge` joins them into `manifest.json`.
//!
//! Layout: `OUT/dsprep-tasks/part-KKKKK-of-MMMMM.json` (this type) beside
//! `part-KKKKK-of-MMMMM.lock` (held by the running task). A part holds the whole run's manifest
//! header — options, categories, every split's annotation file, hash and counts, which every task
//! computes alike — with only the shards task K owns (shard `s` of every split where
//! `s mod M = K`), plus each split's shard count in the whole plan, so the merge knows which
//! shards to expect. Like `manifest.json`, a part is rewritten atomically after every finished
//! shard with `complete: false` (what a re-run of the task resumes from) and a last time with
//! `complete: true`.

use super::Manifest;
use crate::shard::ShardError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The folder inside OUT that holds the tasks' parts and locks (removed by `dsprep merge`).
pub const TASKS_DIR: &str = "dsprep-tasks";
/// The `kind` of a part file.
pub const TASK_PART_KIND: &str = "dsprep-convert-task";
/// Task indices and counts are written with this many digits (as shard numbers are).
pub const MAX_TASKS: u32 = 99_999;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskPart {
    /// Always [`TASK_PART_KIND`].
    pub kind: String,
    /// K: this task's index, `0..tasks`.
    pub task: u32,
    /// M: how many tasks share the run.
    pub tasks: u32,
    /// Every split's shard count in the whole plan (the same in every task's part).
    pub shard_counts: Vec<u64>,
    /// The run's manifest with this task's shards only (in shard order once complete);
    /// `complete` says whether this task finished all of them.
    pub manifest: Manifest,
}

/// `part-00003-of-00008.json`.
pub fn part_file(task: u32, tasks: u32) -> String {
    format!("part-{task:05}-of-{tasks:05}.json")
}

/// `part-00003-of-00008.lock`: the file a running task holds locked.
pub fn lock_file(task: u32, tasks: u32) -> String {
    format!("part-{task:05}-of-{tasks:05}.lock")
}

/// `(task, tasks, is_lock)` of a part or lock file name; `None` for any other name.
pub fn parse_part_name(name: &str) -> Option<(u32, u32, bool)> {
    let (stem, lock) = match (name.strip_suffix(".json"), name.strip_suffix(".lock")) {
        (Some(s), _) => (s, false),
        (_, Some(s)) => (s, true),
        _ => return None,
    };
    let rest = stem.strip_prefix("part-")?;
    let (k, m) = rest.split_once("-of-")?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(k) || !digits(m) {
        return None;
    }
    Some((k.parse().ok()?, m.parse().ok()?, lock))
}

impl TaskPart {
    /// Reads a part file; anything that is not one is corrupt (named, with what is wrong).
    pub fn load(path: &Path) -> Result<TaskPart, ShardError> {
        let bytes = std::fs::read(path).map_err(|source| ShardError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let part: TaskPart = serde_json::from_slice(&bytes).map_err(|e| ShardError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!("not a dsprep task part: {e}"),
        })?;
        if part.kind != TASK_PART_KIND {
            return Err(ShardError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: format!("kind is {:?}, not {TASK_PART_KIND:?}", part.kind),
            });
        }
        Ok(part)
    }

    /// Writes the part atomically (temp file + rename) as `dir/part-K-of-M.json`.
    pub fn store(&self, dir: &Path, durable: bool) -> Result<(), ShardError> {
        let path = dir.join(part_file(self.task, self.tasks));
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| ShardError::Corrupt {
            path: path.clone(),
            offset: 0,
            reason: format!("cannot serialise task part: {e}"),
        })?;
        text.push(b'\n');
        crate::shard::atomic::write_atomic(&path, &text, durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip_and_nothing_else_parses() {
        assert_eq!(part_file(3, 8), "part-00003-of-00008.json");
        assert_eq!(parse_part_name(&part_file(3, 8)), Some((3, 8, false)));
        assert_eq!(parse_part_name(&lock_file(0, 1)), Some((0, 1, true)));
        for other in [
            "part-3-of-8.json",
            "part-00003-of-00008.json.partial",
            "manifest.json",
            "part-0000a-of-00008.json",
            "part-00003-00008.json",
        ] {
            assert_eq!(parse_part_name(other), None, "{other}");
        }
    }
}
