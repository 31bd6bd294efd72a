//! One image → at most `--size`, fast: the per-image core of `dsprep presize` and of
//! `dsprep convert --presize N`.
//!
//! Pipeline for an ordinary YCbCr/gray JPEG (the common case, and the fast one):
//! 1. marker walk up to the scan data ([`parse_jpeg_header_until_scan`]): size, EXIF
//!    orientation, variant — no decoding (the decoders check the rest);
//! 2. nothing to do (within the limit, upright, no `--reencode`) → pass-through: the caller
//!    keeps the input bytes, byte-identical, no generation loss;
//! 3. DCT-domain reduced decode to raw Y/Cb/Cr planes at the smallest scale (1/2, 3/8, 1/4,
//!    1/8; 3/8 only for files our decoder reads) that keeps
//!    [`HEADROOM`](super::scaled_decode::HEADROOM)× the output size
//!    ([`decode_scaled`](super::scaled_decode::decode_scaled): our own decoder for baseline
//!    files, libjpeg-turbo for the rest);
//! 4. Lanczos3 on each plane over its exact picture extent, in stored orientation
//!    ([`resize_ycc_to_420`]; chroma to the full output size, then 2×2 averaged, see [`CHROMA`]);
//! 5. EXIF orientation applied to the small output planes ([`orient_plane`]); the tag is gone
//!    because the encoder writes no EXIF;
//! 6. baseline 4:2:0 encode from the planes ([`encode_ycc420`]).
//!
//! Everything else (PNG/GIF/… content, CMYK, 12-bit, lossless, arithmetic) is decoded in full by
//! [`decode_rgb8_oriented`] and resized as RGB: rare, slower, same output format.
//!
//! Annotations follow with the exact per-axis factors [`Resized::sx`]/[`Resized::sy`]
//! (output size / input size, displayed orientation): a pixel edge at x maps to x·sx.

use super::decode::{check_size, decode_rgb8_oriented, MAX_DECODE_PIXELS};
use super::encode::{encode_gray, encode_rgb420, encode_ycc420};
use super::exif::Orientation;
use super::jpeg_header::{parse_jpeg_header, parse_jpeg_header_until_scan, ColorModel};
use super::resize::{
    orient_plane, replicate_edges, resize_plane, resize_region, Filter, Plane, Target,
};
use super::scaled_decode::{choose_scale, decode_scaled, Decoded, Layout};
use super::sniff::{sniff, ImageFormat};
use super::ImageError;

/// Default JPEG quality of presized images (matches `--quality`'s default).
pub const DEFAULT_QUALITY: u8 = 92;

/// What to do with each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresizeOptions {
    pub target: Target,
    /// JPEG quality (1..=100) of everything this writes.
    pub quality: u8,
    /// Re-encode images already within the limit instead of passing them through.
    pub reencode: bool,
}

/// Why the output is not the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Larger than the target: downscaled.
    Resized,
    /// Within the limit but EXIF-rotated: rotated pixels, tag removed, same size.
    Oriented,
    /// Within the limit but not a JPEG every reader takes (PNG content, CMYK, 12-bit, ...).
    Converted,
    /// Within the limit and `--reencode` asked for it.
    Reencoded,
}

/// The result for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Resized {
    /// The new JPEG; `None` when the image passes through (the input bytes are the output,
    /// byte-identical).
    pub bytes: Option<Vec<u8>>,
    pub change: Option<Change>,
    /// Output size (displayed orientation).
    pub width: u32,
    pub height: u32,
    /// Input size as displayed (EXIF orientation applied).
    pub src_width: u32,
    pub src_height: u32,
    /// Exact factors mapping input coordinates (displayed frame) to output: `width / src_width`
    /// and `height / src_height`. 1.0 for pass-through.
    pub sx: f64,
    pub sy: f64,
    /// DCT scale the decode used, in eighths (8 = full size; 0 = no decode).
    pub dct_eighths: u32,
}

impl Resized {
    pub fn passed_through(&self) -> bool {
        self.bytes.is_none()
    }

    /// The bytes to store: the new JPEG, or `input` for a pass-through.
    pub fn output<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        self.bytes.as_deref().unwrap_or(input)
    }
}

/// Presize one JPEG (or any image `prepare` reads) for `convert --presize`: pass-through when
/// already within `target` and upright, else a baseline 4:2:0 JPEG at `quality`.
pub fn presize_jpeg(bytes: &[u8], target: Target, quality: u8) -> Result<Resized, ImageError> {
    presize_image(
        bytes,
        &PresizeOptions {
            target,
            quality,
            reencode: false,
        },
    )
}

/// Bytes of memory presizing an image with this header will need at its peak, for the
/// caller's memory budget: the input, the decoded planes, and for progressive JPEGs the
/// full-size coefficient buffer libjpeg keeps. Non-JPEG inputs are decoded in full (RGB).
pub fn memory_estimate(bytes: &[u8], target: Target) -> u64 {
    let input = bytes.len() as u64;
    match sniff(bytes) {
        ImageFormat::Jpeg => match parse_jpeg_header_until_scan(bytes) {
            Ok(h) => {
                let full = u64::from(h.width) * u64::from(h.height);
                // Samples per pixel over all components (1.5 for 4:2:0, 3 for 4:4:4).
                let hmax = h
                    .components
                    .iter()
                    .map(|c| u64::from(c.h))
                    .max()
                    .unwrap_or(1);
                let vmax = h
                    .components
                    .iter()
                    .map(|c| u64::from(c.v))
                    .max()
                    .unwrap_or(1);
                let samples: u64 = h
                    .components
                    .iter()
                    .map(|c| u64::from(c.h) * u64::from(c.v) * 64 / (hmax * vmax).max(1))
                    .sum::<u64>()
                    .max(64);
                let (dw, dh) = h.displayed_size();
                let eighths = match target.output_size(dw, dh) {
                    Some((ow, oh)) => {
                        let (ow, oh) = if h.displayed_size() != (h.width, h.height) {
                            (oh, ow)
                        } else {
                            (ow, oh)
                        };
                        u64::from(dct_scale(&h, ow, oh))
                    }
                    None => 8,
                };
                let decoded = full * eighths * eighths / 64 * samples / 64;
                // Multi-scan (progressive) files keep every 16-bit coefficient of the image.
                let coefficients = if h.scans > 1 {
                    full * samples / 64 * 2
                } else {
                    0
                };
                let fallback = if needs_full_decode(&h) { full * 3 } else { 0 };
                input + decoded * 2 + coefficients + fallback
            }
            Err(_) => input,
        },
        // Unknown dimensions without decoding: assume a 10:1 compression ratio, RGB.
        _ => input + input.saturating_mul(30),
    }
}

fn needs_full_decode(h: &super::jpeg_header::JpegHeader) -> bool {
    h.unusual_variant().is_some() || matches!(h.color, ColorModel::Cmyk | ColorModel::Ycck)
}

/// How the 4:2:0 chroma planes are made from the decoded chroma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChromaPath {
    /// Lanczos3 straight to the 4:2:0 size.
    Direct,
    /// Lanczos3 to the full output size, then 2×2 averaging: the chroma an RGB pipeline gets
    /// from its encoder's downsampling (what the float reference and vips/Pillow produce).
    FullThenBox,
    /// The same filter as `FullThenBox` in one pass at the 4:2:0 size
    /// ([`Filter::Lanczos3Box2`]; they agree up to edge normalisation and rounding), an odd
    /// output size's last row / column of chroma made the two-pass way ([`one_pass_box`]);
    /// `FullThenBox` when the chroma is not downscaled or the output is under 2×2.
    OnePassBox,
}

/// The chroma path `presize` uses. Measured on 12 MP photos → 704 (`examples/presize_stages.rs
/// --chroma`): direct 4:2:0 resizing gives chroma PSNR 38.8 dB (min) / 49.1 (median) against the
/// float reference, full-size-then-box 51.3 / 55.1, for +2.6 ms of resize per image; the same
/// filter in one pass (`OnePassBox`) 51.6 / 55.7 for ~2.5 ms less than full-size-then-box.
pub const CHROMA: ChromaPath = ChromaPath::OnePassBox;

/// Resize decoded Y/Cb/Cr planes (stored orientation) to `w`×`h` luma and ⌈w/2⌉×⌈h/2⌉ chroma,
/// each over its exact picture extent.
pub fn resize_ycc_to_420(
    decoded: &Decoded,
    w: usize,
    h: usize,
    chroma: ChromaPath,
) -> Result<[Plane; 3], ImageError> {
    let (Some(py), Some(pcb), Some(pcr)) = (
        decoded.planes.first(),
        decoded.planes.get(1),
        decoded.planes.get(2),
    ) else {
        return Err(ImageError::Encode("internal: expected 3 planes".into()));
    };
    let e = |i: usize| decoded.extents.get(i).copied().unwrap_or((1.0, 1.0));
    let y = resize_plane(py, e(0), w, h)?;
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let c = |p: &Plane, ext| -> Result<Plane, ImageError> {
        match chroma {
            ChromaPath::Direct => resize_plane(p, ext, cw, ch),
            ChromaPath::FullThenBox => Ok(box_2x2(&resize_plane(p, ext, w, h)?)),
            ChromaPath::OnePassBox => {
                let downscale = ext.0 >= w as f64 && ext.1 >= h as f64;
                if w >= 2 && h >= 2 && downscale {
                    one_pass_box(p, ext, w, h)
                } else {
                    Ok(box_2x2(&resize_plane(p, ext, w, h)?))
                }
            }
        }
    };
    Ok([y, c(pcb, e(1))?, c(pcr, e(2))?])
}

/// [`ChromaPath::OnePassBox`] for a `w`×`h` (≥ 2×2) output: the whole 2×2 blocks in one
/// pass of [`Filter::Lanczos3Box2`] over the part of the extent they cover; for an odd size
/// the last row / column of 4:2:0 samples, which average only one full-size row / column, as
/// that row / column resized to full size and averaged ([`box_2x2`]) — exactly the two-pass
/// result there, at the cost of one output line.
fn one_pass_box(p: &Plane, ext: (f64, f64), w: usize, h: usize) -> Result<Plane, ImageError> {
    let (w2, h2) = (w / 2, h / 2);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    // Source pixels per full-size output pixel.
    let (sx, sy) = (ext.0 / w as f64, ext.1 / h as f64);
    let blocks = resize_region(
        p,
        (0.0, 0.0),
        (sx * (2 * w2) as f64, sy * (2 * h2) as f64),
        w2,
        h2,
        Filter::Lanczos3Box2,
    )?;
    if (w2, h2) == (cw, ch) {
        return Ok(blocks);
    }
    let mut out = Plane::new(cw, ch, 1);
    for (dst, src) in out
        .data
        .chunks_exact_mut(cw)
        .zip(blocks.data.chunks_exact(w2))
    {
        dst[..w2].copy_from_slice(src);
    }
    if w2 < cw {
        let column = (sx * (w - 1) as f64, 0.0);
        let right = box_2x2(&resize_region(
            p,
            column,
            (sx, ext.1),
            1,
            h,
            Filter::Lanczos3,
        )?);
        for (y, &v) in right.data.iter().enumerate().take(ch) {
            if let Some(d) = out.data.get_mut(y * cw + cw - 1) {
                *d = v;
            }
        }
    }
    if h2 < ch {
        let row = (0.0, sy * (h - 1) as f64);
        let bottom = box_2x2(&resize_region(p, row, (ext.0, sy), w, 1, Filter::Lanczos3)?);
        if let Some(last) = out.data.chunks_exact_mut(cw).last() {
            for (d, &v) in last.iter_mut().zip(&bottom.data) {
                *d = v;
            }
        }
    }
    Ok(out)
}

/// Average 2×2 blocks (edge blocks average what exists), rounding to nearest.
fn box_2x2(p: &Plane) -> Plane {
    let (w, h) = (p.width, p.height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut out = Plane::new(cw, ch, 1);
    // Whole 2×2 blocks: two rows at a time, vectorised (the general loop below was 1.3 % of a
    // presize); the loop below then redoes only a last odd column and row.
    if w >= 2 {
        for (pair, dst) in p
            .data
            .chunks_exact(2 * w)
            .zip(out.data.chunks_exact_mut(cw))
        {
            let (top, bottom) = pair.split_at(w);
            for ((d, t), b) in dst
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                let s = u16::from(t[0]) + u16::from(t[1]) + u16::from(b[0]) + u16::from(b[1]);
                *d = ((s + 2) >> 2) as u8;
            }
        }
    }
    let edge_row = h / 2;
    let edge_col = w / 2;
    for cy in 0..ch {
        if cy < edge_row && edge_col == cw {
            continue;
        }
        let from = if cy < edge_row { edge_col } else { 0 };
        for cx in from..cw {
            let (mut s, mut n) = (0u32, 0u32);
            for y in 2 * cy..(2 * cy + 2).min(h) {
                for x in 2 * cx..(2 * cx + 2).min(w) {
                    s += u32::from(p.data.get(y * w + x).copied().unwrap_or(0));
                    n += 1;
                }
            }
            if let Some(d) = out.data.get_mut(cy * cw + cx) {
                *d = ((s + n / 2) / n.max(1)) as u8;
            }
        }
    }
    out
}

/// Presize any image: see the module docs.
pub fn presize_image(bytes: &[u8], opts: &PresizeOptions) -> Result<Resized, ImageError> {
    let quality = opts.quality.clamp(1, 100);
    let format = sniff(bytes);
    if format == ImageFormat::Unknown {
        return Err(ImageError::not_an_image(bytes));
    }
    if format != ImageFormat::Jpeg {
        return via_rgb(bytes, opts, Change::Converted);
    }
    // Up to the first scan only: the decoders check the rest (see `decode_scaled`).
    let header = parse_jpeg_header_until_scan(bytes)?;
    super::decode::check_declared_size(&header, bytes.len())?;
    if needs_full_decode(&header) {
        return via_rgb(bytes, opts, Change::Converted);
    }
    let (dw, dh) = header.displayed_size();
    let JpegPlan::Rewrite {
        change,
        out: (ow, oh),
        stored_out: (sw_out, sh_out),
        orientation,
        eighths,
    } = jpeg_plan(&header, opts)
    else {
        // Passed on as is: it must be whole (no decoder looks at it here).
        parse_jpeg_header(bytes)?;
        return Ok(Resized {
            bytes: None,
            change: None,
            width: dw,
            height: dh,
            src_width: dw,
            src_height: dh,
            sx: 1.0,
            sy: 1.0,
            dct_eighths: 0,
        });
    };
    let mut decoded = decode_scaled(bytes, eighths, MAX_DECODE_PIXELS)?;
    for (p, e) in decoded.planes.iter_mut().zip(&decoded.extents) {
        replicate_edges(p, *e);
    }
    let (sw_out, sh_out) = (sw_out as usize, sh_out as usize);
    let encoded = match decoded.layout {
        Layout::Ycc => {
            let [y, cb, cr] = resize_ycc_to_420(&decoded, sw_out, sh_out, CHROMA)?;
            let o = |p| orient_plane(p, orientation);
            encode_ycc420(&o(y), &o(cb), &o(cr), quality)?
        }
        Layout::Gray | Layout::Rgb => {
            let (Some(p), Some(e)) = (decoded.planes.first(), decoded.extents.first()) else {
                return Err(ImageError::Encode("internal: no plane decoded".into()));
            };
            let plane = orient_plane(resize_plane(p, *e, sw_out, sh_out)?, orientation);
            if decoded.layout == Layout::Gray {
                encode_gray(&plane, quality)?
            } else {
                encode_rgb420(&plane, quality)?
            }
        }
    };
    Ok(Resized {
        bytes: Some(encoded),
        change: Some(change),
        width: ow,
        height: oh,
        src_width: dw,
        src_height: dh,
        sx: f64::from(ow) / f64::from(dw),
        sy: f64::from(oh) / f64::from(dh),
        dct_eighths: decoded.eighths,
    })
}

/// What [`presize_image`] does with a JPEG its plane path reads, decided from the header alone.
enum JpegPlan {
    /// Within the limit, upright, no re-encode asked: the input bytes are the output.
    PassThrough,
    Rewrite {
        change: Change,
        /// Output size as displayed, and in stored orientation (what is resized).
        out: (u32, u32),
        stored_out: (u32, u32),
        orientation: Orientation,
        /// DCT scale of the decode, in eighths.
        eighths: u32,
    },
}

/// The DCT scale (eighths) a JPEG is decoded at for a stored-orientation output of
/// `ow`×`oh`: 3/8 only for files our own decoder reads (baseline, one scan, 8-bit, YCbCr or
/// gray, standard sampling: the set the hardware decoders take too), where it has its 3×3 IDCT
/// (see [`choose_scale`]); libjpeg-turbo's 3/8 has no SIMD and is slower than its 1/2.
fn dct_scale(header: &super::jpeg_header::JpegHeader, ow: u32, oh: u32) -> u32 {
    choose_scale(
        header.width,
        header.height,
        ow,
        oh,
        header.hardware_decodable(),
    )
}

fn jpeg_plan(header: &super::jpeg_header::JpegHeader, opts: &PresizeOptions) -> JpegPlan {
    let orientation = header.orientation.unwrap_or(Orientation::Normal);
    let (dw, dh) = header.displayed_size();
    let out = opts.target.output_size(dw, dh);
    let change = match (out, orientation, opts.reencode) {
        (Some(_), _, _) => Change::Resized,
        (None, Orientation::Normal, false) => return JpegPlan::PassThrough,
        (None, Orientation::Normal, true) => Change::Reencoded,
        (None, _, _) => Change::Oriented,
    };
    let (ow, oh) = out.unwrap_or((dw, dh));
    // Work in stored orientation until the output is small.
    let stored_out = if orientation.swaps_dimensions() {
        (oh, ow)
    } else {
        (ow, oh)
    };
    JpegPlan::Rewrite {
        change,
        out: (ow, oh),
        stored_out,
        orientation,
        eighths: dct_scale(header, stored_out.0, stored_out.1),
    }
}

/// The DCT scale (eighths) [`presize_image`] decodes `bytes` at (0: passed through, 8:
/// full size), from the header alone: what `--resume` records for an image an earlier run
/// finished, so the manifest is the one a clean run writes.
pub fn planned_scale(bytes: &[u8], opts: &PresizeOptions) -> Result<u32, ImageError> {
    if sniff(bytes) != ImageFormat::Jpeg {
        return Ok(8);
    }
    let header = parse_jpeg_header_until_scan(bytes)?;
    if needs_full_decode(&header) {
        return Ok(8);
    }
    Ok(match jpeg_plan(&header, opts) {
        JpegPlan::PassThrough => 0,
        JpegPlan::Rewrite { eighths, .. } => eighths,
    })
}

/// Full decode (orientation applied) → RGB resize → 4:2:0 encode, for inputs libjpeg-turbo's
/// plane path does not cover. Always writes a new JPEG: the input is not one readers take.
fn via_rgb(bytes: &[u8], opts: &PresizeOptions, converted: Change) -> Result<Resized, ImageError> {
    let img = decode_rgb8_oriented(bytes)?;
    check_size(img.width, img.height)?;
    let (dw, dh) = (img.width, img.height);
    let out = opts.target.output_size(dw, dh);
    let (ow, oh) = out.unwrap_or((dw, dh));
    let plane = Plane {
        width: dw as usize,
        height: dh as usize,
        channels: 3,
        data: img.data,
    };
    let resized = resize_plane(
        &plane,
        (f64::from(dw), f64::from(dh)),
        ow as usize,
        oh as usize,
    )?;
    let bytes = encode_rgb420(&resized, opts.quality.clamp(1, 100))?;
    Ok(Resized {
        bytes: Some(bytes),
        change: Some(if out.is_some() {
            Change::Resized
        } else {
            converted
        }),
        width: ow,
        height: oh,
        src_width: dw,
        src_height: dh,
        sx: f64::from(ow) / f64::from(dw),
        sy: f64::from(oh) / f64::from(dh),
        dct_eighths: 8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::decode_rgb8;
    use crate::image::jpeg_header::{Process, Subsampling};

    /// A smooth test picture with a distinct colour in each quadrant (so orientation mistakes
    /// show), encoded by our own encoder at the given size and sampling.
    fn picture(w: usize, h: usize) -> Plane {
        let mut p = Plane::new(w, h, 3);
        for y in 0..h {
            for x in 0..w {
                let q = (usize::from(x >= w / 2)) + 2 * usize::from(y >= h / 2);
                let c: [u8; 3] = match q {
                    0 => [220, 40, 40],
                    1 => [40, 200, 40],
                    2 => [40, 40, 220],
                    _ => [230, 230, 40],
                };
                let i = (y * w + x) * 3;
                p.data[i..i + 3].copy_from_slice(&c);
            }
        }
        p
    }

    fn jpeg(w: usize, h: usize) -> Vec<u8> {
        encode_rgb420(&picture(w, h), 95).unwrap()
    }

    /// Insert an EXIF APP1 with the given orientation after SOI.
    fn with_orientation(jpeg: &[u8], o: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0*\0\0\0\x08");
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes());
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&o.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes());
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn mean_close(img: &crate::image::RgbImage, x: u32, y: u32, want: [u8; 3]) {
        let p = img.pixel(x, y).unwrap();
        for c in 0..3 {
            assert!(
                (i32::from(p[c]) - i32::from(want[c])).abs() < 30,
                "pixel ({x},{y}) = {p:?}, want ≈ {want:?}"
            );
        }
    }

    #[test]
    fn small_upright_jpeg_passes_through() {
        let src = jpeg(300, 200);
        let r = presize_jpeg(&src, Target::longest(704), 90).unwrap();
        assert!(r.passed_through());
        assert_eq!(r.output(&src), &src[..]);
        assert_eq!((r.width, r.height, r.sx, r.sy), (300, 200, 1.0, 1.0));
    }

    #[test]
    fn reencode_flag_rewrites_small_images_at_same_size() {
        let src = jpeg(300, 200);
        let opts = PresizeOptions {
            target: Target::longest(704),
            quality: 90,
            reencode: true,
        };
        let r = presize_image(&src, &opts).unwrap();
        assert_eq!(r.change, Some(Change::Reencoded));
        assert_eq!((r.width, r.height), (300, 200));
        assert_ne!(r.output(&src), &src[..]);
    }

    /// 3/8 where it keeps the 2× headroom and our decoder reads the file; a 4:1:1 file (which
    /// our decoder hands to libjpeg-turbo, without a SIMD 3/8) keeps 1/2.
    #[test]
    fn three_eighths_only_for_files_our_decoder_reads() {
        let target = Target::longest(296); // 1600×1000 → 296×185: 3/8 gives 600×375 ≥ 2×
        let r = presize_jpeg(&jpeg(1600, 1000), target, 90).unwrap();
        assert_eq!(r.dct_eighths, 3);
        let px = picture(1600, 1000);
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(90).unwrap();
        c.set_subsamp(turbojpeg::Subsamp::Sub4x1).unwrap();
        let img = turbojpeg::Image {
            pixels: px.data.as_slice(),
            width: 1600,
            pitch: 1600 * 3,
            height: 1000,
            format: turbojpeg::PixelFormat::RGB,
        };
        let src = c.compress_to_vec(img).unwrap();
        let r = presize_jpeg(&src, target, 90).unwrap();
        assert_eq!((r.dct_eighths, r.width), (4, 296));
    }

    #[test]
    fn large_jpeg_is_downscaled_to_baseline_420() {
        let src = jpeg(1600, 1000);
        let r = presize_jpeg(&src, Target::longest(400), 90).unwrap();
        assert_eq!(r.change, Some(Change::Resized));
        assert_eq!((r.width, r.height), (400, 250));
        assert_eq!(r.dct_eighths, 4); // 800 ≥ 2×400
        assert_eq!(r.sx, 0.25);
        assert_eq!(r.sy, 0.25);
        let out = r.bytes.as_deref().unwrap();
        let h = parse_jpeg_header(out).unwrap();
        assert_eq!((h.width, h.height), (400, 250));
        assert_eq!(h.process, Process::Baseline);
        assert_eq!(h.subsampling, Subsampling::S420);
        assert!(h.hardware_decodable());
        let img = decode_rgb8(out).unwrap();
        mean_close(&img, 50, 50, [220, 40, 40]);
        mean_close(&img, 350, 50, [40, 200, 40]);
        mean_close(&img, 50, 200, [40, 40, 220]);
        mean_close(&img, 350, 200, [230, 230, 40]);
    }

    #[test]
    fn planned_scale_is_the_scale_presize_uses() {
        let opts = |size, reencode| PresizeOptions {
            target: Target::longest(size),
            quality: 90,
            reencode,
        };
        for (src, size, reencode) in [
            (jpeg(1600, 1000), 400, false),
            (jpeg(1600, 1000), 100, false),
            (jpeg(1600, 1000), 2000, false),
            (jpeg(300, 200), 2000, true),
        ] {
            let o = opts(size, reencode);
            let r = presize_image(&src, &o).unwrap();
            assert_eq!(
                planned_scale(&src, &o).unwrap(),
                r.dct_eighths,
                "{size} {reencode}"
            );
        }
    }

    #[test]
    fn shortest_mode_and_odd_sizes() {
        let src = jpeg(1001, 777);
        let r = presize_jpeg(&src, Target::shortest(333), 90).unwrap();
        assert_eq!((r.width, r.height), (429, 333));
        let h = parse_jpeg_header(r.bytes.as_deref().unwrap()).unwrap();
        assert_eq!((h.width, h.height), (429, 333));
        assert!((r.sx - 429.0 / 1001.0).abs() < 1e-12);
        assert!((r.sy - 333.0 / 777.0).abs() < 1e-12);
    }

    #[test]
    fn exif_rotation_is_applied_and_tag_removed() {
        // Stored 800x400; orientation 6 (rotate 90° cw): displayed 400x800.
        let src = with_orientation(&jpeg(800, 400), 6);
        let hdr = parse_jpeg_header(&src).unwrap();
        assert_eq!(hdr.orientation, Some(Orientation::Rotate90));
        let r = presize_jpeg(&src, Target::longest(200), 90).unwrap();
        assert_eq!((r.src_width, r.src_height), (400, 800));
        assert_eq!((r.width, r.height), (100, 200));
        let out = r.bytes.as_deref().unwrap();
        let h = parse_jpeg_header(out).unwrap();
        assert!(!h.exif);
        assert_eq!(h.orientation, None);
        // Rotating 90° cw: the stored bottom-left (blue) is displayed top-left, the stored
        // top-left (red) top-right, the stored bottom-right (yellow) bottom-left.
        let img = decode_rgb8(out).unwrap();
        mean_close(&img, 20, 40, [40, 40, 220]);
        mean_close(&img, 80, 40, [220, 40, 40]);
        mean_close(&img, 20, 160, [230, 230, 40]);
        mean_close(&img, 80, 160, [40, 200, 40]);
    }

    #[test]
    fn small_rotated_image_is_rotated_not_passed_through() {
        let src = with_orientation(&jpeg(300, 100), 8);
        let r = presize_jpeg(&src, Target::longest(704), 90).unwrap();
        assert_eq!(r.change, Some(Change::Oriented));
        assert_eq!((r.width, r.height), (100, 300));
        let h = parse_jpeg_header(r.bytes.as_deref().unwrap()).unwrap();
        assert_eq!((h.width, h.height, h.exif), (100, 300, false));
    }

    #[test]
    fn png_content_is_converted_even_when_small() {
        let mut png = Vec::new();
        let img = ::image::RgbImage::from_pixel(40, 30, ::image::Rgb([10, 200, 30]));
        img.write_to(
            &mut std::io::Cursor::new(&mut png),
            ::image::ImageFormat::Png,
        )
        .unwrap();
        let r = presize_jpeg(&png, Target::longest(704), 90).unwrap();
        assert_eq!(r.change, Some(Change::Converted));
        let out = r.bytes.as_deref().unwrap();
        assert_eq!(sniff(out), ImageFormat::Jpeg);
        let r = presize_jpeg(&png, Target::longest(20), 90).unwrap();
        assert_eq!(
            (r.width, r.height, r.change),
            (20, 15, Some(Change::Resized))
        );
    }

    #[test]
    fn bad_inputs_are_errors_with_reasons() {
        assert!(matches!(
            presize_jpeg(b"", Target::longest(10), 90),
            Err(ImageError::Empty)
        ));
        assert!(matches!(
            presize_jpeg(b"hello world", Target::longest(10), 90),
            Err(ImageError::NotAnImage(_))
        ));
        let src = jpeg(800, 600);
        let cut = &src[..src.len() / 2];
        assert!(presize_jpeg(cut, Target::longest(100), 90).is_err());
        // Corrupt entropy-coded data: libjpeg-turbo's warning is an error here.
        let mut bad = src.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 200] {
            *b = 0xFF;
        }
        let e = presize_jpeg(&bad, Target::longest(100), 90);
        assert!(e.is_err(), "{e:?}");
    }

    #[test]
    fn one_pass_chroma_equals_full_size_then_box() {
        // A textured plane (what chroma of a photo looks like at 1/2 DCT scale), downscaled
        // 3.7× to an even size: the one-pass kernel must give the two-pass result up to
        // rounding (interior) and edge renormalisation (outermost pixels).
        let (w, h) = (740, 520);
        let mut src = Plane::new(w, h, 1);
        for y in 0..h {
            for x in 0..w {
                let v = 128.0
                    + 60.0 * ((x as f64) * 0.21).sin() * ((y as f64) * 0.13).cos()
                    + 40.0 * (((x * 7 + y * 13) % 17) as f64 / 17.0 - 0.5);
                src.data[y * w + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        let (ow, oh) = (200, 140);
        let ext = (w as f64, h as f64);
        let two = box_2x2(&resize_plane(&src, ext, ow, oh).unwrap());
        let one = crate::image::resize::resize_plane_with(
            &src,
            ext,
            ow / 2,
            oh / 2,
            Filter::Lanczos3Box2,
        )
        .unwrap();
        assert_eq!((one.width, one.height), (two.width, two.height));
        let (cw, ch) = (one.width, one.height);
        let mut worst_interior = 0i32;
        for y in 0..ch {
            for x in 0..cw {
                let d = (i32::from(one.data[y * cw + x]) - i32::from(two.data[y * cw + x])).abs();
                let edge = x < 2 || y < 2 || x >= cw - 2 || y >= ch - 2;
                assert!(d <= if edge { 6 } else { 2 }, "({x},{y}) differs by {d}");
                if !edge {
                    worst_interior = worst_interior.max(d);
                }
            }
        }
        assert!(worst_interior <= 2);
        // Odd output sizes: the same up to rounding inside, and exactly the two-pass result in
        // the last row / column of 4:2:0 samples (each averages a single full-size line).
        let d = Decoded {
            layout: super::super::scaled_decode::Layout::Ycc,
            planes: vec![src.clone(), src.clone(), src.clone()],
            extents: vec![ext; 3],
            eighths: 8,
        };
        for (ow, oh) in [(201, 141), (200, 141), (201, 140), (3, 3)] {
            let [_, one, _] = resize_ycc_to_420(&d, ow, oh, ChromaPath::OnePassBox).unwrap();
            let two = box_2x2(&resize_plane(&src, ext, ow, oh).unwrap());
            let (cw, ch) = (two.width, two.height);
            assert_eq!((one.width, one.height), (cw, ch));
            for y in 0..ch {
                for x in 0..cw {
                    let (a, b) = (one.data[y * cw + x], two.data[y * cw + x]);
                    let d = (i32::from(a) - i32::from(b)).abs();
                    let odd_line = (ow % 2 == 1 && x == cw - 1) || (oh % 2 == 1 && y == ch - 1);
                    let edge = x < 2 || y < 2 || x + 2 >= cw || y + 2 >= ch;
                    let limit = if odd_line {
                        0
                    } else if edge {
                        6
                    } else {
                        2
                    };
                    assert!(d <= limit, "{ow}x{oh} ({x},{y}): {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn box_2x2_averages_blocks_and_edges() {
        let p = Plane {
            width: 3,
            height: 3,
            channels: 1,
            data: vec![0, 10, 100, 20, 31, 200, 7, 9, 255],
        };
        let b = box_2x2(&p);
        assert_eq!((b.width, b.height), (2, 2));
        // (0+10+20+31)/4 = 15.25 → 15; (100+200)/2 = 150; (7+9)/2 = 8; 255 alone.
        assert_eq!(b.data, vec![15, 150, 8, 255]);
    }

    /// The vectorised whole-block loop and the edge loop together equal the plain definition
    /// for every parity of width and height.
    #[test]
    fn box_2x2_equals_the_definition_at_every_size() {
        for w in 1..10usize {
            for h in 1..10usize {
                let data: Vec<u8> = (0..w * h)
                    .map(|i| ((i * 73 + w * 31 + h) % 256) as u8)
                    .collect();
                let p = Plane {
                    width: w,
                    height: h,
                    channels: 1,
                    data: data.clone(),
                };
                let b = box_2x2(&p);
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                assert_eq!((b.width, b.height), (cw, ch));
                for cy in 0..ch {
                    for cx in 0..cw {
                        let cells: Vec<u32> = (2 * cy..(2 * cy + 2).min(h))
                            .flat_map(|y| (2 * cx..(2 * cx + 2).min(w)).map(move |x| (x, y)))
                            .map(|(x, y)| u32::from(data[y * w + x]))
                            .collect();
                        let n = cells.len() as u32;
                        let want = (cells.iter().sum::<u32>() + n / 2) / n;
                        assert_eq!(u32::from(b.data[cy * cw + cx]), want, "{w}x{h} ({cx},{cy})");
                    }
                }
            }
        }
    }

    #[test]
    fn memory_estimate_grows_with_pixels() {
        let small = jpeg(100, 100);
        let big = jpeg(1600, 1000);
        let t = Target::longest(704);
        assert!(memory_estimate(&big, t) > memory_estimate(&small, t));
        assert!(memory_estimate(b"junk", t) >= 4);
    }
}
