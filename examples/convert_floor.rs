//! The floor under `convert`: only the work every record must do, nothing else. Each input file
//! is opened, read into a per-thread buffer, hashed (SHA-256 for `image/key/sha256`, CRC32C of
//! the bytes as TFRecord framing needs, xxh3 as the manifest checksum needs) and written to one
//! output file per thread; no annotation parsing, no Example encoding, no ordering. Stages can
//! be left out to price each one (bench/BENCHMARKS.md "convert at copy speed").
//!
//!   cargo run --release --example convert_floor -- IMAGES_DIR OUT_DIR THREADS [STAGES]
//!
//! STAGES: a comma list of read,sha,shab,crc,xxh,write (default: read,shab,crc,xxh,write).
//! `sha` hashes each file on one stream (`sha2`), `shab` a window of 32 at once through
//! `sha256_batch` (the lanes `convert` uses).

// Files are read a window at a time before they are hashed, as `convert` reads them.
use dsprep::jobs::convert::WINDOW;
use dsprep::shard::sha256_batch::sha256_batch;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: convert_floor IMAGES_DIR OUT_DIR THREADS [read,sha,shab,crc,xxh,write]");
        std::process::exit(2);
    }
    let stages = args
        .get(4)
        .map_or("read,shab,crc,xxh,write", |s| s.as_str());
    let has = |s: &str| stages.split(',').any(|x| x == s);
    let (sha, shab, crc, xxh, write) = (
        has("sha"),
        has("shab"),
        has("crc"),
        has("xxh"),
        has("write"),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args[1])
        .expect("images dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let threads: usize = args[3].parse().expect("threads");
    let out = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&out).expect("out dir");
    let t0 = Instant::now();
    let chunk = files.len().div_ceil(threads.max(1));
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk.max(1))
            .enumerate()
            .map(|(t, part)| {
                let out = out.join(format!("part-{t}"));
                s.spawn(move || {
                    let mut w = std::fs::File::create(out).expect("create");
                    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); WINDOW];
                    let mut acc = 0u64;
                    let mut x = xxhash_rust::xxh3::Xxh3::new();
                    for window in part.chunks(WINDOW) {
                        for (p, buf) in window.iter().zip(&mut bufs) {
                            let size = std::fs::metadata(p).expect("stat").len() as usize;
                            buf.clear();
                            buf.reserve(size + 1);
                            std::fs::File::open(p)
                                .expect("open")
                                .read_to_end(buf)
                                .expect("read");
                        }
                        let bufs = &bufs[..window.len()];
                        if shab {
                            let msgs: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
                            for d in sha256_batch(&msgs) {
                                acc ^= u64::from(d[0]);
                            }
                        }
                        for buf in bufs {
                            if sha {
                                acc ^= u64::from(Sha256::digest(buf)[0]);
                            }
                            if crc {
                                acc ^= u64::from(crc32c::crc32c(buf));
                            }
                            if xxh {
                                x.update(buf);
                            }
                            if write {
                                w.write_all(buf).expect("write");
                            }
                            acc = acc.wrapping_add(buf.len() as u64);
                        }
                    }
                    acc ^ x.digest()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    println!(
        "{} files, {threads} threads, stages {stages}: {:.3} s (checksum {total:x})",
        files.len(),
        t0.elapsed().as_secs_f64()
    );
}
