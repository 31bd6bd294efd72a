//! The CPU pipeline (`--device cpu`, and the fallback when no GPU/driver/nvJPEG is found):
//! reader threads read records into owned batches; a rayon pool decodes each image with the CPU
//! decoder and writes it through the same preprocessing (the kernel's CPU reference) into one
//! contiguous `[B, 3, S, S]` tensor, reused across batches.

use super::decoders::cpu_decode_rgb8;
use super::preprocess::{describe, preprocess_image, Normalize, FLAG_EMPTY};
use super::source::{self, BadRecord, Flow, Shard};
use super::stats::{add_since, BadList, Counters, IntervalMeter};
use super::{preprocess, PipelineConfig, PipelineError, Progress, RunResult, Stop};
use crate::cli::DType;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Rec {
    jpeg: Vec<u8>,
    shard: usize,
    offset: u64,
    flip: bool,
}

/// Runs the CPU pipeline.
pub fn run(
    cfg: &PipelineConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunResult, PipelineError> {
    let shards: Vec<Shard> = source::discover(&cfg.dir)
        .map_err(|e| PipelineError::Io {
            path: cfg.dir.clone(),
            source: e,
        })?
        .into_iter()
        .filter(|s| cfg.shards.is_empty() || cfg.shards.contains(&s.path))
        .collect();
    if shards.is_empty() {
        return Err(PipelineError::Failed(format!(
            "{}: no .tfrecord or .lmdb shards found (is this a `dsprep convert` output folder?)",
            cfg.dir.display()
        )));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.cpu_threads.max(1))
        .thread_name(|i| format!("cpu-decode-{i}"))
        .build()
        .map_err(|e| PipelineError::Failed(format!("cannot start the decode threads: {e}")))?;
    let counters = Counters::default();
    let bad = BadList::new(1000);
    let stop = AtomicBool::new(false);
    let cursor = Mutex::new((0u64, 0usize));
    let readers_alive = AtomicUsize::new(cfg.readers.max(1));
    let (tx, rx) = mpsc::sync_channel::<Vec<Rec>>(2);
    let side = cfg.side as usize;
    let per_image = 3 * side * side;
    let norm = Normalize::imagenet(cfg.bgr);
    let mut out_f32: Vec<f32> = Vec::new();
    let mut out_f16: Vec<half::f16> = Vec::new();
    match cfg.dtype {
        DType::Fp32 => out_f32 = vec![0.0; cfg.batch * per_image],
        DType::Fp16 => out_f16 = vec![half::f16::ZERO; cfg.batch * per_image],
    }
    let budget = match cfg.stop {
        Stop::Seconds(s) => Some(cfg.warmup_s + s),
        Stop::Epochs(_) => None,
    };
    let next_shard = || -> Option<(u64, usize)> {
        if stop.load(SeqCst) {
            return None;
        }
        let mut c = cursor.lock().ok()?;
        let (epoch, idx) = *c;
        if let Stop::Epochs(n) = cfg.stop {
            if epoch >= n as u64 {
                return None;
            }
        }
        if idx == 0 {
            counters.epochs_started.fetch_add(1, SeqCst);
        }
        *c = if idx + 1 >= shards.len() {
            (epoch + 1, 0)
        } else {
            (epoch, idx + 1)
        };
        Some((epoch, idx))
    };
    let t0 = Instant::now();
    let mut meter = IntervalMeter::new(budget);
    let mut elapsed_s = 0.0;
    std::thread::scope(|s| {
        for _ in 0..cfg.readers.max(1) {
            let tx = tx.clone();
            let (next_shard, counters, bad, stop, shards, readers_alive) =
                (&next_shard, &counters, &bad, &stop, &shards, &readers_alive);
            s.spawn(move || {
                let mut buf = Vec::new();
                let mut cur: Vec<Rec> = Vec::with_capacity(cfg.batch);
                'outer: while let Some((epoch, si)) = next_shard() {
                    let Some(shard) = shards.get(si) else { break };
                    let t = Instant::now();
                    let mut rec_no = 0u64;
                    let mut full: Vec<Vec<Rec>> = Vec::new();
                    source::read_shard(
                        shard,
                        &mut buf,
                        &mut |r| {
                            if stop.load(SeqCst) {
                                return Flow::Stop;
                            }
                            let index = ((si as u64) << 40) | rec_no;
                            rec_no += 1;
                            cur.push(Rec {
                                jpeg: r.jpeg.to_vec(),
                                shard: si,
                                offset: r.offset,
                                flip: preprocess::flip_for(cfg.seed, epoch, index),
                            });
                            if cur.len() >= cfg.batch {
                                full.push(std::mem::replace(
                                    &mut cur,
                                    Vec::with_capacity(cfg.batch),
                                ));
                            }
                            Flow::Continue
                        },
                        &mut |b| bad.push(b),
                    );
                    add_since(&counters.read_ns, t);
                    for batch in full {
                        let w = Instant::now();
                        if tx.send(batch).is_err() {
                            break 'outer;
                        }
                        add_since(&counters.backpressure_ns, w);
                    }
                }
                if !cur.is_empty() && !stop.load(SeqCst) {
                    let _ = tx.send(cur);
                }
                readers_alive.fetch_sub(1, SeqCst);
            });
        }
        drop(tx);
        let mut stopped_at = None;
        loop {
            let w = Instant::now();
            let got = rx.recv_timeout(Duration::from_millis(50));
            let t = t0.elapsed().as_secs_f64();
            match got {
                Ok(batch) => {
                    counters
                        .starved_ns
                        .fetch_add(w.elapsed().as_nanos() as u64, SeqCst);
                    let n = batch.len();
                    let tp = Instant::now();
                    let mut run_batch = |recs: &[Rec]| -> Vec<Option<String>> {
                        pool.install(|| match cfg.dtype {
                            DType::Fp32 => out_f32
                                .par_chunks_mut(per_image)
                                .zip(recs.par_iter())
                                .map(|(out, r)| one(r, out, cfg, &norm))
                                .collect(),
                            DType::Fp16 => out_f16
                                .par_chunks_mut(per_image)
                                .zip(recs.par_iter())
                                .map(|(out, r)| one(r, out, cfg, &norm))
                                .collect(),
                        })
                    };
                    let errs = run_batch(&batch);
                    add_since(&counters.preprocess_ns, tp);
                    let mut good = 0u64;
                    let mut bytes = 0u64;
                    for (r, e) in batch.iter().zip(errs) {
                        bytes += r.jpeg.len() as u64;
                        match e {
                            None => good += 1,
                            Some(reason) => {
                                counters.failed.fetch_add(1, SeqCst);
                                bad.push(BadRecord {
                                    shard: shards
                                        .get(r.shard)
                                        .map(|s| s.path.clone())
                                        .unwrap_or_default(),
                                    offset: r.offset,
                                    reason,
                                });
                            }
                        }
                    }
                    let _ = n;
                    counters.images.fetch_add(good, SeqCst);
                    counters.by_cpu.fetch_add(good, SeqCst);
                    counters.bytes.fetch_add(bytes, SeqCst);
                    counters.batches.fetch_add(1, SeqCst);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    elapsed_s = stopped_at.unwrap_or(t);
                    if stopped_at.is_none() {
                        let i = counters.images.load(SeqCst);
                        meter.cut(t, i, counters.bytes.load(SeqCst));
                    }
                    break;
                }
            }
            if stopped_at.is_none() && meter.due(t, cfg.interval_s) {
                let i = counters.images.load(SeqCst);
                progress(&meter.cut(t, i, counters.bytes.load(SeqCst)));
            }
            if let Some(b) = budget {
                if stopped_at.is_none() && t >= b {
                    stopped_at = Some(t);
                    stop.store(true, SeqCst);
                }
            }
        }
    });
    let (bad_records, bad_record_count) = bad.take();
    let ns = |a: &std::sync::atomic::AtomicU64| a.load(SeqCst) as f64 / 1e9;
    Ok(RunResult {
        device: format!("CPU ({} decode threads)", cfg.cpu_threads.max(1)),
        elapsed_s,
        images: counters.images.load(SeqCst),
        bytes: counters.bytes.load(SeqCst),
        batches: counters.batches.load(SeqCst),
        intervals: meter.intervals,
        by_cpu: counters.by_cpu.load(SeqCst),
        undecodable: counters.failed.load(SeqCst),
        read_s: ns(&counters.read_ns),
        decode_cpu_s: ns(&counters.preprocess_ns),
        preprocess_s: ns(&counters.preprocess_ns),
        starved_s: ns(&counters.starved_ns),
        backpressure_s: ns(&counters.backpressure_ns),
        bad_records,
        bad_record_count,
        epochs_started: counters.epochs_started.load(SeqCst),
        ..Default::default()
    })
}

/// Decode + preprocess one record into its output block; Some(reason) when it cannot be used
/// (the block is then filled with the padding value, as on the GPU).
fn one<T: preprocess::OutElem>(
    r: &Rec,
    out: &mut [T],
    cfg: &PipelineConfig,
    norm: &Normalize,
) -> Option<String> {
    match cpu_decode_rgb8(&r.jpeg) {
        Ok((px, w, h)) => {
            let d = describe(0, w, h, cfg.side, cfg.resize, r.flip);
            if cfg.decode_only {
                return None;
            }
            preprocess_image(&px, &d, cfg.side, norm, out).err()
        }
        Err(e) => {
            if !cfg.decode_only {
                let mut d = describe(0, 1, 1, cfg.side, cfg.resize, false);
                d.flags |= FLAG_EMPTY;
                let _ = preprocess_image(&[], &d, cfg.side, norm, out);
            }
            Some(e)
        }
    }
}
