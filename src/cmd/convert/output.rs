//! The output folder: fresh, overwritten (dsprep's own outputs only) or resumed.

use crate::dataset::CocoDataset;
use crate::plan::convert::OutputMode;
use crate::shard::manifest::{Manifest, ManifestOptions, ShardEntry, MANIFEST_FILE};
use crate::shard::writer::shard_checksum;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// Is this a file or folder dsprep writes (and so may remove)?
fn is_ours(name: &str) -> bool {
    name == MANIFEST_FILE
        || name == "label_map.pbtxt"
        || name.ends_with(".partial")
        || name.ends_with(".tfrecord")
        || name.ends_with(".idx")
        || name.ends_with(".lmdb")
}

/// Create the folder and clear what the mode says; returns the earlier manifest on resume.
pub fn prepare_output_dir(out: &Path, mode: OutputMode) -> Result<Option<Manifest>> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create output folder", out.display()))?;
    let previous = match mode {
        OutputMode::Resume => Manifest::load(out)?,
        _ => None,
    };
    for entry in
        std::fs::read_dir(out).with_context(|| format!("{}: cannot list", out.display()))?
    {
        let entry = entry.with_context(|| format!("{}: cannot list", out.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let remove = match mode {
            OutputMode::Overwrite => is_ours(&name),
            // Leftovers of an interrupted run are never trusted.
            OutputMode::Resume | OutputMode::Fresh => name.ends_with(".partial"),
        };
        if remove {
            let path = entry.path();
            let r = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(previous)
}

/// Shards of an interrupted run that can be kept: same options, same annotation files, and the
/// shard's bytes still hash to what was recorded when it finished.
pub fn reusable_shards(
    prev: &Manifest,
    options: &ManifestOptions,
    datasets: &[(CocoDataset, String)],
    out: &Path,
) -> Result<HashMap<String, ShardEntry>> {
    if &prev.options != options {
        bail!(
            "--resume: {} was written with other options ({:?}); rerun with those, or use --overwrite",
            out.join(MANIFEST_FILE).display(),
            prev.options
        );
    }
    let current: Vec<&String> = datasets.iter().map(|d| &d.1).collect();
    let before: Vec<&String> = prev.splits.iter().map(|s| &s.annotations_sha256).collect();
    if current != before {
        bail!("--resume: the annotation files changed since the interrupted run; use --overwrite");
    }
    let mut keep = HashMap::new();
    for shard in prev.splits.iter().flat_map(|s| &s.shards) {
        let ok = shard_checksum(out, &shard.info.file).is_ok_and(|h| h == shard.info.checksum)
            && shard
                .info
                .index
                .as_ref()
                .is_none_or(|i| out.join(i).is_file());
        if ok {
            keep.insert(shard.info.file.clone(), shard.clone());
        }
    }
    Ok(keep)
}
