//! Typed COCO annotation parsing: only the fields dsprep needs, the rest skipped.

use super::DatasetError;
use std::path::Path;

/// A category as declared in the JSON (`id` may have gaps, e.g. COCO's 1..90).
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: i64,
    pub name: String,
}

/// One `images[]` entry. `width`/`height` are 0 when the JSON omits them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    pub id: i64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

/// One `annotations[]` entry (segmentation/keypoints are not needed by convert and skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub image_id: i64,
    pub category_id: i64,
    /// `[x, y, w, h]` in pixels of the image as displayed.
    pub bbox: [f64; 4],
    pub area: f64,
    pub iscrowd: bool,
}

/// Annotation-level problems found while loading (counted, reported in the manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadStats {
    /// Annotations whose `image_id` matches no image.
    pub unknown_image: u64,
    /// Annotations whose `category_id` matches no category.
    pub unknown_category: u64,
    /// Images whose `id` repeats an earlier image (later ones are ignored).
    pub duplicate_image_ids: u64,
}

/// A parsed split: images in JSON order, each with its annotations (JSON order kept).
#[derive(Debug, Clone, Default)]
pub struct CocoDataset {
    pub images: Vec<ImageEntry>,
    /// Sorted by id.
    pub categories: Vec<Category>,
    /// Grouped by image: `annotations[ann_start[i]..ann_start[i+1]]` belong to `images[i]`.
    pub annotations: Vec<Annotation>,
    pub ann_start: Vec<usize>,
    pub stats: LoadStats,
}

/// One image with its annotations, borrowed from a [`CocoDataset`].
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub image: &'a ImageEntry,
    pub annotations: &'a [Annotation],
}

impl CocoDataset {
    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
    /// The `i`-th image (JSON order) with its annotations.
    pub fn sample(&self, i: usize) -> Sample<'_> {
        Sample {
            image: &self.images[i],
            annotations: &self.annotations[self.ann_start[i]..self.ann_start[i + 1]],
        }
    }
}

/// Parse a COCO annotation file. Fast and memory-lean: a 450 MB train2017 file in seconds,
/// well under 1 GB.
pub fn load_coco(path: &Path) -> Result<CocoDataset, DatasetError> {
    let _ = path;
    todo!("dataset helper implements")
}
