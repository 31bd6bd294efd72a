//! One input image → one record (or a reasoned skip), with every box accounted for, and the
//! per-image rules `convert` and `presize` share: where an image file may be read from, which
//! pixel frame the annotations are in, and when the JSON's size disagrees with the file.
//!
//! Pure per-image work, run in parallel; its result is appended to the shard in input order by
//! the caller, so shard bytes never depend on scheduling.

use crate::dataset::paths::{OpenFailed, Root};
use crate::dataset::{normalize_box, BoxOutcome, ImageEntry, Sample};
use crate::image::presize::{presize_jpeg, DEFAULT_QUALITY};
use crate::image::resize::Target;
use crate::image::ImageError;
use crate::shard::example::SplitEncoding;
use crate::shard::manifest::{DroppedBox, ImageNote, SizeMismatch};
use crate::shard::od_example::{OdObject, OdRecord};
use crate::shard::sha256_batch::sha256_batch;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

/// Bytes read of one input image unless the run raises it (`--max-image-bytes`): far above
/// any real photo, far below what a symbolic link to `/dev/zero` or a sparse file would make a
/// run hold in memory.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Reads the input image `file_name` of the images folder `root`. The error is the reason the
/// image is skipped (the caller names the file): names that leave the folder (absolute, `..`,
/// symbolic links) are refused, as is anything that is not a regular file (a FIFO would block
/// for ever, a device never end) and anything larger than `max_bytes`.
pub fn read_input(root: &Root, file_name: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    let file = match root.open(file_name) {
        Ok(f) => f,
        Err(OpenFailed::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("file not found".into())
        }
        Err(OpenFailed::Io(e)) => return Err(format!("cannot read: {e}")),
        Err(refused) => return Err(refused.to_string()),
    };
    // Checked on the open file (no gap between the check and the read).
    let size = match file.metadata() {
        Ok(m) if !m.is_file() => return Err("not a regular file".into()),
        Ok(m) if m.len() > max_bytes => {
            return Err(format!(
                "file is {} bytes, over the {max_bytes}-byte limit per image (--max-image-bytes raises it)",
                m.len()
            ))
        }
        Ok(m) => m.len(),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let bytes = read_capped(&file, size, max_bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "file grew past the {max_bytes}-byte limit per image while it was read"
        ));
    }
    Ok(bytes)
}

/// The file's bytes, read into a buffer sized from its metadata `size` (+1 byte, to see the end
/// of the file in the second read): two `read` calls for a file that does not change. Why not
/// `read_to_end`: through `Take` (the cap below) it cannot see the file's size and reads in
/// steps from 8 KiB up, a call each. Stops once more than `max_bytes` are in (the file may grow
/// after `size` was taken: never read far past the limit).
fn read_capped(file: &std::fs::File, size: u64, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use rustix::buffer::spare_capacity;
    let cap = max_bytes.saturating_add(1);
    // Capacity never past `cap`: `read` fills whatever spare capacity there is.
    let mut bytes = Vec::with_capacity(size.min(max_bytes) as usize + 1);
    while (bytes.len() as u64) < cap {
        if bytes.len() == bytes.capacity() {
            let left = cap - bytes.len() as u64;
            bytes.reserve_exact(left.min(1 << 20) as usize);
        }
        match rustix::io::read(file, spare_capacity(&mut bytes)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bytes)
}

/// The pixel frame the annotations of `img` are in: the annotation file's width/height when
/// given (the frame the labelling tool saw), else the image's own displayed size; and the size
/// mismatch to report when the two disagree.
pub fn annotation_frame(
    img: &ImageEntry,
    displayed: (u32, u32),
) -> ((u32, u32), Option<SizeMismatch>) {
    if img.width > 0 && img.height > 0 {
        let mismatch = ((img.width, img.height) != displayed).then(|| SizeMismatch {
            file_name: img.file_name.clone(),
            image_id: img.id,
            json: [img.width, img.height],
            image: [displayed.0, displayed.1],
        });
        ((img.width, img.height), mismatch)
    } else {
        (displayed, None)
    }
}

/// Read-only context shared by all image jobs of a split.
pub struct JobContext<'a> {
    pub images: &'a Root,
    /// Largest input file read (see [`DEFAULT_MAX_IMAGE_BYTES`]).
    pub max_image_bytes: u64,
    /// COCO category id → (name, label written to the record).
    pub categories: &'a HashMap<i64, (String, i64)>,
    pub decode_check: bool,
    pub presize: Option<u32>,
    /// Stored images hashed at once (see [`finish_records`]).
    pub hash_batch: usize,
}

/// One record, kept in two pieces so the image goes from the buffer it was read into straight
/// to the shard file: the payload is `example.parts(image)` concatenated.
pub struct RecordBytes {
    example: SplitEncoding,
    /// The buffer holding the stored image (the input file itself when stored unchanged).
    image_buf: Vec<u8>,
    image: Range<usize>,
}

impl RecordBytes {
    /// The payload's pieces, in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        self.example.parts(&self.image_buf[self.image.clone()])
    }
}

/// What became of one image.
pub struct ImageOutcome {
    /// The record; `None` when the image was skipped (see `skipped`).
    pub payload: Option<RecordBytes>,
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
    /// The outcome of an image that did not become a record.
    pub fn skip(sample: &Sample<'_>, input_bytes: u64, reason: String) -> Self {
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

/// One image read, stored and annotated: its record needs only the SHA-256 of the stored
/// bytes, which [`finish_records`] computes for a whole window at once (see
/// [`crate::shard::sha256_batch`]).
pub struct PendingRecord<'a> {
    height: u32,
    width: u32,
    filename: &'a str,
    source_id: String,
    objects: Vec<OdObject<'a>>,
    /// The buffer holding the stored image (the input file itself when stored unchanged).
    image_buf: Vec<u8>,
    image: Range<usize>,
    /// The outcome, all but its payload.
    outcome: ImageOutcome,
}

impl PendingRecord<'_> {
    /// The bytes the record stores (and hashes).
    pub fn stored(&self) -> &[u8] {
        &self.image_buf[self.image.clone()]
    }

    /// The record, with `sha256` the digest of [`Self::stored`].
    pub fn finish(self, sha256: &[u8; 32]) -> ImageOutcome {
        let record = OdRecord {
            height: self.height,
            width: self.width,
            filename: self.filename,
            source_id: self.source_id,
            sha256_hex: hex::encode(sha256),
            encoded: &self.image_buf[self.image.clone()],
            format: "jpeg",
            objects: self.objects,
        };
        let example = record.encode_split();
        drop(record);
        ImageOutcome {
            payload: Some(RecordBytes {
                example,
                image_buf: self.image_buf,
                image: self.image,
            }),
            ..self.outcome
        }
    }
}

/// An image on its way to a record: skipped already, or waiting for its digest.
pub enum Prepared<'a> {
    Skipped(ImageOutcome),
    Pending(PendingRecord<'a>),
}

/// The outcomes of `prepared`, in order: the stored bytes of every pending record are hashed
/// `per_batch` at a time (batches in parallel on the current pool), then each record is encoded
/// (in parallel too).
pub fn finish_records(prepared: Vec<Prepared<'_>>, per_batch: usize) -> Vec<ImageOutcome> {
    use rayon::prelude::*;
    let stored: Vec<&[u8]> = prepared
        .iter()
        .filter_map(|p| match p {
            Prepared::Pending(r) => Some(r.stored()),
            Prepared::Skipped(_) => None,
        })
        .collect();
    let digests: Vec<[u8; 32]> = stored
        .par_chunks(per_batch.max(1))
        .flat_map_iter(sha256_batch)
        .collect();
    // Each pending record's digest, by position in `prepared`.
    let mut next = digests.into_iter();
    let paired: Vec<(Prepared<'_>, Option<[u8; 32]>)> = prepared
        .into_iter()
        .map(|p| {
            let d = match p {
                Prepared::Pending(_) => next.next(),
                Prepared::Skipped(_) => None,
            };
            (p, d)
        })
        .collect();
    paired
        .into_par_iter()
        .map(|(p, d)| match (p, d) {
            (Prepared::Skipped(o), _) => o,
            (Prepared::Pending(r), Some(d)) => r.finish(&d),
            (Prepared::Pending(_), None) => unreachable!("one digest per pending record"),
        })
        .collect()
}

/// Reads, stores and annotates one sample; the record waits for its digest (or the image is
/// skipped, with the reason). Never panics and never fails the run: problems become notes in
/// the outcome.
pub fn prepare_record<'a>(ctx: &JobContext<'a>, sample: Sample<'a>) -> Prepared<'a> {
    let raw = match read_input(ctx.images, &sample.image.file_name, ctx.max_image_bytes) {
        Ok(b) => b,
        Err(reason) => return Prepared::Skipped(ImageOutcome::skip(&sample, 0, reason)),
    };
    let input_bytes = raw.len() as u64;
    let stored = match store_image(ctx, &raw) {
        Ok(s) => s,
        Err(e) => {
            return Prepared::Skipped(ImageOutcome::skip(&sample, input_bytes, e.to_string()))
        }
    };
    let reencoded = stored.reencoded.map(|r| note(&sample, r.to_string()));
    let (width, height, area_scale) = (stored.width, stored.height, stored.area_scale);
    let (shown_w, shown_h) = stored.displayed;
    // Where the stored bytes are: a range of the input buffer (no copy), or a buffer of their
    // own (re-encoded, or — never expected — borrowed from anywhere else).
    let (image_buf, image) = match stored.bytes {
        Cow::Borrowed(b) => match range_within(&raw, b) {
            Some(r) => (None, r),
            None => (Some(b.to_vec()), 0..b.len()),
        },
        Cow::Owned(v) => {
            let len = v.len();
            (Some(v), 0..len)
        }
    };

    // Boxes are in the pixel frame the annotation file describes (before any presize).
    let img = sample.image;
    let ((frame_w, frame_h), size_mismatch) = annotation_frame(img, (shown_w, shown_h));

    let categories: &'a HashMap<i64, (String, i64)> = ctx.categories;
    let mut objects = Vec::with_capacity(sample.annotations.len());
    let mut dropped = Vec::new();
    let (mut kept, mut clipped) = (0, 0);
    for ann in sample.annotations {
        let Some((name, label)) = categories.get(&ann.category_id) else {
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

    Prepared::Pending(PendingRecord {
        height,
        width,
        filename: &img.file_name,
        source_id: img.id.to_string(),
        objects,
        image_buf: image_buf.unwrap_or(raw),
        image,
        outcome: ImageOutcome {
            payload: None,
            input_bytes,
            skipped: None,
            reencoded,
            size_mismatch,
            dropped,
            kept,
            clipped,
            without_annotations: sample.annotations.is_empty(),
        },
    })
}

/// The range `part` occupies inside `whole`, if it is a sub-slice of it.
fn range_within(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let range = start..start.checked_add(part.len())?;
    (whole.get(range.clone())?.as_ptr() == part.as_ptr()).then_some(range)
}

/// The bytes a record stores for one input file, and what they are.
struct StoredImage<'a> {
    bytes: Cow<'a, [u8]>,
    width: u32,
    height: u32,
    /// Size of the input as displayed (after EXIF orientation), before any presize.
    displayed: (u32, u32),
    /// Why the bytes are not the input file (manifest reason), if they are not.
    reencoded: Option<&'static str>,
    /// Factor on pixel areas (presize).
    area_scale: f64,
}

/// `--presize` first, on the raw bytes: its fast path decodes at reduced DCT scale and applies
/// EXIF orientation / CMYK / PNG conversion on the small image, so a rotated 12 MP photo is not
/// fully decoded and re-encoded once before being resized. Images within the limit (and runs
/// without --presize) go through `prepare`, which stores clean JPEGs byte-identical.
fn store_image<'a>(ctx: &JobContext<'_>, raw: &'a [u8]) -> Result<StoredImage<'a>, ImageError> {
    if let Some(limit) = ctx.presize {
        let r = presize_jpeg(raw, Target::longest(limit), DEFAULT_QUALITY)?;
        if let Some(bytes) = r.bytes {
            return Ok(StoredImage {
                bytes: Cow::Owned(bytes),
                width: r.width,
                height: r.height,
                displayed: (r.src_width, r.src_height),
                reencoded: Some("presized"),
                area_scale: r.sx * r.sy,
            });
        }
    }
    let p = crate::image::prepare(raw, ctx.decode_check)?;
    Ok(StoredImage {
        width: p.width,
        height: p.height,
        displayed: (p.width, p.height),
        reencoded: p.reencoded.map(|r| r.as_str()),
        bytes: p.bytes,
        area_scale: 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_files_must_be_regular_files_inside_the_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.jpg"), b"jpeg").unwrap();
        std::fs::create_dir(d.path().join("dir.jpg")).unwrap();
        let r = Root::new(d.path());
        let max = DEFAULT_MAX_IMAGE_BYTES;
        assert_eq!(read_input(&r, "a.jpg", max).unwrap(), b"jpeg");
        assert_eq!(read_input(&r, "b.jpg", max).unwrap_err(), "file not found");
        assert_eq!(
            read_input(&r, "dir.jpg", max).unwrap_err(),
            "not a regular file"
        );
        assert!(read_input(&r, "../a.jpg", max).unwrap_err().contains(".."));
        assert!(read_input(&r, "/etc/hostname", max)
            .unwrap_err()
            .contains("absolute"));
        assert!(read_input(&r, "a.jpg", 3)
            .unwrap_err()
            .contains("over the 3-byte limit"));
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero.jpg")).unwrap();
        assert!(read_input(&r, "zero.jpg", max).is_err());
    }

    /// The read stops past the limit even when the file is larger than its size said (it grew
    /// after the size was taken), and reads whole files whatever the size hint.
    #[test]
    fn reads_are_capped_at_the_limit_whatever_the_size_hint() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jpg");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        for hint in [0, 5, 3_000_000, 9_000_000] {
            use std::io::Seek;
            (&f).rewind().unwrap();
            assert_eq!(read_capped(&f, hint, 1 << 30).unwrap(), data, "hint {hint}");
            (&f).rewind().unwrap();
            let capped = read_capped(&f, hint, 1000).unwrap();
            assert_eq!(
                capped.len(),
                1001,
                "hint {hint}: one byte past the limit, no more"
            );
            assert_eq!(capped[..], data[..capped.len()]);
            // Growth past a smaller size hint goes in bounded steps up to the cap exactly.
            (&f).rewind().unwrap();
            let capped = read_capped(&f, hint.min(5), 2_500_000).unwrap();
            assert_eq!(capped.len(), 2_500_001, "hint {hint}");
        }
    }

    #[test]
    fn annotation_frame_prefers_the_json_size_and_reports_mismatches() {
        let img = |w, h| ImageEntry {
            id: 7,
            file_name: "x.jpg".into(),
            width: w,
            height: h,
        };
        assert_eq!(annotation_frame(&img(0, 0), (30, 20)), ((30, 20), None));
        assert_eq!(annotation_frame(&img(30, 20), (30, 20)), ((30, 20), None));
        let (frame, m) = annotation_frame(&img(60, 40), (30, 20));
        assert_eq!(frame, (60, 40));
        let m = m.unwrap();
        assert_eq!((m.image_id, m.json, m.image), (7, [60, 40], [30, 20]));
    }

    #[test]
    fn range_within_finds_sub_slices_only() {
        let whole = b"0123456789".to_vec();
        assert_eq!(range_within(&whole, &whole[2..7]), Some(2..7));
        assert_eq!(range_within(&whole, &whole), Some(0..10));
        assert_eq!(range_within(&whole, &whole[10..]), Some(10..10));
        let other = b"0123456789".to_vec();
        assert_eq!(range_within(&whole, &other[1..3]), None);
    }

    /// Skipped images between pending ones, batches smaller and larger than the lane count: each
    /// record carries the digest of its own image (a digest handed to the wrong record fails).
    #[test]
    fn finished_records_carry_their_own_images_digest() {
        use crate::shard::od_example::encoded_image;
        use sha2::Digest;
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/coco/val");
        let mut names: Vec<String> = std::fs::read_dir(&fixtures)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".jpg"))
            .collect();
        names.sort();
        assert!(names.len() >= 10, "{names:?}");
        // Every third name is missing: skipped before hashing.
        let images: Vec<ImageEntry> = (0..3 * names.len())
            .map(|i| ImageEntry {
                id: i as i64,
                file_name: match i % 3 {
                    2 => format!("missing-{i}.jpg"),
                    _ => names[i % names.len()].clone(),
                },
                width: 0,
                height: 0,
            })
            .collect();
        let root = Root::new(&fixtures);
        let categories = HashMap::new();
        let ctx = JobContext {
            images: &root,
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            categories: &categories,
            decode_check: false,
            presize: None,
            hash_batch: 0,
        };
        for per_batch in [1, 5, 16, 1000] {
            let prepared = images
                .iter()
                .map(|image| {
                    let sample = Sample {
                        image,
                        annotations: &[],
                    };
                    prepare_record(&ctx, sample)
                })
                .collect();
            let outcomes = finish_records(prepared, per_batch);
            assert_eq!(outcomes.len(), images.len());
            for (i, o) in outcomes.iter().enumerate() {
                let Some(p) = &o.payload else {
                    assert_eq!(
                        i % 3,
                        2,
                        "image {i} skipped: {:?}",
                        o.skipped.as_ref().map(|s| &s.reason)
                    );
                    continue;
                };
                let payload = p.parts().concat();
                let ex = crate::shard::example::Example::decode(&payload).unwrap();
                let sha = ex
                    .get_bytes(crate::shard::od_example::keys::SHA256)
                    .unwrap()[0]
                    .as_ref();
                let image = encoded_image(&payload).unwrap();
                // The bytes this image stores when prepared on its own.
                let alone = match prepare_record(
                    &ctx,
                    Sample {
                        image: &images[i],
                        annotations: &[],
                    },
                ) {
                    Prepared::Pending(r) => r.stored().to_vec(),
                    Prepared::Skipped(o) => panic!("image {i} skipped alone: {:?}", o.skipped),
                };
                assert_eq!(image, &alone[..], "image {i}");
                assert_eq!(
                    sha,
                    hex::encode(sha2::Sha256::digest(image)).as_bytes(),
                    "image {i}"
                );
            }
        }
    }

    #[test]
    fn record_bytes_parts_join_to_the_plain_payload() {
        let raw = b"junk\xff\xd8jpeg\xff\xd9junk".to_vec();
        let image = 4..12;
        let record = OdRecord {
            height: 1,
            width: 1,
            filename: "a.jpg",
            source_id: "1".into(),
            sha256_hex: "00".repeat(32),
            encoded: &raw[image.clone()],
            format: "jpeg",
            objects: vec![],
        };
        let mut plain = Vec::new();
        record.encode_into(&mut plain);
        let example = record.encode_split();
        let bytes = RecordBytes {
            example,
            image_buf: raw.clone(),
            image,
        };
        assert_eq!(bytes.parts().concat(), plain);
    }
}
