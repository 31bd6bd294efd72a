//! What the GPU readers need from a JPEG before any decoder runs: the frame size (to place the
//! decoded image in the batch's device arena) and whether the hardware engines take it (to
//! route obvious misfits to the CUDA decoder up front; nvJPEG's own check still runs in the
//! hardware decoder). Both come from the one header parser, [`crate::image::jpeg_header`],
//! walked only up to the first scan: per image, on the readers' hot path.

use crate::image::jpeg_header::parse_jpeg_header_until_scan;

/// Facts of one JPEG frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// [`crate::image::jpeg_header::JpegHeader::hardware_decodable`]: baseline, one scan,
    /// gray or YCbCr, a subsampling the engines take.
    pub hardware: bool,
}

/// The frame of `jpeg`, or why the record cannot be used (for the bad-record list).
pub fn frame_of(jpeg: &[u8]) -> Result<Frame, String> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG (no start-of-image marker)".into());
    }
    let h = parse_jpeg_header_until_scan(jpeg).map_err(|e| e.to_string())?;
    // The declared size is checked before it sizes any device allocation (pixel limit, one
    // bit per 8x8 block), as on every CPU path.
    crate::image::decode::check_declared_size(&h, jpeg.len()).map_err(|e| e.to_string())?;
    if h.height == 0 {
        return Err(format!(
            "frame size {}x0 (height from a DNL marker is not supported)",
            h.width
        ));
    }
    Ok(Frame {
        width: h.width,
        height: h.height,
        hardware: h.hardware_decodable(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/odd");
        std::fs::read(p.join(name)).unwrap()
    }

    fn encode(w: u32, h: u32, gray: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
        let (px, t) = if gray {
            (vec![128u8; (w * h) as usize], image::ExtendedColorType::L8)
        } else {
            (
                vec![128u8; (w * h * 3) as usize],
                image::ExtendedColorType::Rgb8,
            )
        };
        enc.encode(&px, w, h, t).unwrap();
        out
    }

    #[test]
    fn reads_size_and_routes_baseline_to_the_hardware() {
        let f = frame_of(&encode(37, 21, false)).unwrap();
        assert_eq!(
            f,
            Frame {
                width: 37,
                height: 21,
                hardware: true
            }
        );
        let g = frame_of(&encode(8, 9, true)).unwrap();
        assert_eq!(
            g,
            Frame {
                width: 8,
                height: 9,
                hardware: true
            }
        );
        for name in [
            "baseline_420.jpg",
            "s444.jpg",
            "s422.jpg",
            "gray.jpg",
            "restart.jpg",
        ] {
            assert!(frame_of(&fixture(name)).unwrap().hardware, "{name}");
        }
    }

    #[test]
    fn progressive_cmyk_and_adobe_rgb_go_to_the_cuda_decoder() {
        for name in ["progressive.jpg", "cmyk_adobe.jpg", "rgb_adobe.jpg"] {
            let f = frame_of(&fixture(name)).unwrap();
            assert!(!f.hardware, "{name}: {f:?}");
            assert!(f.width > 0 && f.height > 0);
        }
    }

    #[test]
    fn garbage_is_a_reason_never_a_panic() {
        assert!(frame_of(b"").unwrap_err().contains("not a JPEG"));
        assert!(frame_of(b"not a jpeg at all")
            .unwrap_err()
            .contains("not a JPEG"));
        assert!(frame_of(b"\xFF\xD8").is_err());
        let full = encode(16, 16, false);
        assert!(frame_of(&full[..30]).is_err());
        for n in 0..full.len() {
            let _ = frame_of(&full[..n]);
        }
    }

    #[test]
    fn a_declared_size_the_bytes_cannot_hold_is_refused_before_any_allocation() {
        let mut j = encode(64, 64, false);
        // Patch the SOF0 frame size to 16000x16000: 500 kB needed, far more than the file.
        let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        j[sof + 5..sof + 9].copy_from_slice(&[0x3E, 0x80, 0x3E, 0x80]);
        let e = frame_of(&j).unwrap_err();
        assert!(e.contains("fewer bytes than the declared size"), "{e}");
    }
}
