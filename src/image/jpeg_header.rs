//! Cheap JPEG inspection: walk the marker segments (and skim the entropy-coded data for markers)
//! without decoding anything.
//!
//! This is what `convert` runs on every image by default, so it must cost far less than reading
//! the file: the only per-byte work is a `memchr` for 0xFF over the scan data, which is what
//! tells a complete file (end-of-image marker after the last scan) from a truncated one.
//!
//! Every offset is bounds-checked; damaged input gives an [`ImageError`], never a panic (a fuzz
//! test below feeds thousands of mutations).

use super::exif::{self, Orientation};
use super::ImageError;
use serde::Serialize;

/// Coding process from the SOF marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    /// SOF0: 8-bit Huffman sequential, what every decoder (and GPU hardware) takes.
    Baseline,
    /// SOF1 / SOF9: extended sequential (up to 4 Huffman tables, 8 or 12 bit).
    Extended,
    /// SOF2 / SOF10.
    Progressive,
    /// SOF3 / SOF11.
    Lossless,
}

/// Colour model as a decoder (libjpeg rules: component count + Adobe APP14 transform) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorModel {
    Gray,
    YCbCr,
    /// 3 components with Adobe transform 0: stored as RGB, no colour transform.
    Rgb,
    Cmyk,
    /// 4 components with Adobe transform 2.
    Ycck,
    /// 2 or more than 4 components.
    Other,
}

/// Chroma subsampling, from the components' sampling factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Subsampling {
    #[serde(rename = "4:4:4")]
    S444,
    #[serde(rename = "4:2:2")]
    S422,
    #[serde(rename = "4:2:0")]
    S420,
    #[serde(rename = "4:1:1")]
    S411,
    #[serde(rename = "4:4:0")]
    S440,
    #[serde(rename = "4:1:0")]
    S410,
    #[serde(rename = "gray")]
    Gray,
    #[serde(rename = "other")]
    Other,
}

impl Subsampling {
    /// The conventional name ("4:2:0", "gray", "other").
    pub fn as_str(self) -> &'static str {
        match self {
            Subsampling::S444 => "4:4:4",
            Subsampling::S422 => "4:2:2",
            Subsampling::S420 => "4:2:0",
            Subsampling::S411 => "4:1:1",
            Subsampling::S440 => "4:4:0",
            Subsampling::S410 => "4:1:0",
            Subsampling::Gray => "gray",
            Subsampling::Other => "other",
        }
    }
}

/// One frame component from the SOF segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Component {
    pub id: u8,
    /// Horizontal sampling factor (1..=4).
    pub h: u8,
    /// Vertical sampling factor (1..=4).
    pub v: u8,
    /// Quantisation table selector.
    pub tq: u8,
}

/// What the marker walk found. Only produced for structurally complete files: SOF, at least
/// one SOS, and an end-of-image marker after the scan data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JpegHeader {
    /// The SOF marker's second byte (0xC0 = SOF0 ...).
    pub sof_marker: u8,
    pub process: Process,
    /// Arithmetic entropy coding (SOF9..SOF15): almost no decoder in the ML stack reads it.
    pub arithmetic: bool,
    /// Hierarchical/differential frame (SOF5..7, SOF13..15).
    pub differential: bool,
    /// Sample precision in bits (8 for normal files, 12 for "12-bit JPEG", 2..16 lossless).
    pub precision: u8,
    pub width: u32,
    /// 0 means "defined by a DNL marker later", which almost nothing supports.
    pub height: u32,
    pub components: Vec<Component>,
    pub color: ColorModel,
    pub subsampling: Subsampling,
    /// APP14 "Adobe" transform byte when present (0 = none/RGB/CMYK, 1 = YCbCr, 2 = YCCK).
    pub adobe_transform: Option<u8>,
    pub jfif: bool,
    /// An EXIF APP1 segment is present (it may hold no orientation).
    pub exif: bool,
    /// EXIF orientation when present and valid (1..=8).
    pub orientation: Option<Orientation>,
    /// Number of SOS segments (1 for a plain baseline file; progressive has several).
    pub scans: u32,
    /// Restart interval from DRI (0 = none).
    pub restart_interval: u16,
    /// Offset of the end-of-image marker; the JPEG proper is `bytes[..eoi_offset + 2]`.
    pub eoi_offset: usize,
    /// Bytes after the end-of-image marker: padding, or appended data (motion-photo video,
    /// MPF secondary images such as HDR gain maps, junk).
    pub trailing_bytes: usize,
    /// Whether all trailing bytes are zero (padding some writers add).
    pub trailing_zero: bool,
    /// Bytes that were neither a marker nor segment data between segments (libjpeg warns
    /// "extraneous bytes before marker" and skips them, as we do).
    pub extraneous_bytes: usize,
    /// The walk went through the scan data to the end-of-image marker ([`parse_jpeg_header`]);
    /// false for [`parse_jpeg_header_until_scan`], whose end-of-file fields are not checked.
    #[serde(skip)]
    pub walked_to_end: bool,
}

impl JpegHeader {
    /// Length of the JPEG proper (through the end-of-image marker).
    pub fn jpeg_len(&self) -> usize {
        self.eoi_offset + 2
    }

    /// Displayed size after EXIF orientation.
    pub fn displayed_size(&self) -> (u32, u32) {
        match self.orientation {
            Some(o) => o.displayed_size(self.width, self.height),
            None => (self.width, self.height),
        }
    }

    /// 8-bit Huffman baseline/extended/progressive: what every common decoder reads.
    pub fn is_common_8bit(&self) -> bool {
        self.precision == 8
            && !self.arithmetic
            && !self.differential
            && self.height > 0
            && matches!(
                self.process,
                Process::Baseline | Process::Extended | Process::Progressive
            )
    }

    /// Why this file is not an ordinary 8-bit Huffman YCbCr/gray JPEG, if it is not:
    /// a short description for messages, `None` for ordinary files.
    pub fn unusual_variant(&self) -> Option<String> {
        let mut what = Vec::new();
        if self.precision != 8 {
            what.push(format!("{}-bit samples", self.precision));
        }
        if self.process == Process::Lossless {
            what.push("lossless coding".to_string());
        }
        if self.arithmetic {
            what.push("arithmetic coding".to_string());
        }
        if self.differential {
            what.push("hierarchical coding".to_string());
        }
        if self.height == 0 {
            what.push("height defined by a DNL marker".to_string());
        }
        match self.color {
            ColorModel::Rgb => what.push("RGB without colour transform".to_string()),
            ColorModel::Other => what.push(format!("{} components", self.components.len())),
            _ => {}
        }
        if self.subsampling == Subsampling::Other {
            what.push(format!(
                "unusual sampling factors {}",
                self.sampling_string()
            ));
        }
        (!what.is_empty()).then(|| what.join(", "))
    }

    /// Sampling factors as "2x2,1x1,1x1".
    pub fn sampling_string(&self) -> String {
        let parts: Vec<String> = self
            .components
            .iter()
            .map(|c| format!("{}x{}", c.h, c.v))
            .collect();
        parts.join(",")
    }

    /// Baseline, one scan, 1 or 3 components, a subsampling the hardware takes: what nvJPEG's
    /// hardware backend decodes. nvJPEG has the last word (`nvjpegDecodeBatchedSupported`); this
    /// is the cheap pre-filter.
    pub fn hardware_decodable(&self) -> bool {
        self.process == Process::Baseline
            && self.precision == 8
            && !self.arithmetic
            && self.scans == 1
            && matches!(self.color, ColorModel::Gray | ColorModel::YCbCr)
            && matches!(
                self.subsampling,
                Subsampling::S444
                    | Subsampling::S422
                    | Subsampling::S420
                    | Subsampling::S440
                    | Subsampling::Gray
            )
    }
}

/// Frame facts while walking, before the walk knows the file is complete.
struct Frame {
    sof_marker: u8,
    precision: u8,
    width: u32,
    height: u32,
    components: Vec<Component>,
}

/// Walk a JPEG's markers. Errors: not a JPEG, truncated (file ends inside the headers, before
/// any scan, or without an end-of-image marker), or malformed segments.
pub fn parse_jpeg_header(bytes: &[u8]) -> Result<JpegHeader, ImageError> {
    walk(bytes, Walk::Whole)
}

/// [`parse_jpeg_header`] up to the first start-of-scan only: the same errors for everything
/// before it, but the entropy-coded data is not skimmed (its `memchr` for 0xFF was 1.4 % of a
/// 12 MP presize, run twice per image). For callers whose decoder checks the rest itself.
/// The result has `walked_to_end == false`: `scans` is a lower bound (2 when the first scan is
/// progressive or leaves out a component, i.e. more must follow), `eoi_offset` is taken to be
/// the end of the data and `trailing_bytes` 0.
pub fn parse_jpeg_header_until_scan(bytes: &[u8]) -> Result<JpegHeader, ImageError> {
    walk(bytes, Walk::UntilFirstScan)
}

/// How far [`walk`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Whole,
    UntilFirstScan,
}

fn walk(bytes: &[u8], how: Walk) -> Result<JpegHeader, ImageError> {
    let len = bytes.len();
    if len == 0 {
        return Err(ImageError::Empty);
    }
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(ImageError::malformed("no start-of-image marker", 0));
    }
    let mut frame: Option<Frame> = None;
    let mut adobe_transform = None;
    let mut jfif = false;
    let mut exif_present = false;
    let mut orientation = None;
    let mut scans = 0u32;
    let mut restart_interval = 0u16;
    let mut extraneous = 0usize;
    let mut pos = 2usize;

    let eoi_offset = loop {
        // Find the next marker: 0xFF, any fill 0xFFs, then a code byte.
        let Some(&b) = bytes.get(pos) else {
            return Err(truncated_at(scans, len));
        };
        if b != 0xFF {
            if scans > 0 {
                // Inside entropy-coded data: skim to the next real marker.
                pos = next_marker_in_scan(bytes, pos).ok_or_else(|| truncated_at(scans, len))?;
            } else {
                let skip =
                    memchr::memchr(0xFF, &bytes[pos..]).ok_or_else(|| truncated_at(0, len))?;
                extraneous += skip;
                pos += skip;
            }
            continue;
        }
        let mut code_pos = pos + 1;
        while bytes.get(code_pos) == Some(&0xFF) {
            code_pos += 1;
        }
        let Some(&code) = bytes.get(code_pos) else {
            return Err(truncated_at(scans, len));
        };
        let marker_pos = code_pos - 1;
        match code {
            0xD9 => {
                if scans == 0 {
                    return Err(ImageError::Truncated {
                        what: "end-of-image marker before any image data (no start-of-scan)",
                        len,
                    });
                }
                break marker_pos;
            }
            // Stand-alone markers: RSTn, TEM, and a stray 0x00 after 0xFF in scan data.
            0xD0..=0xD7 | 0x01 | 0x00 => {
                if scans == 0 && code != 0x01 {
                    return Err(ImageError::malformed(
                        "restart marker or stuffed byte outside scan data",
                        marker_pos,
                    ));
                }
                pos = code_pos + 1;
                continue;
            }
            0xD8 => {
                return Err(ImageError::malformed(
                    "second start-of-image marker inside the file",
                    marker_pos,
                ))
            }
            // After the first scan only table/scan/comment segments may follow (libjpeg stops
            // with "unsupported marker type" on anything else, so TensorFlow would too).
            0xC4 | 0xCC | 0xDA | 0xDB | 0xDC | 0xDD | 0xE0..=0xEF | 0xFE => {}
            _ if scans > 0 => {
                return Err(ImageError::malformed(
                    &format!("unexpected marker 0xFF{code:02X} in the image data (corrupt data)"),
                    marker_pos,
                ))
            }
            _ => {}
        }
        // Marker segment with a length.
        let seg_len = match bytes.get(code_pos + 1..code_pos + 3) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => return Err(truncated_at(scans, len)),
        };
        if seg_len < 2 {
            return Err(ImageError::malformed(
                &format!("marker 0xFF{code:02X} has length {seg_len}"),
                marker_pos,
            ));
        }
        let data_start = code_pos + 3;
        let data_end = code_pos + 1 + seg_len;
        let Some(data) = bytes.get(data_start..data_end) else {
            return Err(if frame.is_some() && scans > 0 {
                truncated_at(scans, len)
            } else {
                ImageError::Truncated {
                    what: "file ends inside the JPEG headers",
                    len,
                }
            });
        };
        match code {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF if frame.is_none() => {
                frame = Some(parse_sof(code, data, marker_pos)?);
            }
            0xDA => {
                if frame.is_none() {
                    return Err(ImageError::malformed(
                        "start-of-scan before any start-of-frame",
                        marker_pos,
                    ));
                }
                scans += 1;
                if how == Walk::UntilFirstScan {
                    let progressive = frame.as_ref().is_some_and(|f| f.sof_marker & 3 == 2);
                    let all = frame.as_ref().map(|f| f.components.len());
                    if progressive || data.first().map(|&n| usize::from(n)) != all {
                        scans = 2;
                    }
                    break len.saturating_sub(2);
                }
            }
            0xDD => {
                if let Some(d) = data.get(0..2) {
                    restart_interval = u16::from_be_bytes([d[0], d[1]]);
                }
            }
            0xE0 => jfif |= data.starts_with(b"JFIF\0"),
            0xE1 if !exif_present && exif::is_exif_app1(data) => {
                exif_present = true;
                orientation = exif::orientation_from_app1(data);
            }
            // "Adobe" version(2) flags0(2) flags1(2) transform(1)
            0xEE if adobe_transform.is_none() && data.len() >= 12 && data.starts_with(b"Adobe") => {
                adobe_transform = Some(data[11]);
            }
            _ => {}
        }
        pos = data_end;
    };

    let Some(frame) = frame else {
        return Err(ImageError::malformed("no start-of-frame marker", 0));
    };
    let trailing = &bytes[eoi_offset + 2..];
    let color = color_model(&frame.components, adobe_transform);
    let subsampling = subsampling(&frame.components);
    let code = frame.sof_marker;
    let process = match code & 0x03 {
        0 if code == 0xC0 => Process::Baseline,
        0 | 1 => Process::Extended,
        2 => Process::Progressive,
        _ => Process::Lossless,
    };
    Ok(JpegHeader {
        sof_marker: code,
        process,
        arithmetic: code >= 0xC8,
        differential: matches!(code, 0xC5..=0xC7 | 0xCD..=0xCF),
        precision: frame.precision,
        width: frame.width,
        height: frame.height,
        components: frame.components,
        color,
        subsampling,
        adobe_transform,
        jfif,
        exif: exif_present,
        orientation,
        scans,
        restart_interval,
        eoi_offset,
        trailing_bytes: trailing.len(),
        trailing_zero: trailing.iter().all(|&b| b == 0),
        extraneous_bytes: extraneous,
        walked_to_end: how == Walk::Whole,
    })
}

/// The error for a file that stops before its end-of-image marker.
fn truncated_at(scans: u32, len: usize) -> ImageError {
    ImageError::Truncated {
        what: if scans == 0 {
            "file ends before any image data (no start-of-scan)"
        } else {
            "no end-of-image marker"
        },
        len,
    }
}

/// From `pos` inside entropy-coded data, the offset of the next 0xFF that starts a real marker
/// (not a stuffed 0xFF00, not RSTn, fill bytes skipped). `None` when the data just stops.
fn next_marker_in_scan(bytes: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let ff = pos + memchr::memchr(0xFF, bytes.get(pos..)?)?;
        let mut next = ff + 1;
        while bytes.get(next) == Some(&0xFF) {
            next += 1;
        }
        match bytes.get(next)? {
            0x00 | 0xD0..=0xD7 => pos = next + 1,
            _ => return Some(next - 1),
        }
    }
}

fn parse_sof(code: u8, data: &[u8], at: usize) -> Result<Frame, ImageError> {
    let bad = |what: &str| ImageError::malformed(&format!("start-of-frame: {what}"), at);
    if data.len() < 6 {
        return Err(bad("segment too short"));
    }
    let precision = data[0];
    let height = u32::from(u16::from_be_bytes([data[1], data[2]]));
    let width = u32::from(u16::from_be_bytes([data[3], data[4]]));
    let n = usize::from(data[5]);
    if width == 0 {
        return Err(bad("width is 0"));
    }
    if n == 0 {
        return Err(bad("no components"));
    }
    if !(2..=16).contains(&precision) {
        return Err(bad(&format!("sample precision {precision}")));
    }
    let Some(spec) = data.get(6..6 + 3 * n) else {
        return Err(bad(&format!("segment too short for {n} components")));
    };
    let mut components = Vec::with_capacity(n);
    for c in spec.chunks_exact(3) {
        let (h, v) = (c[1] >> 4, c[1] & 0x0F);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err(bad(&format!("sampling factors {h}x{v} (must be 1..4)")));
        }
        components.push(Component {
            id: c[0],
            h,
            v,
            tq: c[2],
        });
    }
    Ok(Frame {
        sof_marker: code,
        precision,
        width,
        height,
        components,
    })
}

fn color_model(components: &[Component], adobe: Option<u8>) -> ColorModel {
    match (components.len(), adobe) {
        (1, _) => ColorModel::Gray,
        (3, Some(0)) => ColorModel::Rgb,
        (3, _) => ColorModel::YCbCr,
        (4, Some(2)) => ColorModel::Ycck,
        (4, _) => ColorModel::Cmyk,
        _ => ColorModel::Other,
    }
}

fn subsampling(components: &[Component]) -> Subsampling {
    let Some(first) = components.first() else {
        return Subsampling::Other;
    };
    if components.len() == 1 {
        return Subsampling::Gray;
    }
    if components.len() < 3 {
        return Subsampling::Other;
    }
    let (cb, cr) = (components[1], components[2]);
    // Chroma planes must match each other (and a 4th plane, e.g. K, must match luma).
    if (cb.h, cb.v) != (cr.h, cr.v) {
        return Subsampling::Other;
    }
    if let Some(k) = components.get(3) {
        if (k.h, k.v) != (first.h, first.v) || components.len() > 4 {
            return Subsampling::Other;
        }
    }
    if first.h % cb.h != 0 || first.v % cb.v != 0 {
        return Subsampling::Other;
    }
    match (first.h / cb.h, first.v / cb.v) {
        (1, 1) => Subsampling::S444,
        (2, 1) => Subsampling::S422,
        (2, 2) => Subsampling::S420,
        (4, 1) => Subsampling::S411,
        (1, 2) => Subsampling::S440,
        (4, 2) => Subsampling::S410,
        _ => Subsampling::Other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal structurally valid JPEG: SOI, optional extra segments, SOF with the given
    /// sampling factors, SOS, a few scan bytes (with a stuffed 0xFF00 and a RST), EOI.
    pub(crate) fn synthetic(
        sof: u8,
        precision: u8,
        sampling: &[(u8, u8)],
        extra: &[u8],
    ) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(extra);
        let n = sampling.len() as u8;
        let seg_len = 8 + 3 * u16::from(n);
        j.extend_from_slice(&[0xFF, sof]);
        j.extend_from_slice(&seg_len.to_be_bytes());
        j.extend_from_slice(&[precision, 0, 24, 0, 32, n]);
        for (i, &(h, v)) in sampling.iter().enumerate() {
            j.extend_from_slice(&[i as u8 + 1, (h << 4) | v, 0]);
        }
        j.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0]);
        j.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    fn app(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, code];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    #[test]
    fn subsampling_names() {
        let cases: &[(&[(u8, u8)], Subsampling)] = &[
            (&[(1, 1), (1, 1), (1, 1)], Subsampling::S444),
            (&[(2, 1), (1, 1), (1, 1)], Subsampling::S422),
            (&[(2, 2), (1, 1), (1, 1)], Subsampling::S420),
            (&[(4, 1), (1, 1), (1, 1)], Subsampling::S411),
            (&[(1, 2), (1, 1), (1, 1)], Subsampling::S440),
            (&[(4, 2), (1, 1), (1, 1)], Subsampling::S410),
            (&[(2, 2), (2, 2), (2, 2)], Subsampling::S444),
            (&[(1, 1)], Subsampling::Gray),
            (&[(2, 2)], Subsampling::Gray),
            (&[(3, 1), (2, 1), (2, 1)], Subsampling::Other),
            (&[(2, 2), (1, 1), (2, 1)], Subsampling::Other),
            (&[(1, 1), (2, 2), (2, 2)], Subsampling::Other),
            (&[(1, 1), (1, 1), (1, 1), (1, 1)], Subsampling::S444),
        ];
        for (sampling, want) in cases {
            let h = parse_jpeg_header(&synthetic(0xC0, 8, sampling, &[])).unwrap();
            assert_eq!(h.subsampling, *want, "{sampling:?}");
        }
    }

    #[test]
    fn sof_kinds() {
        let s = &[(2, 2), (1, 1), (1, 1)];
        let h = parse_jpeg_header(&synthetic(0xC0, 8, s, &[])).unwrap();
        assert_eq!(
            (h.process, h.arithmetic, h.scans),
            (Process::Baseline, false, 1)
        );
        assert!(h.hardware_decodable() && h.unusual_variant().is_none());
        assert_eq!((h.width, h.height), (32, 24));
        let h = parse_jpeg_header(&synthetic(0xC1, 12, s, &[])).unwrap();
        assert_eq!((h.process, h.precision), (Process::Extended, 12));
        assert_eq!(h.unusual_variant().as_deref(), Some("12-bit samples"));
        let h = parse_jpeg_header(&synthetic(0xC2, 8, s, &[])).unwrap();
        assert_eq!(h.process, Process::Progressive);
        assert!(h.is_common_8bit() && !h.hardware_decodable());
        let h = parse_jpeg_header(&synthetic(0xC3, 8, &[(1, 1)], &[])).unwrap();
        assert_eq!(h.process, Process::Lossless);
        assert!(!h.is_common_8bit());
        let h = parse_jpeg_header(&synthetic(0xC9, 8, s, &[])).unwrap();
        assert_eq!((h.process, h.arithmetic), (Process::Extended, true));
        assert_eq!(h.unusual_variant().as_deref(), Some("arithmetic coding"));
        let h = parse_jpeg_header(&synthetic(0xCA, 8, s, &[])).unwrap();
        assert_eq!((h.process, h.arithmetic), (Process::Progressive, true));
        let h = parse_jpeg_header(&synthetic(0xC5, 8, s, &[])).unwrap();
        assert!(h.differential);
    }

    #[test]
    fn adobe_and_exif_segments() {
        let cmyk = [(1, 1); 4];
        let adobe = |t: u8| app(0xEE, &[b'A', b'd', b'o', b'b', b'e', 0, 100, 0, 0, 0, 0, t]);
        let h = parse_jpeg_header(&synthetic(0xC0, 8, &cmyk, &adobe(0))).unwrap();
        assert_eq!((h.color, h.adobe_transform), (ColorModel::Cmyk, Some(0)));
        let h = parse_jpeg_header(&synthetic(0xC0, 8, &cmyk, &adobe(2))).unwrap();
        assert_eq!(h.color, ColorModel::Ycck);
        let h = parse_jpeg_header(&synthetic(0xC0, 8, &cmyk, &[])).unwrap();
        assert_eq!((h.color, h.adobe_transform), (ColorModel::Cmyk, None));
        let h = parse_jpeg_header(&synthetic(0xC0, 8, &[(1, 1); 3], &adobe(0))).unwrap();
        assert_eq!(h.color, ColorModel::Rgb);
        assert!(h.unusual_variant().unwrap().contains("RGB"));

        let mut exif = b"Exif\0\0MM\0*\0\0\0\x08\0\x01".to_vec();
        exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0]);
        let mut extra = app(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        extra.extend(app(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x/>"));
        extra.extend(app(0xE1, &exif));
        let h = parse_jpeg_header(&synthetic(0xC0, 8, &[(2, 2), (1, 1), (1, 1)], &extra)).unwrap();
        assert!(h.jfif && h.exif);
        assert_eq!(h.orientation, Some(Orientation::Rotate270));
        assert_eq!(h.displayed_size(), (24, 32));
    }

    /// The walk up to the first scan reports the same header fields, cannot see what follows
    /// the scan start (truncation), still refuses damage before it, and knows that a
    /// progressive or partial first scan means more scans.
    #[test]
    fn walk_until_first_scan() {
        let mut exif = b"Exif\0\0MM\0*\0\0\0\x08\0\x01".to_vec();
        exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
        let good = synthetic(0xC0, 8, &[(1, 1)], &app(0xE1, &exif));
        let whole = parse_jpeg_header(&good).unwrap();
        let head = parse_jpeg_header_until_scan(&good).unwrap();
        assert!(whole.walked_to_end && !head.walked_to_end);
        assert_eq!(head.orientation, Some(Orientation::Rotate90));
        assert_eq!(
            JpegHeader {
                walked_to_end: true,
                ..head.clone()
            },
            whole
        );
        let cut = &good[..good.len() - 4];
        assert!(parse_jpeg_header(cut).is_err());
        assert_eq!(parse_jpeg_header_until_scan(cut).unwrap().scans, 1);
        assert!(
            parse_jpeg_header_until_scan(&good[..20]).is_err(),
            "cut inside SOF"
        );
        assert_eq!(
            parse_jpeg_header_until_scan(&synthetic(0xC2, 8, &[(1, 1)], &[]))
                .unwrap()
                .scans,
            2,
            "progressive"
        );
        // The synthetic SOS names one component: a 3-component frame needs more scans.
        let partial = synthetic(0xC0, 8, &[(1, 1), (1, 1), (1, 1)], &[]);
        assert_eq!(parse_jpeg_header_until_scan(&partial).unwrap().scans, 2);
    }

    #[test]
    fn truncation_and_trailing_data() {
        let good = synthetic(0xC0, 8, &[(2, 2), (1, 1), (1, 1)], &[]);
        let h = parse_jpeg_header(&good).unwrap();
        assert_eq!((h.eoi_offset, h.trailing_bytes), (good.len() - 2, 0));

        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 100]);
        let h = parse_jpeg_header(&padded).unwrap();
        assert_eq!((h.trailing_bytes, h.trailing_zero), (100, true));

        let mut junk = good.clone();
        junk.extend_from_slice(b"\xff\xd8\xff\xe0 appended second image \xff\xd9 junk");
        let h = parse_jpeg_header(&junk).unwrap();
        assert_eq!(h.jpeg_len(), good.len());
        assert!(!h.trailing_zero);

        // Cut inside the scan data: no EOI.
        let cut = &good[..good.len() - 2];
        let e = parse_jpeg_header(cut).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "truncated JPEG: no end-of-image marker (file ends at byte {}); \
                 the file is incomplete, re-download or re-export it",
                cut.len()
            )
        );
        // Zero-filled tail after a cut (preallocated download): still truncated.
        let mut zero_tail = cut.to_vec();
        zero_tail.extend_from_slice(&[0; 64]);
        assert!(matches!(
            parse_jpeg_header(&zero_tail),
            Err(ImageError::Truncated { .. })
        ));
        // Cut inside the headers.
        let e = parse_jpeg_header(&good[..8]).unwrap_err();
        assert!(
            e.to_string().contains("before any image data")
                || e.to_string().contains("inside the JPEG headers"),
            "{e}"
        );
        // Every prefix is an error, never a panic.
        for n in 0..good.len() - 1 {
            assert!(parse_jpeg_header(&good[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn malformed_headers() {
        assert!(matches!(parse_jpeg_header(b""), Err(ImageError::Empty)));
        assert!(parse_jpeg_header(b"\x89PNG").is_err());
        // Sampling factor 0.
        let bad = synthetic(0xC0, 8, &[(0, 1)], &[]);
        assert!(parse_jpeg_header(&bad)
            .unwrap_err()
            .to_string()
            .contains("sampling"));
        // SOS before SOF.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xD9];
        assert!(parse_jpeg_header(&j)
            .unwrap_err()
            .to_string()
            .contains("before any start-of-frame"));
        // A reserved marker inside scan data is corruption, named with its offset.
        let mut j2 = synthetic(0xC0, 8, &[(1, 1)], &[]);
        let at = j2.len() - 5; // the 0xFF of the RST in the scan data
        assert_eq!(&j2[at..at + 2], &[0xFF, 0xD0]);
        j2[at + 1] = 0x0B;
        assert_eq!(
            parse_jpeg_header(&j2).unwrap_err().to_string(),
            format!(
                "malformed JPEG: unexpected marker 0xFF0B in the image data (corrupt data) \
                 at byte {at}; re-export the file"
            )
        );
        // Extraneous bytes between segments are skipped and counted.
        j = synthetic(0xC0, 8, &[(1, 1)], &[0x00, 0x00, 0x00]);
        assert_eq!(parse_jpeg_header(&j).unwrap().extraneous_bytes, 3);
    }

    /// Tiny deterministic PRNG (xorshift64*) so the fuzz test needs no extra crate.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Mutate a valid file in the ways damage happens: byte flips, 0xFF injections (fake
    /// markers), length-field corruption, truncation, inserted and deleted runs.
    pub(crate) fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
        let mut m = src.to_vec();
        for _ in 0..1 + rng.below(4) {
            if m.is_empty() {
                break;
            }
            let at = rng.below(m.len());
            match rng.below(7) {
                0 => m[at] = rng.next() as u8,
                1 => m[at] = 0xFF,
                2 => m[at] ^= 1 << rng.below(8),
                3 => m.truncate(at),
                4 => {
                    let n = rng.below(16);
                    let end = (at + n).min(m.len());
                    m.drain(at..end);
                }
                5 => {
                    let v = [0xFF, rng.next() as u8, rng.next() as u8, rng.next() as u8];
                    m.splice(at..at, v);
                }
                _ => {
                    // Large or zero segment length right after a marker.
                    if let Some(p) = m[at..]
                        .windows(2)
                        .position(|w| w[0] == 0xFF && w[1] >= 0xC0)
                    {
                        let l = at + p + 2;
                        if l + 1 < m.len() {
                            m[l] = rng.next() as u8;
                            m[l + 1] = rng.next() as u8;
                        }
                    }
                }
            }
        }
        m
    }

    #[test]
    fn fuzz_mutations_never_panic() {
        let fixtures = [
            include_bytes!("../../fixtures/odd/baseline_420.jpg").as_slice(),
            include_bytes!("../../fixtures/odd/progressive.jpg").as_slice(),
            include_bytes!("../../fixtures/odd/exif_orientation_6.jpg").as_slice(),
            include_bytes!("../../fixtures/odd/cmyk_adobe.jpg").as_slice(),
        ];
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let mut ok = 0;
        for i in 0..20_000 {
            let src = fixtures[i % fixtures.len()];
            let m = mutate(&mut rng, src);
            if let Ok(h) = parse_jpeg_header(&m) {
                ok += 1;
                // Whatever is reported must be consistent with the bytes.
                assert!(h.jpeg_len() <= m.len());
                assert_eq!(
                    m.get(h.eoi_offset..h.eoi_offset + 2),
                    Some(&[0xFF, 0xD9][..])
                );
                assert_eq!(h.jpeg_len() + h.trailing_bytes, m.len());
            }
        }
        // Mutations in scan data leave the structure intact: some must still parse.
        assert!(ok > 1000, "only {ok} mutated files parsed");
    }
}
