//! An open batch and how decoders claim its images.
//!
//! Each image is claimed exactly once. Hardware-eligible images sit in `order`; the hardware
//! decoder takes chunks from its front, CUDA decoders single images from its back (when they
//! may steal), so both work on the same batch until they meet. Images the hardware cannot take
//! (and hardware rejects handed back with [`Claim::retry`]) sit in `cuda_only`, which CUDA
//! decoders empty first.

use super::slots::SlotRes;
use crate::gpu::GpuError;
use crate::throughput::config::DecoderSet;
use crate::throughput::feed::ItemInfo;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// One image of a batch: where its JPEG bytes are staged, where it decodes to, where it came
/// from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Item {
    pub jpeg_off: usize,
    pub jpeg_len: usize,
    pub width: u32,
    pub height: u32,
    /// Byte offset of its decoded RGB in the slot's arena.
    pub arena_off: u64,
    pub shard: u32,
    /// Where a problem with it is reported ([`crate::throughput::BadRecord::offset`]).
    pub offset: u64,
    pub flip: bool,
    /// HSV jitter gains ([`crate::throughput::hsv`]).
    pub hsv: [f32; 3],
    /// The header says the hardware engines take it.
    pub hw: bool,
}

/// Who is asking for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Hardware,
    /// `steal`: may take hardware-eligible images too.
    Cuda {
        steal: bool,
    },
}

/// Claim state of one batch: `order[front..back]` are unclaimed hardware-eligible images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claim {
    order: Vec<usize>,
    front: usize,
    back: usize,
    cuda_only: Vec<usize>,
}

impl Claim {
    /// Routes the images (`hw[i]`: image `i` is hardware-eligible): with the CUDA decoder alone,
    /// every image is in `order` (CUDA workers steal all of it). Tests; the readers use
    /// [`Claim::route_some`].
    #[cfg(test)]
    pub fn route(hw: impl IntoIterator<Item = bool>, decoders: DecoderSet) -> Self {
        Self::route_some(hw.into_iter().map(Some), decoders)
    }

    /// [`Claim::route`] where `None` marks an image nobody decodes (a record that failed before
    /// decoding: it is never claimed).
    pub fn route_some(hw: impl IntoIterator<Item = Option<bool>>, decoders: DecoderSet) -> Self {
        let hw_possible = decoders != DecoderSet::CudaOnly;
        let (mut order, mut cuda_only) = (Vec::new(), Vec::new());
        for (i, hw_ok) in hw.into_iter().enumerate() {
            let Some(hw_ok) = hw_ok else { continue };
            if (hw_possible && hw_ok) || decoders == DecoderSet::CudaOnly {
                order.push(i);
            } else {
                cuda_only.push(i);
            }
        }
        let back = order.len();
        Claim {
            order,
            front: 0,
            back,
            cuda_only,
        }
    }

    /// Claims up to `want` images for `role` (CUDA: always one), or `None` when nothing is
    /// left for it.
    pub fn take(&mut self, role: Role, want: usize) -> Option<Vec<usize>> {
        match role {
            Role::Hardware => {
                if self.front >= self.back {
                    return None;
                }
                let k = want.min(self.back - self.front);
                let idx = self.order.get(self.front..self.front + k)?.to_vec();
                self.front += k;
                Some(idx)
            }
            Role::Cuda { steal } => {
                if let Some(i) = self.cuda_only.pop() {
                    return Some(vec![i]);
                }
                if steal && self.front < self.back {
                    self.back -= 1;
                    return self.order.get(self.back).map(|&i| vec![i]);
                }
                None
            }
        }
    }

    /// Images a decoder gave back (hardware rejects): the CUDA decoders take them.
    pub fn retry(&mut self, items: impl IntoIterator<Item = usize>) {
        self.cuda_only.extend(items);
    }

    /// (claimed from the front, claimed up to from the back, hardware-eligible, waiting for
    /// CUDA), for the watchdog.
    pub fn state(&self) -> (usize, usize, usize, usize) {
        (
            self.front,
            self.back,
            self.order.len(),
            self.cuda_only.len(),
        )
    }
}

/// A submitted batch, shared by the decoders working on it and the assembler. When the last
/// owner lets go, its slot goes back to the readers.
pub(super) struct Batch {
    pub res: Option<SlotRes>,
    pub items: Vec<Item>,
    pub claim: Mutex<Claim>,
    /// Images done (decoded, or failed for good).
    pub finished: AtomicUsize,
    /// Bit `w`: decoder `w` wrote into this slot (the kernel stream waits for its fence).
    pub fence_mask: AtomicU64,
    /// (item, reason) of images nobody could decode.
    pub failures: Mutex<Vec<(usize, String)>>,
    /// JPEG bytes of the batch.
    pub bytes: u64,
    /// Submission number (picks the output tensor, identifies the batch).
    pub seq: u64,
    pub pool: Sender<SlotRes>,
    /// A planned batch (the loader): its number in the plan and what each item is.
    pub planned: Option<(u64, Vec<ItemInfo>)>,
}

impl Batch {
    pub fn res(&self) -> Result<&SlotRes, GpuError> {
        self.res
            .as_ref()
            .ok_or_else(|| GpuError::Invalid("batch slot already released".into()))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Last owner gone: the slot's memory goes back to the readers.
        if let Some(r) = self.res.take() {
            let _ = self.pool.send(r);
        }
    }
}

/// The first open batch with work for `role`, and the images claimed from it.
pub(super) fn find_work(
    open: &VecDeque<Arc<Batch>>,
    role: Role,
    want: usize,
) -> Option<(Arc<Batch>, Vec<usize>)> {
    for b in open {
        let Ok(mut c) = b.claim.lock() else { continue };
        if let Some(idx) = c.take(role, want) {
            return Some((b.clone(), idx));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HW: Role = Role::Hardware;
    const CUDA: Role = Role::Cuda { steal: true };
    const CUDA_NO_STEAL: Role = Role::Cuda { steal: false };

    #[test]
    fn routing_by_decoder_set() {
        let hw = [true, false, true, true, false];
        let c = Claim::route(hw, DecoderSet::Both);
        assert_eq!(
            (c.order.clone(), c.cuda_only.clone()),
            (vec![0, 2, 3], vec![1, 4])
        );
        assert_eq!(Claim::route(hw, DecoderSet::HardwareOnly), c);
        let c = Claim::route(hw, DecoderSet::CudaOnly);
        assert_eq!((c.order, c.cuda_only), (vec![0, 1, 2, 3, 4], vec![]));
        let c = Claim::route_some([Some(true), None, Some(false)], DecoderSet::Both);
        assert_eq!((c.order, c.cuda_only), (vec![0], vec![2]));
    }

    #[test]
    fn hardware_takes_chunks_from_the_front_cuda_steals_from_the_back() {
        let mut c = Claim::route([true; 6].into_iter().chain([false]), DecoderSet::Both);
        // CUDA empties what only it can take first.
        assert_eq!(c.take(CUDA, 1), Some(vec![6]));
        assert_eq!(c.take(HW, 4), Some(vec![0, 1, 2, 3]));
        assert_eq!(c.take(CUDA, 1), Some(vec![5]));
        assert_eq!(c.take(CUDA_NO_STEAL, 1), None);
        assert_eq!(c.take(HW, 4), Some(vec![4]));
        assert_eq!(c.take(HW, 4), None);
        assert_eq!(c.take(CUDA, 1), None);
        assert_eq!(c.state(), (5, 5, 6, 0));
        // A hardware reject goes to the CUDA decoders, even those that do not steal.
        c.retry([2, 3]);
        assert_eq!(c.take(CUDA_NO_STEAL, 1), Some(vec![3]));
        assert_eq!(c.take(CUDA, 1), Some(vec![2]));
        assert_eq!(c.take(CUDA, 1), None);
    }

    #[test]
    fn every_image_is_claimed_exactly_once_whatever_the_interleaving() {
        for pattern in 0u32..64 {
            let hw: Vec<bool> = (0..23).map(|i| (i * 7 + pattern) % 5 != 0).collect();
            let mut c = Claim::route(hw, DecoderSet::Both);
            let mut seen = Vec::new();
            let mut k = 0u32;
            loop {
                let role = if (pattern >> (k % 6)) & 1 == 1 {
                    HW
                } else {
                    CUDA
                };
                k += 1;
                match c
                    .take(role, 3)
                    .or_else(|| c.take(HW, 3))
                    .or_else(|| c.take(CUDA, 1))
                {
                    Some(v) => seen.extend(v),
                    None => break,
                }
            }
            seen.sort();
            assert_eq!(seen, (0..23).collect::<Vec<_>>(), "pattern {pattern}");
        }
    }
}
