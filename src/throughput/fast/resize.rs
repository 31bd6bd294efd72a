//! The fast path's resample: `fast_image_resize` (SIMD, 8-bit fixed point, runtime-dispatched
//! SSE4.1/AVX2) with its bilinear convolution, which is the reference's filter: Pillow's
//! triangle whose support widens by the scale factor when shrinking (antialiasing), half-pixel
//! centres, window clamped at the edges and weights renormalised there. The difference to the
//! reference's f32 arithmetic is the rounding to 8 bits (and fixed-point weights): at most a
//! level or so, measured in `super::tests`.
//!
//! A separable pass whose size does not change is skipped by the library (640×480 → 640×640
//! is one vertical pass), and an image already at the output size is not copied at all.
//! The resizer's scratch and the output buffer live with the thread and are reused.

use fast_image_resize as fir;

/// One thread's resampler and output buffer.
#[derive(Default)]
pub struct Resample {
    resizer: Option<fir::Resizer>,
    out: Vec<u8>,
}

/// Why a resample failed (bad sizes from a caller; never expected for a decoded image).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resize {src_w}x{src_h} -> {dst_w}x{dst_h}: {reason}")]
pub struct ResampleError {
    pub src_w: usize,
    pub src_h: usize,
    pub dst_w: usize,
    pub dst_h: usize,
    pub reason: String,
}

impl Resample {
    /// `src` (interleaved RGB8, `grid_w × grid_h`) resampled to `dst_w × dst_h` from its top-left
    /// `extent` (fractional allowed: a DCT-scaled decode's last column/row covers part of a
    /// pixel). Returns `src` itself when nothing needs resampling.
    pub fn run<'a>(
        &'a mut self,
        src: &'a [u8],
        grid: (usize, usize),
        extent: (f64, f64),
        dst_w: usize,
        dst_h: usize,
    ) -> Result<&'a [u8], ResampleError> {
        let (gw, gh) = grid;
        let fail = |reason: String| ResampleError {
            src_w: gw,
            src_h: gh,
            dst_w,
            dst_h,
            reason,
        };
        let whole = extent == (gw as f64, gh as f64);
        if whole && (gw, gh) == (dst_w, dst_h) {
            return src
                .get(..gw * gh * 3)
                .ok_or_else(|| fail("short source".into()));
        }
        let u32_of = |v: usize| u32::try_from(v).map_err(|_| fail("size over u32".into()));
        let (sw, sh, dw, dh) = (u32_of(gw)?, u32_of(gh)?, u32_of(dst_w)?, u32_of(dst_h)?);
        let view = fir::images::ImageRef::new(sw, sh, src, fir::PixelType::U8x3)
            .map_err(|e| fail(e.to_string()))?;
        // Grows once to the largest output a thread has seen; the resize overwrites every byte.
        let need = dst_w * dst_h * 3;
        if self.out.len() < need {
            self.out.resize(need, 0);
        }
        let mut dst =
            fir::images::Image::from_slice_u8(dw, dh, &mut self.out[..need], fir::PixelType::U8x3)
                .map_err(|e| fail(e.to_string()))?;
        let (ew, eh) = (
            extent.0.clamp(1e-3, gw as f64),
            extent.1.clamp(1e-3, gh as f64),
        );
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear))
            .crop(0.0, 0.0, ew, eh);
        self.resizer
            .get_or_insert_with(fir::Resizer::new)
            .resize(&view, &mut dst, &options)
            .map_err(|e| fail(e.to_string()))?;
        Ok(&self.out[..need])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_the_source_itself() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|i| i as u8).collect();
        let mut r = Resample::default();
        let out = r.run(&src, (4, 3), (4.0, 3.0), 4, 3).unwrap();
        assert!(std::ptr::eq(out.as_ptr(), src.as_ptr()));
    }

    #[test]
    fn solid_colour_stays_solid_at_any_scale_and_extent() {
        let src = vec![40u8; 10 * 6 * 3];
        let mut r = Resample::default();
        for (extent, w, h) in [
            ((9.5, 5.25), 3, 2),
            ((10.0, 6.0), 20, 13),
            ((7.0, 6.0), 7, 1),
        ] {
            let out = r.run(&src, (10, 6), extent, w, h).unwrap();
            assert_eq!(out.len(), w * h * 3);
            assert!(out.iter().all(|&v| v == 40), "{extent:?} {out:?}");
        }
        assert!(r.run(&src[..10], (10, 6), (10.0, 6.0), 3, 2).is_err());
    }

    #[test]
    fn the_extent_sets_the_mapping() {
        // An 8-wide ramp; the left half at its own width is those pixels exactly, and a
        // downscale of the left half stays within them.
        let src: Vec<u8> = (0..8u8).flat_map(|x| [x * 30; 3]).collect();
        let mut r = Resample::default();
        let out = r.run(&src, (8, 1), (4.0, 1.0), 4, 1).unwrap();
        assert_eq!(out, &src[..12]);
        let half = r.run(&src, (8, 1), (4.0, 1.0), 2, 1).unwrap().to_vec();
        assert!(half[0] < half[3] && half[3] <= 4 * 30, "{half:?}");
    }
}
