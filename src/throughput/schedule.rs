//! What the readers read next, shared by the CPU and GPU runners: the shard order, the epoch
//! cursor, the stop condition, and the per-record flip decision.
//!
//! Readers pull whole shards: `next()` hands out (epoch, shard index) in shard order, epoch
//! after epoch, until the epochs are done or someone halts the run. Within a shard the records
//! come in file order, so what each image gets (its flip) depends on (seed, epoch, shard,
//! record number) only, never on thread timing.

use super::config::Stop;
use crate::shard::format::ShardRef;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

/// The epoch cursor: the next (epoch, shard index) to hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Cursor {
    epoch: u64,
    shard: usize,
}

impl Cursor {
    /// The position to hand out now and whether it starts an epoch, then moves on; `None` when
    /// `epochs` passes are done (or there is nothing to read).
    fn advance(&mut self, shards: usize, epochs: Option<u32>) -> Option<(u64, usize, bool)> {
        if shards == 0 || epochs.is_some_and(|n| self.epoch >= u64::from(n)) {
            return None;
        }
        let here = (self.epoch, self.shard, self.shard == 0);
        *self = if self.shard + 1 >= shards {
            Cursor {
                epoch: self.epoch + 1,
                shard: 0,
            }
        } else {
            Cursor {
                epoch: self.epoch,
                shard: self.shard + 1,
            }
        };
        Some(here)
    }
}

/// The run's schedule over its shards.
pub struct Schedule<'a> {
    shards: &'a [ShardRef],
    stop: Stop,
    seed: u64,
    cursor: Mutex<Cursor>,
    epochs_started: AtomicU64,
    halted: AtomicBool,
}

impl<'a> Schedule<'a> {
    pub fn new(shards: &'a [ShardRef], stop: Stop, seed: u64) -> Self {
        Schedule {
            shards,
            stop,
            seed,
            cursor: Mutex::new(Cursor::default()),
            epochs_started: AtomicU64::new(0),
            halted: AtomicBool::new(false),
        }
    }

    /// The next (epoch, shard index) to read, or `None` when the run is over (epochs done or
    /// halted). Counts the epochs started.
    pub fn next(&self) -> Option<(u64, usize)> {
        if self.halted() {
            return None;
        }
        let epochs = match self.stop {
            Stop::Epochs(n) => Some(n),
            Stop::Seconds(_) => None,
        };
        let (epoch, shard, starts_epoch) = self
            .cursor
            .lock()
            .ok()?
            .advance(self.shards.len(), epochs)?;
        if starts_epoch {
            self.epochs_started.fetch_add(1, SeqCst);
        }
        Some((epoch, shard))
    }

    /// The shard at `index` of [`Self::next`].
    pub fn shard(&self, index: usize) -> Option<&'a ShardRef> {
        self.shards.get(index)
    }

    /// Stops handing out shards; readers also check [`Self::halted`] between records.
    pub fn halt(&self) {
        self.halted.store(true, SeqCst);
    }

    pub fn halted(&self) -> bool {
        self.halted.load(SeqCst)
    }

    /// Passes over the data begun so far.
    pub fn epochs_started(&self) -> u64 {
        self.epochs_started.load(SeqCst)
    }

    /// Whether record `number` of shard `shard` is flipped in `epoch`.
    pub fn flip(&self, epoch: u64, shard: usize, number: u64) -> bool {
        flip_for(self.seed, epoch, record_index(shard, number))
    }
}

/// A record's identity across the run: shard index in the high bits, its number in the shard
/// (from 0, bad records counted) in the low 40.
pub fn record_index(shard: usize, number: u64) -> u64 {
    ((shard as u64) << 40) | number
}

/// Deterministic "random" horizontal flip for image `index` of `epoch` (splitmix64 of both):
/// the same run gives the same flips, on GPU and CPU alike.
pub fn flip_for(seed: u64, epoch: u64, index: u64) -> bool {
    let mut z = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::format::ShardFormat;

    fn shards(n: usize) -> Vec<ShardRef> {
        (0..n)
            .map(|i| ShardRef {
                path: format!("s{i}.tfrecord").into(),
                format: ShardFormat::Tfrecord,
                index: None,
            })
            .collect()
    }

    #[test]
    fn epochs_walk_the_shards_in_order_and_are_counted() {
        let s = shards(3);
        let sch = Schedule::new(&s, Stop::Epochs(2), 0);
        let got: Vec<_> = std::iter::from_fn(|| sch.next()).collect();
        assert_eq!(got, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
        assert_eq!(sch.epochs_started(), 2);
        assert_eq!(sch.next(), None);
        assert_eq!(sch.shard(2).unwrap().name(), "s2.tfrecord");
        assert!(sch.shard(3).is_none());
    }

    #[test]
    fn timed_runs_go_on_until_halted() {
        let s = shards(2);
        let sch = Schedule::new(&s, Stop::Seconds(1.0), 0);
        for k in 0..7u64 {
            assert_eq!(sch.next(), Some((k / 2, (k % 2) as usize)));
        }
        assert_eq!(sch.epochs_started(), 4);
        sch.halt();
        assert!(sch.halted());
        assert_eq!(sch.next(), None);
    }

    #[test]
    fn no_shards_is_an_empty_run() {
        let sch = Schedule::new(&[], Stop::Seconds(1.0), 0);
        assert_eq!(sch.next(), None);
        assert_eq!(sch.epochs_started(), 0);
    }

    #[test]
    fn flips_are_deterministic_and_balanced() {
        let n = (0..10_000u64).filter(|&i| flip_for(0, 0, i)).count();
        assert!((4_700..5_300).contains(&n), "{n}");
        assert_eq!(flip_for(1, 2, 3), flip_for(1, 2, 3));
        assert_ne!(
            (0..64).map(|i| flip_for(0, 0, i)).collect::<Vec<_>>(),
            (0..64).map(|i| flip_for(0, 1, i)).collect::<Vec<_>>()
        );
        assert_eq!(record_index(3, 7), (3 << 40) | 7);
        let s = shards(1);
        let sch = Schedule::new(&s, Stop::Epochs(1), 9);
        assert_eq!(sch.flip(2, 3, 7), flip_for(9, 2, (3 << 40) | 7));
    }
}
