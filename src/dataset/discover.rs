//! Finding the splits of a COCO-style folder (standard, Roboflow, explicit).

use super::DatasetError;
use std::path::{Path, PathBuf};

/// One split: its name, its annotation JSON and the folder its `file_name`s are relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSource {
    pub name: String,
    pub annotations: PathBuf,
    pub images_dir: PathBuf,
}

/// Discover every split under `root`, sorted by name. Layouts:
/// - standard: `annotations/instances_<split>.json` with images in `<split>/` or `images/<split>/`
/// - Roboflow: `<split>/_annotations.coco.json` beside its images
pub fn discover_splits(root: &Path) -> Result<Vec<SplitSource>, DatasetError> {
    let _ = root;
    todo!("dataset helper implements")
}
