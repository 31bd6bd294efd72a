//! What the GPU pipeline's threads share: the schedule, the open batches, the slot pool, the
//! counters, and the failure flag every wait checks so one failing thread stops the others
//! instead of hanging them.

use super::batch::Batch;
use super::slots::SlotRes;
use crate::gpu::device::Gpu;
use crate::throughput::config::PipelineConfig;
use crate::throughput::decoders::Fences;
use crate::throughput::meter::{add_since, BadList, Counters};
use crate::throughput::schedule::Schedule;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any thread waits before looking at the flags again.
pub(super) const WAIT: Duration = Duration::from_millis(20);

pub(super) struct Shared<'a> {
    pub cfg: &'a PipelineConfig,
    pub gpu: &'a Gpu,
    pub schedule: Schedule<'a>,
    /// Submitted batches with images still to claim or finish, oldest first.
    pub open: Mutex<VecDeque<Arc<Batch>>>,
    pub open_cv: Condvar,
    /// Fully decoded batches, to the assembler.
    pub complete_tx: Sender<Arc<Batch>>,
    pub pool_tx: Sender<SlotRes>,
    pub pool_rx: Mutex<Receiver<SlotRes>>,
    /// Set by [`Shared::fail`]: everyone stops now.
    pub abort: AtomicBool,
    /// Set when the assembler is done: the decoders exit.
    pub workers_exit: AtomicBool,
    pub readers_alive: AtomicUsize,
    pub submitted: AtomicU64,
    pub seq: AtomicU64,
    pub counters: Counters,
    pub bad: BadList,
    /// Per decoder thread: its per-slot fence events.
    pub fences: Vec<Fences>,
    pub errors: Mutex<Vec<String>>,
}

impl Shared<'_> {
    /// Records an error of thread `who` and stops the run.
    pub fn fail(&self, who: &str, e: impl std::fmt::Display) {
        if let Ok(mut g) = self.errors.lock() {
            g.push(format!("{who}: {e}"));
        }
        self.abort.store(true, SeqCst);
        self.halt();
    }

    /// No more shards or records; wakes the decoders.
    pub fn halt(&self) {
        self.schedule.halt();
        self.open_cv.notify_all();
    }

    /// A free slot, waiting (counted as back-pressure) until one is back; `None` once the run
    /// stops.
    pub fn acquire_slot(&self) -> Option<SlotRes> {
        let t = Instant::now();
        let rx = self.pool_rx.lock().ok()?;
        loop {
            match rx.recv_timeout(WAIT) {
                Ok(r) => {
                    add_since(&self.counters.backpressure_ns, t);
                    return Some(r);
                }
                Err(RecvTimeoutError::Timeout) if !self.schedule.halted() => continue,
                Err(_) => return None,
            }
        }
    }

    /// Batch `b` is fully decoded: off the open list, to the assembler.
    pub fn complete(&self, b: &Arc<Batch>) {
        if let Ok(mut o) = self.open.lock() {
            o.retain(|x| x.seq != b.seq);
        }
        let _ = self.complete_tx.send(b.clone());
    }
}
