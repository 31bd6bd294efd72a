//! The CPU pipeline (`--device cpu`, and the fallback when no GPU/driver/nvJPEG is found):
//! reader threads read records into batches; a rayon pool of one thread per core runs the fast
//! path ([`super::fast`]: libjpeg-turbo decode, DCT-scaled when the output is much smaller,
//! SIMD resize, fused normalise/flip/CHW) for every image straight into one contiguous
//! `[B, 3, S, S]` tensor, reused across batches. The calling thread runs the batches and ticks
//! the meter between them.
//!
//! Steady state allocates nothing per image: batches (and each record's JPEG buffer) go back to
//! the readers once processed, and every decode thread keeps its own buffers.

use super::config::{DType, PipelineConfig};
use super::fast::{self, Target};
use super::meter::{add_since, BadList, Counters, Meter};
use super::preprocess::OutElem;
use super::read::{read_jpegs, BadRecord};
use super::schedule::Schedule;
use super::{Event, PipelineError, RunResult};
use crate::shard::source::Flow;
use rayon::prelude::*;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// One record waiting in a batch.
struct Rec {
    jpeg: Vec<u8>,
    shard: usize,
    offset: u64,
    flip: bool,
}

/// Processed batches, back for the readers to refill (their records' buffers included).
type Spares = Mutex<Vec<Vec<Rec>>>;

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
    let spares: Spares = Mutex::new(Vec::new());
    let per_image = 3 * (cfg.side as usize).pow(2);
    let target = Target {
        side: cfg.side,
        mode: cfg.resize,
        norm: cfg.normalize(),
    };
    let mut out = Tensor::new(cfg.dtype, cfg.batch * per_image);
    let mut meter = Meter::start(cfg.interval_s, cfg.stop.budget_s(cfg.warmup_s));
    let mut finished_at = 0.0;
    std::thread::scope(|s| {
        for _ in 0..cfg.readers.max(1) {
            let tx = tx.clone();
            let (schedule, counters, bad, spares) = (&schedule, &counters, &bad, &spares);
            s.spawn(move || reader(cfg, schedule, counters, bad, spares, tx));
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
                    run_batch(cfg, &pool, &mut out, &target, &batch, &counters, &bad);
                    if let Ok(mut sp) = spares.lock() {
                        sp.push(batch);
                    }
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

/// Hands out batch vectors and records for a reader, reusing processed ones.
struct Refill<'a> {
    spares: &'a Spares,
    recs: Vec<Rec>,
    cap: usize,
}

impl Refill<'_> {
    /// An empty batch (a processed one when there is one; its records are kept for reuse).
    fn batch(&mut self) -> Vec<Rec> {
        let old = self.spares.lock().ok().and_then(|mut sp| sp.pop());
        match old {
            Some(mut v) => {
                self.recs.append(&mut v);
                v
            }
            None => Vec::with_capacity(self.cap),
        }
    }

    /// A record holding a copy of `jpeg`, in a reused buffer when there is one.
    fn rec(&mut self, jpeg: &[u8], shard: usize, offset: u64, flip: bool) -> Rec {
        match self.recs.pop() {
            Some(mut r) => {
                r.jpeg.clear();
                r.jpeg.extend_from_slice(jpeg);
                (r.shard, r.offset, r.flip) = (shard, offset, flip);
                r
            }
            None => Rec {
                jpeg: jpeg.to_vec(),
                shard,
                offset,
                flip,
            },
        }
    }
}

/// A reader thread: whole shards from the schedule, records into batches of `cfg.batch`,
/// handed over once the shard is read (the last partial batch when the schedule ends).
fn reader(
    cfg: &PipelineConfig,
    schedule: &Schedule<'_>,
    counters: &Counters,
    bad: &BadList,
    spares: &Spares,
    tx: mpsc::SyncSender<Vec<Rec>>,
) {
    let mut buf = Vec::new();
    let mut refill = Refill {
        spares,
        recs: Vec::new(),
        cap: cfg.batch,
    };
    let mut cur: Vec<Rec> = refill.batch();
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
                let flip = schedule.flip(epoch, si, r.number);
                cur.push(refill.rec(r.jpeg, si, r.offset, flip));
                if cur.len() >= cfg.batch {
                    let next = refill.batch();
                    full.push(std::mem::replace(&mut cur, next));
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
    target: &Target,
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
            .map(|(out, r)| one(r, out, cfg, target))
            .collect(),
        Tensor::F16(o) => o
            .par_chunks_mut(per_image)
            .zip(batch.par_iter())
            .map(|(out, r)| one(r, out, cfg, target))
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
fn one<T: OutElem>(
    r: &Rec,
    out: &mut [T],
    cfg: &PipelineConfig,
    target: &Target,
) -> Option<String> {
    if cfg.decode_only {
        return fast::decode_only(&r.jpeg).err().map(|e| e.to_string());
    }
    match fast::preprocess_jpeg(
        &r.jpeg,
        target,
        r.flip,
        crate::throughput::hsv::IDENTITY,
        out,
    ) {
        Ok(_) => None,
        Err(e) => {
            let _ = fast::pad_block(target, out);
            Some(e.to_string())
        }
    }
}
