//! Finding the splits of a COCO-style folder (standard, Roboflow, explicit).
//!
//! Why discovery is strict about images folders but lenient about stray JSON: a missing images
//! folder for a real `instances_*.json` is a user mistake worth stopping for (every image would
//! be reported missing), while an unrelated `*.json` lying in `annotations/` (a class list, a
//! panoptic file) must not make the whole run fail.

use super::DatasetError;
use std::fs;
use std::path::{Path, PathBuf};

/// One split: its name, its annotation JSON and the folder its `file_name`s are relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSource {
    pub name: String,
    pub annotations: PathBuf,
    pub images_dir: PathBuf,
}

/// Annotation files in `annotations/` that are not object-detection instances (COCO ships
/// them beside `instances_*.json`); skipped by discovery.
const NON_DETECTION_PREFIXES: &[&str] = &[
    "person_keypoints_",
    "captions_",
    "panoptic_",
    "stuff_",
    "image_info_",
];

/// The Roboflow COCO export's per-split annotation file name.
pub const ROBOFLOW_ANNOTATIONS: &str = "_annotations.coco.json";

/// Discover every split under `root`, sorted by name. Layouts:
/// - standard: `annotations/instances_<split>.json` with images in `<split>/` or `images/<split>/`
///   (also `annotations/<split>.json`, taken only when such an images folder exists);
/// - Roboflow: `<split>/_annotations.coco.json` beside its images (also `root` itself being
///   such a split folder, named after it).
///
/// Keypoint, caption, panoptic, stuff and image-info files are skipped. The same split name
/// found twice (e.g. both layouts) is an error rather than a silent pick.
pub fn discover_splits(root: &Path) -> Result<Vec<SplitSource>, DatasetError> {
    let io_err = |path: &Path, source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(root).map_err(|e| io_err(root, e))?;
    if !meta.is_dir() {
        return Err(DatasetError::NoSplits {
            root: root.to_path_buf(),
        });
    }
    let mut found: Vec<SplitSource> = Vec::new();

    // Standard layout. `instances_<split>.json` beats `<split>.json` for the same split.
    let ann_dir = root.join("annotations");
    if ann_dir.is_dir() {
        let mut instances = Vec::new();
        let mut generic = Vec::new();
        for (name, path) in json_files(&ann_dir).map_err(|e| io_err(&ann_dir, e))? {
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if let Some(split) = stem.strip_prefix("instances_") {
                if !split.is_empty() {
                    instances.push((split.to_string(), path));
                }
            } else if !stem.is_empty()
                && !NON_DETECTION_PREFIXES.iter().any(|p| stem.starts_with(p))
            {
                generic.push((stem.to_string(), path));
            }
        }
        for (split, path) in &instances {
            let dir =
                standard_images_dir(root, split).ok_or_else(|| DatasetError::ImagesDirMissing {
                    path: path.clone(),
                    split: split.clone(),
                    looked_for: format!(
                        "{}, {}",
                        root.join(split).display(),
                        root.join("images").join(split).display()
                    ),
                })?;
            found.push(SplitSource {
                name: split.clone(),
                annotations: path.clone(),
                images_dir: dir,
            });
        }
        for (split, path) in generic {
            if instances.iter().any(|(s, _)| *s == split) {
                continue;
            }
            if let Some(dir) = standard_images_dir(root, &split) {
                found.push(SplitSource {
                    name: split,
                    annotations: path,
                    images_dir: dir,
                });
            }
        }
    }

    // Roboflow layout: each sub-folder with its own annotation file.
    for (name, dir) in sub_dirs(root).map_err(|e| io_err(root, e))? {
        let ann = dir.join(ROBOFLOW_ANNOTATIONS);
        if ann.is_file() {
            found.push(SplitSource {
                name,
                annotations: ann,
                images_dir: dir,
            });
        }
    }
    // `root` is itself one Roboflow split folder.
    let own = root.join(ROBOFLOW_ANNOTATIONS);
    if own.is_file() {
        found.push(SplitSource {
            name: dir_name(root),
            annotations: own,
            images_dir: root.to_path_buf(),
        });
    }

    found.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = found.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(DatasetError::AmbiguousSplit {
            root: root.to_path_buf(),
            name: w[0].name.clone(),
            first: w[0].annotations.clone(),
            second: w[1].annotations.clone(),
        });
    }
    if found.is_empty() {
        return Err(DatasetError::NoSplits {
            root: root.to_path_buf(),
        });
    }
    Ok(found)
}

/// The split for `--annotations FILE --images DIR`. The name is `name` if given, else the file
/// stem without `instances_` (`instances_val2017.json` → `val2017`; a Roboflow
/// `_annotations.coco.json` → its folder's name).
pub fn explicit_split(
    annotations: &Path,
    images: &Path,
    name: Option<&str>,
) -> Result<SplitSource, DatasetError> {
    let meta = fs::metadata(annotations).map_err(|source| DatasetError::Io {
        path: annotations.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(DatasetError::Io {
            path: annotations.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is not a file; --annotations takes the COCO JSON file",
            ),
        });
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => default_split_name(annotations),
    };
    validate_split_name(&name)?;
    if !images.is_dir() {
        return Err(DatasetError::ImagesDirMissing {
            path: annotations.to_path_buf(),
            split: name,
            looked_for: images.display().to_string(),
        });
    }
    Ok(SplitSource {
        name,
        annotations: annotations.to_path_buf(),
        images_dir: images.to_path_buf(),
    })
}

/// The split called `name` (for `--split NAME`), or `SplitNotFound` listing those found.
pub fn select_split(
    splits: Vec<SplitSource>,
    name: &str,
    root: &Path,
) -> Result<SplitSource, DatasetError> {
    let found = split_names(&splits);
    splits
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| DatasetError::SplitNotFound {
            root: root.to_path_buf(),
            name: name.to_string(),
            found,
        })
}

fn split_names(splits: &[SplitSource]) -> String {
    if splits.is_empty() {
        "(none)".to_string()
    } else {
        splits
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn default_split_name(annotations: &Path) -> String {
    let file = annotations
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file == ROBOFLOW_ANNOTATIONS {
        let parent = annotations.parent().unwrap_or(Path::new(""));
        // `Path::new("x.json").parent()` is "" — fall back to the current folder's name.
        let parent = if parent.as_os_str().is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            parent
                .canonicalize()
                .unwrap_or_else(|_| parent.to_path_buf())
        };
        return dir_name(&parent);
    }
    let stem = annotations
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.strip_prefix("instances_").unwrap_or(&stem);
    if stem.is_empty() {
        "default".to_string()
    } else {
        stem.to_string()
    }
}

/// Split names become shard file names (`<split>-00000-of-00016.tfrecord`), so they must be a
/// single, non-empty path component.
fn validate_split_name(name: &str) -> Result<(), DatasetError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it is a relative folder reference")
    } else if name.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DatasetError::InvalidSplitName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `<split>/` or `images/<split>/` under `root`, the first that is a folder.
fn standard_images_dir(root: &Path, split: &str) -> Option<PathBuf> {
    [root.join(split), root.join("images").join(split)]
        .into_iter()
        .find(|p| p.is_dir())
}

fn dir_name(dir: &Path) -> String {
    let resolved = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    resolved
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// `(file name, path)` of regular `*.json` files (symlinks followed) with UTF-8 names.
fn json_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if name.ends_with(".json") && path.is_file() {
            out.push((name, path));
        }
    }
    Ok(out)
}

/// `(name, path)` of sub-folders (symlinks followed) with UTF-8 names, skipping hidden ones.
fn sub_dirs(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if !name.starts_with('.') && path.is_dir() {
            out.push((name, path));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn touch(p: &Path) -> std::io::Result<()> {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(p, b"{}")
    }

    fn names(s: &[SplitSource]) -> Vec<&str> {
        s.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn standard_layout_both_image_folder_styles_sorted() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        touch(&r.join("annotations/instances_val2017.json"))?;
        touch(&r.join("annotations/instances_train2017.json"))?;
        touch(&r.join("annotations/person_keypoints_train2017.json"))?;
        touch(&r.join("annotations/captions_val2017.json"))?;
        touch(&r.join("annotations/panoptic_val2017.json"))?;
        touch(&r.join("annotations/README.txt"))?;
        fs::create_dir_all(r.join("train2017"))?;
        fs::create_dir_all(r.join("images/val2017"))?;
        fs::create_dir_all(r.join("panoptic_val2017"))?;
        let s = discover_splits(r)?;
        assert_eq!(names(&s), vec!["train2017", "val2017"]);
        assert_eq!(s[0].images_dir, r.join("train2017"));
        assert_eq!(
            s[0].annotations,
            r.join("annotations/instances_train2017.json")
        );
        assert_eq!(s[1].images_dir, r.join("images/val2017"));
        Ok(())
    }

    #[test]
    fn split_folder_beside_root_wins_over_images_subfolder() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        touch(&r.join("annotations/instances_val.json"))?;
        fs::create_dir_all(r.join("val"))?;
        fs::create_dir_all(r.join("images/val"))?;
        let s = discover_splits(r)?;
        assert_eq!(s[0].images_dir, r.join("val"));
        Ok(())
    }

    #[test]
    fn plain_split_json_needs_an_images_folder() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        touch(&r.join("annotations/train.json"))?;
        touch(&r.join("annotations/classes.json"))?; // no classes/ folder: ignored
        touch(&r.join("annotations/instances_val.json"))?;
        touch(&r.join("annotations/val.json"))?; // instances_val wins
        fs::create_dir_all(r.join("images/train"))?;
        fs::create_dir_all(r.join("val"))?;
        let s = discover_splits(r)?;
        assert_eq!(names(&s), vec!["train", "val"]);
        assert_eq!(s[0].annotations, r.join("annotations/train.json"));
        assert_eq!(s[1].annotations, r.join("annotations/instances_val.json"));
        Ok(())
    }

    #[test]
    fn missing_images_folder_names_paths() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        touch(&r.join("annotations/instances_val2017.json"))?;
        let e = discover_splits(r).err().ok_or("expected an error")?;
        assert!(
            matches!(e, DatasetError::ImagesDirMissing { ref split, .. } if split == "val2017")
        );
        let msg = e.to_string();
        assert!(msg.contains("instances_val2017.json"), "{msg}");
        assert!(
            msg.contains(&r.join("val2017").display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains(&r.join("images/val2017").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("--images"), "{msg}");
        Ok(())
    }

    #[test]
    fn roboflow_layout() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        touch(&r.join("valid/_annotations.coco.json"))?;
        touch(&r.join("train/_annotations.coco.json"))?;
        touch(&r.join("test/_annotations.coco.json"))?;
        fs::create_dir_all(r.join("notes"))?;
        touch(&r.join("README.roboflow.txt"))?;
        let s = discover_splits(r)?;
        assert_eq!(names(&s), vec!["test", "train", "valid"]);
        assert_eq!(s[1].images_dir, r.join("train"));
        assert_eq!(s[1].annotations, r.join("train/_annotations.coco.json"));
        Ok(())
    }

    #[test]
    fn root_is_a_roboflow_split_folder() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path().join("valid");
        touch(&r.join(ROBOFLOW_ANNOTATIONS))?;
        let s = discover_splits(&r)?;
        assert_eq!(names(&s), vec!["valid"]);
        assert_eq!(s[0].images_dir, r);
        Ok(())
    }

    #[test]
    fn same_split_in_both_layouts_is_ambiguous() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        touch(&r.join("annotations/instances_train.json"))?;
        touch(&r.join("train/_annotations.coco.json"))?;
        let e = discover_splits(r).err().ok_or("expected an error")?;
        assert!(matches!(e, DatasetError::AmbiguousSplit { ref name, .. } if name == "train"));
        Ok(())
    }

    #[test]
    fn empty_or_unrelated_folder_has_no_splits() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        fs::create_dir_all(r.join("photos"))?;
        touch(&r.join("annotations/person_keypoints_val2017.json"))?;
        let e = discover_splits(r).err().ok_or("expected an error")?;
        assert!(matches!(e, DatasetError::NoSplits { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains(&r.display().to_string()) && msg.contains("--annotations"),
            "{msg}"
        );
        let e = discover_splits(&r.join("nope"))
            .err()
            .ok_or("expected an error")?;
        assert!(matches!(e, DatasetError::Io { .. }), "{e}");
        let e = discover_splits(&r.join("annotations/person_keypoints_val2017.json"))
            .err()
            .ok_or("expected an error")?;
        assert!(matches!(e, DatasetError::NoSplits { .. }), "{e}");
        Ok(())
    }

    #[test]
    fn committed_fixtures_are_discovered() -> R {
        let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        if fx.join("coco").is_dir() {
            assert_eq!(names(&discover_splits(&fx.join("coco"))?), vec!["val"]);
        }
        if fx.join("coco-bad").is_dir() {
            let s = discover_splits(&fx.join("coco-bad"))?;
            assert_eq!(s[0].images_dir, fx.join("coco-bad/images/val"));
        }
        if fx.join("roboflow").is_dir() {
            assert_eq!(
                names(&discover_splits(&fx.join("roboflow"))?),
                vec!["train", "valid"]
            );
        }
        Ok(())
    }

    #[test]
    fn explicit_split_names_and_checks() -> R {
        let t = tempfile::tempdir()?;
        let r = t.path();
        let ann = r.join("instances_minival2014.json");
        touch(&ann)?;
        let img = r.join("imgs");
        fs::create_dir_all(&img)?;
        let s = explicit_split(&ann, &img, None)?;
        assert_eq!(s.name, "minival2014");
        assert_eq!((s.annotations, s.images_dir), (ann.clone(), img.clone()));
        assert_eq!(explicit_split(&ann, &img, Some("custom"))?.name, "custom");

        let other = r.join("my.labels.json");
        touch(&other)?;
        assert_eq!(explicit_split(&other, &img, None)?.name, "my.labels");

        let rf = r.join("valid").join(ROBOFLOW_ANNOTATIONS);
        touch(&rf)?;
        assert_eq!(explicit_split(&rf, &img, None)?.name, "valid");

        let e = explicit_split(&ann, &r.join("missing"), None)
            .err()
            .ok_or("expected error")?;
        assert!(matches!(e, DatasetError::ImagesDirMissing { .. }));
        assert!(e.to_string().contains("missing"), "{e}");
        let e = explicit_split(&r.join("nope.json"), &img, None)
            .err()
            .ok_or("expected error")?;
        assert!(matches!(e, DatasetError::Io { .. }));
        assert!(e.to_string().contains("nope.json"), "{e}");
        let e = explicit_split(&img, &img, None)
            .err()
            .ok_or("expected error")?;
        assert!(e.to_string().contains("not a file"), "{e}");
        for bad in ["", "..", "a/b", "a\\b", "x\ny"] {
            let e = explicit_split(&ann, &img, Some(bad))
                .err()
                .ok_or("expected error")?;
            assert!(
                matches!(e, DatasetError::InvalidSplitName { .. }),
                "{bad:?}: {e}"
            );
        }
        Ok(())
    }

    #[test]
    fn select_split_finds_or_lists() -> R {
        let mk = |n: &str| SplitSource {
            name: n.into(),
            annotations: PathBuf::from(format!("{n}.json")),
            images_dir: PathBuf::from(n),
        };
        let all = vec![mk("train2017"), mk("val2017")];
        assert_eq!(
            select_split(all.clone(), "val2017", Path::new("/d"))?.name,
            "val2017"
        );
        let e = select_split(all, "test", Path::new("/d"))
            .err()
            .ok_or("expected error")?;
        assert!(matches!(e, DatasetError::SplitNotFound { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("\"test\"") && msg.contains("train2017, val2017"),
            "{msg}"
        );
        let e = select_split(vec![], "x", Path::new("/d"))
            .err()
            .ok_or("expected error")?;
        assert!(e.to_string().contains("(none)"));
        Ok(())
    }
}
