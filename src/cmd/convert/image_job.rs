//! One input image → one record (or a reasoned skip), with every box accounted for.
//!
//! Pure per-image work, run in parallel; its result is appended to the shard in input order by
//! the caller, so shard bytes never depend on scheduling.

use crate::dataset::{normalize_box, BoxOutcome, Sample};
use crate::shard::manifest::{DroppedBox, ImageNote, SizeMismatch};
use crate::shard::od_example::{OdObject, OdRecord};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Read-only context shared by all image jobs of a split.
pub struct JobContext<'a> {
    pub images_dir: &'a Path,
    /// COCO category id → (name, label written to the record).
    pub categories: &'a HashMap<i64, (String, i64)>,
    pub decode_check: bool,
    pub presize: Option<u32>,
}

/// What became of one image.
pub struct ImageOutcome {
    /// The serialized Example; `None` when the image was skipped (see `skipped`).
    pub payload: Option<Vec<u8>>,
    pub input_bytes: u64,
    pub skipped: Option<ImageNote>,
    pub reencoded: Option<ImageNote>,
    pub size_mismatch: Option<SizeMismatch>,
    pub dropped: Vec<DroppedBox>,
    pub kept: u64,
    pub clipped: u64,
    pub without_annotations: bool,
}

impl ImageOutcome {
    fn skip(sample: &Sample<'_>, input_bytes: u64, reason: String) -> Self {
        ImageOutcome {
            payload: None,
            input_bytes,
            skipped: Some(note(sample, reason)),
            reencoded: None,
            size_mismatch: None,
            dropped: Vec::new(),
            kept: 0,
            clipped: 0,
            without_annotations: false,
        }
    }
}

fn note(sample: &Sample<'_>, reason: String) -> ImageNote {
    ImageNote {
        file_name: sample.image.file_name.clone(),
        image_id: sample.image.id,
        reason,
    }
}

/// Turn one sample into a record. Never panics and never fails the run: problems become
/// notes in the outcome.
pub fn process_image(ctx: &JobContext<'_>, sample: Sample<'_>) -> ImageOutcome {
    let path = ctx.images_dir.join(&sample.image.file_name);
    let raw = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ImageOutcome::skip(&sample, 0, "file not found".into())
        }
        Err(e) => return ImageOutcome::skip(&sample, 0, format!("cannot read: {e}")),
    };
    let input_bytes = raw.len() as u64;
    let prepared = match crate::image::prepare(&raw, ctx.decode_check) {
        Ok(p) => p,
        Err(e) => return ImageOutcome::skip(&sample, input_bytes, e.to_string()),
    };
    let mut reencoded = prepared
        .reencoded
        .map(|r| note(&sample, r.as_str().to_string()));
    let (mut width, mut height) = (prepared.width, prepared.height);
    let mut stored: std::borrow::Cow<'_, [u8]> = prepared.bytes;
    let mut area_scale = 1.0f64;
    if let Some(limit) = ctx.presize {
        match crate::image::presize::presize_for_convert(&stored, limit) {
            Ok(Some(r)) => {
                area_scale = r.sx * r.sy;
                width = r.width;
                height = r.height;
                stored = std::borrow::Cow::Owned(r.bytes);
                if reencoded.is_none() {
                    reencoded = Some(note(&sample, "presized".into()));
                }
            }
            Ok(None) => {}
            Err(e) => return ImageOutcome::skip(&sample, input_bytes, e.to_string()),
        }
    }

    // Boxes are in the pixel frame the annotation file describes: its width/height when given
    // (the frame the labelling tool saw), else the image's own size before any presize.
    let img = sample.image;
    let (frame_w, frame_h) = if img.width > 0 && img.height > 0 {
        (img.width, img.height)
    } else {
        (prepared.width, prepared.height)
    };
    let size_mismatch = (img.width > 0
        && img.height > 0
        && (img.width, img.height) != (prepared.width, prepared.height))
        .then(|| SizeMismatch {
            file_name: img.file_name.clone(),
            image_id: img.id,
            json: [img.width, img.height],
            image: [prepared.width, prepared.height],
        });

    let mut objects = Vec::with_capacity(sample.annotations.len());
    let mut dropped = Vec::new();
    let (mut kept, mut clipped) = (0, 0);
    for ann in sample.annotations {
        let Some((name, label)) = ctx.categories.get(&ann.category_id) else {
            // Counted once at parse time (LoadStats::unknown_category); never written.
            continue;
        };
        let b = match normalize_box(ann.bbox, frame_w, frame_h) {
            BoxOutcome::Kept(b) => {
                kept += 1;
                b
            }
            BoxOutcome::Clipped(b) => {
                clipped += 1;
                b
            }
            other => {
                let reason = match other {
                    BoxOutcome::DroppedDegenerate => "degenerate",
                    BoxOutcome::DroppedOutside => "outside_image",
                    _ => "invalid",
                };
                dropped.push(DroppedBox {
                    file_name: img.file_name.clone(),
                    image_id: img.id,
                    bbox: ann.bbox,
                    reason: reason.into(),
                });
                continue;
            }
        };
        objects.push(OdObject {
            xmin: b.xmin,
            ymin: b.ymin,
            xmax: b.xmax,
            ymax: b.ymax,
            class_text: name,
            class_label: *label,
            is_crowd: ann.iscrowd,
            area: (ann.area * area_scale) as f32,
        });
    }

    let record = OdRecord {
        height,
        width,
        filename: &img.file_name,
        source_id: img.id.to_string(),
        sha256_hex: hex::encode(Sha256::digest(&stored)),
        encoded: &stored,
        format: "jpeg",
        objects,
    };
    let mut payload = Vec::with_capacity(stored.len() + 512);
    record.encode_into(&mut payload);
    ImageOutcome {
        payload: Some(payload),
        input_bytes,
        skipped: None,
        reencoded,
        size_mismatch,
        dropped,
        kept,
        clipped,
        without_annotations: sample.annotations.is_empty(),
    }
}
