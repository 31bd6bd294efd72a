//! The `presize` summary: one Serialize struct for the terminal table and `--json`, the same
//! for a COCO folder and a shard folder.

use crate::jobs::presize::PresizeOutcome;
use crate::shard::manifest::PresizeSplit;
use serde::Serialize;
use std::fmt::Write;

/// Failures listed in the table before "… more in manifest.json".
const TABLE_FAILURES: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct PresizeReport {
    pub output: String,
    pub images: u64,
    pub resized: u64,
    pub passed_through: u64,
    pub rewritten_same_size: u64,
    pub resumed: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    pub images_per_second: f64,
    pub splits: Vec<PresizeSplit>,
    /// Entries of the output folder that `--overwrite` left in place (dsprep did not write
    /// them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<String>,
}

impl PresizeReport {
    pub fn from_outcome(o: &PresizeOutcome) -> Self {
        let sum = |f: fn(&PresizeSplit) -> u64| o.splits.iter().map(f).sum::<u64>();
        let images = sum(|s| s.images);
        PresizeReport {
            output: o.out_dir.display().to_string(),
            images,
            resized: sum(|s| s.resized),
            passed_through: sum(|s| s.passed_through),
            rewritten_same_size: sum(|s| s.rewritten_same_size),
            resumed: o.resumed,
            failed: sum(|s| s.failed),
            bytes_in: sum(|s| s.bytes_in),
            bytes_out: sum(|s| s.bytes_out),
            seconds: o.seconds,
            images_per_second: images as f64 / o.seconds.max(1e-9),
            splits: o.splits.clone(),
            left_alone: o.left_alone.clone(),
        }
    }

    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "presize → {}\n  images {}  resized {}  passed through {}  rewritten same size {}  resumed {}  failed {}\n  {:.1} MB → {:.1} MB in {:.1} s ({:.1} images/s)\n",
            self.output,
            self.images,
            self.resized,
            self.passed_through,
            self.rewritten_same_size,
            self.resumed,
            self.failed,
            self.bytes_in as f64 / 1e6,
            self.bytes_out as f64 / 1e6,
            self.seconds,
            self.images_per_second
        );
        for sp in &self.splits {
            for f in sp.failures.iter().take(TABLE_FAILURES) {
                let _ = writeln!(s, "  FAILED {}/{}: {}", sp.name, f.file_name, f.reason);
            }
            if sp.failures.len() > TABLE_FAILURES {
                let _ = writeln!(
                    s,
                    "  ... {} more in manifest.json",
                    sp.failures.len() - TABLE_FAILURES
                );
            }
        }
        if !self.left_alone.is_empty() {
            let _ = writeln!(
                s,
                "  left in {} (not written by dsprep): {}",
                self.output,
                self.left_alone.join(", ")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::manifest::ImageNote;

    #[test]
    fn totals_and_failures_in_the_table() {
        let split = PresizeSplit {
            name: "val".into(),
            images: 30,
            resized: 5,
            failed: 25,
            failures: (0..25)
                .map(|i| ImageNote {
                    file_name: format!("{i}.jpg"),
                    image_id: i,
                    reason: "bad".into(),
                })
                .collect(),
            ..Default::default()
        };
        let o = PresizeOutcome {
            out_dir: "out".into(),
            splits: vec![split.clone(), split],
            resumed: 2,
            seconds: 2.0,
            left_alone: vec!["keep.txt".into()],
        };
        let r = PresizeReport::from_outcome(&o);
        assert_eq!((r.images, r.resized, r.failed, r.resumed), (60, 10, 50, 2));
        assert!((r.images_per_second - 30.0).abs() < 1e-9);
        let t = r.render_table();
        assert!(t.contains("FAILED val/0.jpg: bad"), "{t}");
        assert!(t.contains("... 5 more in manifest.json"), "{t}");
        assert!(t.contains("keep.txt"), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["failed"], 50);
        assert_eq!(j["left_alone"][0], "keep.txt");
    }
}
