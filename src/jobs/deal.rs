//! How a split's images are dealt to its shards: how many shards (`--shard-multiple`), and in
//! which order the images go round (`--shuffle`).
//!
//! The deal is round-robin over a sequence of the split's images: position `p` of the sequence
//! goes to shard `p mod n`, records in sequence order inside a shard. Without `--shuffle` the
//! sequence is the annotation file's order (what the TF OD converter does); with `--shuffle SEED`
//! it is a permutation that depends only on the seed and the number of images, written out here
//! so that it never changes between versions or machines (no library RNG whose stream could).
//! Every task of a task-mode run computes the same deal on its own.

use super::JobError;

/// The permutation of `0..len` for `seed`: Fisher–Yates from the last position down, each swap
/// partner `j = ⌊r · (i + 1) / 2⁶⁴⌋` for the next SplitMix64 output `r` (a bias below 2⁻³² per
/// draw, irrelevant for shuffling and exactly reproducible).
pub fn permutation(len: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..len).rev() {
        let j = ((u128::from(rng.next()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// The sequence images are dealt in: `None` for file order, the seed's permutation with
/// `--shuffle`.
pub fn order(len: usize, shuffle_seed: Option<u64>) -> Option<Vec<usize>> {
    shuffle_seed.map(|seed| permutation(len, seed))
}

/// The images of shard `s` of `n`, in record order: positions `s, s + n, …` of the sequence.
pub fn images_of(order: Option<&[usize]>, len: usize, s: usize, n: usize) -> Vec<usize> {
    let positions = (s..len).step_by(n.max(1));
    match order {
        None => positions.collect(),
        Some(o) => positions.map(|p| o[p]).collect(),
    }
}

/// The shard count after `--shard-multiple`: `base` (already at most one shard per image)
/// rounded up to a multiple of `multiple`, or down when rounding up would leave a shard without
/// images (DALI rejects empty index files); a split with fewer images than `multiple` cannot be
/// divided evenly and is refused.
pub fn shard_total(
    base: usize,
    images: usize,
    multiple: Option<u32>,
    split: &str,
) -> Result<usize, JobError> {
    let Some(m) = multiple.map(|m| m as usize).filter(|&m| m > 1) else {
        return Ok(base);
    };
    if images == 0 {
        return Ok(0);
    }
    let up = base.div_ceil(m) * m;
    if up <= images {
        return Ok(up);
    }
    let down = images / m * m;
    if down == 0 {
        return Err(JobError::Input(format!(
            "split {split:?} has {images} images, fewer than --shard-multiple {m}: it cannot give every rank the same number of shards; use a smaller multiple, or --split to convert the other splits"
        )));
    }
    Ok(down)
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and its stream is fixed by its definition.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // First outputs for seed 1234567 of the published algorithm (checked with a Python
        // transcription).
        let mut r = SplitMix64(1234567);
        assert_eq!(r.next(), 6457827717110365317);
        assert_eq!(r.next(), 3203168211198807973);
        assert_eq!(r.next(), 9817491932198370423);
    }

    #[test]
    fn permutation_is_a_fixed_permutation_of_the_seed() {
        let p = permutation(10, 7);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(p, permutation(10, 7));
        assert_ne!(p, permutation(10, 8));
        assert_ne!(p, (0..10).collect::<Vec<_>>());
        // Pinned: a change here changes every shuffled output ever written.
        assert_eq!(permutation(8, 42), PINNED_8_42);
        assert!(permutation(0, 1).is_empty());
        assert_eq!(permutation(1, 1), [0]);
    }

    /// Computed by a separate Python transcription of the algorithm in the doc comment.
    const PINNED_8_42: [usize; 8] = [4, 3, 2, 0, 7, 6, 1, 5];

    #[test]
    fn deal_covers_every_image_once() {
        let o = permutation(11, 3);
        let mut all: Vec<usize> = (0..4).flat_map(|s| images_of(Some(&o), 11, s, 4)).collect();
        all.sort();
        assert_eq!(all, (0..11).collect::<Vec<_>>());
        assert_eq!(images_of(None, 11, 1, 4), [1, 5, 9]);
        assert_eq!(images_of(Some(&o), 11, 1, 4), [o[1], o[5], o[9]]);
    }

    #[test]
    fn multiples_round_up_then_down_and_refuse_tiny_splits() {
        assert_eq!(shard_total(5, 100, None, "t").unwrap(), 5);
        assert_eq!(shard_total(5, 100, Some(1), "t").unwrap(), 5);
        assert_eq!(shard_total(5, 100, Some(4), "t").unwrap(), 8);
        assert_eq!(shard_total(8, 100, Some(4), "t").unwrap(), 8);
        assert_eq!(shard_total(9, 10, Some(4), "t").unwrap(), 8);
        assert_eq!(shard_total(0, 0, Some(4), "t").unwrap(), 0);
        let e = shard_total(3, 3, Some(4), "val").unwrap_err().to_string();
        assert!(
            e.contains("\"val\" has 3 images") && e.contains("--shard-multiple 4"),
            "{e}"
        );
    }
}
