//! The fused last step of the fast path: resized RGB8 → normalised, optionally mirrored and
//! letterboxed, channel-planar (CHW) block of the batch tensor, in one pass over the output.
//!
//! Why a lookup table: the input is 8-bit, so each channel has 256 possible outputs. The table
//! holds `T::from_f32((v − mean) · inv_std)` for every level `v`, the reference's own formula
//! and operation order ([`crate::throughput::preprocess::preprocess_image`]), so a pixel whose
//! resized value matches the reference's (rounded) gives the very same element, in fp32 and fp16
//! alike; padding is the same formula at 114. The write is then a byte load, a table load and a
//! store per element, and the output (4.9 MB per 640² fp32 image) is written once, row by row.

use crate::throughput::preprocess::{Normalize, OutElem};

/// Output values of every 8-bit level, per input channel (R, G, B), and the plane each channel
/// goes to (BGR swaps R's and B's).
pub struct Levels<T> {
    lut: [[T; 256]; 3],
    pad: [T; 3],
    plane_of: [usize; 3],
    /// HSV gains ([`crate::throughput::hsv`]): each pixel then goes through the jitter in f32
    /// and the reference's formula instead of the table (the jitter mixes the channels).
    hsv: Option<Jitter>,
}

/// What the HSV path needs per pixel.
#[derive(Clone, Copy)]
struct Jitter {
    gains: [f32; 3],
    mean: [f32; 3],
    inv_std: [f32; 3],
}

impl<T: OutElem> Levels<T> {
    pub fn new(n: &Normalize) -> Self {
        let mut lut = [[T::from_f32(0.0); 256]; 3];
        let mut pad = [T::from_f32(0.0); 3];
        for c in 0..3 {
            for (v, slot) in lut[c].iter_mut().enumerate() {
                *slot = T::from_f32((v as f32 - n.mean[c]) * n.inv_std[c]);
            }
            pad[c] = T::from_f32((n.pad - n.mean[c]) * n.inv_std[c]);
        }
        let plane_of = if n.bgr { [2, 1, 0] } else { [0, 1, 2] };
        Levels {
            lut,
            pad,
            plane_of,
            hsv: None,
        }
    }

    /// Levels whose pixels (padding included, as YOLO jitters the letterboxed canvas) go
    /// through the HSV jitter with `gains`; identity gains are the plain table.
    pub fn with_hsv(n: &Normalize, gains: [f32; 3]) -> Self {
        let mut lv = Self::new(n);
        if gains != crate::throughput::hsv::IDENTITY {
            let j = Jitter {
                gains,
                mean: n.mean,
                inv_std: n.inv_std,
            };
            lv.pad = j.out([n.pad; 3]);
            lv.hsv = Some(j);
        }
        lv
    }
}

impl Jitter {
    /// One pixel's three output values, in input channel order (the reference's arithmetic).
    fn out<T: OutElem>(&self, rgb: [f32; 3]) -> [T; 3] {
        let v = crate::throughput::hsv::apply(rgb, self.gains);
        [0, 1, 2].map(|c| T::from_f32((v[c] - self.mean[c]) * self.inv_std[c]))
    }
}

/// Where the resized image sits in the `side`×`side` canvas, and whether the canvas is
/// mirrored (x → side − 1 − x, the reference's flip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub side: usize,
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
    pub flip: bool,
}

/// Why a block could not be written (a caller bug, never the image's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("output block has {got} elements, needs {need}")]
    ShortOutput { got: usize, need: usize },
    #[error("resized image has {got} bytes, {w}x{h} RGB needs {need}")]
    ShortImage {
        got: usize,
        need: usize,
        w: usize,
        h: usize,
    },
    #[error("image {w}x{h} at ({x0}, {y0}) does not fit a {side}x{side} canvas")]
    OutsideCanvas {
        w: usize,
        h: usize,
        x0: usize,
        y0: usize,
        side: usize,
    },
}

/// Writes the `3 × side × side` block for `rgb` (interleaved RGB8, `p.w × p.h`, rows packed)
/// placed by `p`; everything outside the image is padding.
pub fn write_block<T: OutElem>(
    levels: &Levels<T>,
    rgb: &[u8],
    p: &Placement,
    out: &mut [T],
) -> Result<(), WriteError> {
    let s = p.side;
    let plane = s * s;
    let need = 3 * plane;
    if out.len() < need {
        return Err(WriteError::ShortOutput {
            got: out.len(),
            need,
        });
    }
    if p.x0 + p.w > s || p.y0 + p.h > s || p.w == 0 || p.h == 0 {
        return Err(WriteError::OutsideCanvas {
            w: p.w,
            h: p.h,
            x0: p.x0,
            y0: p.y0,
            side: s,
        });
    }
    let row_bytes = 3 * p.w;
    if rgb.len() < row_bytes * p.h {
        return Err(WriteError::ShortImage {
            got: rgb.len(),
            need: row_bytes * p.h,
            w: p.w,
            h: p.h,
        });
    }
    // The mirrored canvas puts image column i at side − 1 − (x0 + i).
    let start = if p.flip { s - p.x0 - p.w } else { p.x0 };
    let (b0, rest) = out[..need].split_at_mut(plane);
    let (b1, b2) = rest.split_at_mut(plane);
    let mut planes = [b0, b1, b2];
    if let Some(j) = &levels.hsv {
        write_jittered(levels, j, rgb, p, start, &mut planes);
        return Ok(());
    }
    for y in 0..s {
        let inside = y >= p.y0 && y < p.y0 + p.h;
        for c in 0..3 {
            let row = &mut planes[levels.plane_of[c]][y * s..(y + 1) * s];
            let pad = levels.pad[c];
            if !inside {
                row.fill(pad);
                continue;
            }
            row[..start].fill(pad);
            row[start + p.w..].fill(pad);
            let lut = &levels.lut[c];
            let src = &rgb[(y - p.y0) * row_bytes..(y - p.y0 + 1) * row_bytes];
            let dst = &mut row[start..start + p.w];
            if p.flip {
                for (o, px) in dst.iter_mut().rev().zip(src.chunks_exact(3)) {
                    *o = lut[usize::from(px[c])];
                }
            } else {
                for (o, px) in dst.iter_mut().zip(src.chunks_exact(3)) {
                    *o = lut[usize::from(px[c])];
                }
            }
        }
    }
    Ok(())
}

/// [`write_block`] with the HSV jitter: per pixel, all three channels at once.
fn write_jittered<T: OutElem>(
    levels: &Levels<T>,
    j: &Jitter,
    rgb: &[u8],
    p: &Placement,
    start: usize,
    planes: &mut [&mut [T]; 3],
) {
    let s = p.side;
    let row_bytes = 3 * p.w;
    for y in 0..s {
        for c in 0..3 {
            planes[levels.plane_of[c]][y * s..(y + 1) * s].fill(levels.pad[c]);
        }
        if y < p.y0 || y >= p.y0 + p.h {
            continue;
        }
        let src = &rgb[(y - p.y0) * row_bytes..(y - p.y0 + 1) * row_bytes];
        for (i, px) in src.chunks_exact(3).enumerate() {
            let x = if p.flip {
                start + p.w - 1 - i
            } else {
                start + i
            };
            let v: [T; 3] = j.out([f32::from(px[0]), f32::from(px[1]), f32::from(px[2])]);
            for c in 0..3 {
                planes[levels.plane_of[c]][y * s + x] = v[c];
            }
        }
    }
}

/// Fills a whole block with padding: an undecodable image (what the reference and the GPU
/// write for one).
pub fn fill_padding<T: OutElem>(
    levels: &Levels<T>,
    side: usize,
    out: &mut [T],
) -> Result<(), WriteError> {
    let plane = side * side;
    if out.len() < 3 * plane {
        return Err(WriteError::ShortOutput {
            got: out.len(),
            need: 3 * plane,
        });
    }
    for c in 0..3 {
        let p = levels.plane_of[c];
        out[p * plane..(p + 1) * plane].fill(levels.pad[c]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throughput::preprocess::{describe, preprocess_image, ImageDesc, FLAG_EMPTY};
    use crate::throughput::ResizeMode;

    fn image(w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3).map(|i| (i * 31 % 253) as u8).collect()
    }

    /// A `w`×`h` image letterboxed into 9², already at its placed size: the pixels, the
    /// reference's descriptor for a source of exactly that size (no resampling), and the
    /// fast path's placement.
    fn unresampled(w: usize, h: usize, flip: bool) -> (Vec<u8>, ImageDesc, Placement) {
        let mut d = describe(0, w as u32, h as u32, 9, ResizeMode::Letterbox, flip);
        d.src_w = d.dst_w;
        d.src_h = d.dst_h;
        d.src_pitch = 3 * d.dst_w;
        let (pw, ph) = (d.dst_w as usize, d.dst_h as usize);
        let p = Placement {
            side: 9,
            x0: d.dst_x0 as usize,
            y0: d.dst_y0 as usize,
            w: pw,
            h: ph,
            flip,
        };
        (image(pw, ph), d, p)
    }

    /// At the output size (no resampling) the block is the reference's, element for element:
    /// same formula, same rounding, same placement, flip and BGR.
    #[test]
    fn unresampled_blocks_equal_the_reference_exactly() {
        let n = Normalize::new([10.0, 20.0, 30.0], [2.0, 3.0, 5.0], false);
        for bgr in [false, true] {
            let n = Normalize { bgr, ..n };
            let lv = Levels::<f32>::new(&n);
            for flip in [false, true] {
                // 9x5 letterboxed into 9: placed at (0, 2); 5x9 at (2, 0); 8x3 into 9 (odd pad).
                for (w, h) in [(9usize, 5usize), (5, 9), (9, 9), (8, 3)] {
                    let (placed, d, p) = unresampled(w, h, flip);
                    let mut want = vec![0f32; 243];
                    preprocess_image(&placed, &d, 9, &n, &mut want).unwrap();
                    let mut got = vec![f32::NAN; 243];
                    write_block(&lv, &placed, &p, &mut got).unwrap();
                    assert_eq!(got, want, "{w}x{h} flip {flip} bgr {bgr}");
                }
            }
        }
    }

    /// With HSV gains the block is still the reference's exactly at the output size, padding
    /// jittered too.
    #[test]
    fn jittered_blocks_equal_the_reference_exactly() {
        let n = Normalize::new([10.0, 20.0, 30.0], [2.0, 3.0, 5.0], true);
        for flip in [false, true] {
            for gains in [[1.01f32, 0.4, 1.3], [0.99, 1.6, 0.7]] {
                let (placed, mut d, p) = unresampled(9, 5, flip);
                d.hsv = gains;
                d.flags |= crate::throughput::preprocess::FLAG_HSV;
                let mut want = vec![0f32; 243];
                preprocess_image(&placed, &d, 9, &n, &mut want).unwrap();
                let mut got = vec![f32::NAN; 243];
                write_block(&Levels::with_hsv(&n, gains), &placed, &p, &mut got).unwrap();
                assert_eq!(got, want, "flip {flip} gains {gains:?}");
                let mut plain = vec![f32::NAN; 243];
                write_block(&Levels::new(&n), &placed, &p, &mut plain).unwrap();
                assert_ne!(plain, want, "the gains change the block");
            }
        }
    }

    #[test]
    fn fp16_and_padding_blocks_match_the_reference() {
        let n = Normalize::imagenet(true);
        let lv = Levels::<half::f16>::new(&n);
        let mut got = vec![half::f16::NAN; 3 * 16];
        fill_padding(&lv, 4, &mut got).unwrap();
        let mut d = describe(0, 1, 1, 4, ResizeMode::Stretch, false);
        d.flags |= FLAG_EMPTY;
        let mut want = vec![half::f16::ZERO; 48];
        preprocess_image(&[], &d, 4, &n, &mut want).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let lv = Levels::<f32>::new(&Normalize::imagenet(false));
        let p = Placement {
            side: 4,
            x0: 0,
            y0: 0,
            w: 4,
            h: 4,
            flip: false,
        };
        let img = image(4, 4);
        assert!(write_block(&lv, &img, &p, &mut [0f32; 47]).is_err());
        assert!(write_block(&lv, &img[..40], &p, &mut [0f32; 48]).is_err());
        let off = Placement { x0: 1, ..p };
        assert!(write_block(&lv, &img, &off, &mut [0f32; 48]).is_err());
        assert!(fill_padding(&lv, 4, &mut [0f32; 10]).is_err());
    }
}
