//! One epoch's batches for one rank: a seeded permutation of every record of every shard
//! (global shuffling, not a buffer), cut into batches dealt to the ranks, and each slot's flip.
//! Everything is a function of (seed, epoch, rank, world_size) and the record count, never of
//! timing, so a resumed run continues with exactly the batches an uninterrupted one would see.
//!
//! Slots: the epoch's permuted records are numbered 0..; batch `k` of rank `r` holds slots
//! `(k·world + r)·B ..+B`. With `drop_last` every rank gets `⌊⌊N/world⌋/B⌋` batches, disjoint,
//! and fewer than world·B records are left out; without it every rank gets
//! `⌈N/(world·B)⌉` batches and the slots past N repeat records from the start of the
//! permutation (marked `repeat`, the batch dict's `is_pad`), so every record appears.

use crate::throughput::feed::{BatchPlan, PlannedItem};
use crate::throughput::hsv;

/// What every epoch's plan is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSpec {
    /// Records of each shard, in shard order.
    pub shard_records: Vec<u64>,
    pub batch: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub rank: u32,
    pub world: u32,
    pub drop_last: bool,
    /// Probability that a slot is flipped.
    pub flip: f64,
    /// HSV jitter maxima (hue, saturation, value), when jitter is on.
    pub hsv: Option<[f32; 3]>,
}

impl PlanSpec {
    pub fn total(&self) -> u64 {
        self.shard_records.iter().sum()
    }

    /// Batches per epoch on every rank (`len(loader)`).
    pub fn batches(&self) -> u64 {
        let (n, w, b) = (
            self.total(),
            u64::from(self.world.max(1)),
            self.batch.max(1) as u64,
        );
        if self.drop_last {
            n / w / b
        } else {
            n.div_ceil(w * b)
        }
    }
}

/// splitmix64: the one mixing step behind the permutation and the per-slot choices.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) for (`seed`, `epoch`, `slot`, `salt`).
pub fn unit(seed: u64, epoch: u64, slot: u64, salt: u64) -> f64 {
    let z = mix(mix(mix(seed ^ salt.wrapping_mul(0xA076_1D64_78BD_642F)) ^ epoch) ^ slot);
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The seeded permutation of `0..n` for an epoch (Fisher–Yates over a splitmix64 stream).
pub fn permutation(n: u64, seed: u64, epoch: u64) -> Vec<u64> {
    let mut p: Vec<u64> = (0..n).collect();
    let mut state = mix(mix(seed) ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    for i in (1..p.len()).rev() {
        state = mix(state);
        // Multiply-shift: an unbiased-enough index in 0..=i (bias < 2^-32 for any real n).
        let j = ((u128::from(state) * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}

/// One epoch of one rank.
pub struct EpochPlan {
    pub spec: PlanSpec,
    pub epoch: u64,
    /// Global record number of each slot < N (identity without shuffling).
    order: Vec<u64>,
    /// First global record number of each shard (and the total at the end).
    starts: Vec<u64>,
}

/// Salt of the flip decisions.
const FLIP: u64 = 1;
/// Salts of the three HSV gains' uniform numbers.
const HSV: [u64; 3] = [2, 3, 4];

impl EpochPlan {
    pub fn new(spec: PlanSpec, epoch: u64) -> Self {
        let n = spec.total();
        let order = if spec.shuffle {
            permutation(n, spec.seed, epoch)
        } else {
            (0..n).collect()
        };
        let mut starts = Vec::with_capacity(spec.shard_records.len() + 1);
        let mut at = 0;
        for &c in &spec.shard_records {
            starts.push(at);
            at += c;
        }
        starts.push(at);
        EpochPlan {
            spec,
            epoch,
            order,
            starts,
        }
    }

    /// (shard, record number) of global record `g`.
    fn locate(&self, g: u64) -> (u32, u64) {
        // The last shard whose start is <= g (empty shards share starts: take the last).
        let s = self.starts.partition_point(|&st| st <= g).saturating_sub(1);
        (s as u32, g - self.starts[s])
    }
}

impl BatchPlan for EpochPlan {
    fn batches(&self) -> u64 {
        self.spec.batches()
    }

    fn batch(&self, k: u64) -> Vec<PlannedItem> {
        let n = self.order.len() as u64;
        let (b, w) = (self.spec.batch as u64, u64::from(self.spec.world.max(1)));
        let first = (k * w + u64::from(self.spec.rank)) * b;
        (first..first + b)
            .filter(|_| n > 0)
            .map(|slot| {
                let g = self.order[(slot % n) as usize];
                let (shard, number) = self.locate(g);
                PlannedItem {
                    shard,
                    number,
                    flip: self.spec.flip > 0.0
                        && unit(self.spec.seed, self.epoch, slot, FLIP) < self.spec.flip,
                    hsv: match self.spec.hsv {
                        Some(max) => hsv::gains(
                            max,
                            HSV.map(|salt| unit(self.spec.seed, self.epoch, slot, salt)),
                        ),
                        None => hsv::IDENTITY,
                    },
                    repeat: slot >= n,
                }
            })
            .collect()
    }
}

/// Epochs back to back for one pass: chain batch `k` is batch `k % len` of epoch
/// `first_epoch + k / len`. The loader runs a pass over a chain so the engine flows on into
/// the next epoch instead of draining at every epoch's end (a 3,000-image epoch is 11 batches
/// of 256: a drain and a refill each time cost about a sixth of the loader's throughput); the
/// loader keeps the pass only while the batches it wants next are the chain's next ones.
pub struct EpochChain {
    spec: PlanSpec,
    first_epoch: u64,
    len: u64,
    /// The epoch plans built last (readers ask for neighbouring batches; one permutation per
    /// epoch, not per batch).
    recent: std::sync::Mutex<Vec<std::sync::Arc<EpochPlan>>>,
}

/// Epochs one chain may span (a pass is restarted long before: `set_epoch` to anything but
/// the next epoch, `load_state_dict`, or the loader's end).
const CHAIN_EPOCHS: u64 = 1 << 32;

impl EpochChain {
    pub fn new(spec: PlanSpec, first_epoch: u64) -> Self {
        let len = spec.batches();
        EpochChain {
            spec,
            first_epoch,
            len,
            recent: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Chain batch number of batch `batch` of `epoch` (None before the chain's first epoch).
    pub fn index_of(&self, epoch: u64, batch: u64) -> Option<u64> {
        let e = epoch.checked_sub(self.first_epoch)?;
        e.checked_mul(self.len)?.checked_add(batch)
    }

    /// (epoch, batch in it) of chain batch `k`.
    pub fn position_of(&self, k: u64) -> (u64, u64) {
        let len = self.len.max(1);
        (self.first_epoch + k / len, k % len)
    }

    fn epoch(&self, e: u64) -> std::sync::Arc<EpochPlan> {
        if let Ok(g) = self.recent.lock() {
            if let Some(p) = g.iter().find(|p| p.epoch == e) {
                return p.clone();
            }
        }
        let p = std::sync::Arc::new(EpochPlan::new(self.spec.clone(), e));
        if let Ok(mut g) = self.recent.lock() {
            if !g.iter().any(|q| q.epoch == e) {
                g.push(p.clone());
                if g.len() > 2 {
                    g.remove(0);
                }
            }
        }
        p
    }
}

impl BatchPlan for EpochChain {
    fn batches(&self) -> u64 {
        self.len.saturating_mul(CHAIN_EPOCHS)
    }

    fn batch(&self, k: u64) -> Vec<PlannedItem> {
        let (e, b) = self.position_of(k);
        self.epoch(e).batch(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn spec(records: Vec<u64>, batch: usize, rank: u32, world: u32, drop_last: bool) -> PlanSpec {
        PlanSpec {
            shard_records: records,
            batch,
            shuffle: true,
            seed: 7,
            rank,
            world,
            drop_last,
            flip: 0.5,
            hsv: None,
        }
    }

    #[test]
    fn a_chain_is_the_epochs_back_to_back() {
        let sp = spec(vec![40, 25, 0, 31], 8, 1, 2, true);
        let c = EpochChain::new(sp.clone(), 3);
        let len = sp.batches();
        assert!(len > 1 && c.batches() > 1000 * len);
        for e in 3..6 {
            let p = EpochPlan::new(sp.clone(), e);
            for b in 0..len {
                let k = c.index_of(e, b).unwrap();
                assert_eq!(c.position_of(k), (e, b));
                assert_eq!(c.batch(k), p.batch(b), "epoch {e} batch {b}");
            }
        }
        assert_eq!(c.index_of(2, 0), None);
        assert_eq!(c.index_of(4, 0), Some(len));
    }

    fn all(p: &EpochPlan) -> Vec<PlannedItem> {
        (0..p.batches()).flat_map(|k| p.batch(k)).collect()
    }

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = permutation(1000, 1, 0);
        assert_eq!(a, permutation(1000, 1, 0));
        assert_ne!(a, permutation(1000, 1, 1));
        assert_ne!(a, permutation(1000, 2, 0));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert!(permutation(0, 1, 0).is_empty());
    }

    #[test]
    fn ranks_are_disjoint_with_drop_last_and_cover_without() {
        let records = vec![10, 0, 7, 20]; // 37 records, one empty shard
        for world in 1..=4u32 {
            let mut seen = HashSet::new();
            let lens: Vec<u64> = (0..world)
                .map(|r| {
                    let p = EpochPlan::new(spec(records.clone(), 4, r, world, true), 3);
                    for it in all(&p) {
                        assert!(!it.repeat);
                        assert!(seen.insert((it.shard, it.number)), "{world}: {it:?} twice");
                    }
                    p.batches()
                })
                .collect();
            assert!(lens.iter().all(|&l| l == lens[0]));
            assert!(
                37 - seen.len() < (world * 4) as usize,
                "{world}: {}",
                seen.len()
            );
            let mut seen = HashSet::new();
            for r in 0..world {
                let p = EpochPlan::new(spec(records.clone(), 4, r, world, false), 3);
                assert_eq!(p.batches(), 37u64.div_ceil(u64::from(world) * 4));
                for it in all(&p) {
                    assert_ne!(it.shard, 1);
                    seen.insert((it.shard, it.number, it.repeat));
                }
            }
            let real: HashSet<_> = seen.iter().filter(|x| !x.2).map(|x| (x.0, x.1)).collect();
            assert_eq!(real.len(), 37, "{world}");
        }
    }

    #[test]
    fn flips_follow_the_probability_and_the_slot() {
        let p = EpochPlan::new(spec(vec![4000], 100, 0, 1, true), 0);
        let n = all(&p).iter().filter(|i| i.flip).count();
        assert!((1800..2200).contains(&n), "{n}");
        let mut s = spec(vec![50], 10, 0, 1, true);
        s.flip = 1.0;
        assert!(all(&EpochPlan::new(s.clone(), 0)).iter().all(|i| i.flip));
        s.flip = 0.0;
        assert!(all(&EpochPlan::new(s.clone(), 0)).iter().all(|i| !i.flip));
        // HSV gains: identity when off; seeded, in range, differing between slots when on.
        assert!(all(&EpochPlan::new(s.clone(), 0))
            .iter()
            .all(|i| i.hsv == hsv::IDENTITY));
        let mut on = s.clone();
        on.hsv = Some([0.015, 0.7, 0.4]);
        let a = all(&EpochPlan::new(on.clone(), 3));
        assert_eq!(a, all(&EpochPlan::new(on.clone(), 3)));
        assert!(a
            .iter()
            .all(|i| (i.hsv[1] - 1.0).abs() <= 0.7 && (i.hsv[2] - 1.0).abs() <= 0.4));
        assert!(a.windows(2).any(|w| w[0].hsv != w[1].hsv));
        assert_ne!(a, all(&EpochPlan::new(on, 4)));
        s.shuffle = false;
        let p = EpochPlan::new(s, 0);
        assert_eq!(
            p.batch(1)[0],
            PlannedItem {
                shard: 0,
                number: 10,
                flip: false,
                hsv: hsv::IDENTITY,
                repeat: false
            }
        );
    }
}
