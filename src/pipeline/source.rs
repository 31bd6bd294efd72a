//! Readers: find the shards of a `dsprep convert` folder and walk their records, handing each
//! record's JPEG bytes (a borrowed slice, so the only copy is the caller's copy into pinned
//! staging) to a callback. Bad records are reported with shard and offset and skipped.
//!
//! TFRecord shards are read through their `.idx`: consecutive records are fetched with one
//! large sequential read per window (up to 16 MiB), and every record is checked on its own, so a
//! damaged record costs that record only. Without an index the shard is streamed (framing
//! errors then end the shard). LMDB shards are read in key order through the shard layer.

use crate::shard::{example, index, lmdb, tfrecord};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The container of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardKind {
    Tfrecord { index: Option<PathBuf> },
    Lmdb,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub path: PathBuf,
    pub kind: ShardKind,
}

/// A record that could not be used; the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRecord {
    pub shard: PathBuf,
    /// Byte offset of the record (TFRecord) or record number (LMDB).
    pub offset: u64,
    pub reason: String,
}

/// Shards under `dir` (the folder itself and one level of split folders), sorted by path.
pub fn discover(dir: &Path) -> std::io::Result<Vec<Shard>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut depth = 0;
    while !dirs.is_empty() && depth < 2 {
        let mut next = Vec::new();
        for d in dirs {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for p in entries {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if p.is_dir() {
                    if name.ends_with(".lmdb") || p.join("data.mdb").is_file() {
                        out.push(Shard {
                            path: p,
                            kind: ShardKind::Lmdb,
                        });
                    } else {
                        next.push(p);
                    }
                } else if name.ends_with(".tfrecord")
                    || name.contains(".tfrecord-")
                    || name.ends_with(".tfrecords")
                {
                    let idx = index_path(&p);
                    out.push(Shard {
                        path: p,
                        kind: ShardKind::Tfrecord {
                            index: idx.is_file().then_some(idx),
                        },
                    });
                }
            }
        }
        dirs = next;
        depth += 1;
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `x.tfrecord` → `x.idx` (DALI's pairing); other names get `.idx` appended.
pub fn index_path(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    match s.strip_suffix(".tfrecord") {
        Some(stem) => PathBuf::from(format!("{stem}.idx")),
        None => PathBuf::from(format!("{s}.idx")),
    }
}

/// One usable record.
pub struct RecordRef<'a> {
    pub offset: u64,
    pub jpeg: &'a [u8],
}

/// What the callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

const WINDOW: u64 = 16 << 20;

/// Reads every record of `shard`, calling `on_record` for usable ones and `on_bad` for the
/// rest. Returns Err only when the shard cannot be opened/read at all (also reported as bad).
/// `buf` is scratch space reused across calls (one window).
pub fn read_shard(
    shard: &Shard,
    buf: &mut Vec<u8>,
    on_record: &mut dyn FnMut(RecordRef<'_>) -> Flow,
    on_bad: &mut dyn FnMut(BadRecord),
) {
    let bad = |offset: u64, reason: String| BadRecord {
        shard: shard.path.clone(),
        offset,
        reason,
    };
    match &shard.kind {
        ShardKind::Lmdb => {
            use crate::shard::source::Flow as Next;
            let r = lmdb::for_each_record(&shard.path, |i, _key, value| {
                match example::find_bytes_feature(value, "image/encoded") {
                    Ok(Some(jpeg)) => {
                        if on_record(RecordRef { offset: i, jpeg }) == Flow::Stop {
                            return Next::Stop;
                        }
                    }
                    Ok(None) => on_bad(bad(i, "record has no image/encoded".into())),
                    Err(e) => on_bad(bad(i, format!("bad tf.train.Example: {e}"))),
                }
                Next::Continue
            });
            if let Err(e) = r {
                on_bad(bad(0, e.to_string()));
            }
        }
        ShardKind::Tfrecord { index: Some(idx) } => {
            let entries = match index::read_index(idx) {
                Ok(e) => e,
                Err(e) => {
                    on_bad(bad(0, format!("{e} (reading without the index instead)")));
                    return stream_tfrecord(shard, buf, on_record, on_bad);
                }
            };
            let mut f = match std::fs::File::open(&shard.path) {
                Ok(f) => f,
                Err(e) => return on_bad(bad(0, format!("cannot open: {e}"))),
            };
            let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let mut i = 0;
            while i < entries.len() {
                // Window of consecutive, contiguous records starting at entries[i].
                let start = entries[i].0;
                let mut end = start.saturating_add(entries[i].1);
                let mut j = i + 1;
                while j < entries.len()
                    && entries[j].0 == end
                    && end - start + entries[j].1 <= WINDOW
                {
                    end += entries[j].1;
                    j += 1;
                }
                if end > file_len {
                    // Report the records that run past the end one by one, read the rest.
                    if entries[i].0.saturating_add(entries[i].1) > file_len {
                        on_bad(bad(
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
                    on_bad(bad(start, format!("read failed: {e}")));
                    i = j;
                    continue;
                }
                for &(off, size) in &entries[i..j] {
                    let rel = (off - start) as usize;
                    let Some(rec) = buf.get(rel..rel + size as usize) else {
                        on_bad(bad(off, "index entry outside the window".into()));
                        continue;
                    };
                    match tfrecord::iter_slice(rec).next() {
                        Some(Ok((_, payload))) => {
                            match example::find_bytes_feature(payload, "image/encoded") {
                                Ok(Some(jpeg)) => {
                                    if on_record(RecordRef { offset: off, jpeg }) == Flow::Stop {
                                        return;
                                    }
                                }
                                Ok(None) => on_bad(bad(off, "record has no image/encoded".into())),
                                Err(e) => on_bad(bad(off, format!("bad tf.train.Example: {e}"))),
                            }
                        }
                        Some(Err(e)) => on_bad(bad(off, e.to_string())),
                        None => on_bad(bad(off, "empty index entry".into())),
                    }
                }
                i = j;
            }
        }
        ShardKind::Tfrecord { index: None } => stream_tfrecord(shard, buf, on_record, on_bad),
    }
}

fn stream_tfrecord(
    shard: &Shard,
    buf: &mut Vec<u8>,
    on_record: &mut dyn FnMut(RecordRef<'_>) -> Flow,
    on_bad: &mut dyn FnMut(BadRecord),
) {
    let f = match std::fs::File::open(&shard.path) {
        Ok(f) => f,
        Err(e) => {
            return on_bad(BadRecord {
                shard: shard.path.clone(),
                offset: 0,
                reason: format!("cannot open: {e}"),
            })
        }
    };
    let mut r = tfrecord::RecordReader::new(std::io::BufReader::with_capacity(8 << 20, f));
    loop {
        match r.next_into(buf) {
            Ok(Some(off)) => match example::find_bytes_feature(buf, "image/encoded") {
                Ok(Some(jpeg)) => {
                    if on_record(RecordRef { offset: off, jpeg }) == Flow::Stop {
                        return;
                    }
                }
                Ok(None) => on_bad(BadRecord {
                    shard: shard.path.clone(),
                    offset: off,
                    reason: "record has no image/encoded".into(),
                }),
                Err(e) => on_bad(BadRecord {
                    shard: shard.path.clone(),
                    offset: off,
                    reason: format!("bad tf.train.Example: {e}"),
                }),
            },
            Ok(None) => return,
            Err(e) => {
                let stop = !e.is_recoverable();
                on_bad(BadRecord {
                    shard: shard.path.clone(),
                    offset: e.offset(),
                    reason: e.to_string(),
                });
                if stop {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::example::Example;

    fn write_shard(dir: &Path, name: &str, payloads: &[Vec<u8>], with_index: bool) -> PathBuf {
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
            std::fs::write(index_path(&p), idx).unwrap();
        }
        p
    }

    fn example_with(jpeg: &[u8]) -> Vec<u8> {
        let mut e = Example::new();
        e.insert_bytes("image/encoded", [jpeg.to_vec()]);
        e.to_bytes()
    }

    fn collect(shard: &Shard) -> (Vec<(u64, Vec<u8>)>, Vec<BadRecord>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let mut buf = Vec::new();
        read_shard(
            shard,
            &mut buf,
            &mut |r| {
                good.push((r.offset, r.jpeg.to_vec()));
                Flow::Continue
            },
            &mut |b| bad.push(b),
        );
        (good, bad)
    }

    #[test]
    fn reads_through_index_and_without() {
        let dir = tempfile::tempdir().unwrap();
        let pls: Vec<Vec<u8>> = (0..5u8).map(|i| example_with(&[0xFF, 0xD8, i])).collect();
        write_shard(dir.path(), "a-00000-of-00002.tfrecord", &pls, true);
        write_shard(dir.path(), "a-00001-of-00002.tfrecord", &pls, false);
        let shards = discover(dir.path()).unwrap();
        assert_eq!(shards.len(), 2);
        assert!(matches!(
            shards[0].kind,
            ShardKind::Tfrecord { index: Some(_) }
        ));
        assert!(matches!(
            shards[1].kind,
            ShardKind::Tfrecord { index: None }
        ));
        for s in &shards {
            let (good, bad) = collect(s);
            assert!(bad.is_empty(), "{bad:?}");
            assert_eq!(good.len(), 5);
            assert_eq!(good[3].1, vec![0xFF, 0xD8, 3]);
        }
    }

    #[test]
    fn corrupt_record_is_reported_with_offset_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        let pls: Vec<Vec<u8>> = (0..4u8).map(|i| example_with(&[0xFF, 0xD8, i])).collect();
        let p = write_shard(dir.path(), "b.tfrecord", &pls, true);
        let idx = std::fs::read_to_string(index_path(&p)).unwrap();
        let second: u64 = idx
            .lines()
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let k = second as usize + 14; // inside the payload of record 2
        bytes[k] ^= 0xFF;
        std::fs::write(&p, bytes).unwrap();
        let shards = discover(dir.path()).unwrap();
        let (good, bad) = collect(&shards[0]);
        assert_eq!(good.len(), 3);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, second);
        assert!(bad[0].reason.contains("CRC"), "{}", bad[0].reason);
    }

    #[test]
    fn missing_image_and_truncated_index_entry_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Example::new();
        e.insert_str("image/format", ["jpeg"]);
        let pls = vec![example_with(&[0xFF, 0xD8, 1]), e.to_bytes()];
        let p = write_shard(dir.path(), "c.tfrecord", &pls, true);
        let mut idx = std::fs::read_to_string(index_path(&p)).unwrap();
        idx.push_str("999999 100\n");
        std::fs::write(index_path(&p), idx).unwrap();
        let (good, bad) = collect(&discover(dir.path()).unwrap()[0]);
        assert_eq!(good.len(), 1);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().any(|b| b.reason.contains("no image/encoded")));
        assert!(bad.iter().any(|b| b.offset == 999999));
    }

    #[test]
    fn stop_ends_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let pls: Vec<Vec<u8>> = (0..6u8).map(|i| example_with(&[0xFF, 0xD8, i])).collect();
        write_shard(dir.path(), "d.tfrecord", &pls, true);
        let s = &discover(dir.path()).unwrap()[0];
        let mut n = 0;
        read_shard(
            s,
            &mut Vec::new(),
            &mut |_| {
                n += 1;
                if n == 2 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
            &mut |_| {},
        );
        assert_eq!(n, 2);
    }
}
