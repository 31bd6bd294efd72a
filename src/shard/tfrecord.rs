//! TFRecord framing: `u64 LE length | u32 masked_crc(length) | payload | u32 masked_crc(payload)`.
//!
//! Three entry points, one set of rules:
//! - [`write_record`] frames a payload into any `Write` (the sink tracks offsets itself, so the
//!   index line is written while appending).
//! - [`RecordReader`] streams records from any `Read`, reusing one buffer through
//!   [`RecordReader::next_into`].
//! - [`iter_slice`] walks a byte slice (an mmap'd shard) without copying.
//!
//! Error policy, shared by all readers: a bad *length* CRC means the framing itself can no longer
//! be trusted, so reading stops (there is no resync marker in TFRecord). A bad *data* CRC leaves
//! the framing intact: the error is yielded and the next record is read. A length that runs past
//! the end of the data is reported as [`RecordError::Truncated`] without allocating that length.

use std::io::{self, Read, Write};

use super::crc::masked_crc32c;

/// Bytes of framing around each payload: 8 (length) + 4 (length CRC) + 4 (data CRC).
pub const FRAME_OVERHEAD: u64 = 16;
/// Bytes before the payload: the length and its CRC.
pub const HEADER_LEN: usize = 12;
/// Bytes after the payload: its CRC.
pub const FOOTER_LEN: usize = 4;

/// A record that failed to read. Offsets are those of the record's length field, which is what
/// the `.idx` file and TensorFlow's "corrupted record at N" message use.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("corrupted record at offset {offset}: length CRC mismatch (the framing is damaged; nothing after this point can be read)")]
    BadLengthCrc { offset: u64 },
    #[error("corrupted record at offset {offset}: data CRC mismatch (payload damaged; later records are still readable)")]
    BadDataCrc { offset: u64 },
    #[error("truncated record at offset {offset}: needs {needed} bytes from there, only {available} present (file cut short?)")]
    Truncated {
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("read error at offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

impl RecordError {
    /// Byte offset of the record the error concerns.
    pub fn offset(&self) -> u64 {
        match self {
            RecordError::BadLengthCrc { offset }
            | RecordError::BadDataCrc { offset }
            | RecordError::Truncated { offset, .. }
            | RecordError::Io { offset, .. } => *offset,
        }
    }

    /// Whether records after this one can still be read (only a bad data CRC allows that).
    pub fn is_recoverable(&self) -> bool {
        matches!(self, RecordError::BadDataCrc { .. })
    }

    /// Attaches the file name, giving the shard layer's error.
    pub fn into_shard_error(self, path: &std::path::Path) -> super::ShardError {
        match self {
            RecordError::Io { source, .. } => super::ShardError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => super::ShardError::Corrupt {
                path: path.to_path_buf(),
                offset: other.offset(),
                reason: other.to_string(),
            },
        }
    }
}

/// Builds the 12-byte header for a payload of `len` bytes.
#[inline]
pub fn header(len: u64) -> [u8; HEADER_LEN] {
    let len_bytes = len.to_le_bytes();
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&len_bytes);
    h[8..].copy_from_slice(&masked_crc32c(&len_bytes).to_le_bytes());
    h
}

/// Frames `payload` into `w` and returns the framed size (`payload.len() + 16`), which is the
/// `size` column of the index. Three writes, no copy of the payload. (The shard sinks in
/// `writer.rs` frame records themselves, from payload pieces that are never joined.)
pub fn write_record<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<u64> {
    let len = payload.len() as u64;
    w.write_all(&header(len))?;
    w.write_all(payload)?;
    w.write_all(&masked_crc32c(payload).to_le_bytes())?;
    Ok(len + FRAME_OVERHEAD)
}

/// Parses a 12-byte header: the payload length, or `None` when its CRC does not match.
#[inline]
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Option<u64> {
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&h[..8]);
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(&h[8..]);
    (masked_crc32c(&len_bytes) == u32::from_le_bytes(crc_bytes))
        .then(|| u64::from_le_bytes(len_bytes))
}

/// One record read by [`RecordReader`]'s iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset of the record's length field in the stream.
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// Streaming TFRecord reader over any `Read` (wrap files in a `BufReader`).
///
/// Use [`RecordReader::next_into`] in hot loops (one buffer for the whole file); the `Iterator`
/// impl allocates a fresh `Vec` per record for convenience.
pub struct RecordReader<R: Read> {
    inner: R,
    offset: u64,
    /// Total stream length when known: lets absurd lengths be rejected before reading them.
    total_len: Option<u64>,
    check_data_crc: bool,
    done: bool,
}

/// First allocation for a payload; the rest grows as bytes actually arrive, so a damaged (but
/// CRC-consistent) length of exabytes costs nothing until the data is really there.
const INITIAL_RESERVE: u64 = 64 << 20;

impl<R: Read> RecordReader<R> {
    pub fn new(inner: R) -> Self {
        RecordReader {
            inner,
            offset: 0,
            total_len: None,
            check_data_crc: true,
            done: false,
        }
    }

    /// Like [`RecordReader::new`] for a stream of known length (a file's size): a record whose
    /// length runs past the end is reported as truncated without trying to read it.
    pub fn with_len(inner: R, total_len: u64) -> Self {
        RecordReader {
            total_len: Some(total_len),
            ..Self::new(inner)
        }
    }

    /// Turns the payload CRC check off (it is on by default); framing CRCs are always checked.
    pub fn check_data_crc(mut self, on: bool) -> Self {
        self.check_data_crc = on;
        self
    }

    /// Offset of the next record to be read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads the next record's payload into `buf` (cleared first) and returns its offset;
    /// `Ok(None)` at a clean end of stream. After an error other than
    /// [`RecordError::BadDataCrc`] every later call returns `Ok(None)`.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, RecordError> {
        buf.clear();
        if self.done {
            return Ok(None);
        }
        let result = self.read_one(buf);
        match &result {
            Ok(None) => self.done = true,
            Err(e) if !e.is_recoverable() => self.done = true,
            _ => {}
        }
        result
    }

    fn read_one(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, RecordError> {
        let start = self.offset;
        let mut h = [0u8; HEADER_LEN];
        let got = read_full(&mut self.inner, &mut h).map_err(|source| RecordError::Io {
            offset: start,
            source,
        })?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_LEN {
            return Err(RecordError::Truncated {
                offset: start,
                needed: HEADER_LEN as u64,
                available: got as u64,
            });
        }
        let len = parse_header(&h).ok_or(RecordError::BadLengthCrc { offset: start })?;
        let needed = len.saturating_add(FRAME_OVERHEAD);
        if let Some(total) = self.total_len {
            let available = total.saturating_sub(start);
            if needed > available {
                return Err(RecordError::Truncated {
                    offset: start,
                    needed,
                    available,
                });
            }
        }
        // Payload plus its CRC in one read; the CRC is split off afterwards.
        let want = len.saturating_add(FOOTER_LEN as u64);
        buf.reserve(usize::try_from(want.min(INITIAL_RESERVE)).unwrap_or(0));
        let got = (&mut self.inner)
            .take(want)
            .read_to_end(buf)
            .map_err(|source| RecordError::Io {
                offset: start,
                source,
            })? as u64;
        if got < want {
            return Err(RecordError::Truncated {
                offset: start,
                needed,
                available: HEADER_LEN as u64 + got,
            });
        }
        let payload_len = buf.len() - FOOTER_LEN;
        let mut crc_bytes = [0u8; FOOTER_LEN];
        crc_bytes.copy_from_slice(&buf[payload_len..]);
        buf.truncate(payload_len);
        self.offset = start + needed;
        if self.check_data_crc && masked_crc32c(buf) != u32::from_le_bytes(crc_bytes) {
            return Err(RecordError::BadDataCrc { offset: start });
        }
        Ok(Some(start))
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut payload = Vec::new();
        match self.next_into(&mut payload) {
            Ok(Some(offset)) => Some(Ok(Record { offset, payload })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read (retrying
/// on `Interrupted`), so a short header can be told apart from a clean end.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Zero-copy walk over a whole TFRecord file held in memory (e.g. mmap'd): yields each record's
/// offset and payload, with the same error policy as [`RecordReader`] (data CRC checked).
pub fn iter_slice(bytes: &[u8]) -> SliceRecords<'_> {
    SliceRecords {
        bytes,
        offset: 0,
        check_data_crc: true,
        done: false,
    }
}

/// Iterator returned by [`iter_slice`].
pub struct SliceRecords<'a> {
    bytes: &'a [u8],
    offset: usize,
    check_data_crc: bool,
    done: bool,
}

impl<'a> SliceRecords<'a> {
    /// Turns the payload CRC check off (framing CRCs are always checked).
    pub fn check_data_crc(mut self, on: bool) -> Self {
        self.check_data_crc = on;
        self
    }

    fn read_one(&mut self) -> Option<Result<(u64, &'a [u8]), RecordError>> {
        let start = self.offset;
        let rest = self.bytes.get(start..)?;
        if rest.is_empty() {
            return None;
        }
        let start64 = start as u64;
        let available = rest.len() as u64;
        let Some(h) = rest.first_chunk::<HEADER_LEN>() else {
            return Some(Err(RecordError::Truncated {
                offset: start64,
                needed: HEADER_LEN as u64,
                available,
            }));
        };
        let Some(len) = parse_header(h) else {
            return Some(Err(RecordError::BadLengthCrc { offset: start64 }));
        };
        let needed = len.saturating_add(FRAME_OVERHEAD);
        if needed > available {
            return Some(Err(RecordError::Truncated {
                offset: start64,
                needed,
                available,
            }));
        }
        // needed <= available <= usize::MAX, so these conversions and slices are in range.
        let payload_end = HEADER_LEN + len as usize;
        let payload = &rest[HEADER_LEN..payload_end];
        let mut crc_bytes = [0u8; FOOTER_LEN];
        crc_bytes.copy_from_slice(&rest[payload_end..payload_end + FOOTER_LEN]);
        self.offset = start + needed as usize;
        if self.check_data_crc && masked_crc32c(payload) != u32::from_le_bytes(crc_bytes) {
            return Some(Err(RecordError::BadDataCrc { offset: start64 }));
        }
        Some(Ok((start64, payload)))
    }
}

impl<'a> Iterator for SliceRecords<'a> {
    type Item = Result<(u64, &'a [u8]), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read_one();
        match &item {
            None => self.done = true,
            Some(Err(e)) if !e.is_recoverable() => self.done = true,
            _ => {}
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let n = write_record(&mut out, p).unwrap();
            assert_eq!(n, p.len() as u64 + 16);
        }
        out
    }

    /// Reads every item from all three readers and checks they agree; returns the slice view.
    fn read_all(bytes: &[u8]) -> Vec<Result<(u64, Vec<u8>), String>> {
        let slice: Vec<_> = iter_slice(bytes)
            .map(|r| r.map(|(o, p)| (o, p.to_vec())).map_err(|e| e.to_string()))
            .collect();
        let streamed: Vec<_> = RecordReader::new(bytes)
            .map(|r| {
                r.map(|rec| (rec.offset, rec.payload))
                    .map_err(|e| e.to_string())
            })
            .collect();
        let sized: Vec<_> = RecordReader::with_len(bytes, bytes.len() as u64)
            .map(|r| {
                r.map(|rec| (rec.offset, rec.payload))
                    .map_err(|e| e.to_string())
            })
            .collect();
        assert_eq!(slice, sized, "slice vs sized reader");
        assert_eq!(slice, streamed, "slice vs streaming reader");
        slice
    }

    #[test]
    fn framing_bytes_exact() {
        let framed = frame_all(&[b"hello"]);
        assert_eq!(framed.len(), 21);
        assert_eq!(&framed[..8], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &framed[8..12],
            &masked_crc32c(&5u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&framed[12..17], b"hello");
        assert_eq!(&framed[17..], &masked_crc32c(b"hello").to_le_bytes());
        // An empty record is 16 bytes: length 0, its CRC, no payload, mask(crc32c("")).
        let empty = frame_all(&[b""]);
        assert_eq!(empty.len(), 16);
        assert_eq!(&empty[12..], &0xa282_ead8u32.to_le_bytes());
    }

    #[test]
    fn round_trip_offsets() {
        let payloads: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i * 37]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        let bytes = frame_all(&refs);
        let got = read_all(&bytes);
        let mut offset = 0u64;
        for (item, p) in got.iter().zip(&payloads) {
            let (o, payload) = item.as_ref().unwrap();
            assert_eq!(*o, offset);
            assert_eq!(payload, p);
            offset += p.len() as u64 + 16;
        }
        assert_eq!(got.len(), payloads.len());
        // next_into reuses one buffer and reports the same offsets.
        let mut r = RecordReader::new(bytes.as_slice());
        let mut buf = Vec::new();
        let mut n = 0;
        while let Some(o) = r.next_into(&mut buf).unwrap() {
            assert_eq!(buf, payloads[n]);
            assert!(o < bytes.len() as u64);
            n += 1;
        }
        assert_eq!(n, 50);
        assert_eq!(r.offset(), bytes.len() as u64);
    }

    #[test]
    fn empty_input_yields_nothing() {
        assert!(read_all(&[]).is_empty());
    }

    #[test]
    fn bad_length_crc_stops() {
        let mut bytes = frame_all(&[b"aaaa", b"bbbbbb", b"cc"]);
        let second = 4 + 16;
        bytes[second] ^= 0x01; // flip a bit in the second record's length
        let got = read_all(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().1, b"aaaa");
        let mut it = iter_slice(&bytes);
        it.next();
        match it.next() {
            Some(Err(RecordError::BadLengthCrc { offset })) => assert_eq!(offset, second as u64),
            other => panic!("expected BadLengthCrc, got {other:?}"),
        }
        assert!(it.next().is_none(), "no resync after a bad length CRC");
        let mut r = RecordReader::new(bytes.as_slice());
        let mut buf = Vec::new();
        assert_eq!(r.next_into(&mut buf).unwrap(), Some(0));
        assert!(matches!(
            r.next_into(&mut buf),
            Err(RecordError::BadLengthCrc { offset: 20 })
        ));
        assert_eq!(r.next_into(&mut buf).unwrap(), None);
    }

    #[test]
    fn bad_data_crc_is_recoverable() {
        let mut bytes = frame_all(&[b"aaaa", b"bbbbbb", b"cc"]);
        let second = 4 + 16;
        bytes[second + 12 + 3] ^= 0x80; // flip a bit inside the second payload
        for (name, items) in [
            (
                "slice",
                iter_slice(&bytes)
                    .map(|r| r.map(|(o, _)| o))
                    .collect::<Vec<_>>(),
            ),
            (
                "stream",
                RecordReader::new(bytes.as_slice())
                    .map(|r| r.map(|rec| rec.offset))
                    .collect(),
            ),
        ] {
            assert_eq!(items.len(), 3, "{name}");
            assert_eq!(*items[0].as_ref().unwrap(), 0);
            assert!(
                matches!(items[1], Err(RecordError::BadDataCrc { offset: 20 })),
                "{name}: {:?}",
                items[1]
            );
            assert_eq!(*items[2].as_ref().unwrap(), 20 + 22, "{name}");
        }
        // Data CRC checking can be turned off (for indexers that only want framing).
        assert!(iter_slice(&bytes).check_data_crc(false).all(|r| r.is_ok()));
        assert!(RecordReader::new(bytes.as_slice())
            .check_data_crc(false)
            .all(|r| r.is_ok()));
        // A damaged payload CRC field is a data CRC error too.
        let mut bytes2 = frame_all(&[b"aaaa"]);
        let last = bytes2.len() - 1;
        bytes2[last] ^= 1;
        assert!(matches!(
            iter_slice(&bytes2).next(),
            Some(Err(RecordError::BadDataCrc { offset: 0 }))
        ));
    }

    #[test]
    fn truncation_reports_needed_and_available() {
        let bytes = frame_all(&[b"aaaa", b"bbbbbbbbbb"]);
        let second = 20u64;
        // Cut in the middle of the second payload.
        let cut = &bytes[..(second as usize + 12 + 5)];
        let got: Vec<_> = iter_slice(cut).collect();
        assert_eq!(got.len(), 2);
        match &got[1] {
            Err(RecordError::Truncated {
                offset,
                needed,
                available,
            }) => {
                assert_eq!((*offset, *needed, *available), (second, 26, 17));
            }
            other => panic!("{other:?}"),
        }
        // Streaming without a known length discovers the same after reading what is there.
        let mut r = RecordReader::new(cut);
        let mut buf = Vec::new();
        r.next_into(&mut buf).unwrap();
        match r.next_into(&mut buf) {
            Err(RecordError::Truncated {
                offset,
                needed,
                available,
            }) => assert_eq!((offset, needed, available), (second, 26, 17)),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.next_into(&mut buf).unwrap(), None);
        // Cut inside the header.
        let cut = &bytes[..(second as usize + 5)];
        match iter_slice(cut).nth(1) {
            Some(Err(RecordError::Truncated {
                offset,
                needed,
                available,
            })) => assert_eq!((offset, needed, available), (second, 12, 5)),
            other => panic!("{other:?}"),
        }
        let mut r = RecordReader::new(cut);
        r.next_into(&mut buf).unwrap();
        assert!(matches!(
            r.next_into(&mut buf),
            Err(RecordError::Truncated {
                offset: 20,
                needed: 12,
                available: 5
            })
        ));
        // Missing only the data CRC.
        let cut = &bytes[..bytes.len() - 2];
        assert!(matches!(
            iter_slice(cut).nth(1),
            Some(Err(RecordError::Truncated { offset: 20, .. }))
        ));
    }

    #[test]
    fn absurd_length_is_not_allocated() {
        // A header whose length CRC is valid but whose length is enormous.
        let mut bytes = header(u64::MAX - 3).to_vec();
        bytes.extend_from_slice(b"short");
        match iter_slice(&bytes).next() {
            Some(Err(RecordError::Truncated {
                offset: 0,
                needed,
                available: 17,
            })) => assert_eq!(needed, u64::MAX),
            other => panic!("{other:?}"),
        }
        let mut r = RecordReader::with_len(bytes.as_slice(), bytes.len() as u64);
        let mut buf = Vec::new();
        assert!(matches!(
            r.next_into(&mut buf),
            Err(RecordError::Truncated { available: 17, .. })
        ));
        assert!(
            buf.capacity() < 1024,
            "nothing allocated for the bogus length"
        );
        // Without a known length the reader reserves a bounded amount and finds the truncation.
        let mut bytes = header(1 << 40).to_vec();
        bytes.extend_from_slice(b"short");
        let mut r = RecordReader::new(bytes.as_slice());
        assert!(matches!(
            r.next_into(&mut buf),
            Err(RecordError::Truncated { available: 17, .. })
        ));
        assert!(buf.capacity() <= INITIAL_RESERVE as usize + 64);
    }

    #[test]
    fn io_error_carries_offset_and_stops() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(0);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut r = RecordReader::new(Failing(5));
        let mut buf = Vec::new();
        match r.next_into(&mut buf) {
            Err(RecordError::Io { offset: 0, source }) => {
                assert!(source.to_string().contains("disk on fire"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.next_into(&mut buf).unwrap(), None);
    }

    #[test]
    fn errors_convert_with_path() {
        let e = RecordError::BadDataCrc { offset: 42 }
            .into_shard_error(std::path::Path::new("x.tfrecord"));
        let msg = e.to_string();
        assert!(msg.contains("x.tfrecord") && msg.contains("42"), "{msg}");
    }
}
