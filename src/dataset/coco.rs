//! Typed COCO annotation parsing: only the fields dsprep needs, the rest skipped.
//!
//! Why this shape: COCO train2017's instances file is ~450 MB, almost all of it polygon
//! `segmentation` numbers that convert never uses. Parsing into `serde_json::Value` costs
//! gigabytes and tens of seconds; here the file is read in bounded chunks
//! ([`super::json_stream`]: memory holds a few MB of it at a time, not the file) and each
//! image/annotation/category is parsed by `serde_json` into a small typed struct, every field we
//! do not name (segmentation, keypoints, info, licenses, vendor extras) skipped with
//! [`serde::de::IgnoredAny`], which scans over it without allocating or converting numbers.
//! Annotations are then grouped by image with a counting sort applied in place (stable: JSON
//! order kept within an image), so the result is deterministic, is never held twice and needs
//! no per-image allocations.

use super::json_stream::{self, JsonStream, StreamError};
use super::DatasetError;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
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
    /// Relative to the split's images folder; may contain sub-folders and any UTF-8.
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

/// One `annotations[]` entry, as much of it as a record needs: segmentation/keypoints are
/// skipped, the annotation's own `id` too, and the `image_id` is implied by the image the
/// annotation is grouped under. One of these stays in memory per annotation for the whole run
/// (56 bytes), so it is kept small.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub category_id: i64,
    /// `[x, y, w, h]` in pixels of the image as displayed. All NaN when the JSON has no usable
    /// bbox (missing, null, not 4 numbers; counted in [`LoadStats`]), so that
    /// [`normalize_box`](super::normalize_box) drops it as invalid.
    pub bbox: [f64; 4],
    /// The JSON `area`; `w * h` of the bbox when absent (0 when the bbox is unusable too).
    pub area: f64,
    pub iscrowd: bool,
}

/// Annotation-level problems found while loading (counted, reported in the manifest).
///
/// Annotations counted in `unknown_image` or `unknown_category` are not in
/// [`CocoDataset::annotations`] (an annotation with both problems counts as `unknown_image`).
/// Annotations counted in `missing_bbox`/`invalid_bbox` are kept, with a NaN bbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadStats {
    /// Annotations whose `image_id` matches no image.
    pub unknown_image: u64,
    /// Annotations whose `category_id` matches no category.
    pub unknown_category: u64,
    /// Images whose `id` repeats an earlier image (later ones are ignored).
    pub duplicate_image_ids: u64,
    /// Categories whose `id` repeats an earlier category (later ones are ignored).
    #[serde(default)]
    pub duplicate_category_ids: u64,
    /// Annotations without a `bbox` key, or with `"bbox": null`.
    #[serde(default)]
    pub missing_bbox: u64,
    /// Annotations whose `bbox` is not an array of exactly 4 numbers.
    #[serde(default)]
    pub invalid_bbox: u64,
}

/// A parsed split: images in JSON order, each with its annotations (JSON order kept).
#[derive(Debug, Clone, Default)]
pub struct CocoDataset {
    pub images: Vec<ImageEntry>,
    /// Sorted by id, ids unique.
    pub categories: Vec<Category>,
    /// Grouped by image: `annotations[ann_start[i]..ann_start[i+1]]` belong to `images[i]`.
    pub annotations: Vec<Annotation>,
    /// `images.len() + 1` entries, non-decreasing, first 0, last `annotations.len()`.
    pub ann_start: Vec<usize>,
    /// Later entries that repeat an earlier entry's id or file name: index into `images` →
    /// why it is not used (the first entry wins; duplicates carry no annotations).
    pub duplicates: std::collections::BTreeMap<usize, String>,
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
    /// The `i`-th image (JSON order) with its annotations. Panics if `i >= len()` (a caller
    /// bug, never input-dependent); see [`CocoDataset::get`] for the checked form.
    pub fn sample(&self, i: usize) -> Sample<'_> {
        Sample {
            image: &self.images[i],
            annotations: &self.annotations[self.ann_start[i]..self.ann_start[i + 1]],
        }
    }
    /// The `i`-th image with its annotations, `None` when out of range.
    pub fn get(&self, i: usize) -> Option<Sample<'_>> {
        let image = self.images.get(i)?;
        let start = *self.ann_start.get(i)?;
        let end = *self.ann_start.get(i + 1)?;
        Some(Sample {
            image,
            annotations: self.annotations.get(start..end)?,
        })
    }
    /// All samples in JSON order.
    pub fn samples(&self) -> impl Iterator<Item = Sample<'_>> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
    /// Why image `i` is not used when it repeats an earlier entry (see [`CocoDataset::duplicates`]).
    pub fn duplicate(&self, i: usize) -> Option<&str> {
        self.duplicates.get(&i).map(String::as_str)
    }
    /// The category with this COCO id.
    pub fn category(&self, id: i64) -> Option<&Category> {
        self.categories
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .and_then(|i| self.categories.get(i))
    }
}

/// COCO category id → contiguous label `0..K-1` in id order (for `--labels contiguous` and the
/// manifest's category map).
pub fn category_labels(ds: &CocoDataset) -> Vec<(i64, u32)> {
    ds.categories
        .iter()
        .zip(0u32..)
        .map(|(c, i)| (c.id, i))
        .collect()
}

/// Parse a COCO annotation file. Fast and memory-lean: a 450 MB train2017 file in seconds,
/// well under 1 GB.
///
/// Errors: unreadable file → [`DatasetError::Io`]; malformed JSON, wrong types (e.g. string
/// ids) or missing required fields (`images`, `id`, `file_name`, `image_id`, `category_id`,
/// category `name`) → [`DatasetError::Json`] with line, column and the text near the error.
/// Everything per-annotation is counted in [`LoadStats`] instead of failing.
pub fn load_coco(path: &Path) -> Result<CocoDataset, DatasetError> {
    let file = File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_reader(path, file, json_stream::CHUNK).map(build)
}

/// [`load_coco`], plus the SHA-256 (hex) of the file, computed from the same read (the
/// manifest records it; a second pass over a 450 MB file would cost a third of a second). The
/// bytes are hashed on a thread of their own while the parse goes on (the hash is 10–15 % of
/// the parse's time, and nothing else runs yet); inline where no thread can be started.
pub fn load_coco_hashed(path: &Path) -> Result<(CocoDataset, String), DatasetError> {
    load_coco_hashed_in(path, json_stream::CHUNK)
}

/// [`load_coco_hashed`] reading `chunk` bytes at a time (tests use small chunks).
fn load_coco_hashed_in(path: &Path, chunk: usize) -> Result<(CocoDataset, String), DatasetError> {
    let file = File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // A successful parse has read to the end (only whitespace may follow the object), so the
    // hash covers the whole file.
    std::thread::scope(|scope| {
        let (chunks, to_hash) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let hashing = std::thread::Builder::new()
            .name("annotations-sha256".into())
            .spawn_scoped(scope, move || {
                let mut h = Sha256::new();
                for chunk in to_hash {
                    h.update(&chunk);
                }
                h.finalize()
            });
        let Ok(hashing) = hashing else {
            let mut h = Sha256::new();
            let src = HashingReader {
                inner: file,
                sink: |b: &[u8]| {
                    h.update(b);
                    Ok(())
                },
            };
            let raw = parse_reader(path, src, chunk)?;
            return Ok((build(raw), hex::encode(h.finalize())));
        };
        // Dropping the reader (when the parse returns, however it ends) ends the thread's input.
        let src = HashingReader {
            inner: file,
            sink: move |b: &[u8]| {
                chunks
                    .send(b.to_vec())
                    .map_err(|_| std::io::Error::other("the annotation hashing thread stopped"))
            },
        };
        let raw = parse_reader(path, src, chunk)?;
        let digest = hashing.join().map_err(|_| DatasetError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the annotation hashing thread panicked"),
        })?;
        Ok((build(raw), hex::encode(digest)))
    })
}

/// Parse COCO JSON already in memory (same rules as [`load_coco`]; `path` only names errors).
pub fn parse_coco_bytes(path: &Path, bytes: &[u8]) -> Result<CocoDataset, DatasetError> {
    parse_reader(path, bytes, json_stream::CHUNK).map(build)
}

/// Passes reads through, handing every byte read to `sink` (which hashes it).
struct HashingReader<R, F> {
    inner: R,
    sink: F,
}

impl<R: Read, F: FnMut(&[u8]) -> std::io::Result<()>> Read for HashingReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.sink)(&buf[..n])?;
        Ok(n)
    }
}

/// Walks the top-level object in bounded chunks (see [`json_stream`]): memory holds one chunk
/// of the file plus the typed result, whatever the file's size.
fn parse_reader<R: Read>(path: &Path, src: R, chunk: usize) -> Result<RawFile, DatasetError> {
    let mut s = JsonStream::new(src, chunk);
    walk_file(&mut s).map_err(|e| match e {
        StreamError::Io(source) => DatasetError::Io {
            path: path.to_path_buf(),
            source,
        },
        StreamError::Json {
            message,
            line,
            column,
        } => DatasetError::Json {
            path: path.to_path_buf(),
            message,
            line,
            column,
        },
    })
}

fn walk_file<R: Read>(s: &mut JsonStream<R>) -> Result<RawFile, StreamError> {
    s.skip_bom()?;
    s.expect(b"{", "a JSON object (`{`) with an \"images\" array")?;
    let mut images: Option<Vec<ImageEntry>> = None;
    let mut annotations: Option<RawAnnotations> = None;
    let mut categories: Option<Vec<Category>> = None;
    let duplicate = |s: &JsonStream<R>, key: &str| s.error_here(format!("duplicate field `{key}`"));
    if s.peek()? == Some(b'}') {
        s.expect(b"}", "`}`")?;
    } else {
        loop {
            let key: String = s.value()?;
            s.expect(b":", "`:`")?;
            match key.as_str() {
                "images" => {
                    if images.is_some() {
                        return Err(duplicate(s, "images"));
                    }
                    let mut out = Vec::new();
                    each_element(s, "an array of image objects", |s| {
                        out.push(image_entry(s.value()?));
                        Ok(())
                    })?;
                    images = Some(out);
                }
                "annotations" => {
                    if annotations.is_some() {
                        return Err(duplicate(s, "annotations"));
                    }
                    let mut out = RawAnnotations::default();
                    each_element(s, "an array of annotation objects", |s| {
                        out.push(s.value()?);
                        Ok(())
                    })?;
                    annotations = Some(out);
                }
                "categories" => {
                    if categories.is_some() {
                        return Err(duplicate(s, "categories"));
                    }
                    let mut out = Vec::new();
                    each_element(s, "an array of category objects", |s| {
                        let r: RawCategory = s.value()?;
                        out.push(Category {
                            id: r.id.0,
                            name: r.name,
                        });
                        Ok(())
                    })?;
                    categories = Some(out);
                }
                _ => {
                    s.value::<IgnoredAny>()?;
                }
            }
            if s.expect(b",}", "`,` or `}`")? == b'}' {
                break;
            }
        }
    }
    if !s.at_end()? {
        return Err(s.error_here("trailing characters after the top-level object".into()));
    }
    let Some(images) = images else {
        return Err(s.error_here("missing field `images`".into()));
    };
    Ok(RawFile {
        images,
        annotations: annotations.unwrap_or_default(),
        categories: categories.unwrap_or_default(),
    })
}

/// Calls `f` once per element of the JSON array that comes next; `f` parses the element.
fn each_element<R: Read>(
    s: &mut JsonStream<R>,
    what: &str,
    mut f: impl FnMut(&mut JsonStream<R>) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    if s.peek()? != Some(b'[') {
        return Err(s.error_here(format!("invalid type: expected {what}")));
    }
    s.expect(b"[", "`[`")?;
    if s.peek()? == Some(b']') {
        s.expect(b"]", "`]`")?;
        return Ok(());
    }
    loop {
        f(s)?;
        if s.expect(b",]", "`,` or `]`")? == b']' {
            return Ok(());
        }
    }
}

/// Images, annotations and categories as read, before dedup/grouping.
struct RawFile {
    images: Vec<ImageEntry>,
    annotations: RawAnnotations,
    categories: Vec<Category>,
}

#[derive(Default)]
struct RawAnnotations {
    list: Vec<Annotation>,
    /// `image_id` of each entry of `list`, needed only until grouping.
    image_ids: Vec<i64>,
    missing_bbox: u64,
    invalid_bbox: u64,
}

/// Dedup images/categories, drop annotations of unknown images/categories, group the rest by
/// image (stable counting sort), count everything.
fn build(raw: RawFile) -> CocoDataset {
    let mut stats = LoadStats {
        missing_bbox: raw.annotations.missing_bbox,
        invalid_bbox: raw.annotations.invalid_bbox,
        ..LoadStats::default()
    };

    // First entry wins: a later entry with an id or a file name already seen stays in the list
    // (so every entry is accounted for) but is marked a duplicate and gets no annotations.
    let mut index: HashMap<i64, u32, IdHash> =
        HashMap::with_capacity_and_hasher(raw.images.len(), IdHash::default());
    // File names by 64-bit hash (16 bytes an image instead of a copy of every name); a hash hit
    // is confirmed by comparing the names.
    let mut names: HashMap<u64, u32, IdHash> =
        HashMap::with_capacity_and_hasher(raw.images.len(), IdHash::default());
    let name_hash = |n: &str| {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(n)
    };
    let mut duplicates = std::collections::BTreeMap::new();
    for (i, img) in raw.images.iter().enumerate() {
        if let Some(&first) = index.get(&img.id) {
            stats.duplicate_image_ids += 1;
            let first_name = raw
                .images
                .get(first as usize)
                .map_or("", |f| f.file_name.as_str());
            duplicates.insert(
                i,
                format!(
                    "duplicate image id {}: the first entry ({first_name}) is used",
                    img.id
                ),
            );
            continue;
        }
        let h = name_hash(&img.file_name);
        if let Some(first) = names.get(&h).and_then(|&k| raw.images.get(k as usize)) {
            if first.file_name == img.file_name {
                duplicates.insert(
                    i,
                    format!("duplicate file_name: image id {} already uses it", first.id),
                );
                continue;
            }
        }
        // More than u32::MAX images cannot come from an annotation file on a sane machine; such an
        // image would simply get no annotations rather than a wrong index.
        if let Ok(k) = u32::try_from(i) {
            index.insert(img.id, k);
            names.entry(h).or_insert(k);
        }
    }
    drop(names);
    let images = raw.images;

    let mut categories = raw.categories;
    categories.sort_by_key(|c| c.id); // stable: the first of duplicate ids stays first
    let before = categories.len();
    categories.dedup_by_key(|c| c.id);
    stats.duplicate_category_ids = (before - categories.len()) as u64;
    let category_ids: HashSet<i64, IdHash> = categories.iter().map(|c| c.id).collect();

    // Image index of each annotation, usize::MAX for dropped ones.
    let anns = raw.annotations.list;
    let image_ids = raw.annotations.image_ids;
    let mut counts = vec![0usize; images.len() + 1];
    let owner: Vec<usize> = anns
        .iter()
        .zip(&image_ids)
        .map(|(a, image_id)| match index.get(image_id) {
            None => {
                stats.unknown_image += 1;
                usize::MAX
            }
            Some(_) if !category_ids.contains(&a.category_id) => {
                stats.unknown_category += 1;
                usize::MAX
            }
            Some(&i) => {
                let i = i as usize;
                if let Some(c) = counts.get_mut(i + 1) {
                    *c += 1;
                }
                i
            }
        })
        .collect();
    drop(index);
    drop(image_ids);

    // Prefix sums: counts[i] becomes the start of image i.
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    let ann_start = counts;
    let kept = ann_start.last().copied().unwrap_or(0);

    // order[new] = old: kept annotations grouped by image (JSON order within an image), the
    // dropped ones after them. Applied in place, so the annotations are never held twice.
    let mut next = ann_start.clone();
    let mut dropped_at = kept;
    let mut order = vec![0usize; anns.len()];
    for (k, &i) in owner.iter().enumerate() {
        let slot = match next.get_mut(i) {
            Some(slot) => slot,
            None => &mut dropped_at, // i == usize::MAX: dropped
        };
        if let Some(o) = order.get_mut(*slot) {
            *o = k;
        }
        *slot += 1;
    }
    drop(owner);
    let mut annotations = anns;
    permute_in_place(&mut annotations, &order);
    annotations.truncate(kept);

    CocoDataset {
        images,
        categories,
        annotations,
        ann_start,
        duplicates,
        stats,
    }
}

/// Reorders `v` so that `v_new[i] == v_old[order[i]]`, following each cycle of the permutation
/// with swaps: O(n) time, one flag per element. `order` must be a permutation of `0..v.len()`
/// (anything else stops a cycle early instead of panicking).
fn permute_in_place<T>(v: &mut [T], order: &[usize]) {
    let mut done = vec![false; v.len()];
    for start in 0..v.len() {
        if done[start] {
            continue;
        }
        let mut cur = start;
        loop {
            done[cur] = true;
            let Some(&src) = order.get(cur) else { break };
            if src == start || src >= v.len() || done[src] {
                break;
            }
            v.swap(cur, src);
            cur = src;
        }
    }
}

/// Hasher for integer ids: one multiply instead of SipHash. Ids come from the user's own file,
/// so HashDoS resistance buys nothing, and the lookup of ~860k annotations is on the hot path.
type IdHash = BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, v: i64) {
        // Fibonacci hashing, then fold the well-mixed high half down: hashbrown picks buckets
        // from the low bits, which a bare multiply leaves zero for ids that are all multiples
        // of a power of two.
        let h = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

// ---- serde plumbing -------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawImage {
    id: Id,
    file_name: String,
    #[serde(default)]
    width: Dim,
    #[serde(default)]
    height: Dim,
}

#[derive(Deserialize)]
struct RawCategory {
    id: Id,
    name: String,
}

#[derive(Deserialize)]
/// The annotation's own `id` is not read at all (any type is fine: unknown fields are skipped).
struct RawAnnotation {
    image_id: Id,
    category_id: Id,
    #[serde(default)]
    bbox: BBox,
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Crowd,
}

fn image_entry(r: RawImage) -> ImageEntry {
    ImageEntry {
        id: r.id.0,
        file_name: r.file_name,
        width: r.width.0,
        height: r.height.0,
    }
}

impl RawAnnotations {
    /// Keeps one annotation, counting an unusable bbox (kept as NaN so it is dropped, counted,
    /// at record time).
    fn push(&mut self, r: RawAnnotation) {
        let bbox = match r.bbox {
            BBox::Valid(b) => Some(b),
            BBox::Missing => {
                self.missing_bbox += 1;
                None
            }
            BBox::Invalid => {
                self.invalid_bbox += 1;
                None
            }
        };
        let area = match (r.area, bbox) {
            (Some(a), _) => a,
            (None, Some([_, _, w, h])) => w * h,
            (None, None) => 0.0,
        };
        self.image_ids.push(r.image_id.0);
        self.list.push(Annotation {
            category_id: r.category_id.0,
            bbox: bbox.unwrap_or([f64::NAN; 4]),
            area,
            iscrowd: r.iscrowd.0,
        });
    }
}

fn whole(v: f64, min: f64, max: f64) -> Option<f64> {
    (v.is_finite() && v.fract() == 0.0 && v >= min && v <= max).then_some(v)
}

/// A required integer id. Integral floats (`3.0`, written by some pandas exports) are accepted;
/// strings are rejected because COCO tools compare ids as numbers and `"1"` vs `1` mismatches
/// would silently orphan annotations.
struct Id(i64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer id (string ids are not supported: re-export the JSON with numeric ids)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v)
                    .map(Id)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
                // i64::MAX as f64 rounds up to 2^63, so bound strictly below it.
                match whole(v, -9.223_372_036_854_775e18, 9.223_372_036_854_775e18) {
                    Some(w) => Ok(Id(w as i64)),
                    None => Err(E::invalid_value(de::Unexpected::Float(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Image width/height: a non-negative integer (integral floats accepted), `null` or absent → 0
/// (unknown; convert then takes the size from the image header).
#[derive(Default)]
struct Dim(u32);

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dim;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer image size in pixels")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dim, E> {
                u32::try_from(v)
                    .map(Dim)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dim, E> {
                u32::try_from(v)
                    .map(Dim)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dim, E> {
                match whole(v, 0.0, f64::from(u32::MAX)) {
                    Some(w) => Ok(Dim(w as u32)),
                    None => Err(E::invalid_value(de::Unexpected::Float(v), &self)),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Dim, E> {
                Ok(Dim(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// `iscrowd` as written by different tools: `0`/`1`, `true`/`false`, `0.0`/`1.0`, or `null`
/// (→ false). Any non-zero number counts as crowd.
#[derive(Default)]
struct Crowd(bool);

impl<'de> Deserialize<'de> for Crowd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Crowd;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("iscrowd as 0/1 or true/false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Crowd, E> {
                Ok(Crowd(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Crowd, E> {
                Ok(Crowd(v != 0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Crowd, E> {
                Ok(Crowd(v != 0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Crowd, E> {
                Ok(Crowd(v != 0.0))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Crowd, E> {
                Ok(Crowd(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `bbox` field. Never fails the load: a malformed bbox is one bad annotation, counted.
#[derive(Default)]
enum BBox {
    Valid([f64; 4]),
    #[default]
    Missing,
    Invalid,
}

impl<'de> Deserialize<'de> for BBox {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BBox;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a bbox [x, y, w, h]")
            }
            fn visit_unit<E: de::Error>(self) -> Result<BBox, E> {
                Ok(BBox::Missing)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BBox, A::Error> {
                let mut b = [0.0f64; 4];
                let mut n = 0usize;
                let mut all_numbers = true;
                while let Some(v) = seq.next_element::<Num>()? {
                    match (v.0, b.get_mut(n)) {
                        (Some(x), Some(slot)) => *slot = x,
                        (None, _) => all_numbers = false,
                        (Some(_), None) => {}
                    }
                    n += 1;
                }
                Ok(if n == 4 && all_numbers {
                    BBox::Valid(b)
                } else {
                    BBox::Invalid
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<BBox, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(BBox::Invalid)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<BBox, E> {
                Ok(BBox::Invalid)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<BBox, E> {
                Ok(BBox::Invalid)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<BBox, E> {
                Ok(BBox::Invalid)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<BBox, E> {
                Ok(BBox::Invalid)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<BBox, E> {
                Ok(BBox::Invalid)
            }
        }
        d.deserialize_any(V)
    }
}

/// One bbox element: a number, or `None` for anything else (skipped without failing).
struct Num(Option<f64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Num(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Num(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse(json: &str) -> Result<CocoDataset, DatasetError> {
        parse_coco_bytes(Path::new("test.json"), json.as_bytes())
    }

    fn ok(json: &str) -> CocoDataset {
        match parse(json) {
            Ok(d) => d,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    /// The same document through tiny read chunks: every element boundary case of the
    /// streaming reader, which must give exactly the whole-buffer result.
    fn parse_chunked(json: &str, chunk: usize) -> Result<CocoDataset, DatasetError> {
        parse_reader(Path::new("test.json"), json.as_bytes(), chunk).map(build)
    }

    fn json_err(json: &str) -> (String, usize, usize) {
        match parse(json) {
            Err(DatasetError::Json {
                message,
                line,
                column,
                ..
            }) => (message, line, column),
            Err(e) => panic!("expected a JSON error, got {e}"),
            Ok(_) => panic!("expected a JSON error, parsed fine"),
        }
    }

    const CATS: &str =
        r#""categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}]"#;

    #[test]
    fn groups_annotations_by_image_in_json_order() {
        let d = ok(&format!(
            r#"{{"images": [
                {{"id": 30, "file_name": "a.jpg", "width": 640, "height": 480}},
                {{"id": 7, "file_name": "b.jpg", "width": 10, "height": 20}},
                {{"id": 12, "file_name": "c.jpg", "width": 1, "height": 1}}],
              "annotations": [
                {{"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 3, 4], "area": 12.5, "iscrowd": 0}},
                {{"id": 2, "image_id": 30, "category_id": 1, "bbox": [0.5, 0.5, 1, 1], "area": 1, "iscrowd": 1}},
                {{"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 6, 7, 8], "area": 56, "iscrowd": false}}],
              {CATS}}}"#
        ));
        assert_eq!(d.len(), 3);
        assert_eq!(d.ann_start, vec![0, 1, 3, 3]);
        let s0 = d.sample(0);
        assert_eq!(s0.image.id, 30);
        assert_eq!(s0.annotations.len(), 1);
        assert!(s0.annotations[0].iscrowd);
        let s1 = d.sample(1);
        assert_eq!(s1.image.file_name, "b.jpg");
        assert_eq!((s1.image.width, s1.image.height), (10, 20));
        let areas: Vec<_> = s1.annotations.iter().map(|a| a.area).collect();
        assert_eq!(areas, vec![12.5, 56.0], "JSON order kept within an image");
        assert_eq!(s1.annotations[0].bbox, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s1.annotations[0].area, 12.5);
        assert_eq!(s1.annotations[0].category_id, 90);
        assert!(!s1.annotations[1].iscrowd);
        assert!(
            d.sample(2).annotations.is_empty(),
            "image without annotations kept"
        );
        assert_eq!(d.stats, LoadStats::default());
        assert_eq!(d.samples().count(), 3);
        assert!(d.get(3).is_none());
    }

    #[test]
    fn grouping_matches_naive_on_spaced_ids_and_shuffled_annotations() {
        use std::fmt::Write as _;
        let n_img = 500i64;
        let mut json = String::from(r#"{"categories": [{"id": 3, "name": "c"}], "images": ["#);
        for i in 0..n_img {
            let sep = if i > 0 { "," } else { "" };
            // Ids that are all multiples of 4096 (stress the id hasher's low bits), reversed.
            let _ = write!(
                json,
                r#"{sep}{{"id": {}, "file_name": "{i}.jpg"}}"#,
                (n_img - i) * 4096
            );
        }
        json.push_str(r#"], "annotations": ["#);
        let mut expected: Vec<Vec<i64>> = vec![Vec::new(); n_img as usize];
        let mut s: u64 = 12345;
        for k in 0..4000i64 {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let img = ((s >> 33) % (n_img as u64 + 7)) as i64; // some point at no image
            let sep = if k > 0 { "," } else { "" };
            let id = (n_img - img) * 4096;
            let _ = write!(
                json,
                r#"{sep}{{"id": {k}, "image_id": {id}, "category_id": 3, "bbox": [0,0,1,1], "area": {k}}}"#
            );
            if let Some(v) = usize::try_from(img).ok().and_then(|i| expected.get_mut(i)) {
                v.push(k);
            }
        }
        json.push_str("]}");
        let d = ok(&json);
        let mut missing = 0;
        for (i, want) in expected.iter().enumerate() {
            let got: Vec<i64> = d
                .sample(i)
                .annotations
                .iter()
                .map(|a| a.area as i64)
                .collect();
            assert_eq!(&got, want, "image {i}");
            missing += want.len();
        }
        assert_eq!(d.annotations.len(), missing);
        assert_eq!(d.stats.unknown_image as usize, 4000 - missing);
        assert!(d.stats.unknown_image > 0);
    }

    #[test]
    fn unknown_fields_and_segmentations_are_skipped() {
        let d = ok(r#"{
            "info": {"year": 2017, "nested": {"deep": [1, 2, {"x": null}]}},
            "licenses": [{"id": 1, "name": "CC", "url": "http://x"}],
            "images": [{"license": 3, "file_name": "x.jpg", "coco_url": "http://y",
                        "height": 480, "width": 640, "date_captured": "2013", "id": 1,
                        "extra": {"a": [true, false, null]}}],
            "annotations": [
              {"segmentation": [[1.5, 2.25, 3e2, 4E-1, 5, 6]], "num_keypoints": 0,
               "keypoints": [0, 0, 0], "area": 3.0, "iscrowd": 0, "image_id": 1,
               "bbox": [1, 2, 3, 4], "category_id": 1, "id": 99, "attributes": {"occluded": false}},
              {"segmentation": {"counts": [1, 2, 3], "size": [480, 640]}, "area": 9,
               "iscrowd": 1, "image_id": 1, "bbox": [0, 0, 3, 3], "category_id": 1, "id": 100}],
            "categories": [{"supercategory": "person", "id": 1, "name": "person",
                            "keypoints": ["nose"], "skeleton": [[1, 2]]}],
            "type": "instances"
        }"#);
        assert_eq!(d.annotations.len(), 2);
        assert_eq!(d.annotations[1].area, 9.0);
        assert!(d.annotations[1].iscrowd);
        assert_eq!(
            d.categories,
            vec![Category {
                id: 1,
                name: "person".into()
            }]
        );
    }

    #[test]
    fn missing_width_height_become_zero_and_null_too() {
        let d = ok(r#"{"images": [{"id": 1, "file_name": "a.jpg"},
                                  {"id": 2, "file_name": "b.jpg", "width": null, "height": 3.0}]}"#);
        assert_eq!((d.images[0].width, d.images[0].height), (0, 0));
        assert_eq!((d.images[1].width, d.images[1].height), (0, 3));
        assert!(d.annotations.is_empty());
        assert_eq!(d.ann_start, vec![0, 0, 0]);
        assert!(d.categories.is_empty());
    }

    #[test]
    fn negative_or_fractional_width_is_an_error() {
        let (m, _, _) = json_err(r#"{"images": [{"id": 1, "file_name": "a.jpg", "width": -4}]}"#);
        assert!(m.contains("non-negative integer image size"), "{m}");
        let (m, _, _) = json_err(r#"{"images": [{"id": 1, "file_name": "a.jpg", "width": 4.5}]}"#);
        assert!(m.contains("image size"), "{m}");
    }

    #[test]
    fn string_ids_are_rejected_clearly() {
        let (m, line, col) = json_err(r#"{"images": [{"id": "abc", "file_name": "a.jpg"}]}"#);
        assert!(m.contains("invalid type: string \"abc\""), "{m}");
        assert!(m.contains("integer id"), "{m}");
        assert!(m.contains("near"), "{m}");
        assert_eq!((line, col), (1, 24));
        let (m, _, _) = json_err(
            r#"{"images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"image_id": "1", "category_id": 1, "bbox": [0,0,1,1]}]}"#,
        );
        assert!(m.contains("integer id"), "{m}");
        let (m, _, _) = json_err(r#"{"images": [], "categories": [{"id": "1", "name": "x"}]}"#);
        assert!(m.contains("integer id"), "{m}");
    }

    #[test]
    fn integral_float_ids_are_accepted_fractional_rejected() {
        let d = ok(r#"{"images": [{"id": 5.0, "file_name": "a.jpg"}],
                       "annotations": [{"image_id": 5, "category_id": 2.0, "bbox": [0,0,1,1]}],
                       "categories": [{"id": 2, "name": "x"}]}"#);
        assert_eq!(d.images[0].id, 5);
        assert_eq!(d.annotations.len(), 1);
        let (m, _, _) = json_err(r#"{"images": [{"id": 5.5, "file_name": "a.jpg"}]}"#);
        assert!(m.contains("integer id"), "{m}");
    }

    #[test]
    fn empty_annotations_array_and_missing_annotations_key() {
        let d = ok(&format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.jpg"}}], "annotations": [], {CATS}}}"#
        ));
        assert_eq!(d.ann_start, vec![0, 0]);
        let d = ok(r#"{"images": []}"#);
        assert!(d.is_empty());
        assert_eq!(d.ann_start, vec![0]);
    }

    #[test]
    fn missing_images_key_is_an_error() {
        let (m, _, _) = json_err(r#"{"annotations": []}"#);
        assert!(m.contains("missing field `images`"), "{m}");
    }

    #[test]
    fn categories_with_gaps_are_sorted_and_labelled_contiguously() {
        let d = ok(r#"{"images": [], "categories": [
            {"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
            {"id": 13, "name": "stop sign"}, {"id": 13, "name": "dup"}]}"#);
        let ids: Vec<_> = d.categories.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![1, 13, 90]);
        assert_eq!(d.category(13).map(|c| c.name.as_str()), Some("stop sign"));
        assert!(d.category(2).is_none());
        assert_eq!(d.stats.duplicate_category_ids, 1);
        assert_eq!(category_labels(&d), vec![(1, 0), (13, 1), (90, 2)]);
    }

    #[test]
    fn unicode_and_subfolder_file_names_and_escapes() {
        let d = ok(r#"{"images": [
            {"id": 1, "file_name": "sub/ñandú 10.jpg"},
            {"id": 2, "file_name": "日本/写真.jpg"},
            {"id": 3, "file_name": "esc\u00e9\\\"q\".jpg"}]}"#);
        assert_eq!(d.images[0].file_name, "sub/ñandú 10.jpg");
        assert_eq!(d.images[1].file_name, "日本/写真.jpg");
        assert_eq!(d.images[2].file_name, "escé\\\"q\".jpg");
    }

    #[test]
    fn annotations_for_unknown_images_and_categories_are_counted_and_dropped() {
        let d = ok(&format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.jpg"}}],
              "annotations": [
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1]}},
                {{"image_id": 2, "category_id": 1, "bbox": [0,0,1,1]}},
                {{"image_id": 1, "category_id": 5, "bbox": [0,0,1,1]}},
                {{"image_id": 3, "category_id": 5, "bbox": [0,0,1,1]}}],
              {CATS}}}"#
        ));
        assert_eq!(d.annotations.len(), 1);
        assert_eq!(d.stats.unknown_image, 2);
        assert_eq!(d.stats.unknown_category, 1);
        assert_eq!(d.ann_start, vec![0, 1]);
    }

    #[test]
    fn duplicate_image_ids_keep_the_first() {
        let d = ok(&format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.jpg"}}, {{"id": 2, "file_name": "b.jpg"}},
                           {{"id": 1, "file_name": "a-again.jpg"}}],
              "annotations": [{{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1]}}],
              {CATS}}}"#
        ));
        // Every entry stays (each is accounted for); the later one is a named duplicate.
        assert_eq!(d.len(), 3);
        assert_eq!(d.images[0].file_name, "a.jpg");
        assert_eq!(d.stats.duplicate_image_ids, 1);
        assert_eq!(d.sample(0).annotations.len(), 1);
        assert_eq!(d.sample(2).annotations.len(), 0);
        assert_eq!(d.duplicate(0), None);
        assert!(
            d.duplicate(2).unwrap().contains("duplicate image id 1"),
            "{:?}",
            d.duplicate(2)
        );
    }

    #[test]
    fn duplicate_file_names_keep_the_first() {
        let d = ok(&format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.jpg"}}, {{"id": 2, "file_name": "a.jpg"}}],
              "annotations": [{{"image_id": 2, "category_id": 1, "bbox": [0,0,1,1]}}],
              {CATS}}}"#
        ));
        assert_eq!(d.len(), 2);
        assert!(d
            .duplicate(1)
            .unwrap()
            .contains("image id 1 already uses it"));
        // The duplicate's annotations belong to no used image: never written.
        assert_eq!(d.sample(1).annotations.len(), 0);
    }

    #[test]
    fn missing_and_malformed_bboxes_are_kept_as_nan_and_counted() {
        let d = ok(&format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}}],
              "annotations": [
                {{"image_id": 1, "category_id": 1}},
                {{"image_id": 1, "category_id": 1, "bbox": null, "area": 4}},
                {{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}},
                {{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4, 5]}},
                {{"image_id": 1, "category_id": 1, "bbox": [1, "2", 3, 4]}},
                {{"image_id": 1, "category_id": 1, "bbox": {{"x": 1}}}},
                {{"image_id": 1, "category_id": 1, "bbox": [1, null, [3], {{}}]}},
                {{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}}],
              {CATS}}}"#
        ));
        assert_eq!(d.annotations.len(), 8);
        assert_eq!(d.stats.missing_bbox, 2);
        assert_eq!(d.stats.invalid_bbox, 5);
        assert!(d.annotations[..7]
            .iter()
            .all(|a| a.bbox.iter().all(|v| v.is_nan())));
        assert_eq!(d.annotations[0].area, 0.0, "no area, no bbox → 0");
        assert_eq!(d.annotations[1].area, 4.0, "given area kept");
        assert_eq!(d.annotations[7].area, 12.0, "missing area → w*h");
        assert_eq!(
            crate::dataset::normalize_box(d.annotations[0].bbox, 10, 10),
            crate::dataset::BoxOutcome::DroppedInvalid
        );
    }

    #[test]
    fn iscrowd_variants() {
        let d = ok(&format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.jpg"}}],
              "annotations": [
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1], "iscrowd": 0}},
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1], "iscrowd": 1}},
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1], "iscrowd": true}},
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1], "iscrowd": false}},
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1], "iscrowd": null}},
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1], "iscrowd": 1.0}},
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1]}}],
              {CATS}}}"#
        ));
        let c: Vec<bool> = d.annotations.iter().map(|a| a.iscrowd).collect();
        assert_eq!(c, vec![false, true, true, false, false, true, false]);
        let (m, _, _) = json_err(
            r#"{"images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"image_id": 1, "category_id": 1, "iscrowd": "yes"}]}"#,
        );
        assert!(m.contains("iscrowd"), "{m}");
    }

    #[test]
    fn lenient_annotation_ids() {
        let d = ok(&format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.jpg"}}],
              "annotations": [
                {{"id": "a-1", "image_id": 1, "category_id": 1, "bbox": [0,0,1,1]}},
                {{"id": {{"x": [1]}}, "image_id": 1, "category_id": 1, "bbox": [0,0,1,1]}},
                {{"image_id": 1, "category_id": 1, "bbox": [0,0,1,1]}}],
              {CATS}}}"#
        ));
        assert_eq!(
            d.annotations.len(),
            3,
            "odd ids neither fail the load nor drop anything"
        );
    }

    #[test]
    fn truncated_json_reports_line_and_column() {
        let json =
            "{\"images\": [\n  {\"id\": 1, \"file_name\": \"a.jpg\"},\n  {\"id\": 2, \"file_na";
        let (m, line, col) = json_err(json);
        assert!(m.contains("EOF"), "{m}");
        assert_eq!(line, 3);
        assert_eq!(col, 20);
        assert!(m.contains("file_na"), "context snippet shown: {m}");
        let e = parse(json).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("test.json:"), "{e}");
        assert!(e.contains("line 3, column 20"), "{e}");
    }

    #[test]
    fn syntax_errors_and_wrong_top_level() {
        let (m, line, _) = json_err("{\"images\": [}\n");
        assert!(m.contains("expected value"), "{m}");
        assert_eq!(line, 1);
        let (m, _, _) = json_err("[1, 2]");
        assert!(!m.is_empty());
        let (m, line, col) = json_err("");
        assert!(m.contains("EOF"), "{m}");
        assert_eq!((line, col), (1, 0));
        let (m, _, _) = json_err(r#"{"images": [], "images": []}"#);
        assert!(m.contains("duplicate field"), "{m}");
        let (m, _, _) = json_err(r#"{"images": [{"file_name": "a.jpg"}]}"#);
        assert!(m.contains("missing field `id`"), "{m}");
    }

    #[test]
    fn chunk_size_never_changes_the_result_or_the_error() {
        let doc = format!(
            r#"{{"info": {{"v": [1, 2.5, "x"]}}, "images": [{{"id": 7, "file_name": "a/ü.jpg", "width": 640, "height": 480}},
                {{"id": 3, "file_name": "b.jpg"}}], "annotations": [
                {{"id": 1, "image_id": 3, "category_id": 90, "bbox": [1.5, 2, 30, 40.25], "segmentation": [[1,2,3,4,5,6]]}},
                {{"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 12345678901.5, "iscrowd": 1}},
                {{"id": 3, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]}}], {CATS}}}"#
        );
        let whole = ok(&doc);
        for chunk in [1, 2, 3, 7, 64] {
            let d = parse_chunked(&doc, chunk).unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            assert_eq!(d.images, whole.images, "chunk {chunk}");
            assert_eq!(d.annotations, whole.annotations, "chunk {chunk}");
            assert_eq!(d.ann_start, whole.ann_start, "chunk {chunk}");
            assert_eq!(d.categories, whole.categories, "chunk {chunk}");
            assert_eq!(d.stats, whole.stats, "chunk {chunk}");
        }
        assert_eq!(whole.annotations[0].area, 12345678901.5);
        let bad =
            "{\"images\": [\n  {\"id\": 1, \"file_name\": \"a.jpg\"},\n  {\"id\": 2, \"file_na";
        for chunk in [1, 5, 64] {
            match parse_chunked(bad, chunk) {
                Err(DatasetError::Json { line, column, .. }) => {
                    assert_eq!((line, column), (3, 20), "chunk {chunk}")
                }
                other => panic!("chunk {chunk}: expected a JSON error, got {other:?}"),
            }
        }
    }

    #[test]
    fn permute_in_place_matches_a_gather() {
        let v: Vec<u32> = (0..10).map(|i| i * 10).collect();
        let order = [3usize, 0, 9, 1, 2, 8, 4, 5, 7, 6];
        let mut w = v.clone();
        permute_in_place(&mut w, &order);
        let expected: Vec<u32> = order.iter().map(|&i| v[i]).collect();
        assert_eq!(w, expected);
        let mut id = v.clone();
        permute_in_place(&mut id, &(0..10).collect::<Vec<_>>());
        assert_eq!(id, v);
    }

    #[test]
    fn load_coco_hashed_hashes_the_whole_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.json");
        let text = format!("{{\"images\": [], {CATS}}}\n\n");
        std::fs::write(&path, &text)?;
        let (d, sha) = load_coco_hashed(&path)?;
        assert_eq!(d.categories.len(), 2);
        assert_eq!(sha, hex::encode(Sha256::digest(text.as_bytes())));
        Ok(())
    }

    /// Many reads (chunks far smaller than the file), each hashed on the hashing thread; and a
    /// file that fails to parse half way returns its error (the thread ends, nothing hangs).
    #[test]
    fn load_coco_hashed_hashes_every_chunk_and_returns_parse_errors(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.json");
        let images: Vec<String> = (0..2000)
            .map(|i| format!(r#"{{"id": {i}, "file_name": "{i}.jpg", "width": 4, "height": 3}}"#))
            .collect();
        let text = format!("{{\"images\": [{}], {CATS}}}\n", images.join(", "));
        std::fs::write(&path, &text)?;
        for chunk in [64, 1000, 1 << 20] {
            let (d, sha) = load_coco_hashed_in(&path, chunk)?;
            assert_eq!(d.len(), 2000, "chunk {chunk}");
            assert_eq!(
                sha,
                hex::encode(Sha256::digest(text.as_bytes())),
                "chunk {chunk}"
            );
        }
        let cut = &text[..text.len() / 2];
        std::fs::write(&path, format!("{cut}, oops"))?;
        let e = load_coco_hashed_in(&path, 64).unwrap_err();
        assert!(matches!(e, DatasetError::Json { .. }), "{e}");
        Ok(())
    }

    #[test]
    fn utf8_bom_is_tolerated() {
        let d = parse_coco_bytes(
            Path::new("bom.json"),
            b"\xEF\xBB\xBF{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}]}",
        );
        assert!(matches!(d, Ok(ref d) if d.len() == 1));
    }

    #[test]
    fn load_coco_reads_files_and_names_them_in_errors() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let good = dir.path().join("instances_val.json");
        let mut f = File::create(&good)?;
        f.write_all(
            br#"{"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
                "annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2]}],
                "categories": [{"id": 3, "name": "cat"}]}"#,
        )?;
        drop(f);
        let d = load_coco(&good)?;
        assert_eq!(d.len(), 1);
        assert_eq!(d.annotations.len(), 1);

        let empty = dir.path().join("empty.json");
        File::create(&empty)?;
        match load_coco(&empty) {
            Err(DatasetError::Json { path, line, .. }) => {
                assert_eq!(path, empty);
                assert_eq!(line, 1);
            }
            other => panic!("expected Json error, got {other:?}"),
        }

        let missing = dir.path().join("nope.json");
        match load_coco(&missing) {
            Err(e @ DatasetError::Io { .. }) => {
                assert!(e.to_string().contains("nope.json"), "{e}");
            }
            other => panic!("expected Io error, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn committed_fixture_parses() -> Result<(), Box<dyn std::error::Error>> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/coco/annotations/instances_val.json");
        if p.exists() {
            let d = load_coco(&p)?;
            assert!(!d.is_empty());
            assert_eq!(d.ann_start.len(), d.len() + 1);
            assert_eq!(d.ann_start.last().copied(), Some(d.annotations.len()));
        }
        Ok(())
    }
}
