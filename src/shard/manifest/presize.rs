//! `OUT/manifest.json` of a COCO-folder presize (`dsprep presize coco/ out/`): what was done to
//! every image, and which images are not in the output and why. The output is a COCO folder,
//! not a shard folder, so this is its own document (`"kind": "dsprep-presize"`); a presize of a
//! shard folder writes a shard-folder [`super::Manifest`] instead.

use super::{ImageNote, SizeMismatch};
use crate::dataset::rescale::RescaleStats;
use crate::image::resize::Fit;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Identifies a presize manifest (a convert manifest has shards instead).
pub const PRESIZE_MANIFEST_KIND: &str = "dsprep-presize";

/// `OUT/manifest.json` of a COCO-folder presize.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresizeManifest {
    pub kind: String,
    pub tool_version: String,
    /// False while running (written at the start) and after an interruption.
    pub complete: bool,
    pub options: PresizeManifestOptions,
    pub splits: Vec<PresizeSplit>,
}

/// Options that decide the output bytes: `--resume` refuses to mix different ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PresizeManifestOptions {
    pub size: u32,
    pub mode: Fit,
    pub quality: u8,
    pub reencode: bool,
}

/// One split of a COCO-folder presize.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PresizeSplit {
    pub name: String,
    /// Paths relative to OUT.
    pub annotations: String,
    pub images_dir: String,
    pub images: u64,
    pub resized: u64,
    pub passed_through: u64,
    /// Within the limit but rotated (EXIF), converted (PNG/CMYK/...) or re-encoded on request.
    pub rewritten_same_size: u64,
    /// Kept from an earlier interrupted run (`--resume`). A fact about the run, not the
    /// output: not written, so a resumed output's manifest is the one a clean run writes.
    #[serde(skip)]
    pub resumed: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Every image not in the output, with the reason; they and their annotations are removed
    /// from the output annotation file.
    pub failures: Vec<ImageNote>,
    /// Images whose JSON width/height disagree with the file (after EXIF orientation);
    /// annotations were scaled from the JSON's frame.
    pub size_mismatches: Vec<SizeMismatch>,
    pub annotation_counts: RescaleStats,
    /// How many images were decoded at 1/1, 1/2, 3/8, 1/4, 1/8 scale.
    pub dct_scales: BTreeMap<String, u64>,
    /// The image files this run wrote (relative to `images_dir`), in annotation-file order:
    /// what `--overwrite` may remove.
    #[serde(default)]
    pub written: Vec<String>,
}

impl PresizeManifest {
    /// A new, incomplete manifest.
    pub fn new(options: PresizeManifestOptions, splits: Vec<PresizeSplit>) -> Self {
        PresizeManifest {
            kind: PRESIZE_MANIFEST_KIND.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            complete: false,
            options,
            splits,
        }
    }
}
