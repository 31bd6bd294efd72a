//! The GPU pipeline: readers fill batch slots (pinned staging), hardware and CUDA decoders steal
//! images from the open batches into each slot's device arena, the assembler launches the fused
//! kernel per completed batch on its own stream after waiting (on the GPU) for the decoders'
//! events, and a slot returns to the readers once its kernel's event has completed.
//!
//! Threads: `readers` reader threads, `hw_workers` + `cuda_workers` decoder threads, one
//! assembler; the calling thread samples the meter. All waits have timeouts and check the
//! abort flag, so a failing thread stops the others instead of hanging them.

use super::decoders::{self, CudaDecoder, Decoder, DecoderKind, Fences, HwDecoder, Job, JobResult};
use super::preprocess::{describe, elem_bytes, Normalize, FLAG_EMPTY};
use super::source::{self, BadRecord, Flow, Shard};
use super::stats::{add_since, BadList, Counters, IntervalMeter};
use super::{
    jpeg, preprocess, DecoderSet, PipelineConfig, PipelineError, Progress, RunResult, Stop,
};
use crate::cli::DType;
use crate::gpu::device::Gpu;
use crate::gpu::ffi::cuda::{self, DeviceBuffer, Event, PinnedBuffer, PreprocessLaunch};
use crate::gpu::ffi::nvjpeg::{
    DeviceImage, Handle, NvJpeg, NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION,
};
use crate::gpu::kernels::Kernels;
use crate::gpu::GpuError;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const ARENA_ALIGN: u64 = 256;
const WAIT: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
struct Item {
    jpeg_off: usize,
    jpeg_len: usize,
    width: u32,
    height: u32,
    arena_off: u64,
    shard: u32,
    offset: u64,
    flip: bool,
}

/// Memory of one batch slot; circulates reader → decoders → assembler → reader.
struct SlotRes {
    id: usize,
    host: PinnedBuffer,
    arena: DeviceBuffer,
    descs_host: Mutex<PinnedBuffer>,
    descs_dev: DeviceBuffer,
    start: Event,
    done: Event,
}

struct Claim {
    front: usize,
    back: usize,
    cuda_only: Vec<usize>,
}

struct Batch {
    res: Option<SlotRes>,
    items: Vec<Item>,
    /// Hardware-eligible items; [front, back) of `claim` indexes into it.
    order: Vec<usize>,
    claim: Mutex<Claim>,
    finished: AtomicUsize,
    fence_mask: AtomicU64,
    failures: Mutex<Vec<(usize, String)>>,
    bytes: u64,
    seq: u64,
    pool: Sender<SlotRes>,
}

impl Batch {
    fn res(&self) -> Result<&SlotRes, GpuError> {
        self.res
            .as_ref()
            .ok_or_else(|| GpuError::Invalid("batch slot already released".into()))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Last owner gone: the slot's memory goes back to the readers.
        if let Some(r) = self.res.take() {
            let _ = self.pool.send(r);
        }
    }
}

struct Shared<'a> {
    cfg: &'a PipelineConfig,
    gpu: &'a Gpu,
    shards: Vec<Shard>,
    cursor: Mutex<(u64, usize)>,
    open: Mutex<VecDeque<Arc<Batch>>>,
    open_cv: Condvar,
    complete_tx: Sender<Arc<Batch>>,
    pool_tx: Sender<SlotRes>,
    pool_rx: Mutex<Receiver<SlotRes>>,
    stop: AtomicBool,
    abort: AtomicBool,
    workers_exit: AtomicBool,
    readers_alive: AtomicUsize,
    submitted: AtomicU64,
    seq: AtomicU64,
    counters: Counters,
    bad: BadList,
    fences: Vec<Fences>,
    errors: Mutex<Vec<String>>,
}

impl Shared<'_> {
    fn fail(&self, who: &str, e: impl std::fmt::Display) {
        if let Ok(mut g) = self.errors.lock() {
            g.push(format!("{who}: {e}"));
        }
        self.abort.store(true, SeqCst);
        self.stop.store(true, SeqCst);
        self.open_cv.notify_all();
    }

    /// Next (epoch, shard index) to read, or None when the run is over.
    fn next_shard(&self) -> Option<(u64, usize)> {
        if self.stop.load(SeqCst) || self.shards.is_empty() {
            return None;
        }
        let mut c = self.cursor.lock().ok()?;
        let (epoch, idx) = *c;
        if let Stop::Epochs(n) = self.cfg.stop {
            if epoch >= n as u64 {
                return None;
            }
        }
        if idx == 0 {
            self.counters.epochs_started.fetch_add(1, SeqCst);
        }
        *c = if idx + 1 >= self.shards.len() {
            (epoch + 1, 0)
        } else {
            (epoch, idx + 1)
        };
        Some((epoch, idx))
    }

    fn acquire_slot(&self) -> Option<SlotRes> {
        let t = Instant::now();
        let rx = self.pool_rx.lock().ok()?;
        loop {
            match rx.recv_timeout(WAIT) {
                Ok(r) => {
                    add_since(&self.counters.backpressure_ns, t);
                    return Some(r);
                }
                Err(RecvTimeoutError::Timeout) if !self.stop.load(SeqCst) => continue,
                Err(_) => return None,
            }
        }
    }
}

struct Filling {
    res: SlotRes,
    items: Vec<Item>,
    host_len: usize,
    arena_len: u64,
    bytes: u64,
}

fn submit(sh: &Shared<'_>, mut f: Filling) -> Result<(), GpuError> {
    f.res.arena.ensure(f.arena_len as usize)?;
    let mut order = Vec::with_capacity(f.items.len());
    let mut cuda_only = Vec::new();
    let hw_possible = sh.cfg.gpu.decoders != DecoderSet::CudaOnly;
    for (i, it) in f.items.iter().enumerate() {
        let hw_ok = hw_possible && it.hw_hint();
        if hw_ok || sh.cfg.gpu.decoders == DecoderSet::CudaOnly {
            order.push(i);
        } else {
            cuda_only.push(i);
        }
    }
    let n = order.len();
    let batch = Arc::new(Batch {
        res: Some(f.res),
        items: f.items,
        order,
        claim: Mutex::new(Claim {
            front: 0,
            back: n,
            cuda_only,
        }),
        finished: AtomicUsize::new(0),
        fence_mask: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
        bytes: f.bytes,
        seq: sh.seq.fetch_add(1, SeqCst),
        pool: sh.pool_tx.clone(),
    });
    sh.submitted.fetch_add(1, SeqCst);
    if let Ok(mut o) = sh.open.lock() {
        o.push_back(batch);
    }
    sh.open_cv.notify_all();
    Ok(())
}

impl Item {
    /// Hardware hint stored in the low bit of `jpeg_len`'s companion: see `reader`.
    fn hw_hint(&self) -> bool {
        self.arena_off & 1 == 0
    }
}

fn reader(sh: &Shared<'_>) -> Result<(), PipelineError> {
    sh.gpu.bind()?;
    let mut buf = Vec::new();
    let mut cur: Option<Filling> = None;
    let mut err: Option<GpuError> = None;
    let batch = sh.cfg.batch;
    while let Some((epoch, si)) = sh.next_shard() {
        let Some(shard) = sh.shards.get(si) else {
            break;
        };
        let t0 = Instant::now();
        let wait0 = sh.counters.backpressure_ns.load(SeqCst);
        let mut rec_no = 0u64;
        source::read_shard(
            shard,
            &mut buf,
            &mut |r| {
                if sh.stop.load(SeqCst) {
                    return Flow::Stop;
                }
                let info = match jpeg::parse(r.jpeg) {
                    Ok(i) => i,
                    Err(reason) => {
                        sh.bad.push(BadRecord {
                            shard: shard.path.clone(),
                            offset: r.offset,
                            reason,
                        });
                        return Flow::Continue;
                    }
                };
                let index = ((si as u64) << 40) | rec_no;
                rec_no += 1;
                if cur.is_none() {
                    match sh.acquire_slot() {
                        Some(res) => {
                            cur = Some(Filling {
                                res,
                                items: Vec::with_capacity(batch),
                                host_len: 0,
                                arena_len: 0,
                                bytes: 0,
                            })
                        }
                        None => return Flow::Stop,
                    }
                }
                let Some(f) = cur.as_mut() else {
                    return Flow::Stop;
                };
                let len = r.jpeg.len();
                if let Err(e) = f.res.host.ensure(f.host_len + len, f.host_len) {
                    err = Some(e);
                    return Flow::Stop;
                }
                f.res.host.as_mut_slice()[f.host_len..f.host_len + len].copy_from_slice(r.jpeg);
                let size = 3 * info.width as u64 * info.height as u64;
                // Arena offsets are 256-aligned, so bit 0 is free to carry the hardware hint
                // (1 = route to the CUDA decoder); `dst` masks it off.
                let hint = if info.likely_hw_ok() { 0 } else { 1 };
                f.items.push(Item {
                    jpeg_off: f.host_len,
                    jpeg_len: len,
                    width: info.width,
                    height: info.height,
                    arena_off: f.arena_len | hint,
                    shard: si as u32,
                    offset: r.offset,
                    flip: preprocess::flip_for(sh.cfg.seed, epoch, index),
                });
                f.host_len += len;
                f.arena_len += size.div_ceil(ARENA_ALIGN) * ARENA_ALIGN;
                f.bytes += len as u64;
                if f.items.len() >= batch {
                    if let Some(full) = cur.take() {
                        if let Err(e) = submit(sh, full) {
                            err = Some(e);
                            return Flow::Stop;
                        }
                    }
                }
                Flow::Continue
            },
            &mut |b| sh.bad.push(b),
        );
        let waited = sh
            .counters
            .backpressure_ns
            .load(SeqCst)
            .saturating_sub(wait0);
        sh.counters.read_ns.fetch_add(
            (t0.elapsed().as_nanos() as u64).saturating_sub(waited),
            SeqCst,
        );
        if let Some(e) = err.take() {
            return Err(e.into());
        }
    }
    if let Some(f) = cur.take() {
        if !f.items.is_empty() && !sh.stop.load(SeqCst) {
            submit(sh, f)?;
        } else {
            let _ = sh.pool_tx.send(f.res);
        }
    }
    Ok(())
}

impl Item {
    fn dst(&self, arena: &DeviceBuffer) -> DeviceImage {
        DeviceImage {
            ptr: arena.ptr() + (self.arena_off & !1),
            pitch: 3 * self.width as usize,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Hardware,
    Cuda { steal: bool },
}

fn find_work(sh: &Shared<'_>, role: Role, want: usize) -> Option<(Arc<Batch>, Vec<usize>)> {
    let open = sh.open.lock().ok()?;
    for b in open.iter() {
        let Ok(mut c) = b.claim.lock() else { continue };
        match role {
            Role::Hardware => {
                if c.front < c.back {
                    let k = want.min(c.back - c.front);
                    let idx = b.order.get(c.front..c.front + k)?.to_vec();
                    c.front += k;
                    return Some((b.clone(), idx));
                }
            }
            Role::Cuda { steal } => {
                if let Some(i) = c.cuda_only.pop() {
                    return Some((b.clone(), vec![i]));
                }
                if steal && c.front < c.back {
                    c.back -= 1;
                    let i = *b.order.get(c.back)?;
                    return Some((b.clone(), vec![i]));
                }
            }
        }
    }
    None
}

fn complete(sh: &Shared<'_>, b: &Arc<Batch>) {
    if let Ok(mut o) = sh.open.lock() {
        o.retain(|x| x.seq != b.seq);
    }
    let _ = sh.complete_tx.send(b.clone());
}

fn worker(
    sh: &Shared<'_>,
    w: usize,
    dec: &mut dyn Decoder,
    role: Role,
) -> Result<(), PipelineError> {
    sh.gpu.bind()?;
    let mut results = Vec::new();
    let busy = match dec.kind() {
        DecoderKind::Hardware => &sh.counters.hw_ns,
        _ => &sh.counters.cuda_ns,
    };
    loop {
        if sh.abort.load(SeqCst) || sh.workers_exit.load(SeqCst) {
            return Ok(());
        }
        let Some((batch, idxs)) = find_work(sh, role, dec.claim_size()) else {
            if let Ok(g) = sh.open.lock() {
                let _ = sh.open_cv.wait_timeout(g, WAIT);
            }
            continue;
        };
        let t = Instant::now();
        let res = batch.res()?;
        let host = res.host.as_slice();
        let mut jobs = Vec::with_capacity(idxs.len());
        for &i in &idxs {
            let it = batch
                .items
                .get(i)
                .ok_or_else(|| GpuError::Invalid(format!("item {i} out of range")))?;
            let data = host
                .get(it.jpeg_off..it.jpeg_off + it.jpeg_len)
                .ok_or_else(|| GpuError::Invalid("JPEG bytes outside the staging buffer".into()))?;
            jobs.push(Job {
                data,
                width: it.width,
                height: it.height,
                dst: it.dst(&res.arena),
            });
        }
        dec.decode(&jobs, &mut results)?;
        dec.fence(res.id)?;
        batch.fence_mask.fetch_or(1u64 << w, SeqCst);
        let mut done = 0usize;
        let mut retry = Vec::new();
        for (k, r) in results.iter().enumerate() {
            let Some(&item) = idxs.get(k) else { continue };
            match r {
                JobResult::Done(kind) => {
                    done += 1;
                    let c = match kind {
                        DecoderKind::Hardware => &sh.counters.by_hw,
                        DecoderKind::Cuda => &sh.counters.by_cuda,
                        DecoderKind::Cpu => &sh.counters.by_cpu,
                    };
                    c.fetch_add(1, SeqCst);
                }
                JobResult::Retry => retry.push(item),
                JobResult::Failed(reason) => {
                    done += 1;
                    if let Ok(mut f) = batch.failures.lock() {
                        f.push((item, reason.clone()));
                    }
                }
            }
        }
        if !retry.is_empty() {
            if let Ok(mut c) = batch.claim.lock() {
                c.cuda_only.extend(retry);
            }
            sh.open_cv.notify_all();
        }
        add_since(busy, t);
        let prev = batch.finished.fetch_add(done, SeqCst);
        if done > 0 && prev + done == batch.items.len() {
            complete(sh, &batch);
        }
    }
}

fn assembler(
    sh: &Shared<'_>,
    kernels: Option<&Kernels>,
    outs: &[DeviceBuffer],
    rx: Receiver<Arc<Batch>>,
) -> Result<(), PipelineError> {
    sh.gpu.bind()?;
    let stream = sh.gpu.new_stream()?;
    let norm = Normalize::imagenet(sh.cfg.bgr);
    let mut inflight: VecDeque<Arc<Batch>> = VecDeque::new();
    let mut launched = 0u64;
    let mut desc_bytes: Vec<u8> = Vec::new();
    let retire = |b: Arc<Batch>| -> Result<(), PipelineError> {
        let res = b.res()?;
        res.done.synchronize()?;
        if let Ok(ms) = res.done.elapsed_ms_since(&res.start) {
            sh.counters
                .kernel_ns
                .fetch_add((ms as f64 * 1e6) as u64, SeqCst);
        }
        let failures = b.failures.lock().map(|f| f.clone()).unwrap_or_default();
        for (i, reason) in &failures {
            if let Some(it) = b.items.get(*i) {
                sh.bad.push(BadRecord {
                    shard: sh
                        .shards
                        .get(it.shard as usize)
                        .map(|s| s.path.clone())
                        .unwrap_or_default(),
                    offset: it.offset,
                    reason: reason.clone(),
                });
            }
        }
        let good = (b.items.len() - failures.len()) as u64;
        sh.counters.failed.fetch_add(failures.len() as u64, SeqCst);
        sh.counters.bytes.fetch_add(b.bytes, SeqCst);
        sh.counters.batches.fetch_add(1, SeqCst);
        sh.counters.images.fetch_add(good, SeqCst);
        Ok(())
    };
    loop {
        while let Some(front) = inflight.front() {
            if front.res()?.done.is_done()? || inflight.len() > 2 {
                if let Some(b) = inflight.pop_front() {
                    retire(b)?;
                }
            } else {
                break;
            }
        }
        if sh.abort.load(SeqCst) {
            return Ok(());
        }
        let t = Instant::now();
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(b) => {
                let res = b.res()?;
                let slot = res.id;
                let mask = b.fence_mask.load(SeqCst);
                for (w, f) in sh.fences.iter().enumerate() {
                    if mask & (1u64 << w) != 0 {
                        f.get(slot)
                            .ok_or_else(|| GpuError::Invalid(format!("no fence for slot {slot}")))?
                            .wait_on(&stream)?;
                    }
                }
                let failed: Vec<usize> = b
                    .failures
                    .lock()
                    .map(|f| f.iter().map(|x| x.0).collect())
                    .unwrap_or_default();
                desc_bytes.clear();
                for (i, it) in b.items.iter().enumerate() {
                    let mut d = describe(
                        it.arena_off & !1,
                        it.width,
                        it.height,
                        sh.cfg.side,
                        sh.cfg.resize,
                        it.flip,
                    );
                    if failed.contains(&i) {
                        d.flags |= FLAG_EMPTY;
                    }
                    desc_bytes.extend_from_slice(&d.to_bytes());
                }
                {
                    let mut dh = res.descs_host.lock().map_err(|_| {
                        PipelineError::Failed("descriptor buffer lock poisoned".into())
                    })?;
                    dh.ensure(desc_bytes.len(), 0)?;
                    dh.as_mut_slice()[..desc_bytes.len()].copy_from_slice(&desc_bytes);
                    cuda::copy_htod_async(
                        &res.descs_dev,
                        0,
                        &dh.as_slice()[..desc_bytes.len()],
                        &stream,
                    )?;
                }
                res.start.record(&stream)?;
                if let Some(k) = kernels {
                    let out = outs
                        .get((b.seq % outs.len().max(1) as u64) as usize)
                        .ok_or_else(|| GpuError::Invalid("no output tensor".into()))?;
                    let f = match sh.cfg.dtype {
                        DType::Fp32 => &k.preprocess_f32,
                        DType::Fp16 => &k.preprocess_f16,
                    };
                    cuda::launch_preprocess(
                        f,
                        &stream,
                        &PreprocessLaunch {
                            arena: res.arena.ptr(),
                            descs: res.descs_dev.ptr(),
                            out: out.ptr(),
                            side: sh.cfg.side as i32,
                            batch: b.items.len() as i32,
                            mean: norm.mean,
                            inv_std: norm.inv_std,
                            pad: norm.pad,
                            bgr: norm.bgr as i32,
                        },
                    )?;
                }
                res.done.record(&stream)?;
                launched += 1;
                inflight.push_back(b);
            }
            Err(RecvTimeoutError::Timeout) => {
                add_since(&sh.counters.starved_ns, t);
                if sh.readers_alive.load(SeqCst) == 0 && launched == sh.submitted.load(SeqCst) {
                    while let Some(b) = inflight.pop_front() {
                        retire(b)?;
                    }
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

const WATCHDOG: f64 = 20.0;

fn describe_state(sh: &Shared<'_>) -> String {
    let c = &sh.counters;
    let mut s = format!(
        "submitted {} batches, retired {}, readers alive {}, decoded hw {} cuda {} cpu {};",
        sh.submitted.load(SeqCst),
        c.batches.load(SeqCst),
        sh.readers_alive.load(SeqCst),
        c.by_hw.load(SeqCst),
        c.by_cuda.load(SeqCst),
        c.by_cpu.load(SeqCst)
    );
    if let Ok(o) = sh.open.try_lock() {
        for b in o.iter() {
            if let Ok(cl) = b.claim.try_lock() {
                s.push_str(&format!(
                    " [batch {} items {} claimed front {} back {} of {} cuda_only {} finished {}]",
                    b.seq,
                    b.items.len(),
                    cl.front,
                    cl.back,
                    b.order.len(),
                    cl.cuda_only.len(),
                    b.finished.load(SeqCst)
                ));
            }
        }
    } else {
        s.push_str(" (open list locked)");
    }
    s
}

/// Runs the GPU pipeline on `cfg.gpu.ordinal`.
pub fn run(
    cfg: &PipelineConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunResult, PipelineError> {
    let gpu = Gpu::open(cfg.gpu.ordinal)?;
    let (free0, total) = gpu.mem_info()?;
    let lib = NvJpeg::load()?;
    let want_hw = cfg.gpu.decoders != DecoderSet::CudaOnly;
    // Interpolated chroma upsampling matches the CPU decoders (libjpeg-turbo/zune "fancy"
    // upsampling); older libraries reject the flag, then plain replication is used.
    let handle = match Handle::new(&lib, want_hw, NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION) {
        Ok(h) => h,
        Err(_) => Handle::new(&lib, want_hw, 0)?,
    };
    let hw_info = handle.hardware_info();
    let mut notes = Vec::new();
    let hw_workers = if want_hw && hw_info.0 > 0 {
        cfg.gpu.hw_workers
    } else {
        0
    };
    if want_hw && hw_info.0 == 0 {
        notes.push(format!(
            "{}: no hardware JPEG decoder reported; all images go to the CUDA decoder",
            gpu.name
        ));
    }
    let cuda_workers = cfg.gpu.cuda_workers.max(1);
    let kernels = if cfg.decode_only {
        None
    } else {
        Some(Kernels::load(&gpu)?)
    };

    let slots = cfg.gpu.slots.max(3);
    let b = cfg.batch;
    let (pool_tx, pool_rx) = mpsc::channel();
    for id in 0..slots {
        pool_tx
            .send(SlotRes {
                id,
                host: PinnedBuffer::alloc(&gpu.ctx, b * 160 * 1024)?,
                arena: DeviceBuffer::alloc(&gpu.ctx, b * 640 * 480 * 3)?,
                descs_host: Mutex::new(PinnedBuffer::alloc(&gpu.ctx, b * 48)?),
                descs_dev: DeviceBuffer::alloc(&gpu.ctx, b * 48)?,
                start: Event::new(true)?,
                done: Event::new(true)?,
            })
            .map_err(|_| PipelineError::Failed("slot pool closed".into()))?;
    }
    let nworkers = hw_workers + cuda_workers;
    if nworkers > 64 {
        return Err(PipelineError::Failed(format!(
            "{nworkers} decoder threads; at most 64"
        )));
    }
    let mut fences = Vec::with_capacity(nworkers);
    let mut decs: Vec<(Box<dyn Decoder>, Role)> = Vec::with_capacity(nworkers);
    for _ in 0..hw_workers {
        let f = decoders::new_fences(slots)?;
        fences.push(f.clone());
        decs.push((
            Box::new(HwDecoder::new(&gpu, &handle, f, cfg.gpu.hw_chunk)?),
            Role::Hardware,
        ));
    }
    let steal = cfg.gpu.decoders != DecoderSet::HardwareOnly || hw_workers == 0;
    for _ in 0..cuda_workers {
        let f = decoders::new_fences(slots)?;
        fences.push(f.clone());
        decs.push((
            Box::new(CudaDecoder::new(&gpu, &handle, cfg.gpu.cuda_backend, f)?),
            Role::Cuda { steal },
        ));
    }
    let out_bytes = b * 3 * (cfg.side as usize).pow(2) * elem_bytes(cfg.dtype);
    let outs = if cfg.decode_only {
        Vec::new()
    } else {
        vec![
            DeviceBuffer::alloc(&gpu.ctx, out_bytes)?,
            DeviceBuffer::alloc(&gpu.ctx, out_bytes)?,
        ]
    };

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
    let (complete_tx, complete_rx) = mpsc::channel();
    let sh = Shared {
        cfg,
        gpu: &gpu,
        shards,
        cursor: Mutex::new((0, 0)),
        open: Mutex::new(VecDeque::new()),
        open_cv: Condvar::new(),
        complete_tx,
        pool_tx,
        pool_rx: Mutex::new(pool_rx),
        stop: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        workers_exit: AtomicBool::new(false),
        readers_alive: AtomicUsize::new(cfg.readers.max(1)),
        submitted: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        counters: Counters::default(),
        bad: BadList::new(1000),
        fences,
        errors: Mutex::new(Vec::new()),
    };
    let assembler_done = AtomicBool::new(false);
    let budget = match cfg.stop {
        Stop::Seconds(sec) => Some(cfg.warmup_s + sec),
        Stop::Epochs(_) => None,
    };
    let mut meter = IntervalMeter::new(budget);
    let mut min_free = free0;
    let t0 = Instant::now();
    let mut elapsed_s = 0.0;
    std::thread::scope(|s| {
        let sh = &sh;
        for r in 0..cfg.readers.max(1) {
            std::thread::Builder::new()
                .name(format!("reader-{r}"))
                .spawn_scoped(s, move || {
                    if let Err(e) = reader(sh) {
                        sh.fail("reader", e);
                    }
                    sh.readers_alive.fetch_sub(1, SeqCst);
                })
                .map_err(|e| sh.fail("spawn", e))
                .ok();
        }
        for (w, (mut d, role)) in decs.into_iter().enumerate() {
            std::thread::Builder::new()
                .name(format!("decoder-{w}"))
                .spawn_scoped(s, move || {
                    if let Err(e) = worker(sh, w, d.as_mut(), role) {
                        sh.fail("decoder", e);
                    }
                })
                .map_err(|e| sh.fail("spawn", e))
                .ok();
        }
        let kref = kernels.as_ref();
        let outs_ref = &outs;
        let done_ref = &assembler_done;
        std::thread::Builder::new()
            .name("assembler".into())
            .spawn_scoped(s, move || {
                if let Err(e) = assembler(sh, kref, outs_ref, complete_rx) {
                    sh.fail("assembler", e);
                }
                done_ref.store(true, SeqCst);
                sh.workers_exit.store(true, SeqCst);
                sh.stop.store(true, SeqCst);
                sh.open_cv.notify_all();
            })
            .map_err(|e| sh.fail("spawn", e))
            .ok();
        // Meter: the calling thread samples counters every interval.
        let mut stopped_at: Option<f64> = None;
        let (mut wd_images, mut wd_t) = (0u64, 0.0f64);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let t = t0.elapsed().as_secs_f64();
            let done = assembler_done.load(SeqCst);
            if stopped_at.is_none() && (meter.due(t, cfg.interval_s) || done) {
                let i = sh.counters.images.load(SeqCst);
                progress(&meter.cut(t, i, sh.counters.bytes.load(SeqCst)));
                if let Ok((free, _)) = gpu.ctx.mem_get_info() {
                    min_free = min_free.min(free);
                }
            }
            // Watchdog: no finished image for WATCHDOG seconds means something is stuck; say
            // what every batch is waiting for and stop instead of hanging silently.
            let now_images = sh.counters.images.load(SeqCst) + sh.counters.failed.load(SeqCst);
            if now_images != wd_images {
                wd_images = now_images;
                wd_t = t;
            } else if t - wd_t > WATCHDOG && !sh.abort.load(SeqCst) {
                let state = describe_state(sh);
                eprintln!("verify-throughput watchdog: no progress for {WATCHDOG} s: {state}");
                sh.fail("watchdog", format!("no progress for {WATCHDOG} s: {state}"));
            }
            if let Some(b) = budget {
                if stopped_at.is_none() && t >= b {
                    stopped_at = Some(t);
                    sh.stop.store(true, SeqCst);
                    sh.open_cv.notify_all();
                }
            }
            if done {
                elapsed_s = stopped_at.unwrap_or(t);
                break;
            }
        }
    });
    let errors = sh.errors.lock().map(|g| g.clone()).unwrap_or_default();
    if !errors.is_empty() {
        return Err(PipelineError::Failed(errors.join("; ")));
    }
    let c = &sh.counters;
    let (bad_records, bad_record_count) = sh.bad.take();
    let ns = |a: &AtomicU64| a.load(SeqCst) as f64 / 1e9;
    Ok(RunResult {
        device: format!(
            "{} (GPU {}, sm_{}{})",
            gpu.name, gpu.ordinal, gpu.cc.0, gpu.cc.1
        ),
        elapsed_s,
        images: c.images.load(SeqCst),
        bytes: c.bytes.load(SeqCst),
        batches: c.batches.load(SeqCst),
        intervals: meter.intervals,
        by_hardware: c.by_hw.load(SeqCst),
        by_cuda: c.by_cuda.load(SeqCst),
        by_cpu: c.by_cpu.load(SeqCst),
        undecodable: c.failed.load(SeqCst),
        read_s: ns(&c.read_ns),
        decode_hw_s: ns(&c.hw_ns),
        decode_cuda_s: ns(&c.cuda_ns),
        decode_cpu_s: 0.0,
        preprocess_s: 0.0,
        kernel_gpu_s: ns(&c.kernel_ns),
        starved_s: ns(&c.starved_ns),
        backpressure_s: ns(&c.backpressure_ns),
        bad_records,
        bad_record_count,
        gpu_mem_total: Some(total as u64),
        gpu_mem_used_by_run: Some(free0.saturating_sub(min_free) as u64),
        hw_engines: Some(hw_info),
        nvjpeg: Some(format!(
            "{} ({}.{}.{})",
            lib.path.display(),
            lib.version.0,
            lib.version.1,
            lib.version.2
        )),
        kernel_cache_hit: kernels.as_ref().map(|k| k.cache_hit),
        kernel_compile_ms: kernels.as_ref().map(|k| k.compile_ms),
        epochs_started: c.epochs_started.load(SeqCst),
        notes,
    })
}
