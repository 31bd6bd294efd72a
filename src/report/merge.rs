//! The `merge` summary: one Serialize struct for the terminal table and `--json`.

use super::convert::SplitSummary;
use crate::jobs::merge::MergeOutcome;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    pub output: String,
    /// How many task parts were merged (0 when the folder was already merged).
    pub tasks: u32,
    pub already_merged: bool,
    pub splits: Vec<SplitSummary>,
    pub images: u64,
    pub records: u64,
    pub skipped: u64,
    pub shards: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Entries of `dsprep-tasks/` that dsprep did not write (the folder was kept for them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<String>,
}

impl MergeReport {
    pub fn from_outcome(o: &MergeOutcome) -> Self {
        let splits: Vec<SplitSummary> = o.manifest.splits.iter().map(SplitSummary::of).collect();
        MergeReport {
            output: o.out_dir.display().to_string(),
            tasks: o.tasks,
            already_merged: o.already_merged,
            images: splits.iter().map(|s| s.images).sum(),
            records: splits.iter().map(|s| s.records).sum(),
            skipped: splits.iter().map(|s| s.skipped).sum(),
            shards: splits.iter().map(|s| s.shards).sum(),
            bytes: splits.iter().map(|s| s.bytes).sum(),
            splits,
            seconds: o.seconds,
            left_alone: o.left_alone.clone(),
        }
    }

    pub fn render_table(&self) -> String {
        let mut t = String::new();
        if self.already_merged {
            let _ = writeln!(
                t,
                "{}: already merged (manifest.json is complete, no task parts left); nothing to do",
                self.output
            );
        } else {
            let _ = writeln!(
                t,
                "merged {} tasks -> {}/manifest.json",
                self.tasks, self.output
            );
        }
        for s in &self.splits {
            let _ = writeln!(
                t,
                "  {:<14} {:>8} images {:>8} records {:>7} skipped {:>6} shards {:>10.1} MB",
                s.name,
                s.images,
                s.records,
                s.skipped,
                s.shards,
                s.bytes as f64 / 1e6
            );
        }
        let _ = writeln!(
            t,
            "{} records ({} skipped) in {} shards, {:.1} MB",
            self.records,
            self.skipped,
            self.shards,
            self.bytes as f64 / 1e6
        );
        if !self.left_alone.is_empty() {
            let _ = writeln!(
                t,
                "left in {}/dsprep-tasks (not written by dsprep): {}",
                self.output,
                self.left_alone.join(", ")
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_pinned() {
        let r = MergeReport {
            output: "out".into(),
            tasks: 3,
            already_merged: false,
            splits: vec![],
            images: 10,
            records: 9,
            skipped: 1,
            shards: 4,
            bytes: 100,
            seconds: 0.5,
            left_alone: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "already_merged",
                "bytes",
                "images",
                "output",
                "records",
                "seconds",
                "shards",
                "skipped",
                "splits",
                "tasks"
            ]
        );
        assert!(r.render_table().contains("merged 3 tasks"));
    }
}
