//! Full CPU decode to 8-bit RGB: the reference the GPU decoders are tested against, the
//! `--decode-check` / `verify --decode` check, and the first half of every re-encode.
//!
//! JPEG goes through zune-jpeg directly (not through `image`) so CMYK can be taken raw and
//! converted with the right inversion convention, and in strict mode so corrupt entropy-coded
//! data is an error instead of grey blocks. Lossless JPEG, which zune-jpeg does not read, falls
//! back to jpeg-decoder. Everything else goes through the `image` crate.
//!
//! Strict means libjpeg's warnings are errors: bad Huffman codes, data running out before the
//! last block, stray markers, more than 3 junk bytes between header segments.
//!
//! Alpha is dropped, not composited: that is what `PIL.Image.convert("RGB")` and
//! `tf.io.decode_image(channels=3)` do, so the stored image matches what a training script
//! reading the original file would have seen. Animated GIF/WebP: first frame.

use super::exif::{apply_orientation, Orientation};
use super::jpeg_header::{parse_jpeg_header, ColorModel, JpegHeader, Process, Subsampling};
use super::sniff::{sniff, ImageFormat};
use super::ImageError;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// Largest image (in pixels) we decode: 2^28 ≈ 268 MP, 805 MB as RGB. Bigger inputs are
/// decompression bombs or scans that need downscaling anyway; refusing them keeps memory bounded
/// when many images decode at once.
pub const MAX_DECODE_PIXELS: u64 = 1 << 28;

/// Tightly packed 8-bit RGB, row-major, no padding: `data.len() == width * height * 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Pixel at (x, y); `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let p = self.data.get(i..i + 3)?;
        Some([p[0], p[1], p[2]])
    }
}

/// Decode any supported image to RGB, stored orientation (EXIF is *not* applied: this is the
/// reference for decoders that ignore EXIF, e.g. nvJPEG). JPEGs must be complete (see
/// [`parse_jpeg_header`]) and decode without errors.
pub fn decode_rgb8(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    decode_with_orientation(bytes).map(|(img, _)| img)
}

/// Decode and apply the file's orientation (JPEG EXIF, PNG eXIf, TIFF/WebP orientation): the
/// image as a viewer (and an annotation tool) displays it.
pub fn decode_rgb8_oriented(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let (img, o) = decode_with_orientation(bytes)?;
    Ok(apply_orientation(img, o))
}

fn decode_with_orientation(bytes: &[u8]) -> Result<(RgbImage, Orientation), ImageError> {
    match sniff(bytes) {
        ImageFormat::Jpeg => {
            let header = parse_jpeg_header(bytes)?;
            check_declared_size(&header, bytes.len())?;
            let img = decode_jpeg(bytes, &header)?;
            Ok((img, header.orientation.unwrap_or(Orientation::Normal)))
        }
        ImageFormat::Unknown => Err(ImageError::not_an_image(bytes)),
        format => decode_other(bytes, format),
    }
}

/// What a JPEG header declares, checked against the file before any decode: the pixel limit,
/// and at least one bit per 8×8 block (a complete baseline or progressive scan codes every
/// block with at least one bit, so a file with fewer than `pixels / 512` bytes was cut short
/// or crafted to make a decoder allocate and fill a huge image).
pub fn check_declared_size(header: &JpegHeader, file_len: usize) -> Result<(), ImageError> {
    check_size(header.width, header.height)?;
    let pixels = u64::from(header.width) * u64::from(header.height);
    let needed = pixels / 512;
    if (file_len as u64) < needed {
        return Err(ImageError::Truncated {
            what: "fewer bytes than the declared size needs (at least one bit per 8x8 block)",
            len: file_len,
        });
    }
    Ok(())
}

pub(crate) fn check_size(width: u32, height: u32) -> Result<(), ImageError> {
    if u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS {
        return Err(ImageError::TooLarge {
            width,
            height,
            limit: MAX_DECODE_PIXELS,
        });
    }
    Ok(())
}

/// Decode a JPEG whose header was already parsed (strict: corrupt data is an error, and so is
/// scan data that ends before the last block, see [`check_scan_complete`]).
pub(crate) fn decode_jpeg(bytes: &[u8], header: &JpegHeader) -> Result<RgbImage, ImageError> {
    let img = decode_jpeg_pixels(bytes, header)?;
    check_scan_complete(bytes, header)?;
    Ok(img)
}

/// Refuses a JPEG whose entropy-coded data ends before every block the header declares was
/// coded — say a file cut short with an end-of-image marker appended. zune-jpeg (even strict)
/// and jpeg-decoder fill the missing blocks with grey and report nothing; this walks the scan
/// again at 1/8 scale (DC only: dsprep's own reduced decoder for baseline files, which counts
/// the bits it is fed past a marker, else libjpeg-turbo, whose "premature end of data" warning
/// is an error here), at a fraction of the cost of the full decode.
pub(crate) fn check_scan_complete(bytes: &[u8], header: &JpegHeader) -> Result<(), ImageError> {
    // What the 1/8 walk reads (the colour models presize reads); CMYK/YCCK and the rest are
    // left to the strict full decode.
    if !header.is_common_8bit() || !matches!(header.color, ColorModel::Gray | ColorModel::YCbCr) {
        return Ok(());
    }
    super::scaled_decode::decode_scaled(bytes, 1, MAX_DECODE_PIXELS)
        .map(|_| ())
        .map_err(|e| {
            ImageError::decode(
                ImageFormat::Jpeg,
                format!("the scan data is incomplete or damaged: {e}"),
            )
        })
}

fn decode_jpeg_pixels(bytes: &[u8], header: &JpegHeader) -> Result<RgbImage, ImageError> {
    check_size(header.width, header.height)?;
    let zune_color = matches!(
        header.color,
        ColorModel::Gray
            | ColorModel::YCbCr
            | ColorModel::Rgb
            | ColorModel::Cmyk
            | ColorModel::Ycck
    );
    // zune-jpeg 0.5 mis-decodes sequential files with one scan per component (valid, written
    // e.g. by jpeg-encoder with optimised tables); jpeg-decoder gets them right.
    let sequential_multi_scan = header.scans > 1 && header.process != Process::Progressive;
    if header.is_common_8bit() && sequential_multi_scan {
        return decode_jpeg_decoder(bytes, header);
    }
    if header.is_common_8bit() && zune_color {
        return match decode_zune(bytes, header) {
            // zune-jpeg refuses a few legal-but-odd sampling layouts; jpeg-decoder may not.
            // Only then: jpeg-decoder is lenient with corrupt data, which would defeat the
            // strict check for ordinary files.
            Err(e) if header.subsampling == Subsampling::Other => {
                decode_jpeg_decoder(bytes, header).map_err(|_| e)
            }
            other => other,
        };
    }
    let what = header
        .unusual_variant()
        .unwrap_or_else(|| "unusual JPEG".to_string());
    let lossless_ok = header.process == Process::Lossless
        && !header.arithmetic
        && !header.differential
        && matches!(header.components.len(), 1 | 3);
    if !lossless_ok {
        return Err(ImageError::UnsupportedVariant {
            what,
            reason: "no decoder here reads it".to_string(),
        });
    }
    decode_jpeg_decoder(bytes, header).map_err(|e| match e {
        ImageError::Decode { reason, .. } => ImageError::UnsupportedVariant { what, reason },
        other => other,
    })
}

fn decode_zune(bytes: &[u8], header: &JpegHeader) -> Result<RgbImage, ImageError> {
    let cmyk_raw = header.color == ColorModel::Cmyk;
    let out = if cmyk_raw {
        ColorSpace::CMYK
    } else {
        ColorSpace::RGB
    };
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_out_colorspace(out);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder
        .decode()
        .map_err(|e| ImageError::decode(ImageFormat::Jpeg, format!("{e:?}")))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| ImageError::decode(ImageFormat::Jpeg, "no dimensions after decode"))?;
    let (width, height) = (w as u32, h as u32);
    let n = w * h;
    if cmyk_raw {
        if pixels.len() != n * 4 {
            return Err(size_mismatch(pixels.len(), n * 4));
        }
        let inverted = header.adobe_transform.is_some();
        return Ok(RgbImage {
            width,
            height,
            data: cmyk_to_rgb(&pixels, inverted),
        });
    }
    if pixels.len() != n * 3 {
        return Err(size_mismatch(pixels.len(), n * 3));
    }
    Ok(RgbImage {
        width,
        height,
        data: pixels,
    })
}

fn size_mismatch(got: usize, want: usize) -> ImageError {
    ImageError::decode(
        ImageFormat::Jpeg,
        format!("decoder returned {got} bytes, expected {want}"),
    )
}

/// CMYK samples to RGB. Adobe-written files (APP14 present; Photoshop, libjpeg, Pillow) store
/// inverted values (255 = no ink), so R = C·K/255; files without the marker store plain ink
/// amounts, R = (255−C)(255−K)/255. Same rule as Pillow and libjpeg-based viewers.
pub(crate) fn cmyk_to_rgb(cmyk: &[u8], adobe_inverted: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let (c, m, y, k) = if adobe_inverted {
            (p[0], p[1], p[2], p[3])
        } else {
            (255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3])
        };
        out.extend_from_slice(&[mul255(c, k), mul255(m, k), mul255(y, k)]);
    }
    out
}

/// a·b/255, rounded.
#[inline]
fn mul255(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    ((t + (t >> 8)) >> 8) as u8
}

/// jpeg-decoder: lossless JPEG, sequential multi-scan files, and a fallback for sampling
/// layouts zune-jpeg refuses.
fn decode_jpeg_decoder(bytes: &[u8], header: &JpegHeader) -> Result<RgbImage, ImageError> {
    let ncomp = header.components.len();
    if !matches!(ncomp, 1 | 3 | 4) {
        // jpeg-decoder panics on other component counts; never hand them over.
        return Err(ImageError::decode(
            ImageFormat::Jpeg,
            format!("{ncomp} components"),
        ));
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(MAX_DECODE_PIXELS as usize * 6);
    let raw = decoder
        .decode()
        .map_err(|e| ImageError::decode(ImageFormat::Jpeg, e))?;
    let (w, h) = (header.width as usize, header.height as usize);
    let n = w * h * ncomp;
    // Above 8 bits jpeg-decoder returns native-endian u16 samples; scale down to 8 bits.
    let samples: Vec<u8> = if raw.len() == n * 2 && header.precision > 8 {
        let shift = header.precision - 8;
        raw.chunks_exact(2)
            .map(|b| (u16::from_ne_bytes([b[0], b[1]]) >> shift).min(255) as u8)
            .collect()
    } else if raw.len() == n {
        raw
    } else {
        return Err(size_mismatch(raw.len(), n));
    };
    let data = match ncomp {
        1 => samples.iter().flat_map(|&v| [v, v, v]).collect(),
        // jpeg-decoder undoes the Adobe inversion (and YCCK) itself: these are ink amounts.
        4 => cmyk_to_rgb(&samples, false),
        _ => samples,
    };
    Ok(RgbImage {
        width: header.width,
        height: header.height,
        data,
    })
}

/// PNG, GIF, BMP, WebP, TIFF through the `image` crate, with the file's own orientation.
pub(crate) fn decode_other(
    bytes: &[u8],
    format: ImageFormat,
) -> Result<(RgbImage, Orientation), ImageError> {
    use image::ImageDecoder;
    let fmt = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Unknown => return Err(ImageError::not_an_image(bytes)),
    };
    let err = |e: image::ImageError| ImageError::decode(format, e);
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), fmt);
    let mut decoder = reader.into_decoder().map_err(err)?;
    let (w, h) = decoder.dimensions();
    check_size(w, h)?;
    let mut limits = image::Limits::default();
    // Room for a 16-bit RGBA buffer of the largest allowed image plus decoder scratch.
    limits.max_alloc = Some(MAX_DECODE_PIXELS * 8 + (64 << 20));
    decoder.set_limits(limits).map_err(err)?;
    let orientation = decoder
        .orientation()
        .ok()
        .and_then(|o| Orientation::from_exif(u32::from(o.to_exif())))
        .unwrap_or(Orientation::Normal);
    let img = image::DynamicImage::from_decoder(decoder).map_err(err)?;
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    Ok((
        RgbImage {
            width,
            height,
            data: rgb.into_raw(),
        },
        orientation,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conventions() {
        // Adobe inverted: 255 = no ink → white; K 0 → black.
        assert_eq!(
            cmyk_to_rgb(&[255, 255, 255, 255], true),
            vec![255, 255, 255]
        );
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 0], true), vec![0, 0, 0]);
        assert_eq!(cmyk_to_rgb(&[0, 255, 255, 255], true), vec![0, 255, 255]);
        // Plain ink amounts: 0 = no ink → white.
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0], false), vec![255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[255, 0, 0, 0], false), vec![0, 255, 255]);
        assert_eq!(mul255(128, 255), 128);
        assert_eq!(mul255(255, 255), 255);
    }

    /// zune-jpeg 0.5 gets sequential one-scan-per-component files wrong (red comes out
    /// green); they must go through jpeg-decoder.
    #[test]
    fn sequential_multi_scan_decodes_correctly() {
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/odd/rgb_adobe.jpg"
        ))
        .unwrap();
        let img = decode_rgb8(&raw).unwrap();
        let mut multi = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut multi, 95);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
        enc.set_optimized_huffman_tables(true);
        enc.encode(&img.data, 32, 24, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let h = parse_jpeg_header(&multi).unwrap();
        assert_eq!((h.process, h.scans), (Process::Baseline, 3));
        let back = decode_rgb8(&multi).unwrap();
        let px = back.pixel(1, 1).unwrap();
        assert!(px[0] > 190 && px[1] < 60 && px[2] < 60, "{px:?}");
    }

    #[test]
    fn size_limit() {
        assert!(check_size(16384, 16384).is_ok());
        let e = check_size(65535, 65535).unwrap_err();
        assert!(e.to_string().contains("65535x65535"), "{e}");
    }
}
