//! Reading LMDB shards back (for `verify` and the throughput readers): record entries in key
//! order, metadata (`__*`) entries checked against the record count.

use super::ShardError;
use lmdb::{Cursor, Environment, EnvironmentFlags, Transaction};
use std::path::Path;

fn lmdb_err(path: &Path, e: lmdb::Error) -> ShardError {
    ShardError::Lmdb {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Calls `f(record_number, key, value)` for every record (non-metadata) entry in key order and
/// returns how many there were. Fails when `__len__` disagrees with the entries found.
pub fn for_each_record<F>(dir: &Path, mut f: F) -> Result<u64, ShardError>
where
    F: FnMut(u64, &[u8], &[u8]),
{
    let env = Environment::new()
        .set_flags(EnvironmentFlags::READ_ONLY | EnvironmentFlags::NO_LOCK)
        .set_max_readers(8)
        .open(dir)
        .map_err(|e| lmdb_err(dir, e))?;
    let db = env.open_db(None).map_err(|e| lmdb_err(dir, e))?;
    let txn = env.begin_ro_txn().map_err(|e| lmdb_err(dir, e))?;
    let mut cursor = txn.open_ro_cursor(db).map_err(|e| lmdb_err(dir, e))?;
    let mut n = 0u64;
    let mut declared_len: Option<u64> = None;
    for item in cursor.iter_start() {
        let (key, value) = item.map_err(|e| lmdb_err(dir, e))?;
        if key.starts_with(b"__") {
            if key == b"__len__" {
                declared_len = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            continue;
        }
        f(n, key, value);
        n += 1;
    }
    match declared_len {
        Some(len) if len == n => Ok(n),
        Some(len) => Err(ShardError::Lmdb {
            path: dir.to_path_buf(),
            message: format!("__len__ says {len} records, found {n}"),
        }),
        None => Err(ShardError::Lmdb {
            path: dir.to_path_buf(),
            message: "no readable __len__ entry (not a finished dsprep shard?)".into(),
        }),
    }
}
