//! What the GPU pipeline's threads share: the schedule, the open batches, the slot pool, the
//! counters, and the failure flag every wait checks so one failing thread stops the others
//! instead of hanging them.

use super::batch::Batch;
use super::outputs::DeviceLease;
use super::slots::SlotRes;
use super::watchdog::{Phase, Phases, Who};
use crate::gpu::device::Gpu;
use crate::throughput::config::PipelineConfig;
use crate::throughput::decoders::Fences;
use crate::throughput::feed::{Delivered, PlannedFeed};
use crate::throughput::meter::{add_since, BadList, Counters};
use crate::throughput::schedule::Schedule;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long after the assembler last waited for a decoded batch the CUDA decoders keep helping.
const STARVED_US: u64 = 100_000;

/// How long any thread waits before looking at the flags again.
pub(super) const WAIT: Duration = Duration::from_millis(20);

/// What the readers read and where finished batches go.
pub enum Feed<'a> {
    /// Whole shards in schedule order; tensors are thrown away (`verify-throughput`).
    Shards,
    /// Planned batches, delivered in plan order to a consumer (the loader).
    Planned {
        feed: &'a PlannedFeed<'a>,
        deliver: SyncSender<Delivered<DeviceLease>>,
    },
}

pub(super) struct Shared<'a> {
    pub cfg: &'a PipelineConfig,
    pub gpu: &'a Gpu,
    pub feed: &'a Feed<'a>,
    pub schedule: Schedule<'a>,
    /// Submitted batches with images still to claim or finish, oldest first.
    pub open: Mutex<VecDeque<Arc<Batch>>>,
    pub open_cv: Condvar,
    /// Fully decoded batches, to the assembler.
    pub complete_tx: Sender<Arc<Batch>>,
    pub pool_tx: &'a Sender<SlotRes>,
    pub pool_rx: &'a Mutex<Receiver<SlotRes>>,
    /// Set by [`Shared::fail`]: everyone stops now.
    pub abort: AtomicBool,
    /// Set when the assembler is done: the decoders exit.
    pub workers_exit: AtomicBool,
    pub readers_alive: AtomicUsize,
    pub submitted: AtomicU64,
    pub seq: AtomicU64,
    pub counters: &'a Counters,
    pub bad: BadList,
    /// Per decoder thread: its per-slot fence events.
    pub fences: Vec<Fences>,
    pub errors: Mutex<Vec<String>>,
    /// Moves while the assembler waits for the consumer (a free output buffer, room in the
    /// delivery queue): the watchdog counts that as progress.
    pub consumer_waits: AtomicU64,
    /// A hardware decoder thread runs (else the CUDA decoders must take everything).
    pub has_hw: bool,
    /// Microseconds since the run's start when the assembler last waited for a decoded batch:
    /// while that is recent, decoding is the bottleneck and the CUDA decoders help the
    /// hardware engines.
    pub starved_at_us: AtomicU64,
    pub t0: Instant,
    /// What each thread is doing (the watchdog's description).
    pub phases: Phases,
    /// Each decoder's stream (the watchdog asks whether its work has completed).
    pub decoder_streams: Vec<Arc<cudarc::driver::CudaStream>>,
}

impl Shared<'_> {
    /// Whether CUDA decoders may take hardware-eligible images now: always for shards; for a
    /// planned feed only while the assembler waits for decoded batches. A consumer slower than
    /// the hardware engines (a training step) then costs no CPU cores on CUDA decoding; the
    /// loader alone still gets both decoders. (Whether the consumer's thread waits says nothing
    /// here: CUDA launches are asynchronous, so a GPU-bound loop waits for its next batch too.)
    pub fn may_steal(&self) -> bool {
        match self.feed {
            Feed::Shards => true,
            Feed::Planned { .. } => {
                let now = self.t0.elapsed().as_micros() as u64;
                !self.has_hw || now.saturating_sub(self.starved_at_us.load(SeqCst)) < STARVED_US
            }
        }
    }

    /// The number of the first batch of a planned feed (0 for shards).
    pub fn first_planned(&self) -> u64 {
        match self.feed {
            Feed::Planned { feed, .. } => feed.first,
            Feed::Shards => 0,
        }
    }

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
    pub fn acquire_slot(&self, reader: usize) -> Option<SlotRes> {
        self.phases.set(Who::Reader(reader), Phase::WaitSlot);
        let t = Instant::now();
        let rx = self.pool_rx.lock().ok()?;
        loop {
            match rx.recv_timeout(WAIT) {
                Ok(r) => {
                    self.phases.set(Who::Reader(reader), Phase::Reading);
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
