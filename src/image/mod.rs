//! CPU image work: cheap JPEG header inspection, EXIF orientation, re-encoding of what readers
//! cannot take as is, full decode (the reference for GPU tests), resize and encode.
//!
//! - [`sniff`]: container format by magic bytes (never by file name).
//! - [`parse_jpeg_header`]: marker walk, no decoding; finds truncation, CMYK, EXIF orientation.
//! - [`prepare`]: the bytes `convert` stores, so every reader sees the pixels the annotations
//!   describe (original bytes for clean JPEGs, a baseline re-encode otherwise).
//! - [`decode_rgb8`]: full CPU decode to RGB, the reference the GPU decoders are tested against.

pub mod decode;
pub mod exif;
pub mod fast_decode;
pub mod jpeg_header;
pub mod prepare;
pub mod sniff;
// presize (fast reduced decode → plane resize → turbojpeg encode)
pub mod encode;
pub mod presize;
mod reduced_jpeg;
pub mod resize;
pub mod scaled_decode;

pub use decode::{decode_rgb8, decode_rgb8_oriented, RgbImage, MAX_DECODE_PIXELS};
pub use exif::Orientation;
pub use jpeg_header::{parse_jpeg_header, ColorModel, Component, JpegHeader, Process, Subsampling};
pub use prepare::{encode_baseline_jpeg, prepare, Prepared, ReencodeReason, REENCODE_QUALITY};
pub use sniff::{sniff, ImageFormat};

/// Why an image cannot be used. `Display` is the reason shown to users; the caller adds the
/// file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("empty file")]
    Empty,
    /// Not a format we read; the text says what the bytes look like instead.
    #[error("not an image ({0})")]
    NotAnImage(String),
    #[error(
        "truncated JPEG: {what} (file ends at byte {len}); the file is incomplete, \
         re-download or re-export it"
    )]
    Truncated { what: &'static str, len: usize },
    #[error("malformed JPEG: {what} at byte {offset}; re-export the file")]
    Malformed { what: String, offset: usize },
    /// A JPEG variant that no decoder here reads (12-bit DCT, arithmetic coding, ...).
    #[error("unsupported JPEG variant ({what}): {reason}; re-save it as an 8-bit baseline JPEG")]
    UnsupportedVariant { what: String, reason: String },
    /// The decoder rejected the data (corrupt entropy-coded data, bad PNG chunks, ...).
    #[error("cannot decode {format} data: {reason}")]
    Decode { format: ImageFormat, reason: String },
    #[error(
        "image is {width}x{height} pixels, over the {limit}-pixel decode limit; \
         downscale it before converting"
    )]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("cannot encode JPEG: {0}")]
    Encode(String),
}

impl ImageError {
    pub(crate) fn malformed(what: &str, offset: usize) -> ImageError {
        ImageError::Malformed {
            what: what.to_string(),
            offset,
        }
    }

    pub(crate) fn decode(format: ImageFormat, reason: impl std::fmt::Display) -> ImageError {
        ImageError::Decode {
            format,
            reason: reason.to_string(),
        }
    }

    /// The error for bytes that are no image we read (empty, or unknown magic).
    pub fn not_an_image(bytes: &[u8]) -> ImageError {
        if bytes.is_empty() {
            ImageError::Empty
        } else {
            ImageError::NotAnImage(sniff::describe_start(bytes))
        }
    }
}
