//! The CPU fast path (`throughput::fast`) against the exact reference (`cpu_decode_rgb8` +
//! `preprocess_image`) on real shards: how far apart the outputs are, what each costs on one
//! core, and whether both refuse the same damaged files.
//!
//! `cargo run --release --example cpu_fast_check -- SHARD_DIR [--count 200] [--side 640]
//!  [--letterbox] [--sweep 0]`
//!
//! Differences are in 8-bit levels (identity normalisation), over every element of every
//! block: a histogram of |fast − reference| rounded up, the maximum and the mean, and the same
//! for the decoders alone (libjpeg-turbo vs the reference's zune-jpeg). `--sweep N` damages the
//! first images N times each inside the scan (a random byte changed, or a cut with an
//! end-of-image marker appended) and counts who refuses what.

use dsprep::image::decode_rgb8;
use dsprep::image::fast_decode::RgbDecoder;
use dsprep::shard::source::{shards_in, Flow};
use dsprep::throughput::fast::{preprocess_jpeg, Target};
use dsprep::throughput::hsv::IDENTITY;
use dsprep::throughput::preprocess::{describe, preprocess_image, Normalize};
use dsprep::throughput::read::read_jpegs;
use dsprep::throughput::ResizeMode;
use std::time::{Duration, Instant};

#[path = "common/args.rs"]
mod args;
use args::arg;

/// |a − b| histogram in whole levels (last bucket: 8 and more), max, sum, count.
#[derive(Default)]
struct Diffs {
    hist: [u64; 9],
    max: f32,
    sum: f64,
    n: u64,
}

impl Diffs {
    fn add(&mut self, a: f32, b: f32) {
        let d = (a - b).abs();
        self.hist[(d.ceil() as usize).min(8)] += 1;
        self.max = self.max.max(d);
        self.sum += f64::from(d);
        self.n += 1;
    }
    fn print(&self, what: &str) {
        let pct: Vec<String> = self
            .hist
            .iter()
            .map(|&c| format!("{:.4}", 100.0 * c as f64 / self.n.max(1) as f64))
            .collect();
        println!(
            "{what}: max {:.3} mean {:.4} levels; % of elements with |d| in 0,(0,1],(1,2],..,>7: {}",
            self.max,
            self.sum / self.n.max(1) as f64,
            pct.join(" ")
        );
    }
}

fn scan_start(j: &[u8]) -> Option<usize> {
    let sos = j.windows(2).position(|w| w == [0xFF, 0xDA])?;
    let len = usize::from(u16::from_be_bytes([*j.get(sos + 2)?, *j.get(sos + 3)?]));
    Some(sos + 2 + len)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!(
            "usage: cpu_fast_check SHARD_DIR [--count N] [--side S] [--letterbox] [--sweep N]"
        );
        std::process::exit(2);
    };
    let count: usize = arg(&args, "--count", 200);
    let side: u32 = arg(&args, "--side", 640);
    let sweep: usize = arg(&args, "--sweep", 0);
    let mode = if args.iter().any(|a| a == "--letterbox") {
        ResizeMode::Letterbox
    } else {
        ResizeMode::Stretch
    };
    let shards = shards_in(std::path::Path::new(dir), None).expect("shards");
    let mut jpegs: Vec<Vec<u8>> = Vec::new();
    for s in &shards {
        read_jpegs(
            s,
            &mut Vec::new(),
            &mut |r| {
                jpegs.push(r.jpeg.to_vec());
                if jpegs.len() >= count {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
            &mut |_| {},
        );
        if jpegs.len() >= count {
            break;
        }
    }
    let norm = Normalize {
        mean: [0.0; 3],
        inv_std: [1.0; 3],
        pad: 114.0,
        bgr: false,
    };
    let t = Target { side, mode, norm };
    let per = 3 * (side * side) as usize;
    let (mut want, mut got) = (vec![0f32; per], vec![0f32; per]);
    let (mut blocks, mut pixels) = (Diffs::default(), Diffs::default());
    let (mut t_ref, mut t_fast) = (Duration::ZERO, Duration::ZERO);
    let mut dec = RgbDecoder::new();
    for (i, j) in jpegs.iter().enumerate() {
        let t0 = Instant::now();
        let img = decode_rgb8(j).expect("reference decode");
        let d = describe(0, img.width, img.height, side, mode, i % 2 == 1);
        preprocess_image(&img.data, &d, side, &norm, &mut want).expect("reference");
        let t1 = Instant::now();
        preprocess_jpeg(j, &t, i % 2 == 1, IDENTITY, &mut got).expect("fast");
        t_fast += t1.elapsed();
        t_ref += t1 - t0;
        for (a, b) in got.iter().zip(&want) {
            blocks.add(*a, *b);
        }
        dec.decode(j, |_, _| 1).expect("turbo decode");
        for (a, b) in dec.pixels().iter().zip(&img.data) {
            pixels.add(f32::from(*a), f32::from(*b));
        }
    }
    let n = jpegs.len().max(1) as f64;
    println!(
        "{} images -> {side}² {mode:?}; one core: reference {:.2} ms/image, fast {:.2} ms/image ({:.1}×)",
        jpegs.len(),
        t_ref.as_secs_f64() * 1e3 / n,
        t_fast.as_secs_f64() * 1e3 / n,
        t_ref.as_secs_f64() / t_fast.as_secs_f64().max(1e-9)
    );
    blocks.print("blocks (fast vs reference)");
    pixels.print("decoders (libjpeg-turbo vs zune-jpeg)");
    if sweep == 0 {
        return;
    }
    // [both refuse, both accept, only the reference refuses, only the fast path refuses]
    let mut tally = [0u64; 4];
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        rng ^= rng << 7;
        rng ^= rng >> 9;
        rng
    };
    for j in jpegs.iter().take(20) {
        let Some(s) = scan_start(j) else { continue };
        let body = j.len().saturating_sub(2 + s).max(1);
        for k in 0..sweep {
            let mut bad = j.clone();
            if k % 4 == 3 {
                bad.truncate(s + (next() as usize) % body);
                bad.extend_from_slice(&[0xFF, 0xD9]);
            } else {
                let at = s + (next() as usize) % body;
                bad[at] ^= 1 + (next() % 255) as u8;
            }
            let r = decode_rgb8(&bad).is_err();
            let f = preprocess_jpeg(&bad, &t, false, IDENTITY, &mut got).is_err();
            tally[match (r, f) {
                (true, true) => 0,
                (false, false) => 1,
                (true, false) => 2,
                (false, true) => 3,
            }] += 1;
        }
    }
    println!(
        "damaged copies: both refuse {}, both accept {}, only the reference refuses {}, only the fast path refuses {}",
        tally[0], tally[1], tally[2], tally[3]
    );
}
