//! Target sizes and antialiased plane resizing for `presize`.
//!
//! Why planes and not RGB: the JPEGs we read and write are YCbCr, so resizing the decoded Y, Cb
//! and Cr planes directly skips two colour conversions and the chroma up/downsampling in
//! between, and the chroma planes of a 4:2:0 image are a quarter of the luma's size: the resize
//! touches 1.5 samples per pixel instead of 3.
//!
//! The filter is Lanczos3 from `fast_image_resize` (SIMD, integer arithmetic), applied to a
//! source *extent* that may be fractional: a JPEG decoded at 1/2 or 1/4 scale is a few pixels
//! wider than the exact scaled image (the last block is rounded up), and resizing the whole
//! decoded plane would stretch the picture by up to one scaled pixel. Cropping the source to the
//! exact extent keeps every output pixel centred where a full-resolution resize would put it.

use super::exif::Orientation;
use super::ImageError;
use fast_image_resize as fir;
use std::cell::RefCell;

/// Which side `--size` limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Longest side at most `size`, aspect kept (YOLO letterbox input).
    #[default]
    Longest,
    /// Shorter side equal to `size`, aspect kept (ImageNet style).
    Shortest,
}

/// What `presize` fits images to. Never upscales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub size: u32,
    pub fit: Fit,
}

impl Target {
    pub fn longest(size: u32) -> Target {
        Target {
            size,
            fit: Fit::Longest,
        }
    }

    pub fn shortest(size: u32) -> Target {
        Target {
            size,
            fit: Fit::Shortest,
        }
    }

    /// Output size for a displayed `width`×`height` image, or `None` when it is already within
    /// the limit (never upscale). The limited side gets exactly `size`; the other side is
    /// rounded to the nearest pixel and at least 1.
    pub fn output_size(&self, width: u32, height: u32) -> Option<(u32, u32)> {
        if width == 0 || height == 0 || self.size == 0 {
            return None;
        }
        let limited = match self.fit {
            Fit::Longest => width.max(height),
            Fit::Shortest => width.min(height),
        };
        if limited <= self.size {
            return None;
        }
        // round(other * size / limited) in integers: no float rounding surprises.
        let scale = |other: u32| -> u32 {
            let num = 2 * u64::from(other) * u64::from(self.size) + u64::from(limited);
            let v = num / (2 * u64::from(limited));
            u32::try_from(v).unwrap_or(u32::MAX).max(1)
        };
        let wide = match self.fit {
            Fit::Longest => width >= height,
            Fit::Shortest => width <= height,
        };
        Some(if wide {
            (self.size, scale(height))
        } else {
            (scale(width), self.size)
        })
    }
}

/// One 8-bit plane (or interleaved image, see `channels`), rows packed without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    /// 1 for Y/Cb/Cr/gray planes, 3 for interleaved RGB.
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Plane {
    pub fn new(width: usize, height: usize, channels: usize) -> Plane {
        Plane {
            width,
            height,
            channels,
            data: vec![0; width * height * channels],
        }
    }

    fn check(&self) -> Result<(), ImageError> {
        let need = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(self.channels));
        if need != Some(self.data.len()) || !(self.channels == 1 || self.channels == 3) {
            return Err(ImageError::Encode(format!(
                "internal: plane {}x{}x{} has {} bytes",
                self.width,
                self.height,
                self.channels,
                self.data.len()
            )));
        }
        Ok(())
    }
}

thread_local! {
    /// fast_image_resize keeps scratch buffers in its Resizer; one per worker thread avoids an
    /// allocation per image.
    static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
}

/// Overwrite the padding right of and below `extent` with copies of the last picture column/row.
/// The Lanczos3 window near the picture's edge reaches a few pixels past the crop, and decoder
/// padding there is not picture content; replicated edges are what a full-size resize sees
/// (its window is clamped at the edge).
pub fn replicate_edges(p: &mut Plane, extent: (f64, f64)) {
    let c = p.channels;
    let ew = (extent.0.ceil() as usize).clamp(1, p.width.max(1));
    let eh = (extent.1.ceil() as usize).clamp(1, p.height.max(1));
    if p.data.len() != p.width * p.height * c || p.width == 0 || p.height == 0 {
        return;
    }
    let row_len = p.width * c;
    if ew < p.width {
        for row in p.data.chunks_exact_mut(row_len) {
            let (pic, pad) = row.split_at_mut(ew * c);
            let last = &pic[(ew - 1) * c..];
            for px in pad.chunks_exact_mut(c) {
                px.copy_from_slice(last);
            }
        }
    }
    if eh < p.height {
        let (pic, pad) = p.data.split_at_mut(eh * row_len);
        let last = &pic[(eh - 1) * row_len..];
        for row in pad.chunks_exact_mut(row_len) {
            row.copy_from_slice(last);
        }
    }
}

/// Lanczos3 (`fast_image_resize`'s definition): sinc(x)·sinc(x/3) on (-3, 3), with one sine
/// instead of two: sin(πx) = 3s − 4s³ for s = sin(πx/3). The filter is evaluated for every tap
/// of every output row and column (tens of thousands of times per image): two libm `sin` calls
/// were 1 % of a presize, one still 0.9 %, hence also [`sin_within_pi`].
fn lanczos3(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    if !(-3.0..3.0).contains(&x) {
        return 0.0;
    }
    let t = x * std::f64::consts::FRAC_PI_3; // πx/3
    let s = sin_within_pi(t);
    let sin_pi_x = s * (3.0 - 4.0 * s * s);
    sin_pi_x * s / (3.0 * t * t)
}

/// sin(t) for |t| ≤ π: folded to |t| ≤ π/2 (sin(π − t) = sin t), then its Taylor series through
/// t¹⁷ (truncation error < 5·10⁻¹⁴ there) — no range reduction, no call.
#[inline]
fn sin_within_pi(t: f64) -> f64 {
    use std::f64::consts::{FRAC_PI_2, PI};
    let t = if t > FRAC_PI_2 {
        PI - t
    } else if t < -FRAC_PI_2 {
        -PI - t
    } else {
        t
    };
    let t2 = t * t;
    // 1/(2k+1)! with alternating signs, k = 8 down to 1, by Horner.
    const C: [f64; 8] = [
        1.0 / 355_687_428_096_000.0,
        -1.0 / 1_307_674_368_000.0,
        1.0 / 6_227_020_800.0,
        -1.0 / 39_916_800.0,
        1.0 / 362_880.0,
        -1.0 / 5_040.0,
        1.0 / 120.0,
        -1.0 / 6.0,
    ];
    let mut p = 0.0;
    for c in C {
        p = p * t2 + c;
    }
    t + t * t2 * p
}

/// Lanczos3 to twice the output size followed by 2×2 averaging, as one kernel on the output
/// grid: output pixel `j` averages full-size pixels `2j` and `2j+1`, whose centres sit a quarter
/// of an output pixel either side of its own, i.e. at `2u ± 0.5` in full-size filter units.
/// Support (3 + 0.5) / 2.
fn lanczos3_box2(u: f64) -> f64 {
    lanczos3(2.0 * u + 0.5) + lanczos3(2.0 * u - 0.5)
}

/// The resampling filter of [`resize_plane_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Lanczos3,
    /// [`lanczos3_box2`]: the 4:2:0 chroma an RGB pipeline would get (resize to the full output
    /// size, then the encoder's 2×2 averaging) for even output sizes, in one pass of half the
    /// work.
    Lanczos3Box2,
}

/// Lanczos3-resize the top-left `extent` (in source pixels, may be fractional and must be at
/// most the plane's size) of `src` to `dst_w`×`dst_h`.
pub fn resize_plane(
    src: &Plane,
    extent: (f64, f64),
    dst_w: usize,
    dst_h: usize,
) -> Result<Plane, ImageError> {
    resize_plane_with(src, extent, dst_w, dst_h, Filter::Lanczos3)
}

/// [`resize_plane`] with a choice of filter.
pub fn resize_plane_with(
    src: &Plane,
    extent: (f64, f64),
    dst_w: usize,
    dst_h: usize,
    filter: Filter,
) -> Result<Plane, ImageError> {
    resize_region(src, (0.0, 0.0), extent, dst_w, dst_h, filter)
}

/// Resize the `size` region at `origin` (source pixels, fractional allowed) of `src` to
/// `dst_w`×`dst_h`. The filter taps reach past the region into the rest of the plane (clamped
/// only at the plane's edges), so adjacent regions resized separately give the same pixels as
/// one resize of their union would.
pub fn resize_region(
    src: &Plane,
    origin: (f64, f64),
    size: (f64, f64),
    dst_w: usize,
    dst_h: usize,
    filter: Filter,
) -> Result<Plane, ImageError> {
    src.check()?;
    let finite = [origin.0, origin.1, size.0, size.1]
        .iter()
        .all(|v| v.is_finite());
    if src.width == 0 || src.height == 0 || !finite {
        return Err(ImageError::Encode(format!(
            "internal: resize of a {}x{} plane, region {origin:?} {size:?}",
            src.width, src.height
        )));
    }
    let (x0, y0) = (
        origin.0.clamp(0.0, src.width as f64 - 1e-3),
        origin.1.clamp(0.0, src.height as f64 - 1e-3),
    );
    let (ew, eh) = (
        size.0.clamp(1e-3, src.width as f64 - x0),
        size.1.clamp(1e-3, src.height as f64 - y0),
    );
    let pixel = if src.channels == 3 {
        fir::PixelType::U8x3
    } else {
        fir::PixelType::U8
    };
    let too_big = |_| ImageError::Encode(format!("plane {}x{} too large", src.width, src.height));
    let w32 = |v: usize| u32::try_from(v).map_err(too_big);
    let (sw, sh, dw, dh) = (w32(src.width)?, w32(src.height)?, w32(dst_w)?, w32(dst_h)?);
    if dw == 0 || dh == 0 {
        return Err(ImageError::Encode(format!("empty output {dw}x{dh}")));
    }
    let exact = x0 == 0.0 && y0 == 0.0 && ew == src.width as f64 && eh == src.height as f64;
    if exact && sw == dw && sh == dh {
        return Ok(src.clone());
    }
    let view = fir::images::ImageRef::new(sw, sh, &src.data, pixel)
        .map_err(|e| ImageError::Encode(format!("internal: {e}")))?;
    let mut out = fir::images::Image::new(dw, dh, pixel);
    let filter_type = match filter {
        Filter::Lanczos3 => fir::FilterType::Custom(
            fir::Filter::new("Lanczos3", lanczos3, 3.0)
                .map_err(|e| ImageError::Encode(format!("internal: {e}")))?,
        ),
        Filter::Lanczos3Box2 => fir::FilterType::Custom(
            fir::Filter::new("Lanczos3Box2", lanczos3_box2, 1.75)
                .map_err(|e| ImageError::Encode(format!("internal: {e}")))?,
        ),
    };
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(filter_type))
        .crop(x0, y0, ew, eh);
    RESIZER
        .with(|r| r.borrow_mut().resize(&view, &mut out, &options))
        .map_err(|e| ImageError::Encode(format!("resize failed: {e}")))?;
    Ok(Plane {
        width: dst_w,
        height: dst_h,
        channels: src.channels,
        data: out.into_vec(),
    })
}

/// Apply an EXIF orientation to a (small, already resized) plane: the result is the plane as
/// displayed. Cheap because presize orients after resizing; a Lanczos resize commutes with flips
/// and transposes (the same filter runs along the swapped axes).
pub fn orient_plane(src: Plane, orientation: Orientation) -> Plane {
    if orientation == Orientation::Normal {
        return src;
    }
    let (w, h, c) = (src.width, src.height, src.channels);
    let swap = orientation.swaps_dimensions();
    let (dw, dh) = if swap { (h, w) } else { (w, h) };
    let mut out = Plane::new(dw, dh, c);
    for y in 0..dh {
        for x in 0..dw {
            let (sx, sy) = source_of(orientation, x, y, w, h);
            let s = (sy * w + sx) * c;
            let d = (y * dw + x) * c;
            if let (Some(from), Some(to)) = (src.data.get(s..s + c), out.data.get_mut(d..d + c)) {
                to.copy_from_slice(from);
            }
        }
    }
    out
}

/// Stored pixel for displayed pixel (x, y) of a stored `w`×`h` image.
fn source_of(o: Orientation, x: usize, y: usize, w: usize, h: usize) -> (usize, usize) {
    match o {
        Orientation::Normal => (x, y),
        Orientation::FlipHorizontal => (w - 1 - x, y),
        Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
        Orientation::FlipVertical => (x, h - 1 - y),
        Orientation::Transpose => (y, x),
        Orientation::Rotate90 => (y, h - 1 - x),
        Orientation::Transverse => (w - 1 - y, h - 1 - x),
        Orientation::Rotate270 => (w - 1 - y, x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_sine_matches_libm() {
        for i in -3142..=3142 {
            let t = f64::from(i) / 1000.0;
            assert!((sin_within_pi(t) - t.sin()).abs() < 1e-13, "t={t}");
        }
        let pi = std::f64::consts::PI;
        assert!(sin_within_pi(pi).abs() < 1e-15 && sin_within_pi(-pi).abs() < 1e-15);
    }

    #[test]
    fn one_sin_lanczos3_is_the_textbook_formula() {
        let sinc = |v: f64| {
            let v = v * std::f64::consts::PI;
            v.sin() / v
        };
        for i in -700..=700 {
            let x = f64::from(i) / 233.0 + 1e-9;
            let want = if x.abs() < 3.0 {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            };
            assert!((lanczos3(x) - want).abs() < 1e-12, "x={x}");
        }
        assert_eq!(lanczos3(0.0), 1.0);
        assert_eq!(lanczos3(3.0), 0.0);
    }

    #[test]
    fn longest_side_limited_and_never_upscaled() {
        let t = Target::longest(704);
        assert_eq!(t.output_size(4032, 3024), Some((704, 528)));
        assert_eq!(t.output_size(3024, 4032), Some((528, 704)));
        assert_eq!(t.output_size(1920, 1080), Some((704, 396)));
        assert_eq!(t.output_size(704, 500), None);
        assert_eq!(t.output_size(640, 480), None);
        // Extreme aspect: the short side never rounds to 0.
        assert_eq!(t.output_size(100_000, 10), Some((704, 1)));
    }

    #[test]
    fn shortest_side_set_and_never_upscaled() {
        let t = Target::shortest(256);
        assert_eq!(t.output_size(4032, 3024), Some((341, 256)));
        assert_eq!(t.output_size(3024, 4032), Some((256, 341)));
        assert_eq!(t.output_size(300, 256), None);
        assert_eq!(t.output_size(200, 900), None);
    }

    #[test]
    fn rounding_is_to_nearest() {
        // 1000x333 → 704 x 234.4 → 234; 1000x335 → 235.8 → 236; 0.5 rounds up.
        let t = Target::longest(704);
        assert_eq!(t.output_size(1000, 333), Some((704, 234)));
        assert_eq!(t.output_size(1000, 335), Some((704, 236)));
        assert_eq!(Target::longest(1).output_size(4, 2), Some((1, 1)));
        assert_eq!(Target::longest(2).output_size(4, 1), Some((2, 1)));
    }

    fn ramp(w: usize, h: usize) -> Plane {
        let mut p = Plane::new(w, h, 1);
        for y in 0..h {
            for x in 0..w {
                p.data[y * w + x] = (x * 255 / (w - 1).max(1)) as u8;
            }
        }
        p
    }

    #[test]
    fn resize_keeps_a_ramp_a_ramp() {
        let src = ramp(400, 10);
        let out = resize_plane(&src, (400.0, 10.0), 100, 5).unwrap();
        assert_eq!((out.width, out.height), (100, 5));
        // Output pixel i is centred on source x = (i + 0.5) * 4 - 0.5.
        for i in [10usize, 50, 90] {
            let expect = ((i as f64 + 0.5) * 4.0 - 0.5) * 255.0 / 399.0;
            let got = f64::from(out.data[2 * 100 + i]);
            assert!((got - expect).abs() <= 1.0, "pixel {i}: {got} vs {expect}");
        }
    }

    #[test]
    fn fractional_extent_crops_the_padding() {
        // A plane whose last 20 columns are padding (255): with the exact extent they never
        // reach the output.
        let mut src = Plane::new(120, 4, 1);
        for y in 0..4 {
            for x in 100..120 {
                src.data[y * 120 + x] = 255;
            }
        }
        let mut fixed = src.clone();
        replicate_edges(&mut fixed, (100.0, 4.0));
        assert!(fixed.data.iter().all(|&v| v == 0));
        let out = resize_plane(&fixed, (100.0, 4.0), 25, 1).unwrap();
        assert!(out.data.iter().all(|&v| v == 0), "{:?}", out.data);
        // Fractional extent: the partly covered column is kept, the rest replicated from it.
        let mut frac = src.clone();
        replicate_edges(&mut frac, (100.5, 4.0));
        assert_eq!(frac.data[100], 255);
        assert!(frac.data[101..120].iter().all(|&v| v == 255));
        let leaky = resize_plane(&src, (120.0, 4.0), 30, 1).unwrap();
        assert!(leaky.data.iter().any(|&v| v > 0));
    }

    #[test]
    fn orientation_moves_corners_where_exif_says() {
        // 3x2 plane with distinct values; displayed top-left must be the stored pixel EXIF
        // names for each orientation.
        let src = Plane {
            width: 3,
            height: 2,
            channels: 1,
            data: vec![1, 2, 3, 4, 5, 6],
        };
        let o = |o| orient_plane(src.clone(), o);
        assert_eq!(o(Orientation::Normal).data, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(o(Orientation::FlipHorizontal).data, vec![3, 2, 1, 6, 5, 4]);
        assert_eq!(o(Orientation::Rotate180).data, vec![6, 5, 4, 3, 2, 1]);
        assert_eq!(o(Orientation::FlipVertical).data, vec![4, 5, 6, 1, 2, 3]);
        let r90 = o(Orientation::Rotate90);
        assert_eq!((r90.width, r90.height), (2, 3));
        // Rotating 90° clockwise: the displayed first row is the stored first column read
        // bottom-up.
        assert_eq!(r90.data, vec![4, 1, 5, 2, 6, 3]);
        assert_eq!(o(Orientation::Rotate270).data, vec![3, 6, 2, 5, 1, 4]);
        assert_eq!(o(Orientation::Transpose).data, vec![1, 4, 2, 5, 3, 6]);
        assert_eq!(o(Orientation::Transverse).data, vec![6, 3, 5, 2, 4, 1]);
    }

    #[test]
    fn bad_plane_is_an_error_not_a_panic() {
        let bad = Plane {
            width: 10,
            height: 10,
            channels: 1,
            data: vec![0; 5],
        };
        assert!(resize_plane(&bad, (10.0, 10.0), 2, 2).is_err());
    }
}
