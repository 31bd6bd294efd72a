//! JPEG decode at reduced size in the DCT domain (libjpeg-turbo 3 through `turbojpeg`).
//!
//! Why: resizing a 12 MP photo to 704 px, a full decode is most of the work. A smaller inverse
//! DCT per 8×8 block (1/2: 4×4, 3/8: 3×3, 1/4: 2×2, 1/8: DC only) skips most IDCT, upsampling
//! and colour work. Scales are counted in eighths (8 = full size, 4 = 1/2, 3 = 3/8, ...). The entropy (Huffman) decode is the
//! same at any scale and becomes the floor. We keep the decoded image at least
//! [`HEADROOM`]× the output size so the final Lanczos3 pass still does real antialiasing: the
//! reduced IDCT alone is a box-like filter that aliases.
//!
//! YCbCr and gray JPEGs decode to raw planes (no colour conversion, no chroma upsampling):
//! `presize` resizes the planes and encodes them straight back as 4:2:0. Baseline Huffman files
//! at 1/2, 3/8, 1/4 and 1/8 take the faster [`reduced_jpeg`] path; libjpeg-turbo reads the header
//! first (colour space, limits) and decodes everything the fast path hands back.

use super::jpeg_header::parse_jpeg_header;
use super::reduced_jpeg;
use super::resize::Plane;
use super::sniff::ImageFormat;
use super::ImageError;
use std::cell::RefCell;
use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp, YuvImage};

/// Decoded image at least this many times the output size (per axis) before the Lanczos3 pass.
/// 2× keeps PSNR ≥ 50 dB against a float Lanczos3 resize of the full image on grainy photos;
/// 1.4× (what 1/4 gives for 4032 → 704) drops to ~46 dB.
pub const HEADROOM: f64 = 2.0;

/// How the planes of a [`Decoded`] image are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One plane: luma.
    Gray,
    /// Three planes: Y, Cb, Cr (JPEG's full-range YCbCr), chroma possibly subsampled.
    Ycc,
    /// One interleaved RGB plane (`channels == 3`).
    Rgb,
}

/// A decoded image in stored orientation (EXIF not applied).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub layout: Layout,
    pub planes: Vec<Plane>,
    /// Per plane, the exact size of the picture in that plane's pixels. Planes are padded to
    /// whole blocks; the picture covers only `extent` of them (fractional when the scaled size
    /// is not a whole number of pixels).
    pub extents: Vec<(f64, f64)>,
    /// The DCT scale used, in eighths (8 = full size, 4, 3, 2, 1).
    pub eighths: u32,
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

fn tj_err(e: turbojpeg::Error) -> ImageError {
    ImageError::decode(ImageFormat::Jpeg, e)
}

/// The smallest DCT scale, in eighths (8, 4, 3, 2, 1), that keeps a stored `width`×`height`
/// image at least [`HEADROOM`]× `out_w`×`out_h` (same orientation) on both axes. 3/8 only
/// when `three_eighths`: our own decoder has a 3×3 IDCT for baseline files, libjpeg-turbo none
/// in SIMD (slower than its 1/2), so callers allow it for files the fast path reads. Why 3/8
/// at all: for 4032 → 704 it keeps 2.15× (1/2 keeps 2.86×) and decodes 13 % faster, with the
/// resize-stage PSNR still ≥ 53 dB luma / 51.5 dB chroma on the phone set.
pub fn choose_scale(width: u32, height: u32, out_w: u32, out_h: u32, three_eighths: bool) -> u32 {
    let scales: &[u32] = if three_eighths {
        &[4, 3, 2, 1]
    } else {
        &[4, 2, 1]
    };
    smallest_scale(width, height, out_w, out_h, HEADROOM, scales)
}

/// The smallest of `scales` (eighths, largest first) that keeps `width`×`height` at least
/// `headroom`× `out_w`×`out_h` on both axes; 8 (full size) when none does. The one headroom
/// rule behind [`choose_scale`] and [`denom_with_headroom`].
fn smallest_scale(
    width: u32,
    height: u32,
    out_w: u32,
    out_h: u32,
    headroom: f64,
    scales: &[u32],
) -> u32 {
    let keeps = |e: u32| {
        let s = f64::from(e) / 8.0;
        f64::from(width) * s >= headroom * f64::from(out_w)
            && f64::from(height) * s >= headroom * f64::from(out_h)
    };
    scales
        .iter()
        .copied()
        .take_while(|&e| keeps(e))
        .last()
        .unwrap_or(8)
}

/// A scale in eighths as the manifest names it: "1/1", "1/2", "3/8", "1/4", "1/8".
pub fn scale_name(eighths: u32) -> String {
    match eighths {
        8 => "1/1".into(),
        4 => "1/2".into(),
        2 => "1/4".into(),
        1 => "1/8".into(),
        e => format!("{e}/8"),
    }
}

/// The largest DCT scaling denominator (1, 2, 4, 8) that keeps a `width`×`height` image at
/// least `headroom`× `out_w`×`out_h` on both axes (the CPU data path: libjpeg-turbo's SIMD
/// scales only).
pub fn denom_with_headroom(width: u32, height: u32, out_w: u32, out_h: u32, headroom: f64) -> u32 {
    8 / smallest_scale(width, height, out_w, out_h, headroom, &[4, 2, 1])
}

/// Chroma subsampling factors (horizontal, vertical) of a libjpeg-turbo subsampling mode,
/// `None` for modes without a raw-plane layout.
fn factors(s: Subsamp) -> Option<(usize, usize)> {
    match s {
        Subsamp::None | Subsamp::Gray => Some((1, 1)),
        Subsamp::Sub2x1 => Some((2, 1)),
        Subsamp::Sub2x2 => Some((2, 2)),
        Subsamp::Sub1x2 => Some((1, 2)),
        Subsamp::Sub4x1 => Some((4, 1)),
        Subsamp::Sub1x4 => Some((1, 4)),
        _ => None,
    }
}

fn pad(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

/// Decode `bytes` at `eighths`/8 scale. YCbCr/gray JPEGs with a standard subsampling come back
/// as raw planes; anything else libjpeg-turbo reads comes back as RGB. `max_pixels` bounds the
/// decoded size *and*, for progressive files (which hold every coefficient of the full image
/// in memory), the full size.
pub fn decode_scaled(bytes: &[u8], eighths: u32, max_pixels: u64) -> Result<Decoded, ImageError> {
    with_decompressor(|dec| decode_with(dec, bytes, eighths, max_pixels, true))
}

/// [`decode_scaled`] by libjpeg-turbo alone (no [`reduced_jpeg`] fast path): the reference the
/// fast path is tested and benchmarked against.
pub fn decode_scaled_libjpeg(
    bytes: &[u8],
    eighths: u32,
    max_pixels: u64,
) -> Result<Decoded, ImageError> {
    with_decompressor(|dec| decode_with(dec, bytes, eighths, max_pixels, false))
}

fn with_decompressor<T>(
    f: impl FnOnce(&mut Decompressor) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Decompressor::new().map_err(tj_err)?);
        }
        let Some(dec) = slot.as_mut() else {
            return Err(ImageError::decode(ImageFormat::Jpeg, "no decompressor"));
        };
        f(dec)
    })
}

fn decode_with(
    dec: &mut Decompressor,
    bytes: &[u8],
    eighths: u32,
    max_pixels: u64,
    fast_path: bool,
) -> Result<Decoded, ImageError> {
    let header = dec.read_header(bytes).map_err(tj_err)?;
    let (w, h) = (header.width, header.height);
    if w == 0 || h == 0 {
        return Err(ImageError::decode(ImageFormat::Jpeg, "zero-sized image"));
    }
    let eighths = if header.is_lossless {
        8
    } else {
        eighths.clamp(1, 8)
    };
    let factor = ScalingFactor::new(eighths as usize, 8);
    dec.set_scaling_factor(factor).map_err(tj_err)?;
    let (sw, sh) = (factor.scale(w), factor.scale(h));
    let full = (w as u64) * (h as u64);
    let scaled = (sw as u64) * (sh as u64);
    if scaled > max_pixels || (header.is_progressive && full > max_pixels) {
        return Err(ImageError::TooLarge {
            width: u32::try_from(w).unwrap_or(u32::MAX),
            height: u32::try_from(h).unwrap_or(u32::MAX),
            limit: max_pixels,
        });
    }
    // The picture's exact size at this scale (the decoded planes round it up).
    let scale = f64::from(eighths) / 8.0;
    let (ew, eh) = (w as f64 * scale, h as f64 * scale);

    let raw_planes = matches!(header.colorspace, Colorspace::YCbCr | Colorspace::Gray);
    // libjpeg-turbo has read the markers and decided the colour space (JFIF, Adobe transform,
    // component ids); the fast path takes baseline files it calls YCbCr or gray, and checks
    // that its own reading of the frame agrees.
    if fast_path && raw_planes && eighths <= 4 && !header.is_progressive {
        let want = if header.colorspace == Colorspace::Gray {
            Layout::Gray
        } else {
            Layout::Ycc
        };
        if let Some(d) = reduced_jpeg::decode_reduced(bytes, eighths, max_pixels) {
            if d.layout == want {
                return Ok(d);
            }
        }
    }
    // libjpeg-turbo decodes a truncated file with a warning (grey below the cut) and skips
    // damaged markers; the whole marker walk refuses both, naming the reason. (The fast path
    // checks the same itself: it takes a file only when its scan ends exactly at EOI.)
    parse_jpeg_header(bytes)?;
    if let (true, Some((fx, fy))) = (raw_planes, factors(header.subsamp)) {
        let len = turbojpeg::yuv_pixels_len(sw, 1, sh, header.subsamp).map_err(tj_err)?;
        let mut yuv = YuvImage {
            pixels: vec![0u8; len],
            width: sw,
            align: 1,
            height: sh,
            subsamp: header.subsamp,
        };
        dec.decompress_to_yuv(bytes, yuv.as_deref_mut())
            .map_err(tj_err)?;
        // Plane geometry as libjpeg-turbo lays it out (tj3YUVPlaneWidth/Height with align 1):
        // luma padded to whole chroma samples, chroma = padded luma / factor.
        let (yw, yh) = (pad(sw, fx), pad(sh, fy));
        let mut pixels = yuv.pixels;
        if header.subsamp == Subsamp::Gray {
            let (yw, yh) = (sw, sh);
            if pixels.len() < yw * yh {
                return Err(ImageError::decode(ImageFormat::Jpeg, "short gray plane"));
            }
            pixels.truncate(yw * yh);
            return Ok(Decoded {
                layout: Layout::Gray,
                planes: vec![Plane {
                    width: yw,
                    height: yh,
                    channels: 1,
                    data: pixels,
                }],
                extents: vec![(ew, eh)],
                eighths,
            });
        }
        let (cw, ch) = (yw / fx, yh / fy);
        if pixels.len() != yw * yh + 2 * cw * ch {
            return Err(ImageError::decode(
                ImageFormat::Jpeg,
                format!(
                    "unexpected YUV layout: {} bytes for {sw}x{sh} {:?}",
                    pixels.len(),
                    header.subsamp
                ),
            ));
        }
        let cr = pixels.split_off(yw * yh + cw * ch);
        let cb = pixels.split_off(yw * yh);
        let (cex, cey) = (ew / fx as f64, eh / fy as f64);
        let plane = |width, height, data| Plane {
            width,
            height,
            channels: 1,
            data,
        };
        return Ok(Decoded {
            layout: Layout::Ycc,
            planes: vec![plane(yw, yh, pixels), plane(cw, ch, cb), plane(cw, ch, cr)],
            extents: vec![(ew, eh), (cex, cey), (cex, cey)],
            eighths,
        });
    }

    // Odd sampling or colour space: let libjpeg-turbo upsample and convert to RGB.
    let mut img = Image {
        pixels: vec![0u8; sw * sh * 3],
        width: sw,
        pitch: sw * 3,
        height: sh,
        format: PixelFormat::RGB,
    };
    dec.decompress(bytes, img.as_deref_mut()).map_err(tj_err)?;
    Ok(Decoded {
        layout: Layout::Rgb,
        planes: vec![Plane {
            width: sw,
            height: sh,
            channels: 3,
            data: img.pixels,
        }],
        extents: vec![(ew, eh)],
        eighths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_headroom() {
        // 4032 → 704: 3/8 gives 1512 ≥ 1408 (where allowed), 1/2 gives 2016; 1/4 would give
        // 1008 < 1408.
        assert_eq!(choose_scale(4032, 3024, 704, 528, true), 3);
        assert_eq!(choose_scale(4032, 3024, 704, 528, false), 4);
        // 12000 → 704: 1/8 gives 1500 ≥ 1408.
        assert_eq!(choose_scale(12000, 9000, 704, 528, true), 1);
        assert_eq!(choose_scale(6000, 4000, 704, 469, true), 2);
        // 1920 → 704: 3/8 and 1/2 would be 720 and 960 < 1408: full decode.
        assert_eq!(choose_scale(1920, 1080, 704, 396, true), 8);
        // Both axes must keep the headroom.
        assert_eq!(choose_scale(4032, 100, 704, 17, true), 3);
        assert_eq!(choose_scale(4032, 100, 704, 17, false), 4);
        assert_eq!(
            [8, 4, 3, 2, 1].map(scale_name),
            ["1/1", "1/2", "3/8", "1/4", "1/8"]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_scaled(b"\xFF\xD8\xFF\xE0garbage", 4, 1 << 28).is_err());
        assert!(decode_scaled(b"", 8, 1 << 28).is_err());
    }
}
