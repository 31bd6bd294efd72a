//! What kind of file is this? Decided by magic bytes, never by the file name: datasets contain
//! PNGs named `.jpg`, and the name is the one thing a converter must not trust.

use serde::Serialize;

/// Container format of an input file, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    Bmp,
    Webp,
    Tiff,
    /// Nothing we recognise; [`describe_start`] says what it looks like instead.
    Unknown,
}

impl ImageFormat {
    /// Stable lower-case name, used in manifests and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Webp => "webp",
            ImageFormat::Tiff => "tiff",
            ImageFormat::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sizes of the BMP info headers that exist (OS/2 1.x, Windows 3.x, the v2/v3 extensions, OS/2
/// 2.x, v4, v5). Checking one of them keeps a text file starting with "BM" from passing as BMP.
const BMP_INFO_HEADER_SIZES: [u32; 7] = [12, 40, 52, 56, 64, 108, 124];

/// Identify the container by its magic bytes.
pub fn sniff(bytes: &[u8]) -> ImageFormat {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ImageFormat::Jpeg
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageFormat::Png
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        ImageFormat::Gif
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        ImageFormat::Webp
    } else if bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || bytes.starts_with(b"II+\0")
        || bytes.starts_with(b"MM\0+")
    {
        ImageFormat::Tiff
    } else if is_bmp(bytes) {
        ImageFormat::Bmp
    } else {
        ImageFormat::Unknown
    }
}

fn is_bmp(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"BM") {
        return false;
    }
    match bytes.get(14..18) {
        Some(s) => {
            let size = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            BMP_INFO_HEADER_SIZES.contains(&size)
        }
        None => false,
    }
}

/// A short human description of what an unrecognised file starts with, for "not an image"
/// messages: a known non-image kind when we can tell (HEIC from an iPhone, an HTML error page
/// saved by a failed download, ...), else the first bytes as text or hex.
pub fn describe_start(bytes: &[u8]) -> String {
    // Say what the file looks like, never what it contains: a file named like an image may be
    // a key, a password list or a private document, and this text goes into manifests and
    // reports that are shared.
    const LOOK: usize = 512;
    if let Some(kind) = known_non_image(bytes) {
        return kind.to_string();
    }
    let head = &bytes[..bytes.len().min(LOOK)];
    // UTF-8 (a character cut at the end of the window is fine) without control characters.
    let valid = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => "",
    };
    let text = !valid.is_empty()
        && valid.len() + 4 > head.len()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    if text {
        format!("a text file ({} bytes)", bytes.len())
    } else {
        format!("binary data of no image format ({} bytes)", bytes.len())
    }
}

fn known_non_image(bytes: &[u8]) -> Option<&'static str> {
    // ISO-BMFF: size(4) "ftyp" brand(4).
    if bytes.get(4..8) == Some(b"ftyp") {
        return match bytes.get(8..12) {
            Some(b"heic") | Some(b"heix") | Some(b"mif1") | Some(b"msf1") | Some(b"hevc") => {
                Some("HEIC/HEIF image, not supported: convert it to JPEG first")
            }
            Some(b"avif") | Some(b"avis") => {
                Some("AVIF image, not supported: convert it to JPEG first")
            }
            _ => Some("ISO media file (MP4/MOV/HEIF family), not an image we read"),
        };
    }
    let trimmed = {
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(bytes.len());
        &bytes[start..]
    };
    let lower: Vec<u8> = trimmed
        .iter()
        .take(15)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
        return Some("HTML page (a failed download?)");
    }
    if lower.starts_with(b"<?xml") || lower.starts_with(b"<svg") {
        return Some("XML/SVG text, not a raster image");
    }
    if bytes.starts_with(b"%PDF") {
        return Some("PDF document");
    }
    if bytes.starts_with(b"\xff\xd8") {
        return Some("JPEG start-of-image marker not followed by a marker (damaged header)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), ImageFormat::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), ImageFormat::Png);
        assert_eq!(sniff(b"GIF89a\x01\0"), ImageFormat::Gif);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), ImageFormat::Webp);
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), ImageFormat::Tiff);
        assert_eq!(sniff(b"MM\0*\0\0\0\x08"), ImageFormat::Tiff);
        let mut bmp = b"BM\0\0\0\0\0\0\0\0\x36\0\0\0".to_vec();
        bmp.extend_from_slice(&40u32.to_le_bytes());
        assert_eq!(sniff(&bmp), ImageFormat::Bmp);
    }

    #[test]
    fn lookalikes_are_unknown() {
        assert_eq!(sniff(b""), ImageFormat::Unknown);
        assert_eq!(sniff(b"\xff\xd8"), ImageFormat::Unknown);
        assert_eq!(sniff(b"BMW 320i service record\n"), ImageFormat::Unknown);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), ImageFormat::Unknown);
        assert_eq!(sniff(b"this is not an image\n"), ImageFormat::Unknown);
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            describe_start(b"this is not an image\n"),
            "a text file (21 bytes)"
        );
        assert_eq!(
            describe_start("gr\u{fc}n\n".as_bytes()),
            "a text file (6 bytes)"
        );
        assert_eq!(
            describe_start(&[0, 1, 2, 0xfe]),
            "binary data of no image format (4 bytes)"
        );
        // Never the content.
        assert!(!describe_start(b"PASSWORD=hunter2").contains("hunter2"));
        assert!(describe_start(b"\0\0\0\x18ftypheic\0\0").contains("HEIC"));
        assert!(describe_start(b"  <!DOCTYPE html><html>").contains("HTML"));
        assert!(describe_start(b"%PDF-1.7").contains("PDF"));
    }
}
