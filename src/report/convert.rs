//! The `convert` summary: one Serialize struct for both the terminal table and `--json`.

use crate::jobs::convert::ConvertOutcome;
use crate::jobs::tasks::TaskSlice;
use crate::shard::manifest::SplitEntry;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub name: String,
    pub images: u64,
    pub records: u64,
    pub skipped: u64,
    pub reencoded: u64,
    pub without_annotations: u64,
    pub size_mismatch: u64,
    pub boxes_kept: u64,
    pub boxes_clipped: u64,
    pub boxes_dropped: u64,
    pub annotations_unknown_image: u64,
    pub annotations_unknown_category: u64,
    pub shards: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    pub output: String,
    pub format: String,
    pub splits: Vec<SplitSummary>,
    pub images: u64,
    pub records: u64,
    pub skipped: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub images_per_sec: f64,
    pub mb_per_sec: f64,
    /// Entries of the output folder that `--overwrite` left in place (dsprep did not write
    /// them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<String>,
    /// Task mode: which task this was; the counts are then its shards' only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskSlice>,
}

impl SplitSummary {
    /// A split's summary from its manifest entry.
    pub fn of(s: &SplitEntry) -> Self {
        SplitSummary {
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
        }
    }
}

impl ConvertReport {
    /// The report of a finished run, from its manifest.
    pub fn from_outcome(o: &ConvertOutcome) -> Self {
        let splits: Vec<SplitSummary> = o
            .manifest
            .splits
            .iter()
            .map(|s| {
                let mut sum = SplitSummary::of(s);
                if o.task.is_some() {
                    // A task went through its own shards' images only.
                    sum.images = sum.records + sum.skipped;
                }
                sum
            })
            .collect();
        let mut r = ConvertReport::new(
            o.out_dir.display().to_string(),
            o.manifest.options.format.name().to_string(),
            splits,
            o.seconds,
        );
        r.left_alone = o.left_alone.clone();
        r.task = o.task;
        r
    }

    pub fn new(output: String, format: String, splits: Vec<SplitSummary>, seconds: f64) -> Self {
        let images = splits.iter().map(|s| s.images).sum();
        let records = splits.iter().map(|s| s.records).sum();
        let skipped = splits.iter().map(|s| s.skipped).sum();
        let bytes = splits.iter().map(|s| s.bytes).sum();
        let secs = seconds.max(1e-9);
        ConvertReport {
            output,
            format,
            splits,
            images,
            records,
            skipped,
            bytes,
            seconds,
            images_per_sec: images as f64 / secs,
            mb_per_sec: bytes as f64 / 1e6 / secs,
            left_alone: Vec::new(),
            task: None,
        }
    }

    /// Human-readable table (stderr-friendly, no colours).
    pub fn render_table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<14} {:>8} {:>8} {:>7} {:>9} {:>7} {:>8} {:>8} {:>8} {:>7} {:>10}",
            "split",
            "images",
            "records",
            "skipped",
            "reencoded",
            "no-ann",
            "boxes",
            "clipped",
            "dropped",
            "shards",
            "MB"
        );
        for s in &self.splits {
            let _ = writeln!(
                t,
                "{:<14} {:>8} {:>8} {:>7} {:>9} {:>7} {:>8} {:>8} {:>8} {:>7} {:>10.1}",
                s.name,
                s.images,
                s.records,
                s.skipped,
                s.reencoded,
                s.without_annotations,
                s.boxes_kept + s.boxes_clipped,
                s.boxes_clipped,
                s.boxes_dropped,
                s.shards,
                s.bytes as f64 / 1e6
            );
        }
        let _ = writeln!(
            t,
            "{} records ({} skipped) in {:.2} s: {:.0} images/s, {:.1} MB/s -> {} ({})",
            self.records,
            self.skipped,
            self.seconds,
            self.images_per_sec,
            self.mb_per_sec,
            self.output,
            self.format
        );
        if let Some(task) = self.task {
            let _ = writeln!(
                t,
                "task {} of {}: its shards and {}/dsprep-tasks/part-{:05}-of-{:05}.json; run `dsprep merge {}` once every task has finished",
                task.index, task.count, self.output, task.index, task.count, self.output
            );
        }
        if !self.left_alone.is_empty() {
            let _ = writeln!(
                t,
                "left in {} (not written by dsprep): {}",
                self.output,
                self.left_alone.join(", ")
            );
        }
        if self.skipped > 0 {
            let _ = writeln!(
                t,
                "skipped images are listed with their reasons in {}/manifest.json",
                self.output
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_table() {
        let s = SplitSummary {
            name: "val".into(),
            images: 10,
            records: 9,
            skipped: 1,
            reencoded: 2,
            without_annotations: 1,
            size_mismatch: 0,
            boxes_kept: 5,
            boxes_clipped: 1,
            boxes_dropped: 2,
            annotations_unknown_image: 0,
            annotations_unknown_category: 0,
            shards: 2,
            bytes: 2_000_000,
        };
        let r = ConvertReport::new("out".into(), "tfrecord".into(), vec![s], 2.0);
        assert_eq!(r.images, 10);
        assert!((r.images_per_sec - 5.0).abs() < 1e-9);
        assert!((r.mb_per_sec - 1.0).abs() < 1e-9);
        let t = r.render_table();
        assert!(t.contains("val"), "{t}");
        assert!(t.contains("manifest.json"), "{t}");
    }
}
