//! Just enough JPEG header parsing for the readers: frame size (to place the decoded image in
//! the batch's device arena before any decoder runs) and whether the hardware decoder can take
//! the image (baseline, 1 or 3 components, no 4:1:1 / 4:1:0). nvJPEG's own check still runs in
//! the hardware decoder; this one just routes obvious misfits to the CUDA decoder up front.

/// Facts from the first SOF marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    /// SOF marker (0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...).
    pub sof: u8,
    /// (horizontal, vertical) sampling factors of component 0 (luma).
    pub luma_sampling: (u8, u8),
    /// Max over chroma components of (h, v), (1,1) when gray.
    pub chroma_sampling: (u8, u8),
}

impl JpegInfo {
    /// Our guess of what the hardware engines take (nvJPEG: baseline Huffman, single scan,
    /// 1 or 3 channels, not 4:1:1/4:1:0).
    pub fn likely_hw_ok(&self) -> bool {
        if self.sof != 0xC0 || !(self.components == 1 || self.components == 3) {
            return false;
        }
        if self.components == 1 {
            return true;
        }
        let (h, v) = self.luma_sampling;
        let (ch, cv) = self.chroma_sampling;
        if ch != 1 || cv != 1 {
            return false;
        }
        matches!((h, v), (1, 1) | (2, 1) | (2, 2) | (1, 2))
    }
}

/// Parses markers up to the first SOF. Errors say what is wrong, for the corrupt-record list.
pub fn parse(data: &[u8]) -> Result<JpegInfo, String> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err("not a JPEG (no SOI marker)".into());
    }
    let mut i = 2usize;
    loop {
        // Skip fill bytes.
        while i < data.len() && data[i] == 0xFF && data.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&ff), Some(&m)) = (data.get(i), data.get(i + 1)) else {
            return Err("no SOF marker before the end of the data".into());
        };
        if ff != 0xFF {
            return Err(format!("expected a marker at byte {i}, found 0x{ff:02X}"));
        }
        i += 2;
        match m {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return Err("no SOF marker before the image data".into()),
            _ => {}
        }
        let len = match (data.get(i), data.get(i + 1)) {
            (Some(&a), Some(&b)) => u16::from_be_bytes([a, b]) as usize,
            _ => return Err("truncated marker segment".into()),
        };
        if len < 2 {
            return Err(format!("bad segment length {len} at byte {i}"));
        }
        let seg = data
            .get(i + 2..i + len)
            .ok_or_else(|| format!("segment 0x{m:02X} at byte {i} runs past the end"))?;
        let is_sof = matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            if seg.len() < 6 {
                return Err("SOF segment too short".into());
            }
            let height = u16::from_be_bytes([seg[1], seg[2]]) as u32;
            let width = u16::from_be_bytes([seg[3], seg[4]]) as u32;
            let components = seg[5];
            if width == 0 || height == 0 {
                return Err(format!(
                    "frame size {width}x{height} (DNL height not supported)"
                ));
            }
            let comp = seg
                .get(6..6 + 3 * components as usize)
                .ok_or("SOF component list truncated")?;
            let mut luma = (1, 1);
            let mut chroma = (1u8, 1u8);
            for (k, c) in comp.chunks_exact(3).enumerate() {
                let (h, v) = (c[1] >> 4, c[1] & 15);
                if k == 0 {
                    luma = (h, v);
                } else {
                    chroma = if k == 1 {
                        (h, v)
                    } else {
                        (chroma.0.max(h), chroma.1.max(v))
                    };
                }
            }
            return Ok(JpegInfo {
                width,
                height,
                components,
                sof: m,
                luma_sampling: luma,
                chroma_sampling: chroma,
            });
        }
        i += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(w: u32, h: u32, gray: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
        if gray {
            let px = vec![128u8; (w * h) as usize];
            enc.encode(&px, w, h, image::ExtendedColorType::L8).unwrap();
        } else {
            let px = vec![128u8; (w * h * 3) as usize];
            enc.encode(&px, w, h, image::ExtendedColorType::Rgb8)
                .unwrap();
        }
        out
    }

    #[test]
    fn reads_size_and_components() {
        let j = parse(&encode(37, 21, false)).unwrap();
        assert_eq!((j.width, j.height, j.components, j.sof), (37, 21, 3, 0xC0));
        assert!(j.likely_hw_ok());
        let g = parse(&encode(8, 9, true)).unwrap();
        assert_eq!((g.width, g.height, g.components), (8, 9, 1));
        assert!(g.likely_hw_ok());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\xFF\xD8").is_err());
        assert!(parse(b"GIF89a....").is_err());
        let mut j = encode(16, 16, false);
        j.truncate(30);
        assert!(parse(&j).is_err());
        // Every prefix of a valid file either parses or errors, never panics.
        let full = encode(16, 16, false);
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
    }

    #[test]
    fn progressive_and_411_go_to_the_cuda_decoder() {
        let mut j = parse(&encode(16, 16, false)).unwrap();
        j.sof = 0xC2;
        assert!(!j.likely_hw_ok());
        j.sof = 0xC0;
        j.luma_sampling = (4, 1);
        assert!(!j.likely_hw_ok());
        j.components = 4;
        assert!(!j.likely_hw_ok());
    }
}
