//! The planned feed: how the loader drives the same engines `verify-throughput` runs. Instead of
//! walking whole shards, the readers take numbered batches of (shard, record) from a
//! [`BatchPlan`] (the loader's shuffled, rank-split epoch), read each record through random
//! access ([`crate::shard::random`]), keep its annotations beside the pixels, and the engine
//! hands each finished batch over **in plan order** as a [`Delivered`] batch.
//!
//! Record problems never change the batch: a record that cannot be read, parsed or decoded
//! keeps its place and is marked failed; the loader replaces it by another image of the batch
//! ([`replacements`]).

use crate::shard::example::Example;
use crate::shard::od_example::keys;
use crate::shard::random::RandomShard;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

/// One record of a planned batch and what is done to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedItem {
    /// Index into the feed's shard list.
    pub shard: u32,
    /// Record number in the shard.
    pub number: u64,
    pub flip: bool,
    /// HSV jitter gains ([`crate::throughput::hsv`]); identity when jitter is off.
    pub hsv: [f32; 3],
    /// A repeat that fills the last batches (`drop_last=False`): marked `is_pad`.
    pub repeat: bool,
}

/// The batches of one pass, numbered from 0.
pub trait BatchPlan: Send + Sync {
    /// How many batches the pass has.
    fn batches(&self) -> u64;
    /// Batch `k` (`k < batches()`), in its order.
    fn batch(&self, k: u64) -> Vec<PlannedItem>;
}

/// A pass over `plan` from batch `first`, with the shards its items point into. Readers take
/// batches with [`PlannedFeed::take`].
pub struct PlannedFeed<'a> {
    pub plan: &'a dyn BatchPlan,
    pub shards: &'a [RandomShard],
    /// The batch the pass starts at (a resumed pass starts inside the plan).
    pub first: u64,
    next: AtomicU64,
    /// Set to stop the pass early: no more batches are handed out and the run halts.
    pub stop: Arc<AtomicBool>,
}

impl<'a> PlannedFeed<'a> {
    pub fn new(
        plan: &'a dyn BatchPlan,
        shards: &'a [RandomShard],
        first: u64,
        stop: Arc<AtomicBool>,
    ) -> Self {
        PlannedFeed {
            plan,
            shards,
            first,
            next: AtomicU64::new(first),
            stop,
        }
    }

    /// The next batch to read (its number and items), `None` past the end.
    pub fn take(&self) -> Option<(u64, Vec<PlannedItem>)> {
        if self.stop.load(SeqCst) {
            return None;
        }
        let k = self.next.fetch_add(1, SeqCst);
        (k < self.plan.batches()).then(|| (k, self.plan.batch(k)))
    }
}

/// Annotations of one record (what the batch dict's box tensors are built from).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    /// `image/source_id` as a number (-1 when absent or not a number).
    pub image_id: i64,
    /// `image/width`, `image/height` (0 when absent).
    pub width: u32,
    pub height: u32,
    /// [xmin, ymin, xmax, ymax], normalised to the stored image.
    pub boxes: Vec<[f32; 4]>,
    /// `image/object/class/label` per box (-1 where the list is shorter than the boxes).
    pub labels: Vec<i64>,
    pub is_crowd: Vec<bool>,
}

/// The JPEG and annotations of a record's payload. A box is kept when all four corner lists
/// have it (lists of different lengths keep the shortest).
pub fn parse_record(payload: &[u8]) -> Result<(&[u8], Annotations), String> {
    let ex = Example::decode(payload).map_err(|e| format!("bad tf.train.Example: {e}"))?;
    let jpeg = crate::shard::od_example::encoded_image(payload)?;
    let floats = |k: &str| ex.get_floats(k).unwrap_or(&[]);
    let ints = |k: &str| ex.get_int64s(k).unwrap_or(&[]);
    let (x0, y0, x1, y1) = (
        floats(keys::XMIN),
        floats(keys::YMIN),
        floats(keys::XMAX),
        floats(keys::YMAX),
    );
    let n = x0.len().min(y0.len()).min(x1.len()).min(y1.len());
    let (labels, crowd) = (ints(keys::CLASS_LABEL), ints(keys::IS_CROWD));
    let int = |k: &str| ints(k).first().copied().unwrap_or(0);
    let source_id = ex
        .get_bytes(keys::SOURCE_ID)
        .and_then(|v| v.first())
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(-1);
    let ann = Annotations {
        image_id: source_id,
        width: u32::try_from(int(keys::WIDTH)).unwrap_or(0),
        height: u32::try_from(int(keys::HEIGHT)).unwrap_or(0),
        boxes: (0..n).map(|i| [x0[i], y0[i], x1[i], y1[i]]).collect(),
        labels: (0..n)
            .map(|i| labels.get(i).copied().unwrap_or(-1))
            .collect(),
        is_crowd: (0..n)
            .map(|i| crowd.get(i).is_some_and(|&c| c != 0))
            .collect(),
    };
    Ok((jpeg, ann))
}

/// One item of a delivered batch: what was planned, what the record holds, the decoded size.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemInfo {
    pub planned: PlannedItem,
    pub ann: Annotations,
    /// Width and height of the JPEG frame (what was decoded and placed); 0 when unreadable.
    pub frame: (u32, u32),
}

/// A finished batch, in plan order.
pub struct Delivered<I> {
    /// Its number in the plan.
    pub index: u64,
    pub items: Vec<ItemInfo>,
    /// (item, reason) of the records that could not be used.
    pub failed: Vec<(usize, String)>,
    /// Which item's pixels each item shows ([`replacements`]).
    pub source: Vec<Option<usize>>,
    pub images: I,
}

/// For each of `n` items, the item whose image it shows: itself when it is good, else the next
/// good item after it (cyclically), `None` when the batch has no good item. Deterministic:
/// which records fail depends on the data only.
pub fn replacements(n: usize, failed: &[usize]) -> Vec<Option<usize>> {
    let mut bad = vec![false; n];
    for &i in failed {
        if let Some(b) = bad.get_mut(i) {
            *b = true;
        }
    }
    (0..n)
        .map(|i| (0..n).map(|k| (i + k) % n).find(|&j| !bad[j]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_is_the_next_good_item() {
        assert_eq!(replacements(4, &[]), [Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(
            replacements(4, &[1, 3]),
            [Some(0), Some(2), Some(2), Some(0)]
        );
        assert_eq!(replacements(2, &[0, 1]), [None, None]);
        assert_eq!(replacements(3, &[7]), [Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn records_parse_with_defaults_for_missing_fields() {
        let mut e = Example::new();
        e.insert_bytes(keys::ENCODED, [b"\xff\xd8x".to_vec()]);
        e.insert_str(keys::SOURCE_ID, ["42"]);
        e.insert_int64s(keys::WIDTH, [640]);
        e.insert_int64s(keys::HEIGHT, [480]);
        e.insert_floats(keys::XMIN, [0.1, 0.2]);
        e.insert_floats(keys::YMIN, [0.1, 0.2]);
        e.insert_floats(keys::XMAX, [0.5, 0.6]);
        e.insert_floats(keys::YMAX, [0.5]);
        e.insert_int64s(keys::CLASS_LABEL, [3]);
        e.insert_int64s(keys::IS_CROWD, [1]);
        let bytes = e.to_bytes();
        let (jpeg, a) = parse_record(&bytes).unwrap();
        assert_eq!(jpeg, b"\xff\xd8x");
        assert_eq!((a.image_id, a.width, a.height), (42, 640, 480));
        assert_eq!(a.boxes, [[0.1, 0.1, 0.5, 0.5]]);
        assert_eq!((a.labels, a.is_crowd), (vec![3], vec![true]));
        let mut bare = Example::new();
        bare.insert_bytes(keys::ENCODED, [b"j".to_vec()]);
        let bytes = bare.to_bytes();
        let (_, a) = parse_record(&bytes).unwrap();
        assert_eq!((a.image_id, a.boxes.len()), (-1, 0));
        assert!(parse_record(b"\x0a\xff")
            .unwrap_err()
            .starts_with("bad tf.train.Example"));
        assert_eq!(
            parse_record(&Example::new().to_bytes()).unwrap_err(),
            "record has no image/encoded"
        );
    }
}
