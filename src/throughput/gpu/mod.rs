//! The GPU pipeline: readers fill batch slots (pinned staging), hardware and CUDA decoders steal
//! images from the open batches into each slot's device arena, the assembler launches the fused
//! kernel per completed batch on its own stream after waiting (on the GPU) for the decoders'
//! events, and a slot returns to the readers once its kernel's event has completed.
//!
//! Threads: `readers` reader threads ([`reader`]), `hw_workers` + `cuda_workers` decoder
//! threads ([`workers`]), one [`assembler`]; the calling thread ticks the meter and the
//! [`watchdog`]. All waits have timeouts and check the abort flag ([`shared`]), so a failing
//! thread stops the others instead of hanging them. Batches and how decoders claim their
//! images: [`batch`]; slot memory and its layout: [`slots`].

mod assembler;
mod batch;
pub mod outputs;
mod reader;
mod shared;
mod slots;
mod watchdog;
mod workers;

use super::config::{DecoderSet, PipelineConfig};
use super::decoders::{self, CudaDecoder, Decoder, HwDecoder};
use super::meter::{BadList, Counters, Meter};
use super::schedule::Schedule;
use super::{Event, PipelineError, RunResult};
use crate::gpu::device::Gpu;
use crate::gpu::ffi::nvjpeg::{Handle, NvJpeg, NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION};
use crate::gpu::kernels::Kernels;
use batch::Role;
use outputs::{OutputRing, Outputs};
pub use shared::Feed;
use shared::Shared;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;
use watchdog::{State, Watchdog, WATCHDOG_S};

/// Runs the GPU pipeline on `cfg.gpu.ordinal` over whole shards (`verify-throughput`).
pub fn run(
    cfg: &PipelineConfig,
    on_event: &mut dyn FnMut(&Event),
) -> Result<RunResult, PipelineError> {
    let mut engine = Engine::new(cfg, false)?;
    engine.run(cfg, &Feed::Shards, &Counters::default(), on_event)
}

/// Everything a GPU pipeline allocates once: device, nvJPEG handle, decoders and their fences,
/// kernels, batch slots, output tensors. The loader keeps one for its whole life and runs one
/// pass after another on it, so device memory stays flat across epochs.
pub struct Engine {
    gpu: Gpu,
    lib: Arc<NvJpeg>,
    hw_info: (u32, u32),
    notes: Vec<String>,
    kernels: Option<Kernels>,
    pool_tx: mpsc::Sender<slots::SlotRes>,
    pool_rx: Mutex<mpsc::Receiver<slots::SlotRes>>,
    decs: Vec<(Box<dyn Decoder>, Role)>,
    fences: Vec<decoders::Fences>,
    outs: Outputs,
    free0: usize,
    total: usize,
    // Dropped last: decoders and their states hold the handle.
    _handle: Arc<Handle>,
}

impl Engine {
    /// Sets up the pipeline for `cfg`; `ring` makes its outputs a ring lent to a consumer
    /// (the loader) instead of two alternating buffers.
    pub fn new(cfg: &PipelineConfig, ring: bool) -> Result<Self, PipelineError> {
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
        // With the hardware engines asked for alone, CUDA workers take only what they reject.
        let cuda_workers = cfg.gpu.cuda_workers.max(1);
        let kernels = if cfg.decode_only {
            None
        } else {
            Some(Kernels::load(&gpu)?)
        };
        let slots = cfg.gpu.slots.max(3);
        let (pool_tx, pool_rx) = slots::pool(&gpu, slots, cfg.batch)?;
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
        let out_bytes = cfg.batch * 3 * (cfg.side as usize).pow(2) * cfg.dtype.bytes();
        let outs = match (cfg.decode_only, ring) {
            (_, true) => Outputs::Ring(OutputRing::new(
                &gpu,
                out_bytes,
                RING_INITIAL,
                ring_cap(out_bytes, free0),
            )?),
            (true, false) => Outputs::Alternating(Vec::new()),
            (false, false) => Outputs::alternating(&gpu, out_bytes)?,
        };
        Ok(Engine {
            gpu,
            lib,
            hw_info,
            notes,
            kernels,
            pool_tx,
            pool_rx: Mutex::new(pool_rx),
            decs,
            fences,
            outs,
            free0,
            total,
            _handle: handle,
        })
    }

    /// The output ring, when the engine lends its tensors out.
    pub fn ring(&self) -> Option<&Arc<OutputRing>> {
        match &self.outs {
            Outputs::Ring(r) => Some(r),
            Outputs::Alternating(_) => None,
        }
    }

    /// The device's name and ordinal as reports show them.
    pub fn device(&self) -> String {
        let g = &self.gpu;
        format!("{} (GPU {}, sm_{}{})", g.name, g.ordinal, g.cc.0, g.cc.1)
    }

    /// One run over `feed` (whole shards, or a planned pass delivered to a consumer), adding to
    /// `counters` (the result reports their totals).
    pub fn run(
        &mut self,
        cfg: &PipelineConfig,
        feed: &Feed<'_>,
        counters: &Counters,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<RunResult, PipelineError> {
        let gpu = &self.gpu;
        let (complete_tx, complete_rx) = mpsc::channel();
        let stop = match feed {
            Feed::Planned { feed, .. } => Some(&feed.stop),
            Feed::Shards => None,
        };
        let sh = Shared {
            cfg,
            gpu,
            feed,
            schedule: Schedule::new(&cfg.shards, cfg.stop, cfg.seed),
            open: Mutex::new(VecDeque::new()),
            open_cv: Condvar::new(),
            complete_tx,
            pool_tx: &self.pool_tx,
            pool_rx: &self.pool_rx,
            abort: AtomicBool::new(false),
            workers_exit: AtomicBool::new(false),
            readers_alive: AtomicUsize::new(cfg.readers.max(1)),
            submitted: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            counters,
            bad: BadList::new(1000),
            fences: self.fences.clone(),
            errors: Mutex::new(Vec::new()),
            consumer_waits: AtomicU64::new(0),
            has_hw: self.decs.iter().any(|(_, r)| *r == Role::Hardware),
            starved_at_us: AtomicU64::new(0),
            t0: std::time::Instant::now(),
            phases: watchdog::Phases::new(cfg.readers.max(1), self.decs.len()),
            decoder_streams: self.decs.iter().map(|(d, _)| d.stream()).collect(),
        };
        let assembler_done = AtomicBool::new(false);
        let mut meter = Meter::start(cfg.interval_s, cfg.stop.budget_s(cfg.warmup_s));
        let mut min_free = self.free0;
        let mut finished_at = 0.0;
        let (kernels, outs) = (self.kernels.as_ref(), &self.outs);
        let decs = &mut self.decs;
        std::thread::scope(|s| {
            let sh = &sh;
            for r in 0..cfg.readers.max(1) {
                std::thread::Builder::new()
                    .name(format!("reader-{r}"))
                    .spawn_scoped(s, move || {
                        if let Err(e) = reader::reader(sh, r) {
                            sh.fail("reader", e);
                        }
                        sh.readers_alive.fetch_sub(1, SeqCst);
                    })
                    .map_err(|e| sh.fail("spawn", e))
                    .ok();
            }
            for (w, (d, role)) in decs.iter_mut().enumerate() {
                let role = *role;
                std::thread::Builder::new()
                    .name(format!("decoder-{w}"))
                    .spawn_scoped(s, move || {
                        if let Err(e) = workers::worker(sh, w, d.as_mut(), role) {
                            sh.fail("decoder", e);
                        }
                    })
                    .map_err(|e| sh.fail("spawn", e))
                    .ok();
            }
            let done_ref = &assembler_done;
            std::thread::Builder::new()
                .name("assembler".into())
                .spawn_scoped(s, move || {
                    if let Err(e) = assembler::assembler(sh, kernels, outs, complete_rx) {
                        sh.fail("assembler", e);
                    }
                    done_ref.store(true, SeqCst);
                    sh.workers_exit.store(true, SeqCst);
                    sh.halt();
                })
                .map_err(|e| sh.fail("spawn", e))
                .ok();
            // Meter and watchdog: the calling thread samples the counters every 50 ms.
            let mut watchdog = Watchdog::default();
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let t = meter.now();
                let done = assembler_done.load(SeqCst);
                let tick = meter.tick(t, sh.counters, done, on_event);
                if tick.cut {
                    if let Ok((free, _)) = gpu.ctx.mem_get_info() {
                        min_free = min_free.min(free);
                    }
                }
                let finished = sh.counters.images.load(SeqCst)
                    + sh.counters.failed.load(SeqCst)
                    + sh.consumer_waits.load(SeqCst);
                if watchdog.stalled(t, finished) && !sh.abort.load(SeqCst) {
                    let why = format!("no progress for {WATCHDOG_S} s: {}", State::of(sh));
                    on_event(&Event::Stalled(why.clone()));
                    sh.fail("watchdog", why);
                }
                if tick.budget_spent || stop.is_some_and(|f| f.load(SeqCst)) {
                    sh.halt();
                }
                if done {
                    finished_at = t;
                    break;
                }
            }
        });
        let errors = sh.errors.lock().map(|g| g.clone()).unwrap_or_default();
        if !errors.is_empty() {
            return Err(PipelineError::Failed(errors.join("; ")));
        }
        let epochs = sh.schedule.epochs_started();
        let lib = &self.lib;
        Ok(RunResult {
            gpu_mem_total: Some(self.total as u64),
            gpu_mem_used_by_run: Some(self.free0.saturating_sub(min_free) as u64),
            hw_engines: Some(self.hw_info),
            nvjpeg: Some(format!(
                "{} ({}.{}.{})",
                lib.path.display(),
                lib.version.0,
                lib.version.1,
                lib.version.2
            )),
            kernel_cache_hit: self.kernels.as_ref().map(|k| k.cache_hit),
            kernel_compile_ms: self.kernels.as_ref().map(|k| k.compile_ms),
            notes: self.notes.clone(),
            ..sh.counters
                .result(self.device(), meter.finish(finished_at), &sh.bad, epochs)
        })
    }
}

/// Output buffers a loader's ring starts with: one being written, one queued for the consumer,
/// one or two held by the training step.
pub const RING_INITIAL: usize = 4;
/// Most buffers a ring grows to: 64, or fewer so that the ring stays under a quarter of the
/// device memory free at start (at least [`RING_INITIAL`]).
pub fn ring_cap(buffer_bytes: usize, free: usize) -> usize {
    (free / 4 / buffer_bytes.max(1)).clamp(RING_INITIAL, 64)
}
