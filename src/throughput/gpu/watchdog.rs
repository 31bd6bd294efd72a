//! The watchdog: no image finished (decoded or failed) for [`WATCHDOG_S`] seconds means
//! something is stuck. The run then stops with a description of what every open batch was
//! waiting for, instead of hanging silently; the caller also gets it as an event.

use super::shared::Shared;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Instant;

/// Seconds without a finished image before the run is stopped.
pub(super) const WATCHDOG_S: f64 = 20.0;

/// When the finished-image count last changed.
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    finished: u64,
    since_s: f64,
}

impl Watchdog {
    /// Whether, at `t`, `finished` has not moved for longer than [`WATCHDOG_S`].
    pub fn stalled(&mut self, t: f64, finished: u64) -> bool {
        if finished != self.finished {
            self.finished = finished;
            self.since_s = t;
            return false;
        }
        t - self.since_s > WATCHDOG_S
    }
}

/// What a pipeline thread is doing: a stall names each thread's phase and how long it has been
/// in it, so the wait that never ends is named rather than guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    Starting = 0,
    /// Reader: waiting for a free slot.
    WaitSlot,
    /// Reader: reading records into the slot's staging (and waiting for its last reads).
    Reading,
    /// Reader: growing the slot's device arena for this batch.
    GrowArena,
    /// Decoder: waiting for images to claim.
    WaitWork,
    /// Decoder: inside the decoder's decode call.
    Decode,
    /// Decoder: recording its fence.
    Fence,
    /// Assembler: waiting for a decoded batch.
    WaitBatch,
    /// Assembler: waiting on the host for a batch's kernel (retiring it).
    Retire,
    /// Assembler: waiting for a free output buffer (the consumer holds them all).
    WaitRing,
    /// Assembler: queueing the kernel.
    Launch,
    /// Assembler: waiting for room in the delivery queue.
    Deliver,
    Done,
}

impl Phase {
    const ALL: [Phase; 13] = [
        Phase::Starting,
        Phase::WaitSlot,
        Phase::Reading,
        Phase::GrowArena,
        Phase::WaitWork,
        Phase::Decode,
        Phase::Fence,
        Phase::WaitBatch,
        Phase::Retire,
        Phase::WaitRing,
        Phase::Launch,
        Phase::Deliver,
        Phase::Done,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::WaitSlot => "waiting for a slot",
            Phase::Reading => "reading",
            Phase::GrowArena => "growing the arena",
            Phase::WaitWork => "waiting for work",
            Phase::Decode => "decoding",
            Phase::Fence => "fencing",
            Phase::WaitBatch => "waiting for a decoded batch",
            Phase::Retire => "waiting for a kernel",
            Phase::WaitRing => "waiting for an output buffer",
            Phase::Launch => "launching",
            Phase::Deliver => "delivering",
            Phase::Done => "done",
        }
    }
}

/// Which thread a phase belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Who {
    Reader(usize),
    Decoder(usize),
    Assembler,
}

/// Every pipeline thread's current phase and when it entered it (one atomic word each: the
/// phase in the top byte, milliseconds since the run's start below).
pub(super) struct Phases {
    readers: usize,
    decoders: usize,
    words: Vec<AtomicU64>,
    t0: Instant,
}

impl Phases {
    pub fn new(readers: usize, decoders: usize) -> Self {
        Phases {
            readers,
            decoders,
            words: (0..readers + decoders + 1)
                .map(|_| AtomicU64::new(0))
                .collect(),
            t0: Instant::now(),
        }
    }

    fn slot(&self, who: Who) -> Option<&AtomicU64> {
        let i = match who {
            Who::Reader(r) if r < self.readers => r,
            Who::Decoder(w) if w < self.decoders => self.readers + w,
            Who::Assembler => self.readers + self.decoders,
            _ => return None,
        };
        self.words.get(i)
    }

    /// `who` is in `phase` from now on; already in it, it keeps the time it entered (threads
    /// that wait in a loop set their phase on every turn, and a stall must show the whole
    /// wait).
    pub fn set(&self, who: Who, phase: Phase) {
        let Some(w) = self.slot(who) else { return };
        if w.load(SeqCst) >> 56 == phase as u64 {
            return;
        }
        let ms = (self.t0.elapsed().as_millis() as u64) & ((1 << 56) - 1);
        w.store((phase as u64) << 56 | ms, SeqCst);
    }

    /// (thread name, phase, seconds in it) for every thread.
    fn snapshot(&self) -> Vec<(String, Phase, f64)> {
        let now = self.t0.elapsed().as_millis() as u64;
        let n = self.words.len();
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let v = w.load(SeqCst);
                let phase = Phase::ALL
                    .get((v >> 56) as usize)
                    .copied()
                    .unwrap_or(Phase::Starting);
                let since = v & ((1 << 56) - 1);
                let name = if i < self.readers {
                    format!("reader-{i}")
                } else if i + 1 < n {
                    format!("decoder-{}", i - self.readers)
                } else {
                    "assembler".to_string()
                };
                (name, phase, now.saturating_sub(since) as f64 / 1000.0)
            })
            .collect()
    }
}

/// One open batch as the watchdog saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenBatch {
    pub seq: u64,
    pub items: usize,
    pub front: usize,
    pub back: usize,
    pub hardware_eligible: usize,
    pub cuda_only: usize,
    pub finished: usize,
}

/// The pipeline's state when it stalled.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct State {
    pub submitted: u64,
    pub retired: u64,
    pub readers_alive: usize,
    pub hw: u64,
    pub cuda: u64,
    pub cpu: u64,
    /// `None` when the open list was locked (someone holds it: part of the story).
    pub open: Option<Vec<OpenBatch>>,
    /// (thread, phase, seconds in it).
    pub threads: Vec<(String, Phase, f64)>,
    /// Per decoder: whether its stream's queued work has all completed (`None`: the query
    /// failed). A decoder waiting on an idle stream waits for a wake-up that was lost.
    pub streams_done: Vec<Option<bool>>,
}

impl State {
    /// A snapshot that never blocks (locks are tried, not waited for).
    pub fn of(sh: &Shared<'_>) -> Self {
        let c = &sh.counters;
        let open = sh.open.try_lock().ok().map(|o| {
            o.iter()
                .filter_map(|b| {
                    let cl = b.claim.try_lock().ok()?;
                    let (front, back, hardware_eligible, cuda_only) = cl.state();
                    Some(OpenBatch {
                        seq: b.seq,
                        items: b.items.len(),
                        front,
                        back,
                        hardware_eligible,
                        cuda_only,
                        finished: b.finished.load(SeqCst),
                    })
                })
                .collect()
        });
        State {
            submitted: sh.submitted.load(SeqCst),
            retired: c.batches.load(SeqCst),
            readers_alive: sh.readers_alive.load(SeqCst),
            hw: c.by_hw.load(SeqCst),
            cuda: c.by_cuda.load(SeqCst),
            cpu: c.by_cpu.load(SeqCst),
            open,
            threads: sh.phases.snapshot(),
            streams_done: sh
                .decoder_streams
                .iter()
                .map(|st| crate::gpu::ffi::cuda::stream_done(st).ok())
                .collect(),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "submitted {} batches, retired {}, readers alive {}, decoded hw {} cuda {} cpu {};",
            self.submitted, self.retired, self.readers_alive, self.hw, self.cuda, self.cpu
        )?;
        match &self.open {
            Some(open) => {
                for b in open {
                    write!(
                        f,
                        " [batch {} items {} claimed front {} back {} of {} cuda_only {} finished {}]",
                        b.seq, b.items, b.front, b.back, b.hardware_eligible, b.cuda_only, b.finished
                    )?;
                }
            }
            None => f.write_str(" (open list locked)")?,
        }
        if !self.threads.is_empty() {
            f.write_str("; threads:")?;
            for (name, phase, s) in &self.threads {
                write!(f, " {name} {} for {s:.1} s,", phase.name())?;
            }
        }
        if !self.streams_done.is_empty() {
            f.write_str(" decoder streams:")?;
            for (w, d) in self.streams_done.iter().enumerate() {
                let what = match d {
                    Some(true) => "idle",
                    Some(false) => "busy",
                    None => "unknown",
                };
                write!(f, " {w} {what}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_only_after_the_count_stops_moving_for_the_limit() {
        let mut w = Watchdog::default();
        assert!(!w.stalled(0.05, 0));
        assert!(!w.stalled(5.0, 10));
        assert!(!w.stalled(5.0 + WATCHDOG_S, 10));
        assert!(w.stalled(5.1 + WATCHDOG_S, 10));
        assert!(!w.stalled(30.0, 11));
        // A run that never finishes anything stalls the limit after the start.
        let mut w = Watchdog::default();
        assert!(!w.stalled(WATCHDOG_S, 0));
        assert!(w.stalled(WATCHDOG_S + 0.1, 0));
    }

    #[test]
    fn state_names_every_open_batch() {
        let mut s = State {
            submitted: 3,
            retired: 1,
            readers_alive: 2,
            hw: 300,
            cuda: 40,
            cpu: 1,
            threads: Vec::new(),
            streams_done: Vec::new(),
            open: Some(vec![OpenBatch {
                seq: 1,
                items: 256,
                front: 128,
                back: 200,
                hardware_eligible: 250,
                cuda_only: 2,
                finished: 180,
            }]),
        };
        assert_eq!(
            s.to_string(),
            "submitted 3 batches, retired 1, readers alive 2, decoded hw 300 cuda 40 cpu 1; \
             [batch 1 items 256 claimed front 128 back 200 of 250 cuda_only 2 finished 180]"
        );
        s.open = None;
        assert!(s.to_string().ends_with("cpu 1; (open list locked)"));
        s.threads = vec![
            ("reader-0".into(), Phase::WaitSlot, 20.5),
            ("decoder-0".into(), Phase::Decode, 21.0),
        ];
        assert!(s.to_string().ends_with(
            "(open list locked); threads: reader-0 waiting for a slot for 20.5 s, \
             decoder-0 decoding for 21.0 s,"
        ));
        s.streams_done = vec![Some(false), Some(true), None];
        assert!(s
            .to_string()
            .ends_with("21.0 s, decoder streams: 0 busy 1 idle 2 unknown"));
    }

    #[test]
    fn phases_name_each_thread_and_its_phase() {
        let p = Phases::new(2, 1);
        p.set(Who::Reader(1), Phase::GrowArena);
        p.set(Who::Decoder(0), Phase::Decode);
        p.set(Who::Assembler, Phase::Retire);
        p.set(Who::Decoder(5), Phase::Decode); // no such thread: ignored
        p.set(Who::Decoder(1), Phase::Fence); // one decoder only: not the assembler's slot
        p.set(Who::Reader(2), Phase::Done); // two readers: not decoder 0's
        let s = p.snapshot();
        let names: Vec<_> = s.iter().map(|t| (t.0.as_str(), t.1)).collect();
        assert_eq!(
            names,
            [
                ("reader-0", Phase::Starting),
                ("reader-1", Phase::GrowArena),
                ("decoder-0", Phase::Decode),
                ("assembler", Phase::Retire)
            ]
        );
        assert!(s.iter().all(|t| t.2 >= 0.0 && t.2 < 5.0));
        // Setting the phase it is in keeps the time it entered it; a new phase restarts it.
        std::thread::sleep(std::time::Duration::from_millis(30));
        p.set(Who::Decoder(0), Phase::Decode);
        let waited = p.snapshot()[2].2;
        assert!(waited >= 0.025, "{waited}");
        p.set(Who::Decoder(0), Phase::WaitWork);
        assert!(p.snapshot()[2].2 < waited);
        for ph in Phase::ALL {
            assert_eq!(Phase::ALL[ph as usize], ph);
        }
    }
}
