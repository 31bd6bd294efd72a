//! LMDB shards (lmdb-rkv): zero-padded keys written in order with APPEND, map grown on demand.
//!
//! Layout of one shard, `<stem>.lmdb/data.mdb` (no `lock.mdb`; open it with
//! `lmdb.open(path, readonly=True, lock=False, readahead=False)` in Python):
//! - records: key = record number as 10 ASCII digits (`"0000000000"`, `"0000000001"`, ...),
//!   value = the serialized `tf.train.Example` (same bytes as the TFRecord payload);
//! - metadata, whose keys start with `_` and so sort after every digit key:
//!   `__format__` = `tf.train.Example`, `__keys__` = the key range as `"<first>-<last>"`
//!   (empty when there are no records), `__len__` = the record count in ASCII decimal.
//!
//! Why it is built this way: a fixed map size is either too small (MapFull after millions of
//! images) or huge (a 1 TB map fails with "Cannot allocate memory" on some systems). The map
//! starts small and doubles between transactions when the next batch would not fit; a MapFull
//! that slips through anyway aborts the batch, grows the map and redoes the batch. `WRITE_MAP` is
//! not used, so the file only ever holds written pages (no sparse map-sized file). Records are
//! committed in batches (copied into one buffer so a batch can be redone). `NO_LOCK` (the
//! writer owns its `.partial` directory) means no reader table and no `lock.mdb`, and LMDB's
//! default of zeroing unused page space makes the file byte-identical between identical runs.
//! Page size is the OS's, so the bytes (not the content) differ between 4 KiB- and 64 KiB-page
//! machines.

use std::path::{Path, PathBuf};

use ::lmdb::{Database, Environment, EnvironmentFlags, Transaction as _, WriteFlags};

use super::source::Flow;

use super::atomic::sync_dir;
use super::format::{partial_path, ShardFormat};
use super::writer::{ShardInfo, ShardSink, SinkOptions};
use super::ShardError;

/// Name of the data file inside a shard directory.
pub use super::format::LMDB_DATA_FILE as DATA_FILE;
/// Metadata keys (all sort after the digit keys).
pub const FORMAT_KEY: &[u8] = b"__format__";
pub const KEYS_KEY: &[u8] = b"__keys__";
pub const LEN_KEY: &[u8] = b"__len__";
/// Value of `__format__`.
pub const FORMAT_VALUE: &[u8] = b"tf.train.Example";
/// Digits in a record key; enough for 10^10 records per shard.
pub const KEY_DIGITS: usize = 10;

/// Initial map size: small enough to never surprise anyone, grown as needed.
const INITIAL_MAP_SIZE: usize = 64 << 20;
/// A batch is committed when it holds this many records...
const BATCH_RECORDS: usize = 256;
/// ...or this many payload bytes. Bounded because a batch is held twice (our copy + LMDB's
/// dirty pages) until commit; 16 MiB keeps a few parallel writers well under the RSS budget
/// while commits stay rare enough not to matter.
const BATCH_BYTES: usize = 16 << 20;

/// Key of record `n`: 10 zero-padded ASCII digits (byte order = numeric order, which APPEND
/// needs). `None` past 9,999,999,999.
pub fn record_key(n: u64) -> Option<[u8; KEY_DIGITS]> {
    if n >= 10_000_000_000 {
        return None;
    }
    let mut k = [b'0'; KEY_DIGITS];
    let mut v = n;
    for slot in k.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    Some(k)
}

fn lmdb_err(path: &Path, what: &str, e: ::lmdb::Error) -> ShardError {
    // liblmdb turns a failed write of its pages into EIO, so a full disk reads as an I/O error.
    let hint = match e {
        ::lmdb::Error::Other(5) => {
            " (liblmdb reports a full output disk this way too: check its free space)"
        }
        _ => "",
    };
    ShardError::Lmdb {
        path: path.to_path_buf(),
        message: format!("{what}: {e}{hint}"),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// LMDB shard writer; see the module docs for the layout.
pub struct LmdbSink {
    /// `None` once closed (finish) so `Drop` knows whether to clean up.
    env: Option<Environment>,
    db: Database,
    out_dir: PathBuf,
    /// `<stem>.lmdb`, relative to `out_dir`.
    name: String,
    partial: PathBuf,
    map_size: usize,
    records: u64,
    /// Payloads of the batch not yet committed, back to back; `ends[i]` closes payload i.
    batch: Vec<u8>,
    ends: Vec<usize>,
    /// Times the map grew (for tests and logs).
    growths: u32,
    opts: SinkOptions,
}

impl LmdbSink {
    /// Creates `<dir>/<stem>.lmdb.partial/` (replacing a stale one from a crashed run).
    pub fn create(dir: &Path, stem: &str, opts: SinkOptions) -> Result<Self, ShardError> {
        Self::with_map_size(dir, stem, INITIAL_MAP_SIZE, opts)
    }

    /// [`LmdbSink::create`] with a chosen initial map size (tests start tiny to exercise growth).
    pub(crate) fn with_map_size(
        dir: &Path,
        stem: &str,
        map_size: usize,
        opts: SinkOptions,
    ) -> Result<Self, ShardError> {
        let name = ShardFormat::Lmdb.shard_file(stem);
        let partial = partial_path(&dir.join(&name));
        // A stale partial folder of a crashed run, or anything else under that name (a link is
        // removed as a link, never followed).
        match std::fs::symlink_metadata(&partial) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?,
            Ok(_) => std::fs::remove_file(&partial).map_err(io_err(&partial))?,
            Err(_) => {}
        }
        std::fs::create_dir(&partial).map_err(io_err(&partial))?;
        let env = Environment::new()
            .set_flags(
                EnvironmentFlags::NO_TLS | EnvironmentFlags::NO_SYNC | EnvironmentFlags::NO_LOCK,
            )
            .set_max_dbs(0)
            .set_map_size(map_size)
            .open(&partial);
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(lmdb_err(&partial, "cannot create environment", e));
            }
        };
        let db = match env.open_db(None) {
            Ok(db) => db,
            Err(e) => {
                drop(env);
                let _ = std::fs::remove_dir_all(&partial);
                return Err(lmdb_err(&partial, "cannot open database", e));
            }
        };
        Ok(LmdbSink {
            env: Some(env),
            db,
            out_dir: dir.to_path_buf(),
            name,
            partial,
            map_size,
            records: 0,
            batch: Vec::new(),
            ends: Vec::new(),
            growths: 0,
            opts,
        })
    }

    fn env(&self) -> Result<&Environment, ShardError> {
        self.env.as_ref().ok_or_else(|| ShardError::Lmdb {
            path: self.partial.clone(),
            message: "environment already closed".into(),
        })
    }

    /// Doubles the map until it has `extra` bytes beyond what is used now.
    fn ensure_room(&mut self, extra: usize) -> Result<(), ShardError> {
        let env = self.env()?;
        let info = env.info().map_err(|e| lmdb_err(&self.partial, "info", e))?;
        let page = env
            .stat()
            .map_err(|e| lmdb_err(&self.partial, "stat", e))?
            .page_size() as usize;
        let used = (info.last_pgno() + 1).saturating_mul(page);
        let mut size = self.map_size;
        while size < used.saturating_add(extra) {
            size = size.saturating_mul(2);
        }
        if size != self.map_size {
            self.set_map_size(size)?;
        }
        Ok(())
    }

    fn set_map_size(&mut self, size: usize) -> Result<(), ShardError> {
        self.env()?
            .set_map_size(size)
            .map_err(|e| lmdb_err(&self.partial, "cannot grow the map", e))?;
        self.map_size = size;
        self.growths += 1;
        Ok(())
    }

    /// Writes the batch in one transaction. On MapFull the transaction is aborted, the map
    /// doubled and the batch redone, so callers never see MapFull.
    fn commit_batch(&mut self) -> Result<(), ShardError> {
        if self.ends.is_empty() {
            return Ok(());
        }
        // Leaf/branch/overflow headers and half-full pages: generous estimate, so the MapFull
        // path below is a safety net rather than the normal way of growing.
        let estimate = self.batch.len() + self.batch.len() / 8 + self.ends.len() * 64 + (1 << 20);
        self.ensure_room(estimate)?;
        let first = self.records - self.ends.len() as u64;
        loop {
            match self.try_put_batch(first) {
                Ok(()) => break,
                Err(::lmdb::Error::MapFull) => {
                    let doubled = self.map_size.saturating_mul(2);
                    self.set_map_size(doubled)?;
                }
                Err(e) => return Err(lmdb_err(&self.partial, "write failed", e)),
            }
        }
        self.batch.clear();
        self.ends.clear();
        Ok(())
    }

    fn try_put_batch(&self, first: u64) -> Result<(), ::lmdb::Error> {
        let env = self.env.as_ref().ok_or(::lmdb::Error::BadTxn)?;
        let mut txn = env.begin_rw_txn()?;
        let mut start = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            let key = record_key(first + i as u64).ok_or(::lmdb::Error::BadValSize)?;
            let value = self
                .batch
                .get(start..end)
                .ok_or(::lmdb::Error::BadValSize)?;
            txn.put(self.db, &key, &value, WriteFlags::APPEND)?;
            start = end;
        }
        // Dropping the transaction on an error above aborts it.
        txn.commit()
    }

    fn put_metadata(&mut self) -> Result<(), ShardError> {
        let keys = match (
            record_key(0),
            self.records.checked_sub(1).and_then(record_key),
        ) {
            (Some(a), Some(b)) => [&a[..], b"-", &b[..]].concat(),
            _ => Vec::new(),
        };
        let len = self.records.to_string();
        let entries: [(&[u8], &[u8]); 3] = [
            (FORMAT_KEY, FORMAT_VALUE),
            (KEYS_KEY, &keys),
            (LEN_KEY, len.as_bytes()),
        ];
        self.ensure_room(1 << 20)?;
        loop {
            let env = self.env()?;
            let result = (|| {
                let mut txn = env.begin_rw_txn()?;
                for (k, v) in entries {
                    txn.put(self.db, &k, &v, WriteFlags::APPEND)?;
                }
                txn.commit()
            })();
            match result {
                Ok(()) => return Ok(()),
                Err(::lmdb::Error::MapFull) => {
                    let doubled = self.map_size.saturating_mul(2);
                    self.set_map_size(doubled)?;
                }
                Err(e) => return Err(lmdb_err(&self.partial, "cannot write metadata", e)),
            }
        }
    }
}

impl ShardSink for LmdbSink {
    fn append_parts(&mut self, parts: &[&[u8]]) -> Result<(), ShardError> {
        if record_key(self.records).is_none() {
            return Err(ShardError::Lmdb {
                path: self.partial.clone(),
                message: "more than 9,999,999,999 records in one shard; use more shards".into(),
            });
        }
        for p in parts {
            self.batch.extend_from_slice(p);
        }
        self.ends.push(self.batch.len());
        self.records += 1;
        if self.ends.len() >= BATCH_RECORDS || self.batch.len() >= BATCH_BYTES {
            self.commit_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<ShardInfo, ShardError> {
        self.commit_batch()?;
        self.put_metadata()?;
        if self.opts.durable {
            self.env()?
                .sync(true)
                .map_err(|e| lmdb_err(&self.partial, "sync failed", e))?;
        }
        // Close the environment before touching its files.
        drop(self.env.take());
        let lock = self.partial.join("lock.mdb");
        if lock.exists() {
            std::fs::remove_file(&lock).map_err(io_err(&lock))?;
        }
        let data = self.partial.join(DATA_FILE);
        let (checksum, bytes) = crate::shard::checksum::checksum_file(&data)?;
        let final_dir = self.out_dir.join(&self.name);
        if final_dir.is_dir() {
            // Only reached when the caller chose to overwrite (the command layer refuses a
            // non-empty output otherwise); a directory cannot be renamed over a non-empty one.
            std::fs::remove_dir_all(&final_dir).map_err(io_err(&final_dir))?;
        }
        std::fs::rename(&self.partial, &final_dir).map_err(io_err(&final_dir))?;
        if self.opts.durable {
            sync_dir(&self.out_dir)?;
        }
        Ok(ShardInfo {
            file: self.name.clone(),
            index: None,
            records: self.records,
            bytes,
            checksum,
        })
    }
}

impl Drop for LmdbSink {
    /// A sink dropped before `finish` (error, panic elsewhere, cancelled run) removes its
    /// partial directory so no half-written shard is left.
    fn drop(&mut self) {
        if let Some(env) = self.env.take() {
            drop(env);
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

/// Calls `f(i, key, value)` for every record of the LMDB shard directory `dir`, in key order,
/// and returns the record count. Metadata entries are not passed to `f` but are checked: keys
/// must run `0000000000, 0000000001, ...` without gaps and `__len__` must match the count.
/// Reads `data.mdb` with the bounds-checked reader ([`super::lmdb_read`]), never through a
/// map, so a damaged file is an error and never a crash. When `f` returns [`Flow::Stop`] the
/// walk ends there (no metadata checks) and the count so far is returned.
pub fn for_each_record<F>(dir: &Path, mut f: F) -> Result<u64, ShardError>
where
    F: FnMut(u64, &[u8], &[u8]) -> Flow,
{
    let corrupt = |e: super::lmdb_read::LmdbReadError| ShardError::Corrupt {
        path: e.path,
        offset: e.offset,
        reason: e.reason,
    };
    let file = super::lmdb_read::LmdbFile::open(&dir.join(DATA_FILE)).map_err(corrupt)?;
    let mut n = 0u64;
    let mut len_value: Option<Vec<u8>> = None;
    let mut out_of_sequence: Option<String> = None;
    let mut stopped = false;
    file.for_each(&mut |key, value| {
        if key.first() == Some(&b'_') {
            if key == LEN_KEY {
                len_value = Some(value.to_vec());
            }
            return Flow::Continue;
        }
        match record_key(n) {
            Some(expected) if key == expected => {}
            Some(expected) => {
                out_of_sequence = Some(format!(
                    "record key {:?} out of sequence (expected {:?}): records missing or foreign keys",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(&expected)
                ));
                return Flow::Stop;
            }
            None => {
                out_of_sequence = Some("more than 9,999,999,999 records".into());
                return Flow::Stop;
            }
        }
        let flow = f(n, key, value);
        n += 1;
        if flow == Flow::Stop {
            stopped = true;
        }
        flow
    })
    .map_err(corrupt)?;
    if let Some(message) = out_of_sequence {
        return Err(ShardError::Lmdb {
            path: dir.to_path_buf(),
            message,
        });
    }
    if stopped {
        return Ok(n);
    }
    match len_value {
        Some(v) if v == n.to_string().as_bytes() => Ok(n),
        Some(v) => Err(ShardError::Lmdb {
            path: dir.to_path_buf(),
            message: format!(
                "__len__ says {:?} but {n} records are present",
                String::from_utf8_lossy(&v)
            ),
        }),
        None => Err(ShardError::Lmdb {
            path: dir.to_path_buf(),
            message: "no __len__ entry (not written by dsprep, or unfinished)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::lmdb::Cursor as _;
    use std::collections::BTreeMap;

    fn payload(i: u64, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
    }

    /// Reads every entry back through lmdb-rkv directly (not through `for_each_record`).
    fn read_all(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let env = Environment::new()
            .set_flags(EnvironmentFlags::READ_ONLY | EnvironmentFlags::NO_LOCK)
            .open(dir)
            .unwrap();
        let db = env.open_db(None).unwrap();
        let txn = env.begin_ro_txn().unwrap();
        let mut cursor = txn.open_ro_cursor(db).unwrap();
        let mut keys_in_order = Vec::new();
        let mut out = BTreeMap::new();
        for item in cursor.iter_start() {
            let (k, v) = item.unwrap();
            keys_in_order.push(k.to_vec());
            out.insert(k.to_vec(), v.to_vec());
        }
        let mut sorted = keys_in_order.clone();
        sorted.sort();
        assert_eq!(keys_in_order, sorted);
        out
    }

    #[test]
    fn keys_are_zero_padded() {
        assert_eq!(&record_key(0).unwrap(), b"0000000000");
        assert_eq!(&record_key(42).unwrap(), b"0000000042");
        assert_eq!(&record_key(9_999_999_999).unwrap(), b"9999999999");
        assert!(record_key(10_000_000_000).is_none());
        assert!(FORMAT_KEY > &b"9999999999"[..] && KEYS_KEY > FORMAT_KEY && LEN_KEY > KEYS_KEY);
    }

    #[test]
    fn writes_readable_shard_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink: Box<dyn ShardSink> =
            Box::new(LmdbSink::create(dir.path(), "s", SinkOptions::default()).unwrap());
        assert!(dir.path().join("s.lmdb.partial").is_dir());
        assert!(!dir.path().join("s.lmdb").exists());
        let n = 600u64; // more than two batches
        for i in 0..n {
            sink.append(&payload(i, (i as usize * 13) % 3000)).unwrap();
        }
        let info = sink.finish().unwrap();
        let shard = dir.path().join("s.lmdb");
        assert!(shard.join("data.mdb").is_file());
        assert!(!shard.join("lock.mdb").exists());
        assert!(!dir.path().join("s.lmdb.partial").exists());
        assert_eq!(info.file, "s.lmdb");
        assert_eq!(info.index, None);
        assert_eq!(info.records, n);
        let (sha, bytes) = crate::shard::checksum::checksum_file(&shard.join("data.mdb")).unwrap();
        assert_eq!((info.checksum.as_str(), info.bytes), (sha.as_str(), bytes));
        let all = read_all(&shard);
        assert_eq!(all.len() as u64, n + 3);
        for i in 0..n {
            assert_eq!(
                all[&record_key(i).unwrap().to_vec()],
                payload(i, (i as usize * 13) % 3000)
            );
        }
        assert_eq!(all[FORMAT_KEY], FORMAT_VALUE);
        assert_eq!(all[KEYS_KEY], b"0000000000-0000000599");
        assert_eq!(all[LEN_KEY], b"600");
        // for_each_record sees exactly the records, in order.
        let mut seen = 0;
        let count = for_each_record(&shard, |i, k, v| {
            assert_eq!(k, record_key(i).unwrap());
            assert_eq!(v, payload(i, (i as usize * 13) % 3000));
            seen += 1;
            Flow::Continue
        })
        .unwrap();
        assert_eq!((count, seen), (n, n));
        assert!(
            !shard.join("lock.mdb").exists(),
            "reading creates no lock file"
        );
    }

    #[test]
    fn empty_shard() {
        let dir = tempfile::tempdir().unwrap();
        let sink: Box<dyn ShardSink> =
            Box::new(LmdbSink::create(dir.path(), "e", SinkOptions::default()).unwrap());
        let info = sink.finish().unwrap();
        assert_eq!(info.records, 0);
        let all = read_all(&dir.path().join("e.lmdb"));
        assert_eq!(all[KEYS_KEY], b"");
        assert_eq!(all[LEN_KEY], b"0");
        assert_eq!(
            for_each_record(&dir.path().join("e.lmdb"), |_, _, _| Flow::Continue).unwrap(),
            0
        );
    }

    #[test]
    fn map_grows_past_initial_size_without_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            LmdbSink::with_map_size(dir.path(), "g", 1 << 20, SinkOptions::default()).unwrap();
        // 6 MiB of payloads into a 1 MiB map, including values bigger than the initial map.
        for i in 0..24u64 {
            let len = if i == 5 { 1_500_000 } else { 200_000 };
            sink.append(&payload(i, len)).unwrap();
        }
        // Commit now, so the growth can be observed before finish.
        sink.commit_batch().unwrap();
        assert!(sink.growths >= 1, "grew {} times", sink.growths);
        assert!(sink.map_size >= 6 << 20);
        let info = (Box::new(sink) as Box<dyn ShardSink>).finish().unwrap();
        assert_eq!(info.records, 24);
        let data = dir.path().join("g.lmdb/data.mdb");
        let meta = std::fs::metadata(&data).unwrap();
        // Not a map-sized sparse file: allocated size ~ apparent size ~ data written.
        assert!(meta.len() < 12 << 20, "file is {} bytes", meta.len());
        let all = read_all(&dir.path().join("g.lmdb"));
        assert_eq!(all[&record_key(5).unwrap().to_vec()].len(), 1_500_000);
        assert_eq!(all[LEN_KEY], b"24");
    }

    #[test]
    fn map_full_fallback_redoes_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            LmdbSink::with_map_size(dir.path(), "m", 1 << 20, SinkOptions::default()).unwrap();
        for i in 0..3u64 {
            sink.batch.extend_from_slice(&payload(i, 900_000));
            sink.ends.push(sink.batch.len());
            sink.records += 1;
        }
        // Bypass the up-front estimate: the put itself must hit MapFull and recover.
        let growths = sink.growths;
        sink.try_put_batch(0)
            .expect_err("1 MiB map cannot take 2.7 MB");
        loop {
            match sink.try_put_batch(0) {
                Ok(()) => break,
                Err(::lmdb::Error::MapFull) => {
                    let doubled = sink.map_size * 2;
                    sink.set_map_size(doubled).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sink.growths > growths);
        sink.batch.clear();
        sink.ends.clear();
        let info = (Box::new(sink) as Box<dyn ShardSink>).finish().unwrap();
        assert_eq!(info.records, 3);
        let all = read_all(&dir.path().join("m.lmdb"));
        assert_eq!(all[&record_key(2).unwrap().to_vec()], payload(2, 900_000));
    }

    #[test]
    fn identical_runs_give_identical_bytes() {
        let mut digests = Vec::new();
        for run in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            // Durability (fsync) must not change the bytes.
            let opts = SinkOptions { durable: run == 0 };
            let mut sink = LmdbSink::with_map_size(dir.path(), "d", 1 << 20, opts).unwrap();
            for i in 0..700u64 {
                sink.append(&payload(i, (i as usize * 977) % 9000)).unwrap();
            }
            let info = (Box::new(sink) as Box<dyn ShardSink>).finish().unwrap();
            let bytes = std::fs::read(dir.path().join("d.lmdb/data.mdb")).unwrap();
            digests.push((info.checksum, bytes, run));
        }
        assert_eq!(digests[0].0, digests[1].0);
        assert!(
            digests[0].1 == digests[1].1,
            "data.mdb differs between runs"
        );
    }

    #[test]
    fn dropped_sink_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut sink = LmdbSink::create(dir.path(), "x", SinkOptions::default()).unwrap();
            for i in 0..300 {
                sink.append(&payload(i, 100)).unwrap();
            }
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A stale partial directory from a crash is replaced, not reused.
        std::fs::create_dir(dir.path().join("y.lmdb.partial")).unwrap();
        std::fs::write(dir.path().join("y.lmdb.partial/data.mdb"), b"garbage").unwrap();
        let mut sink = LmdbSink::create(dir.path(), "y", SinkOptions::default()).unwrap();
        sink.append(b"one").unwrap();
        let info = (Box::new(sink) as Box<dyn ShardSink>).finish().unwrap();
        assert_eq!(info.records, 1);
        assert_eq!(read_all(&dir.path().join("y.lmdb"))[LEN_KEY], b"1");
    }

    #[test]
    fn reader_rejects_gaps_and_missing_len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad");
        std::fs::create_dir(&path).unwrap();
        {
            let env = Environment::new()
                .set_flags(EnvironmentFlags::NO_LOCK)
                .open(&path)
                .unwrap();
            let db = env.open_db(None).unwrap();
            let mut txn = env.begin_rw_txn().unwrap();
            txn.put(db, b"0000000000", b"a", WriteFlags::empty())
                .unwrap();
            txn.put(db, b"0000000002", b"b", WriteFlags::empty())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = for_each_record(&path, |_, _, _| Flow::Continue)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("out of sequence") && err.contains("bad"),
            "{err}"
        );
    }
}
