//! Strict JPEG → RGB8 decode by libjpeg-turbo (SIMD) into a reused buffer, optionally at 1/2,
//! 1/4 or 1/8 scale in the DCT domain: the decoder of the CPU throughput fast path
//! (`throughput::fast`).
//!
//! Why not [`super::decode_rgb8`]: that is the exact reference (zune-jpeg plus a 1/8-scale
//! re-walk of the scan to catch cut data), 1.2–1.6× slower than libjpeg-turbo, unable to decode
//! at reduced size, and it allocates the output per image. Here a [`RgbDecoder`] per thread
//! keeps its libjpeg-turbo handle and its pixel buffer, so steady state allocates no
//! image-sized memory.
//!
//! Strict like the reference: the file must pass the marker walk ([`parse_jpeg_header`]: cut
//! files, damaged markers, decompression bombs) and libjpeg-turbo must finish without a
//! warning. TurboJPEG 3 makes `tj3Decompress8` return -1 when libjpeg emitted any warning
//! ("premature end of data segment" for a scan cut short, "bad Huffman code", "extraneous
//! bytes before marker", a missing restart marker...), and the `turbojpeg` crate turns that into
//! an error: such a record is undecodable, never a half-grey image.
//!
//! What libjpeg-turbo is not given (CMYK/YCCK, lossless, 12-bit, arithmetic coding, non-JPEG
//! payloads) goes through the reference decoder instead, at full size, equally strict.

use super::decode::{check_declared_size, decode_rgb8};
use super::jpeg_header::{parse_jpeg_header, ColorModel};
use super::sniff::{sniff, ImageFormat};
use super::ImageError;
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

/// Where the pixels of the last [`RgbDecoder::decode`] are, and what they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decoded {
    /// Size of the stored image (what the header declares; boxes are relative to it).
    pub width: u32,
    pub height: u32,
    /// Size of the decoded pixel grid: `ceil(width / denom)` × `ceil(height / denom)`.
    pub grid_w: usize,
    pub grid_h: usize,
    /// The picture's exact extent in grid pixels (`width / denom`, `height / denom`): the last
    /// column/row of the grid covers only part of a scaled pixel when the size is not a
    /// multiple of `denom`.
    pub extent: (f64, f64),
    /// DCT scaling denominator used (1, 2, 4 or 8).
    pub denom: u32,
    /// Which decoder produced the pixels.
    pub by: DecodedBy,
}

/// The decoder behind a [`Decoded`] image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodedBy {
    LibjpegTurbo,
    /// The reference decoder ([`decode_rgb8`]): formats libjpeg-turbo is not given.
    Reference,
}

/// One thread's decoder: a libjpeg-turbo handle and the RGB buffer it decodes into.
pub struct RgbDecoder {
    dec: Option<Decompressor>,
    pixels: Vec<u8>,
}

impl Default for RgbDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RgbDecoder {
    /// A decoder; the libjpeg-turbo handle is made on first use.
    pub fn new() -> Self {
        Self {
            dec: None,
            pixels: Vec::new(),
        }
    }

    /// The pixels of the last successful decode: interleaved RGB8, `grid_w × grid_h`, rows
    /// packed.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Decodes `bytes` to RGB8. `denom_for(width, height)` picks the DCT scaling denominator
    /// (1, 2, 4 or 8; anything else means 1) once the size is known; formats only the reference
    /// decoder reads are always decoded at full size.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        denom_for: impl FnOnce(u32, u32) -> u32,
    ) -> Result<Decoded, ImageError> {
        if sniff(bytes) != ImageFormat::Jpeg {
            return self.reference(bytes);
        }
        let header = parse_jpeg_header(bytes)?;
        check_declared_size(&header, bytes.len())?;
        let turbo_reads = header.is_common_8bit()
            && matches!(
                header.color,
                ColorModel::Gray | ColorModel::YCbCr | ColorModel::Rgb
            );
        if !turbo_reads {
            return self.reference(bytes);
        }
        let err = |e: turbojpeg::Error| ImageError::decode(ImageFormat::Jpeg, e);
        if self.dec.is_none() {
            self.dec = Some(Decompressor::new().map_err(err)?);
        }
        let Some(dec) = self.dec.as_mut() else {
            return Err(ImageError::decode(ImageFormat::Jpeg, "no decompressor"));
        };
        let tj = dec.read_header(bytes).map_err(err)?;
        if (tj.width, tj.height) != (header.width as usize, header.height as usize) {
            return Err(ImageError::decode(
                ImageFormat::Jpeg,
                format!(
                    "libjpeg-turbo reads {}x{}, the header walk {}x{}",
                    tj.width, tj.height, header.width, header.height
                ),
            ));
        }
        let denom = match denom_for(header.width, header.height) {
            d @ (2 | 4 | 8) if !tj.is_lossless => d,
            _ => 1,
        };
        let factor = ScalingFactor::new(1, denom as usize);
        dec.set_scaling_factor(factor).map_err(err)?;
        let (gw, gh) = (factor.scale(tj.width), factor.scale(tj.height));
        // Grows once to the largest image a thread has seen, then only reuses the capacity.
        self.pixels.resize(gw * gh * 3, 0);
        let out = Image {
            pixels: &mut self.pixels[..],
            width: gw,
            pitch: gw * 3,
            height: gh,
            format: PixelFormat::RGB,
        };
        dec.decompress(bytes, out).map_err(err)?;
        Ok(Decoded {
            width: header.width,
            height: header.height,
            grid_w: gw,
            grid_h: gh,
            extent: (
                f64::from(header.width) / f64::from(denom),
                f64::from(header.height) / f64::from(denom),
            ),
            denom,
            by: DecodedBy::LibjpegTurbo,
        })
    }

    /// The reference decoder at full size (rare formats: allocates, then copies into the
    /// reused buffer).
    fn reference(&mut self, bytes: &[u8]) -> Result<Decoded, ImageError> {
        let img = decode_rgb8(bytes)?;
        self.pixels.clear();
        self.pixels.extend_from_slice(&img.data);
        Ok(Decoded {
            width: img.width,
            height: img.height,
            grid_w: img.width as usize,
            grid_h: img.height as usize,
            extent: (f64::from(img.width), f64::from(img.height)),
            denom: 1,
            by: DecodedBy::Reference,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..w * h * 3)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                // Smooth-ish content plus grain, so the file has a long scan.
                let x = (i / 3) % w;
                ((x * 255 / w.max(1)) as u8).wrapping_add((s & 63) as u8)
            })
            .collect()
    }

    fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let img = crate::image::RgbImage {
            width: w,
            height: h,
            data: noise(w, h, seed),
        };
        crate::image::encode_baseline_jpeg(&img, 90).unwrap()
    }

    /// Start of the entropy-coded data: just past the SOS segment.
    fn scan_start(j: &[u8]) -> usize {
        let sos = j.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        sos + 2 + usize::from(u16::from_be_bytes([j[sos + 2], j[sos + 3]]))
    }

    #[test]
    fn full_size_matches_the_reference_within_a_few_levels() {
        let j = jpeg(97, 61, 3);
        let mut d = RgbDecoder::new();
        let got = d.decode(&j, |_, _| 1).unwrap();
        assert_eq!(
            (got.width, got.height, got.grid_w, got.grid_h),
            (97, 61, 97, 61)
        );
        assert_eq!(got.by, DecodedBy::LibjpegTurbo);
        let want = decode_rgb8(&j).unwrap();
        let max = d
            .pixels()
            .iter()
            .zip(&want.data)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        // Different IDCT and upsampling rounding: a few levels on noise (the worst case).
        assert!(max <= 6, "max difference {max}");
    }

    #[test]
    fn scaled_decode_gives_the_rounded_up_grid_and_the_exact_extent() {
        let j = jpeg(203, 101, 4);
        let mut d = RgbDecoder::new();
        let got = d
            .decode(&j, |w, h| if w > 200 && h > 100 { 4 } else { 1 })
            .unwrap();
        assert_eq!((got.grid_w, got.grid_h, got.denom), (51, 26, 4));
        assert_eq!(got.extent, (50.75, 25.25));
        assert_eq!(d.pixels().len(), 51 * 26 * 3);
        // Odd requests mean full size.
        assert_eq!(d.decode(&j, |_, _| 3).unwrap().denom, 1);
    }

    #[test]
    fn a_cut_scan_is_an_error_with_or_without_an_end_marker() {
        let j = jpeg(128, 96, 5);
        let s = scan_start(&j);
        let mut d = RgbDecoder::new();
        for frac in [0.1, 1.0 / 3.0, 0.5, 0.9, 0.99] {
            let cut = s + ((j.len() - 2 - s) as f64 * frac) as usize;
            let mut with_eoi = j[..cut].to_vec();
            with_eoi.extend_from_slice(&[0xFF, 0xD9]);
            for (what, bytes) in [("with EOI", with_eoi), ("bare", j[..cut].to_vec())] {
                for denom in [1, 2, 8] {
                    assert!(
                        d.decode(&bytes, |_, _| denom).is_err(),
                        "cut at {frac} {what}, 1/{denom}: decoded"
                    );
                }
            }
        }
        // The decoder is still usable afterwards.
        assert!(d.decode(&j, |_, _| 1).is_ok());
    }

    #[test]
    fn a_corrupt_scan_is_an_error() {
        let j = jpeg(128, 96, 6);
        let s = scan_start(&j);
        let mut d = RgbDecoder::new();
        // A run of garbage in the middle of the scan (no 0xFF, so no marker is made): the
        // Huffman decode goes astray and libjpeg warns.
        let mut bad = j.clone();
        let mid = s + (j.len() - s) / 2;
        for (k, b) in bad[mid..mid + 64].iter_mut().enumerate() {
            *b = (k as u8).wrapping_mul(37) & 0x7F;
        }
        assert!(d.decode(&bad, |_, _| 1).is_err());
        assert!(decode_rgb8(&bad).is_err(), "the reference rejects it too");
        // A restart-like marker inside the scan of a file without restart intervals.
        let mut rst = j.clone();
        rst[mid] = 0xFF;
        rst[mid + 1] = 0xD3;
        assert!(d.decode(&rst, |_, _| 1).is_err());
    }

    #[test]
    fn other_formats_go_through_the_reference() {
        let mut d = RgbDecoder::new();
        let mut png = Vec::new();
        image::RgbImage::from_pixel(5, 4, image::Rgb([10, 20, 30]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let got = d.decode(&png, |_, _| 8).unwrap();
        assert_eq!(
            (got.width, got.height, got.denom, got.by),
            (5, 4, 1, DecodedBy::Reference)
        );
        assert_eq!(&d.pixels()[..3], &[10, 20, 30]);
        assert!(d.decode(b"not an image", |_, _| 1).is_err());
        assert!(d.decode(&[], |_, _| 1).is_err());
    }
}
