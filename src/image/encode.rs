//! Baseline JPEG encoding through libjpeg-turbo (`turbojpeg`): 4:2:0, one interleaved scan,
//! standard Huffman tables, JFIF, no EXIF — what GPU hardware decoders take.
//!
//! Why libjpeg-turbo and not `jpeg-encoder`: about 3.5× faster (SIMD DCT, colour conversion and
//! Huffman), and it takes Y/Cb/Cr planes directly, so `presize` never converts to RGB.

use super::resize::Plane;
use super::ImageError;
use std::cell::RefCell;
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp, YuvPlanesImage};

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
}

fn enc_err(e: turbojpeg::Error) -> ImageError {
    ImageError::Encode(e.to_string())
}

fn with_compressor<T>(
    quality: u8,
    subsamp: Subsamp,
    f: impl FnOnce(&mut Compressor) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Compressor::new().map_err(enc_err)?);
        }
        let Some(c) = slot.as_mut() else {
            return Err(ImageError::Encode("no compressor".into()));
        };
        c.set_quality(i32::from(quality.clamp(1, 100)))
            .map_err(enc_err)?;
        c.set_subsamp(subsamp).map_err(enc_err)?;
        // Baseline, standard tables: one interleaved scan (optimised or progressive output
        // would cost GPU hardware decode support or time).
        c.set_progressive(false).map_err(enc_err)?;
        c.set_optimize(false).map_err(enc_err)?;
        f(c)
    })
}

fn check_size(w: usize, h: usize) -> Result<(), ImageError> {
    if w == 0 || h == 0 || w > 65_535 || h > 65_535 {
        return Err(ImageError::Encode(format!(
            "{w}x{h} cannot be a JPEG (1..65535 pixels a side)"
        )));
    }
    Ok(())
}

/// Encode Y (W×H) and Cb/Cr (⌈W/2⌉×⌈H/2⌉) planes as a 4:2:0 JPEG.
pub fn encode_ycc420(
    y: &Plane,
    cb: &Plane,
    cr: &Plane,
    quality: u8,
) -> Result<Vec<u8>, ImageError> {
    let (w, h) = (y.width, y.height);
    check_size(w, h)?;
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    for (name, p) in [("Y", y), ("Cb", cb), ("Cr", cr)] {
        let (pw, ph) = if name == "Y" { (w, h) } else { (cw, ch) };
        if p.channels != 1 || p.width != pw || p.height != ph || p.data.len() != pw * ph {
            return Err(ImageError::Encode(format!(
                "internal: {name} plane is {}x{}x{} ({} bytes), expected {pw}x{ph}",
                p.width,
                p.height,
                p.channels,
                p.data.len()
            )));
        }
    }
    // libjpeg-turbo reads luma in whole chroma samples (even width and height): pad by
    // repeating the last column/row, as its own RGB path does, so the padding never rings into
    // visible pixels.
    let padded;
    let (luma, stride) = if w % 2 == 0 && h % 2 == 0 {
        (&y.data[..], w)
    } else {
        padded = pad_even(y);
        (&padded[..], w + w % 2)
    };
    let image = YuvPlanesImage {
        y_plane: luma,
        u_plane: &cb.data[..],
        v_plane: &cr.data[..],
        width: w,
        height: h,
        y_stride: stride,
        u_stride: cw,
        v_stride: cw,
        subsamp: Subsamp::Sub2x2,
    };
    with_compressor(quality, Subsamp::Sub2x2, |c| {
        c.compress_yuv_planes_to_vec(&image).map_err(enc_err)
    })
}

fn pad_even(p: &Plane) -> Vec<u8> {
    let (w, h) = (p.width, p.height);
    let (pw, ph) = (w + w % 2, h + h % 2);
    let mut out = vec![0u8; pw * ph];
    for row in 0..ph {
        let src_row = row.min(h - 1);
        let (Some(src), Some(dst)) = (
            p.data.get(src_row * w..src_row * w + w),
            out.get_mut(row * pw..row * pw + pw),
        ) else {
            continue;
        };
        dst[..w].copy_from_slice(src);
        if pw > w {
            dst[w] = src[w - 1];
        }
    }
    out
}

/// Encode one gray plane as a single-component JPEG.
pub fn encode_gray(y: &Plane, quality: u8) -> Result<Vec<u8>, ImageError> {
    check_size(y.width, y.height)?;
    if y.channels != 1 || y.data.len() != y.width * y.height {
        return Err(ImageError::Encode("internal: bad gray plane".into()));
    }
    let image = Image {
        pixels: &y.data[..],
        width: y.width,
        pitch: y.width,
        height: y.height,
        format: PixelFormat::GRAY,
    };
    with_compressor(quality, Subsamp::Gray, |c| {
        c.compress_to_vec(image).map_err(enc_err)
    })
}

/// Encode interleaved RGB as a 4:2:0 JPEG.
pub fn encode_rgb420(rgb: &Plane, quality: u8) -> Result<Vec<u8>, ImageError> {
    check_size(rgb.width, rgb.height)?;
    if rgb.channels != 3 || rgb.data.len() != rgb.width * rgb.height * 3 {
        return Err(ImageError::Encode("internal: bad RGB plane".into()));
    }
    let image = Image {
        pixels: &rgb.data[..],
        width: rgb.width,
        pitch: rgb.width * 3,
        height: rgb.height,
        format: PixelFormat::RGB,
    };
    with_compressor(quality, Subsamp::Sub2x2, |c| {
        c.compress_to_vec(image).map_err(enc_err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::jpeg_header::{parse_jpeg_header, Process, Subsampling};

    fn plane(w: usize, h: usize, v: u8) -> Plane {
        Plane {
            width: w,
            height: h,
            channels: 1,
            data: vec![v; w * h],
        }
    }

    #[test]
    fn odd_sized_420_is_baseline_single_scan() {
        let (w, h) = (37, 21);
        let out = encode_ycc420(
            &plane(w, h, 128),
            &plane(19, 11, 90),
            &plane(19, 11, 160),
            90,
        )
        .unwrap();
        let hdr = parse_jpeg_header(&out).unwrap();
        assert_eq!((hdr.width, hdr.height), (37, 21));
        assert_eq!(hdr.process, Process::Baseline);
        assert_eq!(hdr.subsampling, Subsampling::S420);
        assert_eq!(hdr.scans, 1);
        assert!(!hdr.exif);
        assert!(hdr.hardware_decodable());
    }

    #[test]
    fn wrong_chroma_size_is_an_error() {
        let r = encode_ycc420(&plane(8, 8, 1), &plane(3, 4, 1), &plane(4, 4, 1), 90);
        assert!(r.is_err());
        assert!(encode_ycc420(&plane(0, 0, 1), &plane(0, 0, 1), &plane(0, 0, 1), 90).is_err());
    }

    #[test]
    fn gray_and_rgb_encode() {
        let g = encode_gray(&plane(10, 7, 50), 90).unwrap();
        let hdr = parse_jpeg_header(&g).unwrap();
        assert_eq!(hdr.subsampling, Subsampling::Gray);
        let rgb = Plane {
            width: 9,
            height: 5,
            channels: 3,
            data: vec![200; 9 * 5 * 3],
        };
        let out = encode_rgb420(&rgb, 90).unwrap();
        let hdr = parse_jpeg_header(&out).unwrap();
        assert_eq!(
            (hdr.width, hdr.height, hdr.subsampling),
            (9, 5, Subsampling::S420)
        );
    }
}
