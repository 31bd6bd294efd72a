//! `manifest.json`: the complete accounting of a conversion.
//!
//! Every input image is either a record in exactly one shard or listed under `skipped` with its
//! reason; every annotation is either a box in a record or counted under a drop reason. The file
//! is rewritten atomically after every finished shard with `complete: false`, which is what
//! `--resume` trusts, and a last time with `complete: true`. It holds no timestamps, so the same
//! input and options give the same manifest.

mod deal;
pub mod part;
mod presize;

pub use deal::DealOptions;
pub use presize::{PresizeManifest, PresizeManifestOptions, PresizeSplit, PRESIZE_MANIFEST_KIND};

use super::format::{ShardFormat, ShardRef};
use super::writer::ShardInfo;
use super::ShardError;
use crate::image::resize::Fit;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Bumped when the layout of the manifest or of the records changes incompatibly.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// File name inside the output folder.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub tool: String,
    pub tool_version: String,
    pub format_version: u32,
    /// False while a conversion is running or after it was interrupted.
    pub complete: bool,
    /// Options that determine the bytes of the output (resume refuses to mix different ones).
    pub options: ManifestOptions,
    /// Categories of all splits, by COCO id.
    pub categories: Vec<CategoryEntry>,
    pub splits: Vec<SplitEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestOptions {
    pub format: ShardFormat,
    pub labels: LabelMode,
    /// Target bytes per shard, when sharding by size.
    pub shard_size: Option<u64>,
    /// Requested shard count, when sharding by count.
    pub shards: Option<u32>,
    pub decode_check: bool,
    /// Size limit applied to the images (convert --presize, or presize of a shard folder).
    pub presize: Option<u32>,
    /// How `presize` applies: absent = longest side at most `presize` (convert --presize and
    /// the default of `dsprep presize`), "shortest" = shorter side equal to it (never upscaled).
    #[serde(default, skip_serializing_if = "is_longest")]
    pub presize_mode: Fit,
    /// `--shuffle` / `--shard-multiple` (absent from the JSON when unset).
    #[serde(flatten)]
    pub deal: DealOptions,
}

fn is_longest(f: &Fit) -> bool {
    *f == Fit::Longest
}

/// What `image/object/class/label` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelMode {
    /// The COCO category id (gaps kept, e.g. 1..90); matches label_map.pbtxt.
    Coco,
    /// Contiguous 0..K-1 in category-id order (the mapping is in the manifest).
    Contiguous,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CategoryEntry {
    /// COCO category id (what label_map.pbtxt and `--labels coco` use).
    pub id: i64,
    pub name: String,
    /// Contiguous 0..K-1 index in id order (what `--labels contiguous` writes).
    pub contiguous_label: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitEntry {
    pub name: String,
    pub annotations: String,
    /// SHA-256 of the annotation file: `--resume` refuses a changed input.
    pub annotations_sha256: String,
    pub images_dir: String,
    /// Images listed in the annotation file (= records + skipped).
    pub images: u64,
    pub records: u64,
    pub counts: Counts,
    /// Annotation-level problems found while parsing (not tied to one image).
    pub annotations_unknown_image: u64,
    pub annotations_unknown_category: u64,
    pub duplicate_image_ids: u64,
    pub shards: Vec<ShardEntry>,
}

/// Per-image and per-box outcome counts (summed over shards for a split).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub skipped: u64,
    pub without_annotations: u64,
    /// Images stored re-encoded, by reason (exif_orientation, cmyk, not_jpeg_png, ...).
    pub reencoded: BTreeMap<String, u64>,
    pub size_mismatch: u64,
    pub boxes_kept: u64,
    pub boxes_clipped: u64,
    /// Dropped boxes by reason (degenerate, outside_image, invalid).
    pub boxes_dropped: BTreeMap<String, u64>,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.records += other.records;
        self.skipped += other.skipped;
        self.without_annotations += other.without_annotations;
        for (k, v) in &other.reencoded {
            *self.reencoded.entry(k.clone()).or_default() += v;
        }
        self.size_mismatch += other.size_mismatch;
        self.boxes_kept += other.boxes_kept;
        self.boxes_clipped += other.boxes_clipped;
        for (k, v) in &other.boxes_dropped {
            *self.boxes_dropped.entry(k.clone()).or_default() += v;
        }
    }

    pub fn boxes_dropped_total(&self) -> u64 {
        self.boxes_dropped.values().sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardEntry {
    #[serde(flatten)]
    pub info: ShardInfo,
    pub counts: Counts,
    /// Input images of this shard that did not become records.
    pub skipped: Vec<ImageNote>,
    /// Records whose image bytes are not the original file (and why).
    pub reencoded: Vec<ImageNote>,
    /// Images whose JSON width/height disagree with the file (after EXIF orientation).
    pub size_mismatches: Vec<SizeMismatch>,
    /// Boxes dropped, with the image they belonged to.
    pub dropped_boxes: Vec<DroppedBox>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageNote {
    pub file_name: String,
    pub image_id: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SizeMismatch {
    pub file_name: String,
    pub image_id: i64,
    pub json: [u32; 2],
    pub image: [u32; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DroppedBox {
    pub file_name: String,
    pub image_id: i64,
    pub bbox: [f64; 4],
    pub reason: String,
}

/// The manifest of an output folder, whichever command wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum FolderManifest {
    /// A shard folder (`convert`, or `presize` of a shard folder).
    Shards(Manifest),
    /// A COCO folder written by `presize`.
    Presize(PresizeManifest),
}

/// Reads `dir/manifest.json` as whichever manifest it is; `Ok(None)` when there is none. A file
/// that is neither is a corrupt manifest (named, with what is wrong).
pub fn load_folder_manifest(dir: &Path) -> Result<Option<FolderManifest>, ShardError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ShardError::Io { path, source }),
    };
    let corrupt = |e: serde_json::Error| ShardError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: format!("not a dsprep manifest: {e}"),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if value.get("kind").and_then(|k| k.as_str()) == Some(PRESIZE_MANIFEST_KIND) {
        return serde_json::from_value(value)
            .map(|m| Some(FolderManifest::Presize(m)))
            .map_err(corrupt);
    }
    let m: Manifest = serde_json::from_value(value).map_err(corrupt)?;
    m.check_version(&path)?;
    Ok(Some(FolderManifest::Shards(m)))
}

impl Manifest {
    /// The shards this manifest lists under `dir` (of one split, or all), in manifest order;
    /// shards that were never written (every image skipped) are left out. A shard or index name
    /// that is not a plain file name inside `dir` makes the manifest corrupt: data never
    /// chooses where dsprep reads.
    pub fn shard_refs(&self, dir: &Path, split: Option<&str>) -> Result<Vec<ShardRef>, ShardError> {
        let path = dir.join(MANIFEST_FILE);
        let splits: Vec<&SplitEntry> = match split {
            None => self.splits.iter().collect(),
            Some(name) => {
                let found: Vec<&SplitEntry> =
                    self.splits.iter().filter(|s| s.name == name).collect();
                if found.is_empty() {
                    let names: Vec<&str> = self.splits.iter().map(|s| s.name.as_str()).collect();
                    return Err(ShardError::Corrupt {
                        path,
                        offset: 0,
                        reason: format!(
                            "no split {name:?} here; splits: {}",
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    });
                }
                found
            }
        };
        let mut out = Vec::new();
        for shard in splits.iter().flat_map(|s| &s.shards) {
            if shard.info.records == 0 && shard.info.checksum.is_empty() {
                continue;
            }
            let file = plain_name(&shard.info.file, &path)?;
            let index = match &shard.info.index {
                Some(i) => Some(dir.join(plain_name(i, &path)?)),
                None => None,
            };
            out.push(ShardRef {
                path: dir.join(file),
                format: self.options.format,
                index,
            });
        }
        Ok(out)
    }

    /// Read `dir/manifest.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Manifest>, ShardError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ShardError::Io { path, source }),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| ShardError::Corrupt {
            path: path.clone(),
            offset: 0,
            reason: format!("not a dsprep manifest: {e}"),
        })?;
        m.check_version(&path)?;
        Ok(Some(m))
    }

    /// A manifest of another layout is not read as if it were this one.
    fn check_version(&self, path: &Path) -> Result<(), ShardError> {
        if self.format_version == MANIFEST_FORMAT_VERSION {
            return Ok(());
        }
        Err(ShardError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!(
                "manifest format_version {} (written by dsprep {}); this dsprep reads version {MANIFEST_FORMAT_VERSION}: use the dsprep that wrote it",
                self.format_version, self.tool_version
            ),
        })
    }

    /// Write `dir/manifest.json` atomically (temp file + rename: a reader or a crashed process
    /// never sees half a file). No fsync: called after every shard, where a journal commit each
    /// time cost more than the shard itself; see [`Manifest::store_durable`].
    pub fn store(&self, dir: &Path) -> Result<(), ShardError> {
        self.store_with(dir, false)
    }

    /// Like [`Manifest::store`], and fsync the file and the folder (power-loss safe).
    pub fn store_durable(&self, dir: &Path) -> Result<(), ShardError> {
        self.store_with(dir, true)
    }

    fn store_with(&self, dir: &Path, durable: bool) -> Result<(), ShardError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| ShardError::Corrupt {
            path: dir.join(MANIFEST_FILE),
            offset: 0,
            reason: format!("cannot serialise manifest: {e}"),
        })?;
        text.push(b'\n');
        super::atomic::write_atomic(&dir.join(MANIFEST_FILE), &text, durable)
    }
}

/// `name` when it is one plain file name (no folder, no `..`, not absolute, not empty);
/// otherwise the manifest at `manifest` is corrupt.
pub fn plain_name<'a>(name: &'a str, manifest: &Path) -> Result<&'a str, ShardError> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(_)), None) if !name.contains('/') => Ok(name),
        _ => Err(ShardError::Corrupt {
            path: manifest.to_path_buf(),
            offset: 0,
            reason: format!(
                "names the file {name:?}, which is not a plain file name inside its folder; \
                 the manifest is damaged or was edited"
            ),
        }),
    }
}

/// TF Object Detection API label map text (`item { name: … id: … display_name: … }`).
pub fn label_map_pbtxt(categories: &[CategoryEntry]) -> String {
    let mut out = String::new();
    for c in categories {
        let name = pbtxt_escape(&c.name);
        out.push_str(&format!(
            "item {{\n  name: \"{name}\"\n  id: {}\n  display_name: \"{name}\"\n}}\n",
            c.id
        ));
    }
    out
}

fn pbtxt_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_map_is_tf_od_format_and_escaped() {
        let cats = vec![
            CategoryEntry {
                id: 1,
                name: "person".into(),
                contiguous_label: 0,
            },
            CategoryEntry {
                id: 90,
                name: "tooth\"brush".into(),
                contiguous_label: 1,
            },
        ];
        let text = label_map_pbtxt(&cats);
        assert_eq!(
            text,
            "item {\n  name: \"person\"\n  id: 1\n  display_name: \"person\"\n}\n\
             item {\n  name: \"tooth\\\"brush\"\n  id: 90\n  display_name: \"tooth\\\"brush\"\n}\n"
        );
    }

    #[test]
    fn counts_add_merges_maps() {
        let mut a = Counts::default();
        a.boxes_dropped.insert("degenerate".into(), 2);
        let mut b = Counts::default();
        b.boxes_dropped.insert("degenerate".into(), 1);
        b.boxes_dropped.insert("outside_image".into(), 4);
        b.records = 3;
        a.add(&b);
        assert_eq!(a.records, 3);
        assert_eq!(a.boxes_dropped_total(), 7);
        assert_eq!(a.boxes_dropped["degenerate"], 3);
    }
}
