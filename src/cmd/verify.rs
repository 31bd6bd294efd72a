//! `dsprep verify OUT`: every record's CRCs, every index line, counts against the manifest,
//! optionally a full decode of every image. Each problem names the shard and byte offset.

use crate::cli::VerifyArgs;
use crate::report::verify::{BadRecord, ShardCheck, VerifyReport};
use crate::shard::example::Example;
use crate::shard::index::parse_index;
use crate::shard::manifest::{Manifest, ShardEntry, MANIFEST_FILE};
use crate::shard::od_example::keys;
use crate::shard::tfrecord::{RecordReader, FRAME_OVERHEAD};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::io::BufReader;
use std::path::Path;

pub fn run(args: &VerifyArgs) -> Result<VerifyReport> {
    let dir = &args.dir;
    let Some(manifest) = Manifest::load(dir)? else {
        bail!(
            "{}: no {MANIFEST_FILE}; is this a folder written by `dsprep convert`?",
            dir.display()
        );
    };
    if !manifest.complete {
        bail!(
            "{}: the conversion did not finish (manifest says complete: false); rerun convert with --resume",
            dir.display()
        );
    }
    let threads = crate::plan::thread_count(args.run.threads)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;
    let shards: Vec<&ShardEntry> = manifest.splits.iter().flat_map(|s| &s.shards).collect();
    let lmdb = manifest.options.format == crate::shard::format::ShardFormat::Lmdb;
    let checks: Vec<ShardCheck> = pool.install(|| {
        shards
            .par_iter()
            .map(|s| {
                if s.info.records == 0 && s.info.checksum.is_empty() {
                    // All its images were skipped: convert wrote no file for it.
                    let mut c = ShardCheck::new(&s.info.file, 0);
                    c.finish();
                    c
                } else if lmdb {
                    check_lmdb(dir, s, args.decode)
                } else {
                    check_tfrecord(dir, s, args.decode)
                }
            })
            .collect()
    });
    Ok(VerifyReport::new(dir.display().to_string(), checks))
}

fn bad(shard: &str, offset: Option<u64>, record: Option<u64>, reason: String) -> BadRecord {
    BadRecord {
        shard: shard.to_string(),
        offset,
        record,
        reason,
    }
}

/// Decode-level checks of one record: a parsable Example whose image decodes to the recorded
/// size and hashes to the recorded sha256.
fn check_payload(payload: &[u8], decode: bool) -> Result<(), String> {
    let ex = Example::decode(payload).map_err(|e| format!("not a tf.train.Example: {e}"))?;
    let encoded = ex
        .get_bytes(keys::ENCODED)
        .and_then(|v| v.first())
        .ok_or("no image/encoded feature")?;
    let sha = ex
        .get_bytes(keys::SHA256)
        .and_then(|v| v.first())
        .ok_or("no image/key/sha256 feature")?;
    use sha2::Digest;
    if hex::encode(sha2::Sha256::digest(encoded.as_ref())).as_bytes() != sha.as_ref() {
        return Err("image/encoded does not match image/key/sha256".into());
    }
    if decode {
        let img = crate::image::decode_rgb8(encoded).map_err(|e| format!("image: {e}"))?;
        let h = ex.get_int64s(keys::HEIGHT).and_then(|v| v.first().copied());
        let w = ex.get_int64s(keys::WIDTH).and_then(|v| v.first().copied());
        if (w, h) != (Some(i64::from(img.width)), Some(i64::from(img.height))) {
            return Err(format!(
                "image decodes to {}x{} but the record says {:?}x{:?}",
                img.width, img.height, w, h
            ));
        }
    }
    Ok(())
}

fn check_tfrecord(dir: &Path, s: &ShardEntry, decode: bool) -> ShardCheck {
    let name = s.info.file.clone();
    let mut check = ShardCheck::new(&name, s.info.records);
    let path = dir.join(&name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            check
                .bad
                .push(bad(&name, None, None, format!("cannot open: {e}")));
            return check;
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let index = match s.info.index.as_ref().map(|i| {
        let p = dir.join(i);
        std::fs::read(&p)
            .map_err(|e| format!("{}: cannot read index: {e}", p.display()))
            .and_then(|b| parse_index(&b, &p).map_err(|e| e.to_string()))
    }) {
        Some(Ok(v)) => Some(v),
        Some(Err(reason)) => {
            check.bad.push(bad(&name, None, None, reason));
            None
        }
        None => None,
    };
    let mut reader = RecordReader::with_len(BufReader::with_capacity(1 << 20, file), len);
    let mut buf = Vec::new();
    let mut n: u64 = 0;
    loop {
        match reader.next_into(&mut buf) {
            Ok(None) => break,
            Ok(Some(offset)) => {
                if let Some(idx) = &index {
                    let expect = (offset, buf.len() as u64 + FRAME_OVERHEAD);
                    match idx.get(n as usize) {
                        Some(&line) if line == expect => {}
                        Some(&line) => check.bad.push(bad(
                            &name,
                            Some(offset),
                            Some(n),
                            format!(
                                "index line {} says {:?}, record is at {:?}",
                                n + 1,
                                line,
                                expect
                            ),
                        )),
                        None => check.bad.push(bad(
                            &name,
                            Some(offset),
                            Some(n),
                            "record missing from the index".into(),
                        )),
                    }
                }
                if let Err(reason) = check_payload(&buf, decode) {
                    check.bad.push(bad(&name, Some(offset), Some(n), reason));
                }
                n += 1;
            }
            Err(e) => {
                let recoverable = e.is_recoverable();
                check
                    .bad
                    .push(bad(&name, Some(e.offset()), Some(n), e.to_string()));
                n += 1;
                if !recoverable {
                    break;
                }
            }
        }
    }
    check.records_read = n;
    if let Some(idx) = &index {
        if idx.len() as u64 != n {
            check.bad.push(bad(
                &name,
                None,
                None,
                format!("index has {} lines, shard has {n} records", idx.len()),
            ));
        }
    }
    check.finish();
    check
}

fn check_lmdb(dir: &Path, s: &ShardEntry, decode: bool) -> ShardCheck {
    let name = s.info.file.clone();
    let mut check = ShardCheck::new(&name, s.info.records);
    let result = crate::shard::lmdb::for_each_record(&dir.join(&name), |i, key, value| {
        if let Err(reason) = check_payload(value, decode) {
            check.bad.push(bad(
                &name,
                None,
                Some(i),
                format!("key {}: {reason}", String::from_utf8_lossy(key)),
            ));
        }
    });
    match result {
        Ok(n) => check.records_read = n,
        Err(e) => check.bad.push(bad(&name, None, None, e.to_string())),
    }
    check.finish();
    check
}
