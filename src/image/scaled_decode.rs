//! JPEG decode at reduced size in the DCT domain (libjpeg-turbo 3 through `turbojpeg`).
//!
//! Why: resizing a 12 MP photo to 704 px, a full decode is most of the work. libjpeg-turbo can
//! run a smaller inverse DCT per 8×8 block (1/2: 4×4, 1/4: 2×2, 1/8: DC only; SIMD for 1/2 and
//! 1/4), which skips most IDCT, upsampling and colour work. The entropy (Huffman) decode is the
//! same at any scale and becomes the floor. We keep the decoded image at least
//! [`HEADROOM`]× the output size so the final Lanczos3 pass still does real antialiasing: the
//! reduced IDCT alone is a box-like filter that aliases.
//!
//! YCbCr and gray JPEGs decode to raw planes (no colour conversion, no chroma upsampling):
//! `presize` resizes the planes and encodes them straight back as 4:2:0. Baseline Huffman files
//! at 1/2, 1/4 and 1/8 take the faster [`reduced_jpeg`] path; libjpeg-turbo reads the header
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
    /// The denominator of the DCT scaling used (1, 2, 4 or 8).
    pub denom: u32,
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

fn tj_err(e: turbojpeg::Error) -> ImageError {
    ImageError::decode(ImageFormat::Jpeg, e)
}

/// The largest DCT scaling denominator (1, 2, 4, 8) that keeps a stored `width`×`height`
/// image at least [`HEADROOM`]× `out_w`×`out_h` (same orientation) on both axes.
pub fn choose_denom(width: u32, height: u32, out_w: u32, out_h: u32) -> u32 {
    denom_with_headroom(width, height, out_w, out_h, HEADROOM)
}

/// [`choose_denom`] for another `headroom` (the CPU data path decodes to the placed size: 1×).
pub fn denom_with_headroom(width: u32, height: u32, out_w: u32, out_h: u32, headroom: f64) -> u32 {
    let mut best = 1;
    for d in [2u32, 4, 8] {
        let sw = f64::from(width) / f64::from(d);
        let sh = f64::from(height) / f64::from(d);
        if sw >= headroom * f64::from(out_w) && sh >= headroom * f64::from(out_h) {
            best = d;
        }
    }
    best
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

/// Decode `bytes` at 1/`denom` scale. YCbCr/gray JPEGs with a standard subsampling come back
/// as raw planes; anything else libjpeg-turbo reads comes back as RGB. `max_pixels` bounds the
/// decoded size *and*, for progressive files (which hold every coefficient of the full image
/// in memory), the full size.
pub fn decode_scaled(bytes: &[u8], denom: u32, max_pixels: u64) -> Result<Decoded, ImageError> {
    with_decompressor(|dec| decode_with(dec, bytes, denom, max_pixels, true))
}

/// [`decode_scaled`] by libjpeg-turbo alone (no [`reduced_jpeg`] fast path): the reference the
/// fast path is tested and benchmarked against.
pub fn decode_scaled_libjpeg(
    bytes: &[u8],
    denom: u32,
    max_pixels: u64,
) -> Result<Decoded, ImageError> {
    with_decompressor(|dec| decode_with(dec, bytes, denom, max_pixels, false))
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
    denom: u32,
    max_pixels: u64,
    fast_path: bool,
) -> Result<Decoded, ImageError> {
    let header = dec.read_header(bytes).map_err(tj_err)?;
    let (w, h) = (header.width, header.height);
    if w == 0 || h == 0 {
        return Err(ImageError::decode(ImageFormat::Jpeg, "zero-sized image"));
    }
    let denom = if header.is_lossless { 1 } else { denom };
    let factor = ScalingFactor::new(1, denom as usize);
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
    let (ew, eh) = (w as f64 / denom as f64, h as f64 / denom as f64);

    let raw_planes = matches!(header.colorspace, Colorspace::YCbCr | Colorspace::Gray);
    // libjpeg-turbo has read the markers and decided the colour space (JFIF, Adobe transform,
    // component ids); the fast path takes baseline files it calls YCbCr or gray, and checks
    // that its own reading of the frame agrees.
    if fast_path && raw_planes && denom > 1 && !header.is_progressive {
        let want = if header.colorspace == Colorspace::Gray {
            Layout::Gray
        } else {
            Layout::Ycc
        };
        if let Some(d) = reduced_jpeg::decode_reduced(bytes, denom, max_pixels) {
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
                denom,
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
            denom,
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
        denom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denominator_keeps_headroom() {
        // 4032 → 704: 1/2 gives 2016 ≥ 1408; 1/4 would give 1008 < 1408.
        assert_eq!(choose_denom(4032, 3024, 704, 528), 2);
        // 12000 → 704: 1/8 gives 1500 ≥ 1408.
        assert_eq!(choose_denom(12000, 9000, 704, 528), 8);
        assert_eq!(choose_denom(6000, 4000, 704, 469), 4);
        // 1920 → 704: half would be 960 < 1408: full decode.
        assert_eq!(choose_denom(1920, 1080, 704, 396), 1);
        // Both axes must keep the headroom.
        assert_eq!(choose_denom(4032, 100, 704, 17), 2);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_scaled(b"\xFF\xD8\xFF\xE0garbage", 2, 1 << 28).is_err());
        assert!(decode_scaled(b"", 1, 1 << 28).is_err());
    }
}
