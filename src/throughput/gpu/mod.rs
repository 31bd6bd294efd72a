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
use crate::gpu::ffi::cuda::DeviceBuffer;
use crate::gpu::ffi::nvjpeg::{Handle, NvJpeg, NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION};
use crate::gpu::kernels::Kernels;
use batch::Role;
use shared::Shared;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::Duration;
use watchdog::{State, Watchdog, WATCHDOG_S};

/// Runs the GPU pipeline on `cfg.gpu.ordinal`.
pub fn run(
    cfg: &PipelineConfig,
    on_event: &mut dyn FnMut(&Event),
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
    let outs = if cfg.decode_only {
        Vec::new()
    } else {
        vec![
            DeviceBuffer::alloc(&gpu.ctx, out_bytes)?,
            DeviceBuffer::alloc(&gpu.ctx, out_bytes)?,
        ]
    };

    let (complete_tx, complete_rx) = mpsc::channel();
    let sh = Shared {
        cfg,
        gpu: &gpu,
        schedule: Schedule::new(&cfg.shards, cfg.stop, cfg.seed),
        open: Mutex::new(VecDeque::new()),
        open_cv: Condvar::new(),
        complete_tx,
        pool_tx,
        pool_rx: Mutex::new(pool_rx),
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
    let mut meter = Meter::start(cfg.interval_s, cfg.stop.budget_s(cfg.warmup_s));
    let mut min_free = free0;
    let mut finished_at = 0.0;
    std::thread::scope(|s| {
        let sh = &sh;
        for r in 0..cfg.readers.max(1) {
            std::thread::Builder::new()
                .name(format!("reader-{r}"))
                .spawn_scoped(s, move || {
                    if let Err(e) = reader::reader(sh) {
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
                    if let Err(e) = workers::worker(sh, w, d.as_mut(), role) {
                        sh.fail("decoder", e);
                    }
                })
                .map_err(|e| sh.fail("spawn", e))
                .ok();
        }
        let (kref, outs_ref, done_ref) = (kernels.as_ref(), &outs, &assembler_done);
        std::thread::Builder::new()
            .name("assembler".into())
            .spawn_scoped(s, move || {
                if let Err(e) = assembler::assembler(sh, kref, outs_ref, complete_rx) {
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
            let tick = meter.tick(t, &sh.counters, done, on_event);
            if tick.cut {
                if let Ok((free, _)) = gpu.ctx.mem_get_info() {
                    min_free = min_free.min(free);
                }
            }
            let finished = sh.counters.images.load(SeqCst) + sh.counters.failed.load(SeqCst);
            if watchdog.stalled(t, finished) && !sh.abort.load(SeqCst) {
                let why = format!("no progress for {WATCHDOG_S} s: {}", State::of(sh));
                on_event(&Event::Stalled(why.clone()));
                sh.fail("watchdog", why);
            }
            if tick.budget_spent {
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
    let device = format!(
        "{} (GPU {}, sm_{}{})",
        gpu.name, gpu.ordinal, gpu.cc.0, gpu.cc.1
    );
    let epochs = sh.schedule.epochs_started();
    Ok(RunResult {
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
        notes,
        ..sh.counters
            .result(device, meter.finish(finished_at), &sh.bad, epochs)
    })
}
