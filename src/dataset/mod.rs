//! COCO-style dataset discovery and typed, streaming annotation parsing.
//!
//! Lowest layer: knows nothing about shards, images or GPUs. Per-annotation problems are
//! counted (never panics, never silently dropped); only unreadable/invalid files are errors.

pub mod boxes;
pub mod coco;
pub mod discover;
mod json_stream;
pub mod paths;
pub mod rescale;

pub use boxes::{normalize_box, BoxOutcome, NormalizedBox};
pub use coco::{
    category_labels, load_coco, load_coco_hashed, parse_coco_bytes, Annotation, Category,
    CocoDataset, ImageEntry, LoadStats, Sample,
};
pub use discover::{discover_splits, explicit_split, select_split, SplitSource};

use std::path::PathBuf;

/// Errors of this layer; each names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid COCO annotation file: {message} (line {line}, column {column}); fix or re-export the JSON")]
    Json {
        path: PathBuf,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{root}: no COCO split found; expected annotations/instances_<split>.json with <split>/ or images/<split>/, or <split>/_annotations.coco.json, or pass --annotations FILE --images DIR")]
    NoSplits { root: PathBuf },
    #[error("{root}: split {name:?} not found; splits found: {found}")]
    SplitNotFound {
        root: PathBuf,
        name: String,
        found: String,
    },
    #[error("{path}: images folder for split {split:?} not found (looked for {looked_for}); pass --images DIR")]
    ImagesDirMissing {
        path: PathBuf,
        split: String,
        looked_for: String,
    },
    #[error("{root}: split {name:?} found twice ({first} and {second}); remove one, or pass --annotations FILE --images DIR")]
    AmbiguousSplit {
        root: PathBuf,
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("split name {name:?} cannot be used: {reason}; pass a plain name with --split")]
    InvalidSplitName { name: String, reason: &'static str },
}
