//! Batch slots: the memory one batch needs on its way reader → decoders → kernel, allocated
//! once and recycled, so steady state allocates nothing. A slot returns to the pool only when
//! its batch is dropped, after the kernel's completion event (see `Batch`'s `Drop`).
//!
//! Layout of a filling batch ([`Layout`]): JPEG bytes back to back in the pinned staging, each
//! decoded image at a 256-byte-aligned offset of the device arena, sized from its header.

use crate::gpu::device::Gpu;
use crate::gpu::ffi::cuda::{DeviceBuffer, Event, PinnedBuffer};
use crate::gpu::ffi::preprocess::DescriptorStaging;
use crate::gpu::GpuError;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

/// Alignment of each decoded image in the arena.
pub(super) const ARENA_ALIGN: u64 = 256;
/// Initial JPEG staging per image (grows when a batch needs more).
const STAGING_PER_IMAGE: usize = 160 * 1024;
/// Initial decoded bytes per image: a 640×480 RGB image.
const ARENA_PER_IMAGE: usize = 640 * 480 * 3;

/// Memory of one batch slot.
pub(super) struct SlotRes {
    pub id: usize,
    /// Pinned JPEG staging (readers write, decoders read).
    pub host: PinnedBuffer,
    /// Decoded RGB images (decoders write, the kernel reads).
    pub arena: DeviceBuffer,
    /// The kernel's descriptors (the assembler's).
    pub descs: Mutex<DescriptorStaging>,
    /// Recorded on the kernel stream before/after the batch's kernel (timing, completion).
    pub start: Event,
    pub done: Event,
}

impl SlotRes {
    fn alloc(gpu: &Gpu, id: usize, batch: usize) -> Result<Self, GpuError> {
        Ok(SlotRes {
            id,
            host: PinnedBuffer::alloc(&gpu.ctx, batch * STAGING_PER_IMAGE)?,
            arena: DeviceBuffer::alloc(&gpu.ctx, batch * ARENA_PER_IMAGE)?,
            descs: Mutex::new(DescriptorStaging::alloc(&gpu.ctx, batch)?),
            start: Event::new(true)?,
            done: Event::new(true)?,
        })
    }
}

/// The pool of `slots` slots for batches of `batch` images: the sender takes slots back, the
/// receiver hands them out.
pub(super) fn pool(
    gpu: &Gpu,
    slots: usize,
    batch: usize,
) -> Result<(Sender<SlotRes>, Receiver<SlotRes>), GpuError> {
    let (tx, rx) = mpsc::channel();
    for id in 0..slots {
        tx.send(SlotRes::alloc(gpu, id, batch)?)
            .map_err(|_| GpuError::Invalid("slot pool closed".into()))?;
    }
    Ok((tx, rx))
}

/// Where the next image of a filling batch goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Layout {
    /// JPEG bytes staged so far.
    pub host_len: usize,
    /// Arena bytes used so far (a multiple of [`ARENA_ALIGN`]).
    pub arena_len: u64,
}

impl Layout {
    /// Places a `jpeg_len`-byte JPEG decoding to `width`×`height` RGB: (staging offset, arena
    /// offset).
    pub fn place(&mut self, jpeg_len: usize, width: u32, height: u32) -> (usize, u64) {
        let at = (self.host_len, self.arena_len);
        let size = 3 * u64::from(width) * u64::from(height);
        self.host_len += jpeg_len;
        self.arena_len += size.div_ceil(ARENA_ALIGN) * ARENA_ALIGN;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpegs_back_to_back_images_aligned_and_disjoint() {
        let mut l = Layout::default();
        assert_eq!(l.place(1000, 10, 10), (0, 0));
        assert_eq!(l.place(7, 1, 1), (1000, 512)); // the first image's 300 bytes took 512
        assert_eq!(l.place(5, 64, 4), (1007, 768)); // the 3-byte one took 256
        assert_eq!(
            l,
            Layout {
                host_len: 1012,
                arena_len: 768 + 768
            }
        );
        // Any sizes: every image starts aligned and after the previous one's end.
        let mut l = Layout::default();
        let mut end = 0u64;
        for k in 1..200u32 {
            let (w, h) = (k * 7 % 61 + 1, k * 13 % 37 + 1);
            let (_, off) = l.place(k as usize, w, h);
            assert_eq!(off % ARENA_ALIGN, 0);
            assert!(off >= end);
            end = off + 3 * u64::from(w * h);
            assert!(end <= l.arena_len);
        }
    }
}
