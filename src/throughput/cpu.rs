//! The CPU pipeline (`--device cpu`, and the fallback when no GPU/driver/nvJPEG is found):
//! reader threads read records into owned batches; a rayon pool decodes each image with the CPU
//! decoder and writes it through the same preprocessing (the kernel's CPU reference) into one
//! contiguous `[B, 3, S, S]` tensor, reused across batches. The calling thread runs the batches
//! and ticks the meter between them.

use super::config::{DType, PipelineConfig};
use super::decoders::cpu_decode_rgb8;
use super::meter::{add_since, BadList, Counters, Meter};
use super::preprocess::{self, describe, preprocess_image, Normalize, FLAG_EMPTY};
use super::read::{read_jpegs, BadRecord};
use super::schedule::Schedule;
use super::{Event, PipelineError, RunResult};
use crate::shard::source::Flow;
use rayon::prelude::*;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One record waiting in a batch.
struct Rec {
    jpeg: Vec<u8>,
    shard: usize,
    offset: u64,
    flip: bool,
}

/// Runs the CPU pipeline.
pub fn run(
    cfg: &PipelineConfig,
    on_event: &mut dyn FnMut(&Event),
) -> Result<RunResult, PipelineError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.cpu_threads.max(1))
        .thread_name(|i| format!("cpu-decode-{i}"))
        .build()
        .map_err(|e| PipelineError::Failed(format!("cannot start the decode threads: {e}")))?;
    let counters = Counters::default();
    let bad = BadList::new(1000);
    let schedule = Schedule::new(&cfg.shards, cfg.stop, cfg.seed);
    let (tx, rx) = mpsc::sync_channel::<Vec<Rec>>(2);
    let per_image = 3 * (cfg.side as usize).pow(2);
    let norm = cfg.normalize();
    let mut out = Tensor::new(cfg.dtype, cfg.batch * per_image);
    let mut meter = Meter::start(cfg.interval_s, cfg.stop.budget_s(cfg.warmup_s));
    let mut finished_at = 0.0;
    std::thread::scope(|s| {
        for _ in 0..cfg.readers.max(1) {
            let tx = tx.clone();
            let (schedule, counters, bad) = (&schedule, &counters, &bad);
            s.spawn(move || reader(cfg, schedule, counters, bad, tx));
        }
        drop(tx);
        loop {
            let w = Instant::now();
            let got = rx.recv_timeout(Duration::from_millis(50));
            let t = meter.now();
            let finished = match got {
                Ok(batch) => {
                    counters
                        .starved_ns
                        .fetch_add(w.elapsed().as_nanos() as u64, SeqCst);
                    run_batch(cfg, &pool, &mut out, &norm, &batch, &counters, &bad);
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            if meter.tick(t, &counters, finished, on_event).budget_spent {
                schedule.halt();
            }
            if finished {
                finished_at = t;
                break;
            }
        }
    });
    let device = format!("CPU ({} decode threads)", cfg.cpu_threads.max(1));
    let epochs = schedule.epochs_started();
    Ok(counters.result(device, meter.finish(finished_at), &bad, epochs))
}

/// A reader thread: whole shards from the schedule, records into batches of `cfg.batch`,
/// handed over once the shard is read (the last partial batch when the schedule ends).
fn reader(
    cfg: &PipelineConfig,
    schedule: &Schedule<'_>,
    counters: &Counters,
    bad: &BadList,
    tx: mpsc::SyncSender<Vec<Rec>>,
) {
    let mut buf = Vec::new();
    let mut cur: Vec<Rec> = Vec::with_capacity(cfg.batch);
    'shards: while let Some((epoch, si)) = schedule.next() {
        let Some(shard) = schedule.shard(si) else {
            break;
        };
        let t = Instant::now();
        let mut full: Vec<Vec<Rec>> = Vec::new();
        read_jpegs(
            shard,
            &mut buf,
            &mut |r| {
                if schedule.halted() {
                    return Flow::Stop;
                }
                cur.push(Rec {
                    jpeg: r.jpeg.to_vec(),
                    shard: si,
                    offset: r.offset,
                    flip: schedule.flip(epoch, si, r.number),
                });
                if cur.len() >= cfg.batch {
                    full.push(std::mem::replace(&mut cur, Vec::with_capacity(cfg.batch)));
                }
                Flow::Continue
            },
            &mut |b| bad.push(b),
        );
        add_since(&counters.read_ns, t);
        for batch in full {
            let w = Instant::now();
            if tx.send(batch).is_err() {
                break 'shards;
            }
            add_since(&counters.backpressure_ns, w);
        }
    }
    if !cur.is_empty() && !schedule.halted() {
        let _ = tx.send(cur);
    }
}

/// The reused output tensor, in the configured element type.
enum Tensor {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

impl Tensor {
    fn new(dtype: DType, len: usize) -> Self {
        match dtype {
            DType::Fp32 => Tensor::F32(vec![0.0; len]),
            DType::Fp16 => Tensor::F16(vec![half::f16::ZERO; len]),
        }
    }
}

/// Decodes and preprocesses one batch on the pool and counts it.
fn run_batch(
    cfg: &PipelineConfig,
    pool: &rayon::ThreadPool,
    out: &mut Tensor,
    norm: &Normalize,
    batch: &[Rec],
    counters: &Counters,
    bad: &BadList,
) {
    let per_image = 3 * (cfg.side as usize).pow(2);
    let tp = Instant::now();
    let errs: Vec<Option<String>> = pool.install(|| match out {
        Tensor::F32(o) => o
            .par_chunks_mut(per_image)
            .zip(batch.par_iter())
            .map(|(out, r)| one(r, out, cfg, norm))
            .collect(),
        Tensor::F16(o) => o
            .par_chunks_mut(per_image)
            .zip(batch.par_iter())
            .map(|(out, r)| one(r, out, cfg, norm))
            .collect(),
    });
    let busy = tp.elapsed().as_nanos() as u64;
    counters.preprocess_ns.fetch_add(busy, SeqCst);
    counters.cpu_ns.fetch_add(busy, SeqCst);
    let mut good = 0u64;
    let mut bytes = 0u64;
    for (r, e) in batch.iter().zip(errs) {
        bytes += r.jpeg.len() as u64;
        match e {
            None => good += 1,
            Some(reason) => {
                counters.failed.fetch_add(1, SeqCst);
                bad.push(BadRecord {
                    shard: cfg
                        .shards
                        .get(r.shard)
                        .map(|s| s.path.clone())
                        .unwrap_or_default(),
                    offset: r.offset,
                    reason,
                });
            }
        }
    }
    counters.images.fetch_add(good, SeqCst);
    counters.by_cpu.fetch_add(good, SeqCst);
    counters.bytes.fetch_add(bytes, SeqCst);
    counters.batches.fetch_add(1, SeqCst);
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
