//! Shard sinks: write under a `.partial` name, rename only when complete and synced.
//!
//! A shard is visible under its final name only once every byte is on disk: data goes to
//! `<name>.partial`, `finish` flushes, fsyncs, renames (index first, then the shard, so a final
//! shard name always has its index beside it) and fsyncs the directory. A sink dropped without
//! `finish` removes its partial files. A crash can leave `.partial` files behind but never a
//! complete-looking damaged shard; the next run replaces them.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::{create_fresh, sync_dir};
use super::crc::masked_crc32c_parts;
use super::format::{partial_path, ShardFormat, LMDB_DATA_FILE};
use super::index::write_index_line;
use super::tfrecord::{header, FRAME_OVERHEAD};
use super::ShardError;

/// What the manifest records about one finished shard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ShardInfo {
    /// File (TFRecord) or directory (LMDB) name, relative to the output directory.
    pub file: String,
    /// Index file name relative to the output directory (TFRecord only).
    pub index: Option<String>,
    pub records: u64,
    /// Bytes of the shard file (`data.mdb` for LMDB).
    pub bytes: u64,
    /// `xxh3-128:<hex>` of the shard file (`data.mdb` for LMDB); see [`super::checksum`].
    pub checksum: String,
}

/// A shard being written. `append` records in order; `finish` makes it visible under its final
/// name. Dropping a sink without `finish` removes what it wrote.
pub trait ShardSink: Send {
    /// Appends one record whose payload is `parts` concatenated (a record split around its
    /// image, see [`super::example::SplitEncoding`], is written without being joined first).
    fn append_parts(&mut self, parts: &[&[u8]]) -> Result<(), ShardError>;
    fn append(&mut self, payload: &[u8]) -> Result<(), ShardError> {
        self.append_parts(&[payload])
    }
    fn finish(self: Box<Self>) -> Result<ShardInfo, ShardError>;
}

/// How a sink finishes a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkOptions {
    /// fsync the shard (and its directory) before/after the rename, so a shard under its final
    /// name survives a power loss. Costs a full writeback per shard (the disk's write speed
    /// instead of the page cache's). Without it a crash of the *process* is still safe (the page
    /// cache keeps the data) and a power loss is caught by `--resume`, which re-hashes finished
    /// shards against the manifest before trusting them.
    pub durable: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions { durable: true }
    }
}

/// `<dir>/<stem>.tfrecord` + `<dir>/<stem>.idx` (DALI pairs them by name), durable.
pub fn create_tfrecord_sink(dir: &Path, stem: &str) -> Result<Box<dyn ShardSink>, ShardError> {
    create_tfrecord_sink_with(dir, stem, SinkOptions::default())
}

/// [`create_tfrecord_sink`] with explicit options.
pub fn create_tfrecord_sink_with(
    dir: &Path,
    stem: &str,
    opts: SinkOptions,
) -> Result<Box<dyn ShardSink>, ShardError> {
    Ok(Box::new(TfRecordSink::create(dir, stem, opts)?))
}

/// `<dir>/<stem>.lmdb/data.mdb`; see [`super::lmdb`] for the layout. Durable.
pub fn create_lmdb_sink(dir: &Path, stem: &str) -> Result<Box<dyn ShardSink>, ShardError> {
    create_lmdb_sink_with(dir, stem, SinkOptions::default())
}

/// [`create_lmdb_sink`] with explicit options.
pub fn create_lmdb_sink_with(
    dir: &Path,
    stem: &str,
    opts: SinkOptions,
) -> Result<Box<dyn ShardSink>, ShardError> {
    Ok(Box::new(super::lmdb::LmdbSink::create(dir, stem, opts)?))
}

/// A sink that writes nothing and checks that the records appended are exactly those of an
/// existing shard, in order (`--resume`: an interrupted run's shard is kept only if this run
/// would write the same records, whatever its manifest entry says).
pub struct CompareSink {
    /// XXH3-64 of each payload of the existing shard.
    expected: Vec<u64>,
    next: usize,
    same: bool,
}

impl CompareSink {
    /// Reads the existing shard; `None` when any of it cannot be read (then it is not kept).
    pub fn of(shard: &super::format::ShardRef) -> Option<CompareSink> {
        let mut expected = Vec::new();
        let mut readable = true;
        super::source::read_records(
            shard,
            super::source::ReadMode::Sequential,
            &mut Vec::new(),
            &mut |r| {
                expected.push(xxhash_rust::xxh3::xxh3_64(r.payload));
                super::source::Flow::Continue
            },
            &mut |_| readable = false,
        );
        readable.then_some(CompareSink {
            expected,
            next: 0,
            same: true,
        })
    }

    /// Whether everything appended so far matched, and all of the existing shard was matched.
    pub fn matched(&self) -> bool {
        self.same && self.next == self.expected.len()
    }
}

impl ShardSink for CompareSink {
    fn append_parts(&mut self, parts: &[&[u8]]) -> Result<(), ShardError> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for p in parts {
            h.update(p);
        }
        self.same &= self.expected.get(self.next) == Some(&h.digest());
        self.next += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<ShardInfo, ShardError> {
        Err(ShardError::Io {
            path: PathBuf::new(),
            source: io::Error::other("a compare sink writes no shard"),
        })
    }
}

/// Re-hashes a finished shard (for `--resume`): `info_file` is [`ShardInfo::file`]; for an LMDB
/// directory its `data.mdb` is hashed, as at write time.
pub fn shard_checksum(dir: &Path, info_file: &str) -> Result<String, ShardError> {
    let path = dir.join(info_file);
    let target = if path.is_dir() {
        path.join(LMDB_DATA_FILE)
    } else {
        path
    };
    Ok(crate::shard::checksum::checksum_file(&target)?.0)
}

/// Buffer for the small pieces of the shard file (headers, CRCs, record framing around the
/// image); written out before it would overflow or together with the next large piece.
const SHARD_BUF: usize = 1 << 20;
/// Pieces at least this long (images) go to the kernel from the caller's buffer in one
/// `writev` with whatever is buffered, never copied in user space.
const DIRECT_MIN: usize = 32 << 10;
const INDEX_BUF: usize = 64 << 10;

/// The shard file's writer; hashes every byte in file order as it goes, so no pass over the
/// finished file is needed. Dropping it discards what is buffered (the file is about to be
/// removed).
struct ShardFile {
    file: File,
    hasher: crate::shard::checksum::ShardHasher,
    buf: Vec<u8>,
}

impl ShardFile {
    fn new(file: File) -> Self {
        ShardFile {
            file,
            hasher: crate::shard::checksum::ShardHasher::new(),
            buf: Vec::with_capacity(SHARD_BUF),
        }
    }

    fn write_piece(&mut self, piece: &[u8]) -> io::Result<()> {
        if piece.len() >= DIRECT_MIN {
            self.hasher.update(&self.buf);
            self.hasher.update(piece);
            write_all_two(&mut self.file, &self.buf, piece)?;
            self.buf.clear();
        } else {
            if self.buf.len() + piece.len() > SHARD_BUF {
                self.flush_buf()?;
            }
            self.buf.extend_from_slice(piece);
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.hasher.update(&self.buf);
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Writes `a` then `b` with as few `writev` calls as the kernel allows (usually one).
fn write_all_two(file: &mut File, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = match file.write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[(n - from_a).min(b.len())..];
    }
    Ok(())
}

struct TfRecordSink {
    dir: PathBuf,
    file_name: String,
    index_name: String,
    data_partial: PathBuf,
    index_partial: PathBuf,
    /// `None` after `finish` took them; `Drop` removes the partial files while they are `Some`.
    data: Option<ShardFile>,
    index: Option<BufWriter<File>>,
    offset: u64,
    records: u64,
    opts: SinkOptions,
}

impl TfRecordSink {
    fn create(dir: &Path, stem: &str, opts: SinkOptions) -> Result<Self, ShardError> {
        let file_name = ShardFormat::Tfrecord.shard_file(stem);
        let index_name = format!("{stem}{}", super::format::INDEX_SUFFIX);
        let data_partial = partial_path(&dir.join(&file_name));
        let index_partial = partial_path(&dir.join(&index_name));
        // `create` truncates a stale partial file from a crashed run.
        let data = create_fresh(&data_partial)?;
        let index = match create_fresh(&index_partial) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&data_partial);
                return Err(e);
            }
        };
        Ok(TfRecordSink {
            dir: dir.to_path_buf(),
            file_name,
            index_name,
            data_partial,
            index_partial,
            data: Some(ShardFile::new(data)),
            index: Some(BufWriter::with_capacity(INDEX_BUF, index)),
            offset: 0,
            records: 0,
            opts,
        })
    }

    fn data_err(&self) -> impl FnOnce(io::Error) -> ShardError + '_ {
        |source| ShardError::Io {
            path: self.data_partial.clone(),
            source,
        }
    }

    fn index_err(&self) -> impl FnOnce(io::Error) -> ShardError + '_ {
        |source| ShardError::Io {
            path: self.index_partial.clone(),
            source,
        }
    }

    fn closed(&self) -> ShardError {
        ShardError::Io {
            path: self.data_partial.clone(),
            source: io::Error::other("shard already finished"),
        }
    }
}

impl ShardSink for TfRecordSink {
    fn append_parts(&mut self, parts: &[&[u8]]) -> Result<(), ShardError> {
        let (Some(data), Some(_)) = (self.data.as_mut(), self.index.as_ref()) else {
            return Err(self.closed());
        };
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let written = (|| {
            data.write_piece(&header(len))?;
            for p in parts {
                data.write_piece(p)?;
            }
            data.write_piece(&masked_crc32c_parts(parts).to_le_bytes())
        })();
        if let Err(e) = written {
            return Err(self.data_err()(e));
        }
        let size = len + FRAME_OVERHEAD;
        let offset = self.offset;
        if let Some(index) = self.index.as_mut() {
            if let Err(e) = write_index_line(index, offset, size) {
                return Err(self.index_err()(e));
            }
        }
        self.offset += size;
        self.records += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<ShardInfo, ShardError> {
        let (Some(data), Some(index)) = (self.data.take(), self.index.take()) else {
            return Err(self.closed());
        };
        // From here on, errors must still remove the partial files: put nothing back into
        // `self` and clean up explicitly.
        let result = (|| {
            let mut hashing = data;
            hashing.flush_buf().map_err(self.data_err())?;
            let index = index.into_inner().map_err(|e| ShardError::Io {
                path: self.index_partial.clone(),
                source: e.into_error(),
            })?;
            if self.opts.durable {
                hashing.file.sync_all().map_err(self.data_err())?;
                index.sync_all().map_err(self.index_err())?;
            }
            let checksum = hashing.hasher.finish();
            drop(hashing.file);
            drop(index);
            let final_index = self.dir.join(&self.index_name);
            let final_data = self.dir.join(&self.file_name);
            std::fs::rename(&self.index_partial, &final_index).map_err(|source| {
                ShardError::Io {
                    path: final_index.clone(),
                    source,
                }
            })?;
            if let Err(source) = std::fs::rename(&self.data_partial, &final_data) {
                // Do not leave an index that names a shard which is not there.
                let _ = std::fs::remove_file(&final_index);
                return Err(ShardError::Io {
                    path: final_data,
                    source,
                });
            }
            if self.opts.durable {
                sync_dir(&self.dir)?;
            }
            Ok(checksum)
        })();
        match result {
            Ok(checksum) => Ok(ShardInfo {
                file: self.file_name.clone(),
                index: Some(self.index_name.clone()),
                records: self.records,
                bytes: self.offset,
                checksum,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&self.data_partial);
                let _ = std::fs::remove_file(&self.index_partial);
                Err(e)
            }
        }
    }
}

impl Drop for TfRecordSink {
    /// Unfinished sinks remove their partial files (error elsewhere, cancelled run).
    fn drop(&mut self) {
        // `into_parts` drops the buffered bytes instead of flushing them into a file about to
        // be deleted.
        let data = self.data.take();
        let index = self.index.take().map(|w| drop(w.into_parts()));
        if data.is_some() || index.is_some() {
            let _ = std::fs::remove_file(&self.data_partial);
            let _ = std::fs::remove_file(&self.index_partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::index::{index_tfrecord, parse_index};
    use crate::shard::tfrecord::{iter_slice, write_record};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn payloads() -> Vec<Vec<u8>> {
        (0..100u32)
            .map(|i| {
                let len = if i % 10 == 0 {
                    (5 << 20) + i as usize
                } else {
                    i as usize * 101
                };
                (0..len).map(|j| (j as u32 ^ i) as u8).collect()
            })
            .collect()
    }

    #[test]
    fn records_in_parts_equal_records_joined() {
        // Cuts that put small and large (direct-write) pieces in every order.
        let dir = tempfile::tempdir().unwrap();
        let ps = payloads();
        let mut joined = create_tfrecord_sink(dir.path(), "joined").unwrap();
        let mut split = create_tfrecord_sink(dir.path(), "split").unwrap();
        for (i, p) in ps.iter().enumerate() {
            joined.append(p).unwrap();
            let a = (i * 37) % (p.len() + 1);
            let b = a + (p.len() - a) / 2;
            split
                .append_parts(&[&p[..a], &p[a..b], &[], &p[b..]])
                .unwrap();
        }
        let (j, s) = (joined.finish().unwrap(), split.finish().unwrap());
        let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
        assert!(read(&j.file) == read(&s.file), "shard bytes differ");
        assert_eq!(read("joined.idx"), read("split.idx"));
        assert_eq!(j.checksum, s.checksum);
        assert_eq!(
            s.checksum,
            crate::shard::checksum::checksum_bytes(&read(&s.file))
        );
    }

    #[test]
    fn tfrecord_sink_writes_exact_shard_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = create_tfrecord_sink(dir.path(), "train-00000-of-00002").unwrap();
        let ps = payloads();
        for p in &ps {
            sink.append(p).unwrap();
        }
        assert_eq!(
            names(dir.path()),
            [
                "train-00000-of-00002.idx.partial",
                "train-00000-of-00002.tfrecord.partial"
            ]
        );
        let info = sink.finish().unwrap();
        assert_eq!(
            names(dir.path()),
            ["train-00000-of-00002.idx", "train-00000-of-00002.tfrecord"]
        );
        let shard = dir.path().join(&info.file);
        let bytes = std::fs::read(&shard).unwrap();
        // The same bytes write_record gives into memory.
        let mut expected = Vec::new();
        for p in &ps {
            write_record(&mut expected, p).unwrap();
        }
        assert!(bytes == expected, "shard bytes differ from framed payloads");
        assert_eq!(info.records, 100);
        assert_eq!(info.bytes, bytes.len() as u64);
        assert_eq!(info.index.as_deref(), Some("train-00000-of-00002.idx"));
        assert_eq!(
            info.checksum,
            crate::shard::checksum::checksum_bytes(&bytes)
        );
        assert_eq!(
            shard_checksum(dir.path(), &info.file).unwrap(),
            info.checksum
        );
        // The index written while appending equals a re-index and matches the records.
        let idx_path = dir.path().join(info.index.as_ref().unwrap());
        let idx = std::fs::read(&idx_path).unwrap();
        let reidx = dir.path().join("re.idx");
        assert_eq!(index_tfrecord(&shard, &reidx).unwrap(), 100);
        assert_eq!(std::fs::read(&reidx).unwrap(), idx);
        let pairs = parse_index(&idx, &idx_path).unwrap();
        let records: Vec<_> = iter_slice(&bytes).map(|r| r.unwrap()).collect();
        assert_eq!(pairs.len(), records.len());
        for ((off, size), (roff, payload)) in pairs.iter().zip(&records) {
            assert_eq!(off, roff);
            assert_eq!(*size, payload.len() as u64 + 16);
        }
        // An independent reader accepts the shard.
        let theirs: Vec<Vec<u8>> =
            tfrecord::BytesIter::from_reader(std::io::Cursor::new(bytes), Default::default())
                .map(|r| r.unwrap())
                .collect();
        assert!(theirs == ps);
    }

    #[test]
    fn dropped_tfrecord_sink_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut sink = create_tfrecord_sink(dir.path(), "x").unwrap();
            sink.append(b"abc").unwrap();
            assert_eq!(names(dir.path()).len(), 2);
        }
        assert!(names(dir.path()).is_empty());
        // Never-appended sinks too.
        drop(create_tfrecord_sink(dir.path(), "y").unwrap());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn empty_tfrecord_shard() {
        let dir = tempfile::tempdir().unwrap();
        let info = create_tfrecord_sink(dir.path(), "e")
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!((info.records, info.bytes), (0, 0));
        assert_eq!(info.checksum, crate::shard::checksum::checksum_bytes(b""));
        assert_eq!(names(dir.path()), ["e.idx", "e.tfrecord"]);
    }

    #[test]
    fn finish_replaces_previous_output_and_stale_partials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.tfrecord"), b"old").unwrap();
        std::fs::write(dir.path().join("s.tfrecord.partial"), b"crashed run").unwrap();
        let mut sink = create_tfrecord_sink(dir.path(), "s").unwrap();
        sink.append(b"new").unwrap();
        let info = sink.finish().unwrap();
        assert_eq!(info.bytes, 19);
        assert_eq!(
            std::fs::read(dir.path().join("s.tfrecord")).unwrap().len(),
            19
        );
        assert_eq!(names(dir.path()), ["s.idx", "s.tfrecord"]);
    }

    #[test]
    fn io_errors_name_the_file() {
        let err = create_tfrecord_sink(Path::new("/nonexistent-dir-for-dsprep"), "z")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("z.tfrecord.partial"), "{err}");
        // A full disk: /dev/full returns ENOSPC on write. Point the sink's writer at it.
        let full = Path::new("/dev/full");
        if let Ok(f) = File::options().write(true).open(full) {
            let dir = tempfile::tempdir().unwrap();
            let mut sink = TfRecordSink::create(dir.path(), "f", SinkOptions::default()).unwrap();
            sink.data = Some(ShardFile::new(f));
            // Bigger than the buffer, so the write reaches the device.
            let err = sink.append(&vec![0u8; SHARD_BUF + 1]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("f.tfrecord.partial"), "{msg}");
            assert!(matches!(err, ShardError::Io { .. }));
            drop(sink);
            assert!(
                names(dir.path()).is_empty(),
                "no partial left after the failed sink"
            );
        }
    }

    #[test]
    fn shard_checksum_of_lmdb_hashes_data_mdb() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = create_lmdb_sink(dir.path(), "l").unwrap();
        sink.append(b"payload").unwrap();
        let info = sink.finish().unwrap();
        assert_eq!(
            shard_checksum(dir.path(), &info.file).unwrap(),
            info.checksum
        );
        let data = std::fs::read(dir.path().join("l.lmdb/data.mdb")).unwrap();
        assert_eq!(info.checksum, crate::shard::checksum::checksum_bytes(&data));
        assert!(shard_checksum(dir.path(), "missing.tfrecord").is_err());
    }

    /// Throughput smoke test (release only, prints numbers):
    /// `cargo test --release --lib shard::writer -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput_smoke() {
        use std::time::Instant;
        let payload: Vec<u8> = (0..150_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let n = 2000;
        let total = (payload.len() * n) as f64 / 1e6;
        let dir = tempfile::tempdir().unwrap();
        let mbps = |t: Instant| total / t.elapsed().as_secs_f64();

        let t = Instant::now();
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for _ in 0..n {
            h.update(&payload);
        }
        std::hint::black_box(h.finalize());
        println!("sha256            {:8.0} MB/s", mbps(t));
        let t = Instant::now();
        let mut c = 0;
        for _ in 0..n {
            c ^= crate::shard::crc::masked_crc32c(&payload);
        }
        std::hint::black_box(c);
        println!("masked crc32c     {:8.0} MB/s", mbps(t));

        let t = Instant::now();
        let mut w =
            BufWriter::with_capacity(SHARD_BUF, File::create(dir.path().join("plain")).unwrap());
        for _ in 0..n {
            w.write_all(&payload).unwrap();
        }
        w.into_inner().unwrap().sync_all().unwrap();
        println!("plain write+fsync {:8.0} MB/s", mbps(t));

        let t = Instant::now();
        let mut sink = create_tfrecord_sink(dir.path(), "t").unwrap();
        for _ in 0..n {
            sink.append(&payload).unwrap();
        }
        sink.finish().unwrap();
        println!("tfrecord sink     {:8.0} MB/s", mbps(t));

        let t = Instant::now();
        let mut sink = create_lmdb_sink(dir.path(), "l").unwrap();
        for _ in 0..n {
            sink.append(&payload).unwrap();
        }
        sink.finish().unwrap();
        println!("lmdb sink         {:8.0} MB/s", mbps(t));

        let fast = SinkOptions { durable: false };
        let t = Instant::now();
        let mut w =
            BufWriter::with_capacity(SHARD_BUF, File::create(dir.path().join("plain2")).unwrap());
        for _ in 0..n {
            w.write_all(&payload).unwrap();
        }
        w.into_inner().unwrap();
        println!("plain write       {:8.0} MB/s", mbps(t));
        let t = Instant::now();
        let mut sink = create_tfrecord_sink_with(dir.path(), "t2", fast).unwrap();
        for _ in 0..n {
            sink.append(&payload).unwrap();
        }
        sink.finish().unwrap();
        println!("tfrecord sink, not durable {:8.0} MB/s", mbps(t));
        let t = Instant::now();
        let mut sink = create_lmdb_sink_with(dir.path(), "l2", fast).unwrap();
        for _ in 0..n {
            sink.append(&payload).unwrap();
        }
        sink.finish().unwrap();
        println!("lmdb sink, not durable     {:8.0} MB/s", mbps(t));
    }
}
