//! The CPU fast path: one record's JPEG → its `3 × S × S` block of the batch tensor, what the
//! CPU pipeline (`--device cpu`) and the loader's CPU device run per image.
//!
//! 1. [`RgbDecoder`]: libjpeg-turbo (SIMD) into a reused buffer, strict (a cut or corrupt scan
//!    is an error), at 1/2, 1/4 or 1/8 scale in the DCT domain when the image is at least
//!    [`DCT_HEADROOM`]× the placed size on both axes (most of the IDCT, upsampling and colour
//!    work is skipped; the Huffman decode is not).
//! 2. [`resize::Resample`]: `fast_image_resize`'s SIMD bilinear (the reference's filter, in
//!    8-bit fixed point) to the placed size, skipped when the image is already that size.
//! 3. [`write::write_block`]: normalise, mirror, letterbox and de-interleave to CHW in one pass
//!    straight into the batch block.
//!
//! Each thread keeps its decoder, buffers and resizer ([`with_scratch`]), so steady state
//! allocates no image-sized memory: per-image `malloc`/`munmap` of megabyte buffers is what kept
//! the old path (zune-jpeg + the per-pixel reference) from scaling past a few cores.
//!
//! The exact reference stays what the GPU is tested against:
//! [`crate::throughput::decoders::cpu_decode_rgb8`] + [`crate::throughput::preprocess`].
//! Tolerance of this path against it ([`tests`] checks it): at full decode size, every
//! element within [`TOLERANCE_LEVELS`] levels (0..255 units, before normalisation); boxes are
//! computed from the geometry, not from pixels, and do not change at all.

pub mod resize;
pub mod write;

use super::config::ResizeMode;
use super::geometry::Geometry;
use super::preprocess::{Normalize, OutElem};
use crate::image::fast_decode::{Decoded, RgbDecoder};
use crate::image::ImageError;
use resize::{Resample, ResampleError};
use std::cell::RefCell;
use write::{fill_padding, write_block, Levels, Placement, WriteError};

/// The DCT-scaled decode is used when the stored image is at least this many times the placed
/// size on both axes after scaling: at 1.0, any 1/d decode that is still at least as large as
/// the output (a 1280×960 image into 640² decodes at 1/2). The reduced IDCT is itself a good
/// low-pass filter, and the bilinear pass after it still antialiases what remains.
pub const DCT_HEADROOM: f64 = 1.0;

/// Largest difference, in 8-bit levels before normalisation, between this path and the exact
/// reference when no DCT scaling is involved. The two decoders (libjpeg-turbo, zune-jpeg)
/// round their IDCT and chroma upsampling differently, by a level or two almost everywhere
/// and by up to 7 at rare sharp edges; the 8-bit resize adds ±1. Measured by
/// `examples/cpu_fast_check` on 200 COCO-like photos into 640² letterbox (2026-12-01):
/// mean 0.08 levels, 99.99 % of elements within 2, max 7. In normalised units that is
/// `TOLERANCE_LEVELS / (255 · std)`.
pub const TOLERANCE_LEVELS: f32 = 8.0;

/// Largest mean difference (levels) over a block, same conditions: 0.08 on photos, up to 0.5
/// on pure noise (the synthetic images of the tests).
pub const TOLERANCE_MEAN_LEVELS: f32 = 0.75;

/// What every block of a batch is made into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub side: u32,
    pub mode: ResizeMode,
    pub norm: Normalize,
}

/// Why an image could not be made into its block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FastError {
    #[error("CPU decoder: {0}")]
    Decode(#[from] ImageError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// One thread's reusable state.
#[derive(Default)]
struct Scratch {
    decoder: RgbDecoder,
    resample: Resample,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// The DCT scaling denominator for a `w`×`h` image placed at `pw`×`ph`: the largest of 2, 4, 8
/// keeping the decode at least [`DCT_HEADROOM`]× the placed size on both axes, else 1.
pub fn dct_denominator(w: u32, h: u32, pw: u32, ph: u32) -> u32 {
    crate::image::scaled_decode::denom_with_headroom(w, h, pw, ph, DCT_HEADROOM)
}

/// Decodes `jpeg` and writes its block into `out` (at least `3 × side²` elements), mirrored
/// when `flip`, HSV-jittered by `hsv` (identity: none). Returns the stored image's size. On an
/// error `out` is left partly written: use [`pad_block`].
pub fn preprocess_jpeg<T: OutElem>(
    jpeg: &[u8],
    t: &Target,
    flip: bool,
    hsv: [f32; 3],
    out: &mut [T],
) -> Result<(u32, u32), FastError> {
    with_scratch(|s| {
        let mut placed = None;
        let d: Decoded = s.decoder.decode(jpeg, |w, h| {
            let g = Geometry::of(w, h, t.side, t.mode);
            placed = Some(g);
            dct_denominator(w, h, g.new_w as u32, g.new_h as u32)
        })?;
        let g = placed.unwrap_or_else(|| Geometry::of(d.width, d.height, t.side, t.mode));
        let (pw, ph) = (g.new_w as usize, g.new_h as usize);
        let rgb = s
            .resample
            .run(s.decoder.pixels(), (d.grid_w, d.grid_h), d.extent, pw, ph)?;
        let p = Placement {
            side: t.side as usize,
            x0: g.pad_x as usize,
            y0: g.pad_y as usize,
            w: pw,
            h: ph,
            flip,
        };
        write_block(&Levels::with_hsv(&t.norm, hsv), rgb, &p, out)?;
        Ok((d.width, d.height))
    })
}

/// Decodes `jpeg` at full size and nothing else (`--decode-only`): the stored size.
pub fn decode_only(jpeg: &[u8]) -> Result<(u32, u32), FastError> {
    with_scratch(|s| {
        let d = s.decoder.decode(jpeg, |_, _| 1)?;
        Ok((d.width, d.height))
    })
}

/// Fills `out` with the padding value: the block of an undecodable image.
pub fn pad_block<T: OutElem>(t: &Target, out: &mut [T]) -> Result<(), FastError> {
    fill_padding(&Levels::new(&t.norm), t.side as usize, out).map_err(FastError::from)
}

#[cfg(test)]
mod tests;
