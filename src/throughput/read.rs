//! The runners' one way into the shards: every record's JPEG bytes (`image/encoded`, found
//! inside the serialized Example without decoding the rest) through the shard layer's reader
//! ([`crate::shard::source::read_records`], through the `.idx` where there is one). Records that
//! cannot be used become [`BadRecord`]s, and the walk goes on.

use crate::shard::example::find_bytes_feature;
use crate::shard::format::ShardRef;
use crate::shard::source::{read_records, Flow, ReadMode, RecordProblem};
use std::path::PathBuf;

/// A record that could not be used; the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRecord {
    pub shard: PathBuf,
    /// Byte offset of the record (TFRecord) or record number (LMDB); 0 for a problem with the
    /// whole shard.
    pub offset: u64,
    pub reason: String,
}

/// One usable record.
#[derive(Debug, Clone, Copy)]
pub struct JpegRecord<'a> {
    /// Position in the shard, from 0 (bad records counted).
    pub number: u64,
    /// Where a problem with it is reported: see [`BadRecord::offset`].
    pub offset: u64,
    pub jpeg: &'a [u8],
}

/// Reads every record of `shard`: `on_jpeg` gets the usable ones (and can stop the walk),
/// `on_bad` the rest. `buf` is scratch space reused across calls.
pub fn read_jpegs(
    shard: &ShardRef,
    buf: &mut Vec<u8>,
    on_jpeg: &mut dyn FnMut(JpegRecord<'_>) -> Flow,
    on_bad: &mut dyn FnMut(BadRecord),
) {
    // Both callbacks below report bad records; they run one at a time.
    let on_bad = std::cell::RefCell::new(on_bad);
    let bad = |offset: u64, reason: String| {
        (on_bad.borrow_mut())(BadRecord {
            shard: shard.path.clone(),
            offset,
            reason,
        })
    };
    read_records(
        shard,
        ReadMode::Indexed,
        buf,
        &mut |r| {
            let offset = r.offset.unwrap_or(r.number);
            match find_bytes_feature(r.payload, "image/encoded") {
                Ok(Some(jpeg)) => on_jpeg(JpegRecord {
                    number: r.number,
                    offset,
                    jpeg,
                }),
                Ok(None) => {
                    bad(offset, "record has no image/encoded".into());
                    Flow::Continue
                }
                Err(e) => {
                    bad(offset, format!("bad tf.train.Example: {e}"));
                    Flow::Continue
                }
            }
        },
        &mut |p: RecordProblem| bad(p.offset.or(p.number).unwrap_or(0), p.reason),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::example::Example;
    use crate::shard::format::{discover, index_path_for};
    use crate::shard::tfrecord;
    use crate::shard::writer::create_lmdb_sink;
    use std::path::Path;

    fn example_with(jpeg: &[u8]) -> Vec<u8> {
        let mut e = Example::new();
        e.insert_bytes("image/encoded", [jpeg.to_vec()]);
        e.to_bytes()
    }

    fn write_tfrecord(dir: &Path, name: &str, payloads: &[Vec<u8>]) -> (PathBuf, Vec<u64>) {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        let (mut idx, mut offsets, mut off) = (String::new(), Vec::new(), 0u64);
        for pl in payloads {
            let n = tfrecord::write_record(&mut f, pl).unwrap();
            idx.push_str(&format!("{off} {n}\n"));
            offsets.push(off);
            off += n;
        }
        std::fs::write(index_path_for(&p), idx).unwrap();
        (p, offsets)
    }

    type Seen = (Vec<(u64, u64, Vec<u8>)>, Vec<BadRecord>);

    fn collect(shard: &ShardRef) -> Seen {
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        read_jpegs(
            shard,
            &mut Vec::new(),
            &mut |r| {
                good.push((r.number, r.offset, r.jpeg.to_vec()));
                Flow::Continue
            },
            &mut |b| bad.push(b),
        );
        (good, bad)
    }

    #[test]
    fn tfrecord_jpegs_with_offsets_and_bad_records_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut no_image = Example::new();
        no_image.insert_str("image/format", ["jpeg"]);
        let pls = vec![
            example_with(&[0xFF, 0xD8, 1]),
            no_image.to_bytes(),
            example_with(&[0xFF, 0xD8, 3]),
            example_with(&[0xFF, 0xD8, 4]),
        ];
        let (p, offs) = write_tfrecord(dir.path(), "a.tfrecord", &pls);
        // Damage record 3's payload: its CRC fails, the others are read.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[offs[3] as usize + 14] ^= 0xFF;
        std::fs::write(&p, bytes).unwrap();
        let (good, bad) = collect(&discover(dir.path()).unwrap()[0]);
        assert_eq!(
            good,
            vec![
                (0, offs[0], vec![0xFF, 0xD8, 1]),
                (2, offs[2], vec![0xFF, 0xD8, 3])
            ]
        );
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(
            (bad[0].offset, bad[0].reason.as_str()),
            (offs[1], "record has no image/encoded")
        );
        assert_eq!(bad[0].shard, p);
        assert_eq!(bad[1].offset, offs[3]);
        assert!(bad[1].reason.contains("CRC"), "{}", bad[1].reason);
    }

    #[test]
    fn lmdb_offsets_are_record_numbers_and_stop_ends_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = create_lmdb_sink(dir.path(), "l").unwrap();
        for p in [example_with(b"a"), b"\x0a\xff".to_vec(), example_with(b"c")] {
            sink.append(&p).unwrap();
        }
        sink.finish().unwrap();
        let s = &discover(dir.path()).unwrap()[0];
        let (good, bad) = collect(s);
        assert_eq!(good, vec![(0, 0, b"a".to_vec()), (2, 2, b"c".to_vec())]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, 1);
        assert!(
            bad[0].reason.starts_with("bad tf.train.Example: "),
            "{bad:?}"
        );
        let mut n = 0;
        read_jpegs(
            s,
            &mut Vec::new(),
            &mut |_| {
                n += 1;
                Flow::Stop
            },
            &mut |_| {},
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn a_missing_shard_is_one_bad_record_at_offset_zero() {
        let s = ShardRef {
            path: "/nonexistent/x.tfrecord".into(),
            format: crate::shard::format::ShardFormat::Tfrecord,
            index: None,
        };
        let (good, bad) = collect(&s);
        assert!(good.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, 0);
        assert!(bad[0].reason.contains("cannot open"), "{bad:?}");
    }
}
