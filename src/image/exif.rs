//! EXIF orientation: reading the tag from a JPEG's APP1 segment and applying it to pixels.
//!
//! Why it matters: phones store pixels in sensor order and set the Orientation tag; annotation
//! tools label the *displayed* image, but TensorFlow's `decode_jpeg`, DALI and nvJPEG ignore the
//! tag. Boxes only line up for every reader if the rotation is baked into the pixels and the tag
//! is removed.
//!
//! Only IFD0 tag 0x0112 of the first EXIF segment is read (what Pillow's `exif_transpose` and
//! libexif use). XMP `tiff:Orientation` is ignored. Every read is bounds-checked: garbage gives
//! `None`, never a panic.

use super::decode::RgbImage;
use serde::Serialize;

/// The eight EXIF orientations. Names say what must be done to the stored pixels to get the
/// displayed image (rotations clockwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    /// 1: stored as displayed.
    Normal,
    /// 2: mirror left↔right.
    FlipHorizontal,
    /// 3: rotate 180°.
    Rotate180,
    /// 4: mirror top↔bottom.
    FlipVertical,
    /// 5: mirror across the main diagonal (x↔y).
    Transpose,
    /// 6: rotate 90° clockwise (the usual portrait phone photo).
    Rotate90,
    /// 7: mirror across the anti-diagonal.
    Transverse,
    /// 8: rotate 270° clockwise (90° counter-clockwise).
    Rotate270,
}

impl Orientation {
    /// From the EXIF tag value; values outside 1..=8 are invalid and give `None`.
    pub fn from_exif(value: u32) -> Option<Orientation> {
        Some(match value {
            1 => Orientation::Normal,
            2 => Orientation::FlipHorizontal,
            3 => Orientation::Rotate180,
            4 => Orientation::FlipVertical,
            5 => Orientation::Transpose,
            6 => Orientation::Rotate90,
            7 => Orientation::Transverse,
            8 => Orientation::Rotate270,
            _ => return None,
        })
    }

    /// The EXIF tag value (1..=8).
    pub fn exif_value(self) -> u8 {
        match self {
            Orientation::Normal => 1,
            Orientation::FlipHorizontal => 2,
            Orientation::Rotate180 => 3,
            Orientation::FlipVertical => 4,
            Orientation::Transpose => 5,
            Orientation::Rotate90 => 6,
            Orientation::Transverse => 7,
            Orientation::Rotate270 => 8,
        }
    }

    /// Whether displayed width/height are the stored height/width (orientations 5..=8).
    pub fn swaps_dimensions(self) -> bool {
        matches!(
            self,
            Orientation::Transpose
                | Orientation::Rotate90
                | Orientation::Transverse
                | Orientation::Rotate270
        )
    }

    /// Displayed size for a stored `width`×`height` image.
    pub fn displayed_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_dimensions() {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Source pixel for displayed pixel (x, y), given the *stored* size (w, h).
    #[inline]
    fn source(self, x: usize, y: usize, w: usize, h: usize) -> (usize, usize) {
        match self {
            Orientation::Normal => (x, y),
            Orientation::FlipHorizontal => (w - 1 - x, y),
            Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
            Orientation::FlipVertical => (x, h - 1 - y),
            Orientation::Transpose => (y, x),
            // Displayed top-left is the stored bottom-left.
            Orientation::Rotate90 => (y, h - 1 - x),
            Orientation::Transverse => (w - 1 - y, h - 1 - x),
            // Displayed top-left is the stored top-right.
            Orientation::Rotate270 => (w - 1 - y, x),
        }
    }
}

/// Orientation from a JPEG APP1 payload (the bytes after the length field). `None` when the
/// segment is not EXIF, has no orientation tag, or is damaged anywhere on the way to it.
pub fn orientation_from_app1(payload: &[u8]) -> Option<Orientation> {
    // "Exif\0\0" then the TIFF structure; a few writers put another byte than \0 in position 5.
    if payload.len() < 6 || &payload[..5] != b"Exif\0" {
        return None;
    }
    orientation_from_tiff(&payload[6..])
}

/// Whether an APP1 payload is an EXIF block (as opposed to XMP, which shares APP1).
pub fn is_exif_app1(payload: &[u8]) -> bool {
    payload.len() >= 6 && &payload[..5] == b"Exif\0"
}

/// Orientation from a TIFF structure (as in EXIF, PNG eXIf, WebP EXIF chunks): IFD0 tag 0x0112,
/// either byte order, SHORT or LONG type.
pub fn orientation_from_tiff(tiff: &[u8]) -> Option<Orientation> {
    let little = match tiff.get(0..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let rd16 = |off: usize| -> Option<u16> {
        let b = tiff.get(off..off.checked_add(2)?)?;
        Some(if little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let rd32 = |off: usize| -> Option<u32> {
        let b = tiff.get(off..off.checked_add(4)?)?;
        Some(if little {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        })
    };
    let ifd0 = usize::try_from(rd32(4)?).ok()?;
    let count = usize::from(rd16(ifd0)?);
    for i in 0..count {
        let entry = ifd0.checked_add(2)?.checked_add(i.checked_mul(12)?)?;
        let tag = rd16(entry)?; // past the end: the IFD is cut short, give up
        if tag != 0x0112 {
            continue;
        }
        let kind = rd16(entry + 2)?;
        let value = match kind {
            3 => u32::from(rd16(entry + 8)?), // SHORT, the standard type
            4 => rd32(entry + 8)?,            // LONG, written by a few tools
            _ => return None,
        };
        return Orientation::from_exif(value);
    }
    None
}

/// Apply an orientation to pixels, giving the displayed image. `Normal` returns the input
/// untouched (no copy).
pub fn apply_orientation(img: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::Normal {
        return img;
    }
    let (w, h) = (img.width as usize, img.height as usize);
    let (dw, dh) = orientation.displayed_size(img.width, img.height);
    let (dwu, dhu) = (dw as usize, dh as usize);
    let mut out = vec![0u8; dwu * dhu * 3];
    for (y, row) in out.chunks_exact_mut(dwu * 3).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let (sx, sy) = orientation.source(x, y, w, h);
            let s = (sy * w + sx) * 3;
            if let Some(src) = img.data.get(s..s + 3) {
                px.copy_from_slice(src);
            }
        }
    }
    RgbImage {
        width: dw,
        height: dh,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TIFF block with IFD0 holding `entries` (tag, type, value) in the given byte order.
    fn tiff(little: bool, entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let p16 = |v: u16| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let p32 = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let mut t = Vec::new();
        t.extend_from_slice(if little { b"II*\0" } else { b"MM\0*" });
        t.extend_from_slice(&p32(8));
        t.extend_from_slice(&p16(entries.len() as u16));
        for &(tag, kind, value) in entries {
            t.extend_from_slice(&p16(tag));
            t.extend_from_slice(&p16(kind));
            t.extend_from_slice(&p32(1));
            if kind == 3 {
                t.extend_from_slice(&p16(value as u16));
                t.extend_from_slice(&[0, 0]);
            } else {
                t.extend_from_slice(&p32(value));
            }
        }
        t.extend_from_slice(&p32(0));
        t
    }

    #[test]
    fn both_byte_orders_and_types() {
        for little in [true, false] {
            for v in 1..=8u32 {
                let t = tiff(little, &[(0x010f, 2, 0), (0x0112, 3, v), (0x0131, 2, 0)]);
                assert_eq!(
                    orientation_from_tiff(&t).map(|o| o.exif_value() as u32),
                    Some(v)
                );
                let t = tiff(little, &[(0x0112, 4, v)]);
                assert_eq!(
                    orientation_from_tiff(&t).map(|o| o.exif_value() as u32),
                    Some(v)
                );
            }
        }
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff(false, &[(0x0112, 3, 6)]));
        assert_eq!(orientation_from_app1(&app1), Some(Orientation::Rotate90));
    }

    #[test]
    fn garbage_gives_none() {
        assert_eq!(orientation_from_tiff(&tiff(true, &[(0x0112, 3, 0)])), None);
        assert_eq!(orientation_from_tiff(&tiff(true, &[(0x0112, 3, 9)])), None);
        assert_eq!(orientation_from_tiff(&tiff(true, &[(0x0112, 2, 6)])), None);
        assert_eq!(orientation_from_tiff(&tiff(true, &[(0x0100, 3, 6)])), None);
        assert_eq!(orientation_from_tiff(b"II*\0\xff\xff\xff\xff"), None);
        assert_eq!(orientation_from_tiff(b"XX*\0\x08\0\0\0"), None);
        assert_eq!(
            orientation_from_app1(b"http://ns.adobe.com/xap/1.0/\0"),
            None
        );
        // IFD claims 1000 entries but the data stops: no panic, no tag.
        let mut t = tiff(true, &[(0x0100, 3, 1)]);
        t[8] = 0xe8;
        t[9] = 0x03;
        assert_eq!(orientation_from_tiff(&t), None);
        // Every prefix of a valid block.
        let full = tiff(false, &[(0x0112, 3, 6)]);
        for n in 0..full.len() {
            let got = orientation_from_tiff(&full[..n]);
            assert!(got.is_none() || got == Some(Orientation::Rotate90));
        }
    }

    /// Stored 3×2 image with pixel values 0..6 (one byte per pixel in channel 0).
    fn stored() -> RgbImage {
        let data = (0u8..6).flat_map(|v| [v, 0, 0]).collect();
        RgbImage {
            width: 3,
            height: 2,
            data,
        }
    }

    fn values(img: &RgbImage) -> (u32, u32, Vec<u8>) {
        (
            img.width,
            img.height,
            img.data.chunks(3).map(|p| p[0]).collect(),
        )
    }

    #[test]
    fn all_eight_orientations() {
        // Stored:   0 1 2
        //           3 4 5
        // Expected displayed images written out by hand from the EXIF definitions.
        type Displayed = (u32, u32, Vec<u8>);
        let cases: [(u32, Displayed); 8] = [
            (1, (3, 2, vec![0, 1, 2, 3, 4, 5])),
            (2, (3, 2, vec![2, 1, 0, 5, 4, 3])),
            (3, (3, 2, vec![5, 4, 3, 2, 1, 0])),
            (4, (3, 2, vec![3, 4, 5, 0, 1, 2])),
            (5, (2, 3, vec![0, 3, 1, 4, 2, 5])),
            (6, (2, 3, vec![3, 0, 4, 1, 5, 2])),
            (7, (2, 3, vec![5, 2, 4, 1, 3, 0])),
            (8, (2, 3, vec![2, 5, 1, 4, 0, 3])),
        ];
        for (v, want) in cases {
            let o = Orientation::from_exif(v).unwrap();
            assert_eq!(
                values(&apply_orientation(stored(), o)),
                want,
                "orientation {v}"
            );
            assert_eq!(o.displayed_size(3, 2), (want.0, want.1));
        }
    }
}
