//! The `verify` report: one Serialize struct for the table and `--json`.

use serde::Serialize;
use std::fmt::Write;

pub use crate::jobs::verify::{BadRecord, ShardCheck};

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
            if let (Some(name), Some(id)) = (&p.file_name, p.image_id) {
                let _ = write!(t, " [{name}, id {id}]");
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
