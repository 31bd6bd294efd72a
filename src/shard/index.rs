//! DALI `tfrecord2idx` index: ASCII, one `"<offset> <size>\n"` line per record.
//!
//! `offset` is where the record's length field starts, `size` the whole framed record (payload +
//! 16). DALI's and the PyTorch `tfrecord` package's readers take these files as they are.
//! [`index_tfrecord`] rebuilds one for a TFRecord written by another tool: it reads only the
//! 12-byte headers and seeks over payloads, so memory stays constant whatever the shard size
//! (DALI's Python `tfrecord2idx` reads whole records and runs out of memory on 1.8 GB shards).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::Path;

use super::atomic::AtomicFile;
use super::crc::masked_crc32c;
use super::tfrecord::{parse_header, FOOTER_LEN, FRAME_OVERHEAD, HEADER_LEN};
use super::ShardError;

/// Writes one index line. `size` is the framed size that [`super::tfrecord::write_record`]
/// returns. `write!` formats straight into the writer: no allocation per line.
pub fn write_index_line<W: Write>(w: &mut W, offset: u64, size: u64) -> io::Result<()> {
    writeln!(w, "{offset} {size}")
}

/// Parses a whole index file. Checks the syntax of every line (two unsigned decimals separated
/// by one space, newline-terminated except possibly the last) and that `size >= 16`; whether
/// the lines match a shard is the verifier's business. Lines are numbered from 1.
pub fn parse_index(bytes: &[u8], path: &Path) -> Result<Vec<(u64, u64)>, ShardError> {
    let bad = |line: usize, reason: String| ShardError::BadIndex {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut out = Vec::with_capacity(bytes.len() / 12);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(out);
    }
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let mut parts = line.split(|&b| b == b' ');
        let (Some(off), Some(size), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(
                n,
                format!(
                    "expected \"<offset> <size>\", got {:?}",
                    String::from_utf8_lossy(line)
                ),
            ));
        };
        let offset = parse_u64(off).ok_or_else(|| {
            bad(
                n,
                format!(
                    "offset {:?} is not an unsigned integer",
                    String::from_utf8_lossy(off)
                ),
            )
        })?;
        let size = parse_u64(size).ok_or_else(|| {
            bad(
                n,
                format!(
                    "size {:?} is not an unsigned integer",
                    String::from_utf8_lossy(size)
                ),
            )
        })?;
        if size < FRAME_OVERHEAD {
            return Err(bad(
                n,
                format!("size {size} is smaller than the 16 bytes of framing every record has"),
            ));
        }
        out.push((offset, size));
    }
    Ok(out)
}

/// Strict decimal parse: digits only (no sign, no spaces), no overflow.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// Writes `out_idx` for the TFRecord at `path` and returns the number of records. Payload CRCs
/// are not checked (that is `dsprep verify`'s job); length CRCs and truncation are, and on either
/// no index is left behind.
pub fn index_tfrecord(path: &Path, out_idx: &Path) -> Result<u64, ShardError> {
    index_tfrecord_with(path, out_idx, false)
}

/// [`index_tfrecord`], optionally also checking every payload CRC (reads the whole file).
pub fn index_tfrecord_with(
    path: &Path,
    out_idx: &Path,
    check_data_crc: bool,
) -> Result<u64, ShardError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ShardError::Io { path: p, source }
    };
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    // Removed again on every early return; renamed into place at the end.
    let mut w = AtomicFile::create(out_idx)?;
    let partial = w.partial().to_path_buf();
    // Small buffer: with small records the reader streams through it, with large ones
    // `seek_relative` jumps over payloads without reading them.
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut offset = 0u64;
    let mut records = 0u64;
    let mut payload = Vec::new();
    while offset < file_len {
        let corrupt = |reason: String| ShardError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let available = file_len - offset;
        if available < HEADER_LEN as u64 {
            return Err(corrupt(format!(
                "truncated header: {available} bytes left, 12 needed (file cut short?)"
            )));
        }
        let mut h = [0u8; HEADER_LEN];
        r.read_exact(&mut h).map_err(io_err(path))?;
        let len = parse_header(&h).ok_or_else(|| {
            corrupt("length CRC mismatch (framing damaged; cannot index past this point)".into())
        })?;
        let size = len.saturating_add(FRAME_OVERHEAD);
        if size > available {
            return Err(corrupt(format!(
                "truncated record: needs {size} bytes, {available} left (file cut short?)"
            )));
        }
        if check_data_crc {
            payload.clear();
            let want = len + FOOTER_LEN as u64;
            (&mut r)
                .take(want)
                .read_to_end(&mut payload)
                .map_err(io_err(path))?;
            if payload.len() as u64 != want {
                return Err(corrupt("file shrank while being indexed".into()));
            }
            let (data, crc) = payload.split_at(len as usize);
            let mut crc_bytes = [0u8; 4];
            crc_bytes.copy_from_slice(crc);
            if masked_crc32c(data) != u32::from_le_bytes(crc_bytes) {
                return Err(corrupt("data CRC mismatch (payload damaged)".into()));
            }
        } else {
            let skip = i64::try_from(len + FOOTER_LEN as u64)
                .map_err(|_| corrupt(format!("record length {len} too large")))?;
            r.seek_relative(skip).map_err(io_err(path))?;
        }
        write_index_line(&mut w, offset, size).map_err(io_err(&partial))?;
        offset += size;
        records += 1;
    }
    // The file may have grown since we took its length; it must at least end where we stopped.
    let pos = r.stream_position().map_err(io_err(path))?;
    if pos != offset {
        return Err(ShardError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: format!(
                "reader position {pos} disagrees with record end (file changed while indexing?)"
            ),
        });
    }
    w.commit(true)?;
    Ok(records)
}

/// Parses an index file from disk (convenience for readers).
pub fn read_index(path: &Path) -> Result<Vec<(u64, u64)>, ShardError> {
    let mut bytes = Vec::new();
    let f = File::open(path).map_err(|source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    BufReader::new(f)
        .read_to_end(&mut bytes)
        .map_err(|source| ShardError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    parse_index(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::format::partial_path;
    use crate::shard::tfrecord::write_record;

    fn write_shard(path: &Path, payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut idx = Vec::new();
        let mut offset = 0;
        for p in payloads {
            let size = write_record(&mut data, p).unwrap();
            write_index_line(&mut idx, offset, size).unwrap();
            offset += size;
        }
        std::fs::write(path, &data).unwrap();
        idx
    }

    fn payloads() -> Vec<Vec<u8>> {
        // Mix of tiny records (served from the read buffer) and ones larger than it (seeked).
        (0..40)
            .map(|i| vec![i as u8; if i % 7 == 0 { 200_000 + i } else { i * 3 }])
            .collect()
    }

    #[test]
    fn line_format() {
        let mut out = Vec::new();
        write_index_line(&mut out, 0, 16).unwrap();
        write_index_line(&mut out, 16, 1_234_567_890_123).unwrap();
        assert_eq!(out, b"0 16\n16 1234567890123\n");
    }

    #[test]
    fn reindexing_matches_index_written_while_appending() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("a.tfrecord");
        let expected = write_shard(&shard, &payloads());
        let idx = dir.path().join("a.idx");
        assert_eq!(index_tfrecord(&shard, &idx).unwrap(), 40);
        assert_eq!(std::fs::read(&idx).unwrap(), expected);
        assert!(!partial_path(&idx).exists());
        assert_eq!(index_tfrecord_with(&shard, &idx, true).unwrap(), 40);
        assert_eq!(std::fs::read(&idx).unwrap(), expected);
        // And the index parses back to the same pairs the independent reader sees.
        let parsed = read_index(&idx).unwrap();
        let theirs: Vec<(u64, u64)> =
            tfrecord::indexer::load_file(shard.as_path(), Default::default())
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    // tfrecord reports the payload's offset and length.
                    (r.offset - 12, r.len as u64 + 16)
                })
                .collect();
        assert_eq!(parsed, theirs);
    }

    #[test]
    fn empty_shard_gives_empty_index() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("e.tfrecord");
        std::fs::write(&shard, b"").unwrap();
        let idx = dir.path().join("e.idx");
        assert_eq!(index_tfrecord(&shard, &idx).unwrap(), 0);
        assert_eq!(std::fs::read(&idx).unwrap(), b"");
    }

    #[test]
    fn damaged_shards_leave_no_index() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("d.tfrecord");
        let idx = dir.path().join("d.idx");
        let good = {
            write_shard(&shard, &payloads());
            std::fs::read(&shard).unwrap()
        };
        let first_size = 200_000 + 16; // payload 0 is one of the large ones
                                       // Length CRC broken in the second record.
        let mut bad = good.clone();
        bad[first_size] ^= 4;
        std::fs::write(&shard, &bad).unwrap();
        match index_tfrecord(&shard, &idx) {
            Err(ShardError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, first_size as u64);
                assert!(reason.contains("length CRC"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!idx.exists() && !partial_path(&idx).exists());
        // Truncated inside the last payload.
        std::fs::write(&shard, &good[..good.len() - 5]).unwrap();
        let err = index_tfrecord(&shard, &idx).unwrap_err().to_string();
        assert!(
            err.contains("truncated record") && err.contains("d.tfrecord"),
            "{err}"
        );
        assert!(!idx.exists() && !partial_path(&idx).exists());
        // Truncated inside a header.
        std::fs::write(&shard, &good[..first_size + 3]).unwrap();
        let err = index_tfrecord(&shard, &idx).unwrap_err().to_string();
        assert!(err.contains("truncated header"), "{err}");
        // Payload damage is only seen when asked for.
        let mut bad = good.clone();
        bad[first_size + 12] ^= 1;
        std::fs::write(&shard, &bad).unwrap();
        assert_eq!(index_tfrecord(&shard, &idx).unwrap(), 40);
        let err = index_tfrecord_with(&shard, &idx, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data CRC") && err.contains(&first_size.to_string()),
            "{err}"
        );
        // Missing input names the file.
        let err = index_tfrecord(&dir.path().join("nope.tfrecord"), &idx).unwrap_err();
        assert!(err.to_string().contains("nope.tfrecord"));
    }

    #[test]
    fn parse_index_errors_name_line_and_reason() {
        let p = Path::new("x.idx");
        assert_eq!(parse_index(b"", p).unwrap(), vec![]);
        assert_eq!(
            parse_index(b"0 16\n16 20", p).unwrap(),
            vec![(0, 16), (16, 20)]
        );
        for (bytes, line, want) in [
            (&b"0 16\n\n"[..], 2, "expected"),
            (b"0 16\n16\n", 2, "expected"),
            (b"0 16 3\n", 1, "expected"),
            (b"0  16\n", 1, "expected"),
            (b"0 16\r\n", 1, "size"),
            (b"-1 16\n", 1, "offset"),
            (b"0 15\n", 1, "smaller than"),
            (b"0 99999999999999999999\n", 1, "size"),
            (b"0 16\n0x10 16\n", 2, "offset"),
        ] {
            match parse_index(bytes, p) {
                Err(ShardError::BadIndex {
                    line: l, reason, ..
                }) => {
                    assert_eq!(l, line, "{bytes:?}");
                    assert!(reason.contains(want), "{bytes:?}: {reason}");
                }
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }
}
