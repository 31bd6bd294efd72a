//! Rewriting a COCO annotation file for resized images, keeping everything we do not touch.
//!
//! Why `serde_json::Value` (per entry) and `RawValue` (for the rest): a presized dataset must
//! stay the *same* dataset — `info`, `licenses`, `categories`, vendor keys and unknown fields
//! of images and annotations survive. Top-level values other than `images` and `annotations`
//! are copied through as raw text; each image/annotation entry is parsed on its own, rewritten
//! and written out, so memory is the input file plus one entry, not a full `Value` tree (which
//! costs ~5× the file size on COCO train2017).
//!
//! Geometry: every coordinate is in pixels of the image as the JSON describes it. An image
//! resized from W×H to W'×H' maps a pixel *edge* at x to x·sx with sx = W'/W (sy likewise), so
//! bbox `[x, y, w, h]`, polygon vertices and keypoints scale exactly; `area` scales by sx·sy
//! (the area of the scaled shape, for polygons and masks alike). RLE masks (COCO's
//! column-major run lengths, as a list or as the compressed string) are resampled to the new
//! size by nearest-neighbour sampling at output pixel centres — what a resized mask image would
//! show — and written back in the form they came in.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How one image changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageScale {
    /// New width / JSON width; new height / JSON height.
    pub sx: f64,
    pub sy: f64,
    /// The new size, written to the image entry.
    pub width: u32,
    pub height: u32,
}

impl ImageScale {
    pub fn is_identity(&self) -> bool {
        self.sx == 1.0 && self.sy == 1.0
    }
}

/// What to do with each image id when rewriting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImagePlan {
    /// Rewrite width/height (when given) and scale its annotations.
    Keep(Option<ImageScale>),
    /// The image could not be processed: remove it and its annotations.
    Drop,
}

/// Counts of what the rewrite did (for the manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RescaleStats {
    pub images_written: u64,
    pub images_dropped: u64,
    pub annotations_written: u64,
    pub annotations_scaled: u64,
    /// Annotations removed with their (dropped) image.
    pub annotations_dropped: u64,
    pub polygons_scaled: u64,
    pub rle_masks_resampled: u64,
    pub keypoint_sets_scaled: u64,
    /// Segmentations that were neither polygons nor valid RLE: removed (a mask at the wrong
    /// scale would be silently wrong), counted here.
    pub segmentations_unreadable: u64,
    /// bbox/keypoints that were not numbers in the expected shape: left as they were.
    pub fields_unreadable: u64,
}

/// Errors of the rewrite; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RescaleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid COCO annotation file: {message}")]
    Json { path: PathBuf, message: String },
}

/// Top-level object with its keys in file order, values unparsed.
struct TopLevel<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TopLevel<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<TopLevel<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(TopLevel(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Rewrite the COCO file `input` into `out`: images planned [`ImagePlan::Drop`] are removed
/// with their annotations; images with a scale get the new width/height and scaled annotations;
/// everything else is copied unchanged. `out_name` names write errors (the caller decides where
/// the bytes go; `presize` writes them atomically).
pub fn rewrite_coco_file(
    input: &Path,
    out: &mut dyn Write,
    out_name: &Path,
    plans: &HashMap<i64, ImagePlan>,
) -> Result<RescaleStats, RescaleError> {
    let bytes = std::fs::read(input).map_err(|source| RescaleError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut w = out;
    rewrite_coco(input, body, &mut w, plans).map_err(|e| match e {
        WriteError::Rescale(e) => e,
        WriteError::Io(source) => RescaleError::Io {
            path: out_name.to_path_buf(),
            source,
        },
    })
}

enum WriteError {
    Rescale(RescaleError),
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// The rewrite on bytes already in memory (`path` only names errors).
fn rewrite_coco(
    path: &Path,
    body: &[u8],
    w: &mut impl Write,
    plans: &HashMap<i64, ImagePlan>,
) -> Result<RescaleStats, WriteError> {
    let json_err = |e: serde_json::Error| {
        WriteError::Rescale(RescaleError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    };
    let top: TopLevel<'_> = serde_json::from_slice(body).map_err(json_err)?;
    let mut stats = RescaleStats::default();
    // Annotations refer to images by id: collect each image's scale first.
    let scale_of = |v: &Value| -> Option<i64> { v.get("image_id").and_then(Value::as_i64) };
    w.write_all(b"{")?;
    for (i, (key, raw)) in top.0.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, key).map_err(json_err)?;
        w.write_all(b":")?;
        match key.as_str() {
            "images" | "annotations" => {
                let entries: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(json_err)?;
                w.write_all(b"[")?;
                let mut first = true;
                // The first image entry of an id wins (as when the file was loaded); later
                // entries with that id are dropped.
                let mut seen_ids = std::collections::HashSet::new();
                for entry in entries {
                    let mut v: Value = serde_json::from_str(entry.get()).map_err(json_err)?;
                    let (id, is_image) = if key == "images" {
                        (v.get("id").and_then(Value::as_i64), true)
                    } else {
                        (scale_of(&v), false)
                    };
                    if is_image {
                        if let Some(id) = id {
                            if !seen_ids.insert(id) {
                                stats.images_dropped += 1;
                                continue;
                            }
                        }
                    }
                    let plan = id.and_then(|id| plans.get(&id)).copied();
                    match plan {
                        Some(ImagePlan::Drop) => {
                            if is_image {
                                stats.images_dropped += 1;
                            } else {
                                stats.annotations_dropped += 1;
                            }
                            continue;
                        }
                        Some(ImagePlan::Keep(Some(s))) if !s.is_identity() || is_image => {
                            if is_image {
                                rescale_image_entry(&mut v, &s);
                            } else {
                                rescale_annotation(&mut v, &s, &mut stats);
                                stats.annotations_scaled += 1;
                            }
                        }
                        _ => {}
                    }
                    if is_image {
                        stats.images_written += 1;
                    } else {
                        stats.annotations_written += 1;
                    }
                    if !first {
                        w.write_all(b",")?;
                    }
                    first = false;
                    serde_json::to_writer(&mut *w, &v).map_err(json_err)?;
                }
                w.write_all(b"]")?;
            }
            _ => w.write_all(raw.get().as_bytes())?,
        }
    }
    w.write_all(b"}\n")?;
    Ok(stats)
}

/// Set an image entry's width/height to the new size.
pub fn rescale_image_entry(img: &mut Value, s: &ImageScale) {
    if let Some(obj) = img.as_object_mut() {
        obj.insert("width".into(), Value::from(s.width));
        obj.insert("height".into(), Value::from(s.height));
    }
}

fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Scale one annotation in place: bbox, area, segmentation (polygons or RLE), keypoints.
/// Unknown fields are untouched.
pub fn rescale_annotation(ann: &mut Value, s: &ImageScale, stats: &mut RescaleStats) {
    let Some(obj) = ann.as_object_mut() else {
        stats.fields_unreadable += 1;
        return;
    };
    if let Some(b) = obj.get_mut("bbox") {
        match b
            .as_array()
            .map(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
        {
            Some(Some(v)) if v.len() == 4 => {
                *b = Value::Array(vec![
                    num(v[0] * s.sx),
                    num(v[1] * s.sy),
                    num(v[2] * s.sx),
                    num(v[3] * s.sy),
                ]);
            }
            _ if b.is_null() => {}
            _ => stats.fields_unreadable += 1,
        }
    }
    if let Some(a) = obj.get_mut("area") {
        if let Some(v) = a.as_f64() {
            *a = num(v * s.sx * s.sy);
        }
    }
    if let Some(seg) = obj.get_mut("segmentation") {
        match rescale_segmentation(seg, s) {
            Ok(SegKind::Polygons) => stats.polygons_scaled += 1,
            Ok(SegKind::Rle) => stats.rle_masks_resampled += 1,
            Ok(SegKind::Empty) => {}
            Err(()) => {
                obj.remove("segmentation");
                stats.segmentations_unreadable += 1;
            }
        }
    }
    if let Some(Value::Array(k)) = obj.get_mut("keypoints") {
        let numeric = k.iter().all(Value::is_number);
        if numeric && k.len() % 3 == 0 {
            for p in k.chunks_exact_mut(3) {
                // v = 0 means "not labelled", stored as (0, 0, 0) by convention: left as is.
                let labelled = p[2].as_f64().is_some_and(|v| v != 0.0);
                if let (true, Some(x), Some(y)) = (labelled, p[0].as_f64(), p[1].as_f64()) {
                    p[0] = num(x * s.sx);
                    p[1] = num(y * s.sy);
                }
            }
            stats.keypoint_sets_scaled += 1;
        } else {
            stats.fields_unreadable += 1;
        }
    } else if obj.get("keypoints").is_some_and(|k| !k.is_null()) {
        stats.fields_unreadable += 1;
    }
}

enum SegKind {
    Polygons,
    Rle,
    Empty,
}

fn rescale_segmentation(seg: &mut Value, s: &ImageScale) -> Result<SegKind, ()> {
    match seg {
        Value::Array(polys) if polys.is_empty() => Ok(SegKind::Empty),
        Value::Array(polys) => {
            for poly in polys.iter_mut() {
                let Value::Array(coords) = poly else {
                    return Err(());
                };
                if coords.len() % 2 != 0 {
                    return Err(());
                }
                for (i, c) in coords.iter_mut().enumerate() {
                    let v = c.as_f64().ok_or(())?;
                    *c = num(if i % 2 == 0 { v * s.sx } else { v * s.sy });
                }
            }
            Ok(SegKind::Polygons)
        }
        Value::Object(rle) => {
            let size = rle.get("size").and_then(Value::as_array).ok_or(())?;
            let (h, w) = match size.as_slice() {
                [h, w] => (h.as_u64().ok_or(())?, w.as_u64().ok_or(())?),
                _ => return Err(()),
            };
            let counts = match rle.get("counts") {
                Some(Value::String(text)) => decode_rle_string(text.as_bytes()).ok_or(())?,
                Some(Value::Array(a)) => a
                    .iter()
                    .map(Value::as_u64)
                    .collect::<Option<Vec<u64>>>()
                    .ok_or(())?,
                _ => return Err(()),
            };
            let new_h = ((h as f64 * s.sy).round() as u64).max(1);
            let new_w = ((w as f64 * s.sx).round() as u64).max(1);
            // A mask covers its whole image: one whose size is not the image's would come out
            // at a size other than the new image's — wrong, and (for an absurd declared size)
            // work out of all proportion to the image. Unreadable, like any other bad mask.
            if (new_h, new_w) != (u64::from(s.height), u64::from(s.width)) {
                return Err(());
            }
            let out = resample_rle(&counts, h, w, new_h, new_w).ok_or(())?;
            let as_string = matches!(rle.get("counts"), Some(Value::String(_)));
            let counts_value = if as_string {
                Value::String(encode_rle_string(&out))
            } else {
                Value::Array(out.into_iter().map(Value::from).collect())
            };
            let mut new = Map::new();
            for (k, v) in rle.iter() {
                new.insert(k.clone(), v.clone());
            }
            new.insert("counts".into(), counts_value);
            new.insert(
                "size".into(),
                Value::Array(vec![Value::from(new_h), Value::from(new_w)]),
            );
            *rle = new;
            Ok(SegKind::Rle)
        }
        Value::Null => Ok(SegKind::Empty),
        _ => Err(()),
    }
}

/// Largest mask we resample (pixels on each side's product), against JSON that claims
/// absurd sizes.
const MAX_MASK_PIXELS: u64 = 1 << 31;

/// Resample a column-major RLE mask (`counts` alternate 0-runs and 1-runs, starting with 0s)
/// of `h`×`w` to `nh`×`nw` by sampling each output pixel's centre. `None` when the counts do
/// not describe an `h`×`w` mask (sum larger than h·w) or sizes are absurd; a short sum is
/// padded with 0s, as pycocotools decodes it.
pub fn resample_rle(counts: &[u64], h: u64, w: u64, nh: u64, nw: u64) -> Option<Vec<u64>> {
    let total = h.checked_mul(w)?;
    if total == 0 || total > MAX_MASK_PIXELS || nh.checked_mul(nw)? > MAX_MASK_PIXELS {
        return None;
    }
    let sum = counts.iter().try_fold(0u64, |a, &c| a.checked_add(c))?;
    if sum > total {
        return None;
    }
    // Source row for each output row (pixel centre → nearest source pixel).
    let rows: Vec<u64> = (0..nh)
        .map(|y| ((((2 * y + 1) as f64) * h as f64 / (2 * nh) as f64) as u64).min(h - 1))
        .collect();
    let mut out = Vec::new();
    let (mut cur_val, mut cur_len) = (0u8, 0u64);
    // Cursor over source runs: run `ri` covers [run_start, run_end).
    let (mut ri, mut run_start, mut run_end) =
        (0usize, 0u64, counts.first().copied().unwrap_or(total));
    let value_at = |idx: u64, ri: &mut usize, start: &mut u64, end: &mut u64| -> u8 {
        while idx >= *end {
            *ri += 1;
            *start = *end;
            *end = match counts.get(*ri) {
                Some(c) => *start + c,
                None => total, // the rest is background
            };
            if *ri > counts.len() {
                return 0;
            }
        }
        if *ri < counts.len() && *ri % 2 == 1 {
            1
        } else {
            0
        }
    };
    for x in 0..nw {
        let sx = ((((2 * x + 1) as f64) * w as f64 / (2 * nw) as f64) as u64).min(w - 1);
        for &sy in &rows {
            let idx = sx * h + sy;
            if idx < run_start {
                // Never happens for downscales (indices increase); restart for safety.
                ri = 0;
                run_start = 0;
                run_end = counts.first().copied().unwrap_or(total);
            }
            let v = value_at(idx, &mut ri, &mut run_start, &mut run_end);
            if v == cur_val {
                cur_len += 1;
            } else {
                out.push(cur_len);
                cur_val = v;
                cur_len = 1;
            }
        }
    }
    out.push(cur_len);
    Some(out)
}

/// COCO's compressed RLE string (pycocotools `rleFrString`): LEB128-like 5-bit groups offset
/// by 48, each count after the second stored as the difference to the one two before.
/// `None` on malformed text or negative counts.
pub fn decode_rle_string(s: &[u8]) -> Option<Vec<u64>> {
    let mut counts: Vec<i64> = Vec::new();
    let mut p = 0;
    while p < s.len() {
        let (mut x, mut k, mut more) = (0i64, 0u32, true);
        while more {
            let c = i64::from(*s.get(p)?) - 48;
            if !(0..64).contains(&c) || k > 12 {
                return None;
            }
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && (c & 0x10) != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        if counts.len() > 2 {
            x = x.checked_add(counts[counts.len() - 2])?;
        }
        counts.push(x);
    }
    counts.into_iter().map(|c| u64::try_from(c).ok()).collect()
}

/// Inverse of [`decode_rle_string`] (pycocotools `rleToString`).
pub fn encode_rle_string(counts: &[u64]) -> String {
    let mut out = String::new();
    for (i, &c) in counts.iter().enumerate() {
        let mut x = c as i64;
        if i > 2 {
            x -= counts[i - 2] as i64;
        }
        let mut more = true;
        while more {
            let mut c = x & 0x1f;
            x >>= 5;
            more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            out.push(char::from((c + 48) as u8));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn half() -> ImageScale {
        ImageScale {
            sx: 0.5,
            sy: 0.25,
            width: 50,
            height: 25,
        }
    }

    #[test]
    fn bbox_area_polygons_keypoints_scale_exactly() {
        let mut a = json!({
            "id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0,
            "bbox": [10, 20, 30, 40], "area": 1200.0,
            "segmentation": [[10, 20, 40, 20, 40, 60], [0, 0, 2, 0, 2, 4]],
            "keypoints": [10, 20, 2, 0, 0, 0, 30, 40, 1],
            "num_keypoints": 2, "vendor_extra": {"keep": true}
        });
        let mut st = RescaleStats::default();
        rescale_annotation(&mut a, &half(), &mut st);
        assert_eq!(a["bbox"], json!([5.0, 5.0, 15.0, 10.0]));
        assert_eq!(a["area"], json!(150.0));
        assert_eq!(
            a["segmentation"],
            json!([
                [5.0, 5.0, 20.0, 5.0, 20.0, 15.0],
                [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
            ])
        );
        assert_eq!(a["keypoints"], json!([5.0, 5.0, 2, 0, 0, 0, 15.0, 10.0, 1]));
        assert_eq!(a["vendor_extra"], json!({"keep": true}));
        assert_eq!(a["num_keypoints"], json!(2));
        assert_eq!((st.polygons_scaled, st.keypoint_sets_scaled), (1, 1));
    }

    /// Dense mask helpers: column-major 0/1 grid ↔ counts.
    fn to_counts(mask: &[u8]) -> Vec<u64> {
        let (mut out, mut cur, mut len) = (Vec::new(), 0u8, 0u64);
        for &v in mask {
            if v == cur {
                len += 1;
            } else {
                out.push(len);
                cur = v;
                len = 1;
            }
        }
        out.push(len);
        out
    }

    fn rect_mask(h: u64, w: u64, x0: u64, y0: u64, x1: u64, y1: u64) -> Vec<u8> {
        let mut m = vec![0u8; (h * w) as usize];
        for x in x0..x1 {
            for y in y0..y1 {
                m[(x * h + y) as usize] = 1;
            }
        }
        m
    }

    #[test]
    fn rle_rectangle_resamples_to_the_scaled_rectangle() {
        // 8x12 (h x w) mask with a rectangle x∈[4,8), y∈[2,6) → 4x6: x∈[2,4), y∈[1,3).
        let src = to_counts(&rect_mask(8, 12, 4, 2, 8, 6));
        let out = resample_rle(&src, 8, 12, 4, 6).unwrap();
        assert_eq!(out, to_counts(&rect_mask(4, 6, 2, 1, 4, 3)));
        assert_eq!(out.iter().sum::<u64>(), 24);
        // Identity size: unchanged.
        assert_eq!(resample_rle(&src, 8, 12, 8, 12).unwrap(), src);
        // A mask starting with 1s has a leading 0-length run, kept.
        let full = to_counts(&[1u8; 16]);
        assert_eq!(full, vec![0, 16]);
        assert_eq!(resample_rle(&full, 4, 4, 2, 2).unwrap(), vec![0, 4]);
    }

    #[test]
    fn rle_bad_counts_are_rejected() {
        assert!(resample_rle(&[10, 10], 3, 3, 1, 1).is_none()); // sum > h*w
        assert!(resample_rle(&[1], 0, 3, 1, 1).is_none());
        // Short sums are padded with background.
        assert_eq!(resample_rle(&[2, 2], 3, 3, 3, 3).unwrap(), vec![2, 2, 5]);
    }

    /// `pycocotools.mask.encode` of a 10x10 mask with rows 2..7, columns 3..9 set.
    const PYCOCO_RECT_10X10: &str = "P1550000000008";
    const PYCOCO_RECT_COUNTS: [u64; 13] = [32, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 13];

    #[test]
    fn compressed_rle_string_round_trips() {
        assert_eq!(encode_rle_string(&PYCOCO_RECT_COUNTS), PYCOCO_RECT_10X10);
        // pycocotools.mask.frPyObjects({'counts': [0, 16], 'size': [4, 4]}, 4, 4)
        assert_eq!(encode_rle_string(&[0, 16]), "0`0");
        // By hand: the first three counts are stored as is (pycocotools diffs from index 3):
        // 3 → '3', 2 → '2', 10 → ':' (48 + 10); 7 at index 3 is stored as 7 - 2 = 5 → '5'.
        assert_eq!(encode_rle_string(&[3, 2, 10, 7]), "32:5");
        assert_eq!(decode_rle_string(b"32:5").unwrap(), vec![3, 2, 10, 7]);
        // Strings made by pycocotools.mask.encode (checked with pycocotools 2.0).
        assert_eq!(
            decode_rle_string(PYCOCO_RECT_10X10.as_bytes()).unwrap(),
            PYCOCO_RECT_COUNTS
        );
        for counts in [
            vec![0u64, 16],
            vec![5, 100, 3, 70000, 2, 1],
            vec![123_456, 1, 1, 1, 99, 0, 7],
        ] {
            let s = encode_rle_string(&counts);
            assert_eq!(decode_rle_string(s.as_bytes()).unwrap(), counts, "{s}");
        }
        assert!(decode_rle_string(b"\x01").is_none());
    }

    #[test]
    fn rle_segmentation_keeps_its_form() {
        let counts = to_counts(&rect_mask(8, 12, 4, 2, 8, 6));
        let s = ImageScale {
            sx: 0.5,
            sy: 0.5,
            width: 6,
            height: 4,
        };
        let mut st = RescaleStats::default();
        let mut a = json!({"image_id": 1, "bbox": [4, 2, 4, 4], "area": 16,
            "segmentation": {"size": [8, 12], "counts": encode_rle_string(&counts)}});
        rescale_annotation(&mut a, &s, &mut st);
        let expect = to_counts(&rect_mask(4, 6, 2, 1, 4, 3));
        assert_eq!(a["segmentation"]["size"], json!([4, 6]));
        assert_eq!(
            a["segmentation"]["counts"],
            json!(encode_rle_string(&expect))
        );
        assert_eq!(a["area"], json!(4.0));
        let mut b = json!({"image_id": 1, "segmentation": {"size": [8, 12], "counts": counts}});
        rescale_annotation(&mut b, &s, &mut st);
        assert_eq!(b["segmentation"]["counts"], json!(expect));
        assert_eq!(st.rle_masks_resampled, 2);
        // Garbage segmentation: removed and counted, not left at the wrong scale.
        let mut c = json!({"image_id": 1, "segmentation": {"size": [8], "counts": []}});
        rescale_annotation(&mut c, &s, &mut st);
        assert!(c.get("segmentation").is_none());
        assert_eq!(st.segmentations_unreadable, 1);
        // A mask of another size than its image (here 46000x46000 on an 8x12 image): not
        // resampled at that size (work out of all proportion), removed and counted.
        let mut d = json!({"image_id": 1,
            "segmentation": {"size": [46000, 46000], "counts": [1000, 5000, 46000u64 * 46000 - 6000]}});
        rescale_annotation(&mut d, &s, &mut st);
        assert!(d.get("segmentation").is_none());
        assert_eq!(st.segmentations_unreadable, 2);
    }

    #[test]
    fn file_rewrite_keeps_unknown_keys_and_drops_bad_images() {
        let input = br#"{"info": {"v": 1}, "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 100, "x": "keep"},
            {"id": 2, "file_name": "b.jpg", "width": 10, "height": 10},
            {"id": 3, "file_name": "c.jpg", "width": 10, "height": 10}],
          "annotations": [
            {"id": 1, "image_id": 1, "bbox": [10, 10, 20, 20], "area": 400},
            {"id": 2, "image_id": 2, "bbox": [1, 1, 2, 2], "area": 4},
            {"id": 3, "image_id": 3, "bbox": [1, 1, 2, 2], "area": 4}],
          "categories": [{"id": 1, "name": "x"}], "licenses": []}"#;
        let mut plans = HashMap::new();
        plans.insert(
            1,
            ImagePlan::Keep(Some(ImageScale {
                sx: 0.5,
                sy: 0.5,
                width: 50,
                height: 50,
            })),
        );
        plans.insert(2, ImagePlan::Drop);
        plans.insert(3, ImagePlan::Keep(None));
        let mut out = Vec::new();
        let st = match rewrite_coco(Path::new("t.json"), input, &mut out, &plans) {
            Ok(s) => s,
            Err(_) => panic!("rewrite failed"),
        };
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["info"], json!({"v": 1}));
        assert_eq!(v["licenses"], json!([]));
        assert_eq!(v["images"].as_array().unwrap().len(), 2);
        assert_eq!(v["images"][0]["width"], json!(50));
        assert_eq!(v["images"][0]["x"], json!("keep"));
        assert_eq!(v["images"][1]["id"], json!(3));
        assert_eq!(v["images"][1]["width"], json!(10));
        assert_eq!(v["annotations"].as_array().unwrap().len(), 2);
        assert_eq!(v["annotations"][0]["bbox"], json!([5.0, 5.0, 10.0, 10.0]));
        assert_eq!(v["annotations"][1]["bbox"], json!([1, 1, 2, 2]));
        // Top-level key order preserved.
        let text = String::from_utf8(out).unwrap();
        assert!(text.find("\"info\"").unwrap() < text.find("\"images\"").unwrap());
        assert!(text.find("\"categories\"").unwrap() < text.find("\"licenses\"").unwrap());
        assert_eq!((st.images_dropped, st.annotations_dropped), (1, 1));
        assert_eq!((st.images_written, st.annotations_written), (2, 2));
        assert!(rewrite_coco(Path::new("t.json"), b"[1,2]", &mut Vec::new(), &plans).is_err());
    }
}
