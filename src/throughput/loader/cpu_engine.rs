//! The loader on the CPU: a background thread walks the planned batches in order; each batch's
//! records are read, decoded and preprocessed in parallel (rayon) straight into a lent host
//! buffer by the CPU pipeline's fast path ([`crate::throughput::fast`]: libjpeg-turbo, SIMD
//! resize, fused normalise/flip/CHW), so CPU batches hold what the GPU's do within that path's
//! stated tolerance (a level or two; boxes are identical, they come from the geometry). Two
//! batches are prepared ahead; each thread reuses its record buffer and decode buffers.

use super::host::{HostLease, HostRing, Pixels};
use super::plan::EpochChain;
use crate::shard::random::RandomShard;
use crate::throughput::config::PipelineConfig;
use crate::throughput::fast::{self, Target};
use crate::throughput::feed::{parse_record, replacements, BatchPlan, Delivered, ItemInfo};
use crate::throughput::meter::Counters;
use crate::throughput::preprocess::OutElem;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Batches prepared ahead of the consumer.
const AHEAD: usize = 2;

thread_local! {
    /// A decode thread's record buffer, reused for every record it reads.
    static RECORD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A pass in progress.
pub struct CpuPass {
    pub rx: Receiver<Delivered<HostLease>>,
    pub stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CpuPass {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Unblock a send: the receiver goes first.
        let (_, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a pass over `plan` from batch `first`.
pub fn start(
    cfg: Arc<PipelineConfig>,
    pool: Arc<rayon::ThreadPool>,
    shards: Arc<Vec<RandomShard>>,
    ring: Arc<HostRing>,
    counters: Arc<Counters>,
    plan: Arc<EpochChain>,
    first: u64,
) -> Result<CpuPass, String> {
    let (tx, rx) = sync_channel(AHEAD);
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("loader-cpu".into())
        .spawn(move || {
            for k in first..plan.batches() {
                if s.load(SeqCst)
                    || !one_batch(&cfg, &pool, &shards, &ring, &counters, &plan, k, &tx, &s)
                {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the loader thread: {e}"))?;
    Ok(CpuPass {
        rx,
        stop,
        thread: Some(thread),
    })
}

/// What happened to one item.
type ItemOutcome = (ItemInfo, Option<String>);

/// Prepares batch `k` and sends it; false when the pass should end.
#[allow(clippy::too_many_arguments)]
fn one_batch(
    cfg: &PipelineConfig,
    pool: &rayon::ThreadPool,
    shards: &[RandomShard],
    ring: &Arc<HostRing>,
    counters: &Counters,
    plan: &EpochChain,
    k: u64,
    tx: &SyncSender<Delivered<HostLease>>,
    stop: &AtomicBool,
) -> bool {
    let planned = plan.batch(k);
    let mut lease = loop {
        if stop.load(SeqCst) {
            return false;
        }
        match ring.try_acquire() {
            Some(l) => break l,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let target = Target {
        side: cfg.side,
        mode: cfg.resize,
        norm: cfg.normalize(),
    };
    let per = 3 * (cfg.side as usize).pow(2);
    let t = std::time::Instant::now();
    let outcomes: Vec<ItemOutcome> = pool.install(|| match lease.pixels_mut() {
        Some(Pixels::F32(v)) => fill(&target, shards, &planned, v, per),
        Some(Pixels::F16(v)) => fill(&target, shards, &planned, v, per),
        None => Vec::new(),
    });
    counters
        .cpu_ns
        .fetch_add(t.elapsed().as_nanos() as u64, SeqCst);
    let failed: Vec<(usize, String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.1.clone().map(|r| (i, r)))
        .collect();
    let idx: Vec<usize> = failed.iter().map(|f| f.0).collect();
    let source = replacements(outcomes.len(), &idx);
    // Failed items show their replacement's pixels (the replacement's flip included).
    match lease.pixels_mut() {
        Some(Pixels::F32(v)) => copy_replacements(v, per, &source),
        Some(Pixels::F16(v)) => copy_replacements(v, per, &source),
        None => {}
    }
    let good = (outcomes.len() - failed.len()) as u64;
    counters.images.fetch_add(good, SeqCst);
    counters.by_cpu.fetch_add(good, SeqCst);
    counters.failed.fetch_add(failed.len() as u64, SeqCst);
    counters.batches.fetch_add(1, SeqCst);
    let msg = Delivered {
        index: k,
        items: outcomes.into_iter().map(|o| o.0).collect(),
        failed,
        source,
        images: lease,
    };
    tx.send(msg).is_ok()
}

/// Reads, decodes and preprocesses every planned item into its block of `out`.
fn fill<T: OutElem + Send>(
    target: &Target,
    shards: &[RandomShard],
    planned: &[crate::throughput::feed::PlannedItem],
    out: &mut [T],
    per: usize,
) -> Vec<ItemOutcome> {
    out.par_chunks_mut(per)
        .zip(planned.par_iter())
        .map(|(block, p)| {
            let mut info = ItemInfo {
                planned: *p,
                ann: Default::default(),
                frame: (0, 0),
            };
            let got = RECORD.with(|buf| {
                let mut buf = buf.borrow_mut();
                let payload = shards
                    .get(p.shard as usize)
                    .ok_or_else(|| format!("no shard {}", p.shard))
                    .and_then(|s| s.read(p.number, &mut buf))?;
                let (jpeg, ann) = parse_record(payload)?;
                let frame = fast::preprocess_jpeg(jpeg, target, p.flip, p.hsv, block)
                    .map_err(|e| e.to_string())?;
                info.ann = ann;
                info.frame = frame;
                Ok::<(), String>(())
            });
            match got {
                Ok(()) => (info, None),
                Err(reason) => {
                    let _ = fast::pad_block(target, block);
                    info.ann = Default::default();
                    info.frame = (0, 0);
                    (info, Some(reason))
                }
            }
        })
        .collect()
}

/// Copies block `source[i]` over block `i` where they differ.
fn copy_replacements<T: Copy>(out: &mut [T], per: usize, source: &[Option<usize>]) {
    for (i, s) in source.iter().enumerate() {
        if let Some(j) = *s {
            if j != i && (j + 1) * per <= out.len() && (i + 1) * per <= out.len() {
                out.copy_within(j * per..(j + 1) * per, i * per);
            }
        }
    }
}
