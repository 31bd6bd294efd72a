//! The `verify` report: one Serialize struct for the table and `--json`.

use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadRecord {
    pub shard: String,
    /// Byte offset of the record's length field (TFRecord).
    pub offset: Option<u64>,
    /// Record number within the shard (0-based).
    pub record: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardCheck {
    pub shard: String,
    pub records_expected: u64,
    pub records_read: u64,
    pub bad: Vec<BadRecord>,
}

impl ShardCheck {
    pub fn new(shard: &str, expected: u64) -> Self {
        ShardCheck {
            shard: shard.to_string(),
            records_expected: expected,
            records_read: 0,
            bad: Vec::new(),
        }
    }

    /// Adds the count check against the manifest.
    pub fn finish(&mut self) {
        if self.records_read != self.records_expected {
            self.bad.push(BadRecord {
                shard: self.shard.clone(),
                offset: None,
                record: None,
                reason: format!(
                    "manifest lists {} records, shard has {}",
                    self.records_expected, self.records_read
                ),
            });
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub dir: String,
    pub shards: u64,
    pub records: u64,
    pub bad_records: u64,
    pub ok: bool,
    pub problems: Vec<BadRecord>,
}

impl VerifyReport {
    pub fn new(dir: String, checks: Vec<ShardCheck>) -> Self {
        let problems: Vec<BadRecord> = checks.iter().flat_map(|c| c.bad.clone()).collect();
        VerifyReport {
            dir,
            shards: checks.len() as u64,
            records: checks.iter().map(|c| c.records_read).sum(),
            bad_records: problems.len() as u64,
            ok: problems.is_empty(),
            problems,
        }
    }

    pub fn render_table(&self) -> String {
        let mut t = String::new();
        for p in &self.problems {
            let _ = write!(t, "BAD {}", p.shard);
            if let Some(o) = p.offset {
                let _ = write!(t, " @ offset {o}");
            }
            if let Some(r) = p.record {
                let _ = write!(t, " (record {r})");
            }
            let _ = writeln!(t, ": {}", p.reason);
        }
        let _ = writeln!(
            t,
            "{}: {} shards, {} records, {}",
            self.dir,
            self.shards,
            self.records,
            if self.ok {
                "all OK".to_string()
            } else {
                format!("{} problems", self.problems.len())
            }
        );
        t
    }
}
