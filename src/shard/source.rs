//! The one shard reader: every record of a TFRecord or LMDB shard, in order, as a borrowed
//! payload (the serialized `tf.train.Example`) with its record number and, for TFRecord, its
//! byte offset. `verify`, `presize` and the throughput pipeline all read through here.
//!
//! Records that cannot be read are reported (number, offset, reason) and the walk goes on
//! where the format allows it: through an index every record stands on its own, so a damaged
//! record costs that record only; a sequential TFRecord walk survives a bad data CRC but not a
//! bad length (nothing after it can be found). An LMDB shard whose environment cannot be opened
//! or whose keys are out of sequence is one problem for the whole shard.

use super::format::{ShardFormat, ShardRef};
use super::{index, lmdb, tfrecord};
use std::io::{Read, Seek, SeekFrom};

/// One record as read.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Position in the shard, from 0 (the LMDB key, the index line, or the count so far).
    pub number: u64,
    /// Byte offset of the record's length field (TFRecord).
    pub offset: Option<u64>,
    /// The serialized `tf.train.Example`.
    pub payload: &'a [u8],
}

/// A record (or the whole shard) that could not be read; the walk reports it and goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordProblem {
    /// The record's position, when known.
    pub number: Option<u64>,
    /// The record's byte offset (TFRecord), when known.
    pub offset: Option<u64>,
    pub reason: String,
}

/// What the record callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// How to walk a TFRecord shard (LMDB shards are always walked in key order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Through the `.idx` when the shard has one: one large read per window of contiguous
    /// records, each record checked on its own. Without an index (or with an unreadable one,
    /// reported), sequentially.
    Indexed,
    /// Follow the framing from the start of the file, as TensorFlow does (what `verify` wants:
    /// it checks the index against what the framing finds).
    Sequential,
}

/// The shards of a folder to read, in order: those its `manifest.json` lists (of `split`, or
/// of every split) when it has one, else the shards found by looking ([`super::format::discover`];
/// folders written by other tools, where `split` keeps the shards named `<split>-*`).
pub fn shards_in(
    dir: &std::path::Path,
    split: Option<&str>,
) -> Result<Vec<ShardRef>, super::ShardError> {
    if let Some(m) = super::manifest::Manifest::load(dir)? {
        return m.shard_refs(dir, split);
    }
    let found = super::format::discover(dir).map_err(|source| super::ShardError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(match split {
        None => found,
        Some(name) => {
            let prefix = format!("{}-", super::format::portable_name(name));
            found
                .into_iter()
                .filter(|s| s.name().starts_with(&prefix))
                .collect()
        }
    })
}

/// Largest read of one window of contiguous records through the index.
const WINDOW: u64 = 16 << 20;
/// Read buffer of a sequential walk.
const STREAM_BUF: usize = 8 << 20;

/// Reads every record of `shard`, calling `on_record` for each readable one and `on_problem`
/// for the rest. Returns how many records were seen (readable or not) before the walk ended.
/// `buf` is scratch space reused across calls.
pub fn read_records(
    shard: &ShardRef,
    mode: ReadMode,
    buf: &mut Vec<u8>,
    on_record: &mut dyn FnMut(Record<'_>) -> Flow,
    on_problem: &mut dyn FnMut(RecordProblem),
) -> u64 {
    match (shard.format, mode, &shard.index) {
        (ShardFormat::Lmdb, _, _) => read_lmdb(shard, on_record, on_problem),
        (ShardFormat::Tfrecord, ReadMode::Indexed, Some(idx)) => match index::read_index(idx) {
            Ok(entries) => read_indexed(shard, &entries, buf, on_record, on_problem),
            Err(e) => {
                on_problem(RecordProblem {
                    number: None,
                    offset: None,
                    reason: format!("{e} (reading without the index instead)"),
                });
                read_sequential(shard, buf, on_record, on_problem)
            }
        },
        (ShardFormat::Tfrecord, _, _) => read_sequential(shard, buf, on_record, on_problem),
    }
}

fn whole_shard(reason: String) -> RecordProblem {
    RecordProblem {
        number: None,
        offset: None,
        reason,
    }
}

fn read_lmdb(
    shard: &ShardRef,
    on_record: &mut dyn FnMut(Record<'_>) -> Flow,
    on_problem: &mut dyn FnMut(RecordProblem),
) -> u64 {
    let mut seen = 0u64;
    let r = lmdb::for_each_record(&shard.path, |i, _key, value| {
        seen = i + 1;
        on_record(Record {
            number: i,
            offset: None,
            payload: value,
        })
    });
    match r {
        Ok(n) => n,
        Err(e) => {
            on_problem(whole_shard(e.to_string()));
            seen
        }
    }
}

fn read_indexed(
    shard: &ShardRef,
    entries: &[(u64, u64)],
    buf: &mut Vec<u8>,
    on_record: &mut dyn FnMut(Record<'_>) -> Flow,
    on_problem: &mut dyn FnMut(RecordProblem),
) -> u64 {
    let problem = |n: usize, off: u64, reason: String| RecordProblem {
        number: Some(n as u64),
        offset: Some(off),
        reason,
    };
    let mut f = match std::fs::File::open(&shard.path) {
        Ok(f) => f,
        Err(e) => {
            on_problem(whole_shard(format!("cannot open: {e}")));
            return 0;
        }
    };
    let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut i = 0;
    while i < entries.len() {
        // A window of consecutive, contiguous records starting at entries[i].
        let start = entries[i].0;
        let mut end = start.saturating_add(entries[i].1);
        let mut j = i + 1;
        while j < entries.len() && entries[j].0 == end && end - start + entries[j].1 <= WINDOW {
            end += entries[j].1;
            j += 1;
        }
        if end > file_len {
            // Report the records that run past the end one by one, read the rest.
            if entries[i].0.saturating_add(entries[i].1) > file_len {
                on_problem(problem(
                    i,
                    entries[i].0,
                    format!(
                        "index says {} bytes here but the file ends at {file_len}",
                        entries[i].1
                    ),
                ));
                i += 1;
                continue;
            }
            end = entries[i].0 + entries[i].1;
            j = i + 1;
        }
        let len = (end - start) as usize;
        buf.clear();
        buf.resize(len, 0);
        if let Err(e) = f
            .seek(SeekFrom::Start(start))
            .and_then(|_| f.read_exact(buf))
        {
            on_problem(problem(i, start, format!("read failed: {e}")));
            i = j;
            continue;
        }
        for (k, &(off, size)) in entries.iter().enumerate().take(j).skip(i) {
            let rel = (off - start) as usize;
            let Some(rec) = buf.get(rel..rel + size as usize) else {
                on_problem(problem(k, off, "index entry outside the window".into()));
                continue;
            };
            match tfrecord::iter_slice(rec).next() {
                Some(Ok((_, payload))) => {
                    let r = Record {
                        number: k as u64,
                        offset: Some(off),
                        payload,
                    };
                    if on_record(r) == Flow::Stop {
                        return k as u64 + 1;
                    }
                }
                Some(Err(e)) => on_problem(problem(k, off, e.to_string())),
                None => on_problem(problem(k, off, "empty index entry".into())),
            }
        }
        i = j;
    }
    entries.len() as u64
}

fn read_sequential(
    shard: &ShardRef,
    buf: &mut Vec<u8>,
    on_record: &mut dyn FnMut(Record<'_>) -> Flow,
    on_problem: &mut dyn FnMut(RecordProblem),
) -> u64 {
    let f = match std::fs::File::open(&shard.path) {
        Ok(f) => f,
        Err(e) => {
            on_problem(whole_shard(format!("cannot open: {e}")));
            return 0;
        }
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut r =
        tfrecord::RecordReader::with_len(std::io::BufReader::with_capacity(STREAM_BUF, f), len);
    let mut n = 0u64;
    loop {
        match r.next_into(buf) {
            Ok(Some(off)) => {
                let rec = Record {
                    number: n,
                    offset: Some(off),
                    payload: buf,
                };
                n += 1;
                if on_record(rec) == Flow::Stop {
                    return n;
                }
            }
            Ok(None) => return n,
            Err(e) => {
                let stop = !e.is_recoverable();
                on_problem(RecordProblem {
                    number: Some(n),
                    offset: Some(e.offset()),
                    reason: e.to_string(),
                });
                n += 1;
                if stop {
                    return n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::format::{discover, index_path_for};
    use crate::shard::writer::create_lmdb_sink;
    use std::path::{Path, PathBuf};

    fn write_tfrecord(dir: &Path, name: &str, payloads: &[Vec<u8>], with_index: bool) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        let mut idx = String::new();
        let mut off = 0u64;
        for pl in payloads {
            let n = tfrecord::write_record(&mut f, pl).unwrap();
            idx.push_str(&format!("{off} {n}\n"));
            off += n;
        }
        if with_index {
            std::fs::write(index_path_for(&p), idx).unwrap();
        }
        p
    }

    type Seen = (Vec<(u64, Option<u64>, Vec<u8>)>, Vec<RecordProblem>, u64);

    fn collect(shard: &ShardRef, mode: ReadMode) -> Seen {
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        let n = read_records(
            shard,
            mode,
            &mut Vec::new(),
            &mut |r| {
                good.push((r.number, r.offset, r.payload.to_vec()));
                Flow::Continue
            },
            &mut |p| bad.push(p),
        );
        (good, bad, n)
    }

    fn payloads(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i; 10 + i as usize]).collect()
    }

    #[test]
    fn tfrecord_through_index_and_sequentially_agree() {
        let dir = tempfile::tempdir().unwrap();
        write_tfrecord(dir.path(), "a.tfrecord", &payloads(5), true);
        write_tfrecord(dir.path(), "b.tfrecord", &payloads(5), false);
        let shards = discover(dir.path()).unwrap();
        let mut all = Vec::new();
        for s in &shards {
            for mode in [ReadMode::Indexed, ReadMode::Sequential] {
                let (good, bad, n) = collect(s, mode);
                assert!(bad.is_empty(), "{bad:?}");
                assert_eq!(n, 5);
                all.push(good);
            }
        }
        assert!(all.windows(2).all(|w| w[0] == w[1]));
        let good = &all[0];
        assert_eq!(good[3].0, 3);
        assert_eq!(good[3].2, vec![3u8; 13]);
        assert_eq!(good[0].1, Some(0));
        assert_eq!(good[1].1, Some(10 + 16));
    }

    #[test]
    fn damaged_record_costs_that_record_only_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_tfrecord(dir.path(), "c.tfrecord", &payloads(4), true);
        let mut bytes = std::fs::read(&p).unwrap();
        // Record 1 starts at 26; flip its length field: the framing after it is lost.
        bytes[26] ^= 0x40;
        std::fs::write(&p, bytes).unwrap();
        let s = &discover(dir.path()).unwrap()[0];
        let (good, bad, n) = collect(s, ReadMode::Indexed);
        assert_eq!(good.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 2, 3]);
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].number, bad[0].offset), (Some(1), Some(26)));
        assert_eq!(n, 4);
        let (good, bad, n) = collect(s, ReadMode::Sequential);
        assert_eq!(good.len(), 1);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(n, 2);
    }

    #[test]
    fn bad_data_crc_is_survived_sequentially() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_tfrecord(dir.path(), "d.tfrecord", &payloads(3), false);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[26 + 12] ^= 1; // payload of record 1
        std::fs::write(&p, bytes).unwrap();
        let s = &discover(dir.path()).unwrap()[0];
        let (good, bad, n) = collect(s, ReadMode::Sequential);
        assert_eq!(good.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 2]);
        assert!(bad[0].reason.contains("data CRC"), "{:?}", bad[0]);
        assert_eq!(n, 3);
    }

    #[test]
    fn index_past_the_end_and_unreadable_index_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_tfrecord(dir.path(), "e.tfrecord", &payloads(2), true);
        let idx = index_path_for(&p);
        let mut text = std::fs::read_to_string(&idx).unwrap();
        text.push_str("999999 100\n");
        std::fs::write(&idx, &text).unwrap();
        let s = &discover(dir.path()).unwrap()[0];
        let (good, bad, _) = collect(s, ReadMode::Indexed);
        assert_eq!(good.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, Some(999999));
        std::fs::write(&idx, b"not an index\n").unwrap();
        let (good, bad, _) = collect(s, ReadMode::Indexed);
        assert_eq!(good.len(), 2);
        assert!(bad[0].reason.contains("without the index"), "{bad:?}");
    }

    #[test]
    fn lmdb_shards_read_in_key_order_and_stop_early() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = create_lmdb_sink(dir.path(), "l").unwrap();
        for p in payloads(4) {
            sink.append(&p).unwrap();
        }
        sink.finish().unwrap();
        let s = &discover(dir.path()).unwrap()[0];
        let (good, bad, n) = collect(s, ReadMode::Indexed);
        assert!(bad.is_empty());
        assert_eq!(n, 4);
        assert_eq!(good[2], (2, None, vec![2u8; 12]));
        let mut k = 0;
        let n = read_records(
            s,
            ReadMode::Sequential,
            &mut Vec::new(),
            &mut |_| {
                k += 1;
                if k == 2 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
            &mut |_| {},
        );
        assert_eq!((k, n), (2, 2));
    }

    #[test]
    fn missing_shard_is_one_problem() {
        let s = ShardRef {
            path: PathBuf::from("/nonexistent/x.tfrecord"),
            format: ShardFormat::Tfrecord,
            index: None,
        };
        let (good, bad, n) = collect(&s, ReadMode::Sequential);
        assert!(good.is_empty());
        assert_eq!(n, 0);
        assert!(bad[0].reason.contains("cannot open"));
    }
}
