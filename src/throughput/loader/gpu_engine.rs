//! The loader on a GPU: one background thread owns the GPU engine `verify-throughput` runs
//! ([`crate::throughput::gpu::Engine`], set up once: decoders, kernels, slots, output ring) and
//! runs one planned pass after another on it as the loader asks; batches come back in plan
//! order over a channel, their tensors lent from the ring.

use super::plan::EpochChain;
use crate::shard::random::RandomShard;
use crate::throughput::config::PipelineConfig;
use crate::throughput::feed::{Delivered, PlannedFeed};
use crate::throughput::gpu::outputs::{DeviceLease, OutputRing};
use crate::throughput::gpu::{Engine, Feed};
use crate::throughput::meter::Counters;
use crate::throughput::{PipelineError, RunResult};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;

/// Batches handed over ahead of the consumer (their buffers count against the ring).
const AHEAD: usize = 2;

enum Cmd {
    Run {
        plan: Arc<EpochChain>,
        first: u64,
        deliver: SyncSender<Delivered<DeviceLease>>,
        stop: Arc<AtomicBool>,
        stalled: Stalled,
    },
}

/// What the engine's watchdog said, once it stopped the pass: the loader raises it instead of
/// waiting for a batch that will not come (a stuck decoder keeps the engine's run from ending,
/// so its error would never arrive).
pub type Stalled = Arc<std::sync::Mutex<Option<String>>>;

/// The engine thread and what the loader sees of it.
pub struct GpuEngine {
    cmd: Option<Sender<Cmd>>,
    done: Receiver<Result<RunResult, PipelineError>>,
    pub ring: Arc<OutputRing>,
    pub device: String,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set when a pass stalled: the thread may never return, so it is not joined.
    abandoned: AtomicBool,
}

/// A pass in progress.
pub struct GpuPass {
    pub rx: Receiver<Delivered<DeviceLease>>,
    pub stop: Arc<AtomicBool>,
    pub stalled: Stalled,
}

impl GpuPass {
    /// The watchdog's description when it stopped this pass.
    pub fn stalled(&self) -> Option<String> {
        self.stalled.lock().ok().and_then(|g| g.clone())
    }
}

impl GpuEngine {
    /// Sets the engine up on its thread (errors: no device, nvJPEG, NVRTC...).
    pub fn start(
        cfg: Arc<PipelineConfig>,
        shards: Arc<Vec<RandomShard>>,
        counters: Arc<Counters>,
    ) -> Result<Self, PipelineError> {
        let (init_tx, init_rx) = channel();
        let (cmd_tx, cmd_rx) = channel::<Cmd>();
        let (done_tx, done_rx) = channel();
        let thread = std::thread::Builder::new()
            .name("loader-gpu".into())
            .spawn(move || {
                let mut engine = match Engine::new(&cfg, true) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                        return;
                    }
                };
                let ring = engine.ring().cloned();
                let _ = init_tx.send(Ok((ring, engine.device())));
                while let Ok(Cmd::Run {
                    plan,
                    first,
                    deliver,
                    stop,
                    stalled,
                }) = cmd_rx.recv()
                {
                    let feed = PlannedFeed::new(&*plan, &shards, first, stop);
                    let planned = Feed::Planned {
                        feed: &feed,
                        deliver,
                    };
                    let r = engine.run(&cfg, &planned, &counters, &mut |e| {
                        if let crate::throughput::Event::Stalled(why) = e {
                            if let Ok(mut g) = stalled.lock() {
                                *g = Some(why.clone());
                            }
                        }
                    });
                    if done_tx.send(r).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| PipelineError::Failed(format!("cannot start the loader thread: {e}")))?;
        let (ring, device) = match init_rx.recv() {
            Ok(Ok((Some(ring), device))) => (ring, device),
            Ok(Ok((None, _))) => return Err(PipelineError::Failed("engine without a ring".into())),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(PipelineError::Failed("the loader thread ended".into())),
        };
        Ok(GpuEngine {
            cmd: Some(cmd_tx),
            done: done_rx,
            ring,
            device,
            thread: Some(thread),
            abandoned: AtomicBool::new(false),
        })
    }

    /// Starts a pass over `plan` from batch `first`.
    pub fn run(&self, plan: Arc<EpochChain>, first: u64) -> Result<GpuPass, PipelineError> {
        let (deliver, rx) = sync_channel(AHEAD);
        let stop = Arc::new(AtomicBool::new(false));
        let stalled: Stalled = Arc::default();
        self.cmd
            .as_ref()
            .and_then(|c| {
                c.send(Cmd::Run {
                    plan,
                    first,
                    deliver,
                    stop: stop.clone(),
                    stalled: stalled.clone(),
                })
                .ok()
            })
            .ok_or_else(|| PipelineError::Failed("the loader's GPU thread has ended".into()))?;
        Ok(GpuPass { rx, stop, stalled })
    }

    /// Ends `pass` (early or not) and returns how its run went.
    pub fn finish(&self, pass: GpuPass) -> Result<RunResult, PipelineError> {
        pass.stop.store(true, SeqCst);
        drop(pass.rx);
        self.done
            .recv()
            .map_err(|_| PipelineError::Failed("the loader's GPU thread has ended".into()))?
    }
}

impl GpuEngine {
    /// Gives the engine up after a stall: dropping it will not wait for its thread.
    pub fn abandon(&self) {
        self.abandoned.store(true, SeqCst);
    }
}

impl Drop for GpuEngine {
    fn drop(&mut self) {
        self.cmd.take();
        if self.abandoned.load(SeqCst) {
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
