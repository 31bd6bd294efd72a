//! What `convert` stores for each input file, so that every reader (TensorFlow's `decode_jpeg`,
//! DALI/nvJPEG, PIL, OpenCV) sees the same pixels the annotations describe.
//!
//! - Clean JPEG (8-bit Huffman baseline/extended/progressive, gray or YCbCr, no EXIF rotation):
//!   the original bytes, borrowed, never re-encoded (no generation loss, and the cheap path: a
//!   marker walk, no decode). Anything after the end-of-image marker (zero padding, motion-photo
//!   video, MPF secondary images, junk) is cut off: no decoder shows it and it can be megabytes.
//! - EXIF orientation 2..=8: decoded, rotated/flipped, re-encoded without EXIF, because the
//!   readers ignore the tag but the annotation tools applied it.
//! - CMYK/YCCK: readers disagree (nvJPEG refuses, TF gives 4 channels): converted to RGB.
//! - PNG/GIF/BMP/WebP/TIFF content (whatever the file name says): decoded, alpha dropped,
//!   the file's own orientation applied, re-encoded.
//! - Lossless, 12-bit, arithmetic, RGB-without-transform or odd-sampling JPEGs: re-encoded when a
//!   decoder here reads them, else a clear error.
//!
//! Re-encodes are baseline, one interleaved scan, 4:2:0, quality [`REENCODE_QUALITY`], JFIF,
//! no EXIF: what the GPU hardware decoders take. The encoder is scalar (same bytes on every CPU);
//! the zune-jpeg decode in front of it picks SIMD paths at run time.

use super::decode::{decode_jpeg, decode_other, RgbImage};
use super::exif::{apply_orientation, Orientation};
use super::jpeg_header::{parse_jpeg_header, ColorModel, JpegHeader};
use super::sniff::{sniff, ImageFormat};
use super::ImageError;
use serde::Serialize;
use std::borrow::Cow;

/// JPEG quality of re-encodes: high enough that the conversion is invisible (PSNR > 45 dB on
/// photos), in the range phones and libvips use for "high quality".
pub const REENCODE_QUALITY: u8 = 95;

/// Why an image was re-encoded instead of stored as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReencodeReason {
    /// EXIF orientation 2..=8 applied to the pixels.
    ExifOrientation,
    /// CMYK or YCCK JPEG converted to RGB.
    Cmyk,
    /// Not JPEG content (e.g. a PNG named `.jpg`).
    NotJpeg(ImageFormat),
    /// Lossless / 12-bit / arithmetic / RGB-transform / odd-sampling JPEG that readers do not
    /// all take.
    UnsupportedJpegVariant,
}

impl ReencodeReason {
    /// Stable snake_case name for manifests (`not_jpeg_png`, `exif_orientation`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ReencodeReason::ExifOrientation => "exif_orientation",
            ReencodeReason::Cmyk => "cmyk",
            ReencodeReason::UnsupportedJpegVariant => "unsupported_jpeg_variant",
            ReencodeReason::NotJpeg(f) => match f {
                ImageFormat::Png => "not_jpeg_png",
                ImageFormat::Gif => "not_jpeg_gif",
                ImageFormat::Bmp => "not_jpeg_bmp",
                ImageFormat::Webp => "not_jpeg_webp",
                ImageFormat::Tiff => "not_jpeg_tiff",
                ImageFormat::Jpeg | ImageFormat::Unknown => "not_jpeg",
            },
        }
    }
}

impl std::fmt::Display for ReencodeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReencodeReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The bytes to store for one image and what is known about them.
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    /// A JPEG: the input (borrowed, possibly cut at its end-of-image marker) or a re-encode.
    pub bytes: Cow<'a, [u8]>,
    /// Size of the stored image, which is the displayed size (orientation applied).
    pub width: u32,
    pub height: u32,
    pub reencoded: Option<ReencodeReason>,
    /// Header of `bytes` (for a re-encode: of the new JPEG).
    pub header: JpegHeader,
    /// Bytes after the end-of-image marker that were cut off (0 for re-encodes).
    pub dropped_trailing_bytes: usize,
}

/// Decide what to store for one input file. `decode_check` additionally decodes clean JPEGs in
/// full (strict), catching corrupt entropy-coded data the marker walk cannot see. Images that
/// are re-encoded are always fully decoded.
pub fn prepare(bytes: &[u8], decode_check: bool) -> Result<Prepared<'_>, ImageError> {
    match sniff(bytes) {
        ImageFormat::Jpeg => prepare_jpeg(bytes, decode_check),
        ImageFormat::Unknown => Err(ImageError::not_an_image(bytes)),
        format => {
            let (img, orientation) = decode_other(bytes, format)?;
            reencode(
                apply_orientation(img, orientation),
                ReencodeReason::NotJpeg(format),
            )
        }
    }
}

fn prepare_jpeg(bytes: &[u8], decode_check: bool) -> Result<Prepared<'_>, ImageError> {
    let mut header = parse_jpeg_header(bytes)?;
    super::decode::check_declared_size(&header, bytes.len())?;
    let orientation = header.orientation.filter(|&o| o != Orientation::Normal);
    let reason = if header.unusual_variant().is_some() {
        Some(ReencodeReason::UnsupportedJpegVariant)
    } else if matches!(header.color, ColorModel::Cmyk | ColorModel::Ycck) {
        Some(ReencodeReason::Cmyk)
    } else if orientation.is_some() {
        Some(ReencodeReason::ExifOrientation)
    } else {
        None
    };
    if let Some(reason) = reason {
        let img = decode_jpeg(bytes, &header)?;
        return reencode(
            apply_orientation(img, orientation.unwrap_or(Orientation::Normal)),
            reason,
        );
    }
    if decode_check {
        decode_jpeg(bytes, &header)?;
    }
    let end = header.jpeg_len();
    let dropped = header.trailing_bytes;
    header.trailing_bytes = 0;
    header.trailing_zero = true;
    let stored = bytes.get(..end).ok_or_else(|| {
        // parse_jpeg_header guarantees end <= len; keep the no-panic rule anyway.
        ImageError::malformed("end-of-image marker past the end of the file", end)
    })?;
    Ok(Prepared {
        bytes: Cow::Borrowed(stored),
        width: header.width,
        height: header.height,
        reencoded: None,
        header,
        dropped_trailing_bytes: dropped,
    })
}

fn reencode(img: RgbImage, reason: ReencodeReason) -> Result<Prepared<'static>, ImageError> {
    let bytes = encode_baseline_jpeg(&img, REENCODE_QUALITY)?;
    let header = parse_jpeg_header(&bytes)
        .map_err(|e| ImageError::Encode(format!("encoder output does not parse: {e}")))?;
    Ok(Prepared {
        bytes: Cow::Owned(bytes),
        width: img.width,
        height: img.height,
        reencoded: Some(reason),
        header,
        dropped_trailing_bytes: 0,
    })
}

/// Encode RGB pixels as a baseline, single-scan, 4:2:0 JFIF JPEG (standard Huffman tables).
pub fn encode_baseline_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let (Ok(w), Ok(h)) = (u16::try_from(img.width), u16::try_from(img.height)) else {
        return Err(ImageError::Encode(format!(
            "{}x{} is larger than JPEG allows (65535 pixels a side)",
            img.width, img.height
        )));
    };
    if w == 0 || h == 0 {
        return Err(ImageError::Encode(format!("empty image ({w}x{h})")));
    }
    let mut out = Vec::with_capacity(img.data.len() / 6 + 1024);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    // Optimised tables would make jpeg-encoder write one scan per component, which GPU
    // hardware decoders refuse; the standard tables keep a single interleaved scan.
    encoder
        .encode(&img.data, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::decode_rgb8;
    use crate::image::jpeg_header::{Process, Subsampling};

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/odd")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const RED: [u8; 3] = [220, 30, 30];
    const GREEN: [u8; 3] = [30, 200, 30];
    const BLUE: [u8; 3] = [30, 30, 220];
    const YELLOW: [u8; 3] = [230, 220, 40];

    /// Decode stored bytes and check the four-quadrant picture is shown upright, 32x24.
    fn assert_upright(bytes: &[u8], what: &str) {
        let img = decode_rgb8(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_upright_img(&img, what);
    }

    fn assert_upright_img(img: &RgbImage, what: &str) {
        assert_eq!((img.width, img.height), (32, 24), "{what}");
        let (w, h) = (img.width, img.height);
        let corners = [
            (1, 1, RED),
            (w - 2, 1, GREEN),
            (1, h - 2, BLUE),
            (w - 2, h - 2, YELLOW),
        ];
        for (x, y, want) in corners {
            let got = img.pixel(x, y).unwrap();
            let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 30);
            assert!(
                close,
                "{what}: pixel ({x},{y}) is {got:?}, want about {want:?}"
            );
        }
    }

    #[test]
    fn clean_jpegs_are_stored_as_is() {
        let cases = [
            ("baseline_420.jpg", Subsampling::S420, Process::Baseline),
            ("s444.jpg", Subsampling::S444, Process::Baseline),
            ("s422.jpg", Subsampling::S422, Process::Baseline),
            ("gray.jpg", Subsampling::Gray, Process::Baseline),
            ("progressive.jpg", Subsampling::S420, Process::Progressive),
            ("restart.jpg", Subsampling::S420, Process::Baseline),
        ];
        for (name, sub, process) in cases {
            let raw = fixture(name);
            for decode_check in [false, true] {
                let p = prepare(&raw, decode_check).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(matches!(p.bytes, Cow::Borrowed(_)), "{name}");
                assert_eq!(&p.bytes[..], &raw[..], "{name}");
                assert_eq!((p.width, p.height, p.reencoded), (32, 24, None), "{name}");
                assert_eq!(
                    (p.header.subsampling, p.header.process),
                    (sub, process),
                    "{name}"
                );
                assert_eq!(p.dropped_trailing_bytes, 0);
            }
            if name != "gray.jpg" {
                assert_upright(&raw, name);
            }
        }
        let raw = fixture("progressive.jpg");
        let p = prepare(&raw, false).unwrap();
        assert!(p.header.scans > 1 && !p.header.hardware_decodable());
        let raw = fixture("restart.jpg");
        let p = prepare(&raw, false).unwrap();
        assert!(p.header.restart_interval > 0 && p.header.hardware_decodable());
    }

    #[test]
    fn every_exif_orientation_is_applied() {
        let mut names: Vec<String> = (2..=8)
            .map(|o| format!("exif_orientation_{o}.jpg"))
            .collect();
        names.push("exif_orientation_6_be.jpg".into());
        for name in &names {
            let raw = fixture(name);
            let before = parse_jpeg_header(&raw).unwrap();
            assert!(before.orientation.is_some(), "{name}");
            let p = prepare(&raw, false).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.reencoded, Some(ReencodeReason::ExifOrientation), "{name}");
            assert_eq!((p.width, p.height), (32, 24), "{name}");
            assert_eq!((p.header.width, p.header.height), (32, 24), "{name}");
            assert!(
                !p.header.exif && p.header.orientation.is_none(),
                "{name}: EXIF kept"
            );
            assert!(p.header.hardware_decodable(), "{name}");
            assert_eq!(p.header.subsampling, Subsampling::S420);
            assert_upright(&p.bytes, name);
        }
        // Stored pixels really are rotated: decode without orientation gives 24x32.
        let raw = fixture("exif_orientation_6.jpg");
        assert_eq!(decode_rgb8(&raw).unwrap().width, 24);
        let shown = crate::image::decode_rgb8_oriented(&raw).unwrap();
        assert_eq!((shown.width, shown.height), (32, 24));
    }

    #[test]
    fn cmyk_becomes_rgb() {
        let raw = fixture("cmyk_adobe.jpg");
        let p = prepare(&raw, false).unwrap();
        assert_eq!(p.reencoded, Some(ReencodeReason::Cmyk));
        assert_eq!(p.header.color, ColorModel::YCbCr);
        assert_upright(&p.bytes, "cmyk_adobe.jpg");
        assert_upright_img(&decode_rgb8(&raw).unwrap(), "cmyk_adobe.jpg decoded");

        // Same file without the Adobe marker: values are read as plain ink amounts, so the
        // (inverted, K=255) samples come out black. Proves the marker decides the convention.
        let h = parse_jpeg_header(&raw).unwrap();
        assert_eq!(h.adobe_transform, Some(0));
        let at = raw
            .windows(7)
            .position(|w| w[0] == 0xFF && w[1] == 0xEE && &w[4..7] == b"Ado");
        let at = at.unwrap();
        let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
        let mut stripped = raw[..at].to_vec();
        stripped.extend_from_slice(&raw[at + 2 + len..]);
        let img = decode_rgb8(&stripped).unwrap();
        assert!(
            img.pixel(1, 1).unwrap().iter().all(|&v| v < 40),
            "{:?}",
            img.pixel(1, 1)
        );
    }

    #[test]
    fn other_formats_are_reencoded() {
        let cases = [
            ("png_as.jpg", ImageFormat::Png),
            ("gif_as.jpg", ImageFormat::Gif),
            ("bmp_as.jpg", ImageFormat::Bmp),
            ("webp_as.jpg", ImageFormat::Webp),
            ("tiff_as.jpg", ImageFormat::Tiff),
            ("png_rgba.jpg", ImageFormat::Png),
        ];
        for (name, format) in cases {
            let raw = fixture(name);
            let p = prepare(&raw, false).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.reencoded, Some(ReencodeReason::NotJpeg(format)), "{name}");
            assert_eq!(p.header.process, Process::Baseline);
            // png_rgba: the transparent right half keeps its colour (alpha dropped).
            assert_upright(&p.bytes, name);
        }
    }

    #[test]
    fn unusual_jpeg_variants() {
        // RGB without colour transform: readable, re-encoded.
        let raw = fixture("rgb_adobe.jpg");
        let p = prepare(&raw, false).unwrap();
        assert_eq!(p.reencoded, Some(ReencodeReason::UnsupportedJpegVariant));
        assert_upright(&p.bytes, "rgb_adobe.jpg");

        // Lossless: decoded exactly by the fallback decoder, then re-encoded.
        let raw = fixture("lossless.jpg");
        let img = decode_rgb8(&raw).unwrap();
        assert_eq!((img.width, img.height), (32, 24));
        for y in 0..24u32 {
            for x in 0..32u32 {
                let v = ((7 * x + 3 * y) % 256) as u8;
                assert_eq!(img.pixel(x, y), Some([v, v, v]), "({x},{y})");
            }
        }
        let p = prepare(&raw, true).unwrap();
        assert_eq!(p.reencoded, Some(ReencodeReason::UnsupportedJpegVariant));
        assert_eq!(
            (p.width, p.height, p.header.process),
            (32, 24, Process::Baseline)
        );

        // Arithmetic coding and 12-bit: flagged from the header, refused with the reason.
        let base = fixture("baseline_420.jpg");
        let sof = base.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut arith = base.clone();
        arith[sof + 1] = 0xC9;
        let e = prepare(&arith, false).unwrap_err();
        assert!(matches!(e, ImageError::UnsupportedVariant { .. }), "{e}");
        assert!(e.to_string().contains("arithmetic coding"), "{e}");
        let mut twelve = base.clone();
        twelve[sof + 1] = 0xC1;
        twelve[sof + 4] = 12;
        let e = prepare(&twelve, false).unwrap_err();
        assert!(e.to_string().contains("12-bit samples"), "{e}");
    }

    #[test]
    fn data_after_end_of_image_is_cut() {
        let base = fixture("baseline_420.jpg");
        for name in ["trailing_garbage.jpg", "zero_padded.jpg"] {
            let raw = fixture(name);
            let p = prepare(&raw, true).unwrap();
            assert!(matches!(p.bytes, Cow::Borrowed(_)));
            assert_eq!(&p.bytes[..], &base[..], "{name}");
            assert_eq!(p.dropped_trailing_bytes, raw.len() - base.len());
            assert_eq!(p.header.trailing_bytes, 0);
            assert_eq!(p.reencoded, None);
        }
    }

    #[test]
    fn bad_files_have_precise_reasons() {
        let msg = |name: &str| prepare(&fixture(name), false).unwrap_err().to_string();
        assert_eq!(msg("empty.jpg"), "empty file");
        assert_eq!(msg("text.jpg"), "not an image (a text file (21 bytes))");
        let len = fixture("truncated.jpg").len();
        assert_eq!(
            msg("truncated.jpg"),
            format!(
                "truncated JPEG: no end-of-image marker (file ends at byte {len}); \
                 the file is incomplete, re-download or re-export it"
            )
        );
        // Corrupt entropy data: the marker walk cannot see it, the decode check can.
        let corrupt = fixture("corrupt_data.jpg");
        assert!(prepare(&corrupt, false).is_ok());
        let e = prepare(&corrupt, true).unwrap_err();
        assert!(matches!(e, ImageError::Decode { .. }), "{e}");
        assert!(
            e.to_string().starts_with("cannot decode jpeg data: "),
            "{e}"
        );
    }

    #[test]
    fn reasons_are_stable_strings() {
        assert_eq!(ReencodeReason::ExifOrientation.as_str(), "exif_orientation");
        assert_eq!(ReencodeReason::Cmyk.as_str(), "cmyk");
        assert_eq!(
            ReencodeReason::UnsupportedJpegVariant.as_str(),
            "unsupported_jpeg_variant"
        );
        let json = serde_json::to_string(&ReencodeReason::NotJpeg(ImageFormat::Png)).unwrap();
        assert_eq!(json, "\"not_jpeg_png\"");
    }

    #[test]
    fn reencode_is_deterministic() {
        let raw = fixture("exif_orientation_5.jpg");
        let a = prepare(&raw, false).unwrap();
        let b = prepare(&raw, false).unwrap();
        assert_eq!(a.bytes, b.bytes);
    }

    #[test]
    fn fuzz_prepare_never_panics() {
        use crate::image::jpeg_header::tests::{mutate, Rng};
        let sources: Vec<Vec<u8>> = [
            "baseline_420.jpg",
            "progressive.jpg",
            "exif_orientation_6.jpg",
            "cmyk_adobe.jpg",
            "lossless.jpg",
            "png_as.jpg",
            "gif_as.jpg",
        ]
        .iter()
        .map(|n| fixture(n))
        .collect();
        let mut rng = Rng(0xdead_beef_0bad_f00d);
        for i in 0..3000 {
            let m = mutate(&mut rng, &sources[i % sources.len()]);
            if let Ok(p) = prepare(&m, i % 2 == 0) {
                assert!(p.width > 0 && p.height > 0);
                assert_eq!(p.header.jpeg_len(), p.bytes.len());
            }
        }
    }
}
