//! The watchdog: no image finished (decoded or failed) for [`WATCHDOG_S`] seconds means
//! something is stuck. The run then stops with a description of what every open batch was
//! waiting for, instead of hanging silently; the caller also gets it as an event.

use super::shared::Shared;
use std::fmt;
use std::sync::atomic::Ordering::SeqCst;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct State {
    pub submitted: u64,
    pub retired: u64,
    pub readers_alive: usize,
    pub hw: u64,
    pub cuda: u64,
    pub cpu: u64,
    /// `None` when the open list was locked (someone holds it: part of the story).
    pub open: Option<Vec<OpenBatch>>,
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
                Ok(())
            }
            None => f.write_str(" (open list locked)"),
        }
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
    }
}
