//! The TensorFlow Object Detection API record layout (the keys `create_coco_tf_record.py`
//! writes and `tf_example_decoder.py` reads), built from plain values so this layer stays
//! ignorant of COCO.

use super::example::{Example, Feature, SplitEncoding};
use std::borrow::Cow;

/// Feature keys, in one place so the writer, `verify` and the README agree.
pub mod keys {
    pub const HEIGHT: &str = "image/height";
    pub const WIDTH: &str = "image/width";
    pub const FILENAME: &str = "image/filename";
    pub const SOURCE_ID: &str = "image/source_id";
    pub const SHA256: &str = "image/key/sha256";
    pub const ENCODED: &str = "image/encoded";
    pub const FORMAT: &str = "image/format";
    pub const XMIN: &str = "image/object/bbox/xmin";
    pub const XMAX: &str = "image/object/bbox/xmax";
    pub const YMIN: &str = "image/object/bbox/ymin";
    pub const YMAX: &str = "image/object/bbox/ymax";
    pub const CLASS_TEXT: &str = "image/object/class/text";
    pub const CLASS_LABEL: &str = "image/object/class/label";
    pub const IS_CROWD: &str = "image/object/is_crowd";
    pub const AREA: &str = "image/object/area";
}

/// One object of a record; corners normalised to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OdObject<'a> {
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
    pub class_text: &'a str,
    pub class_label: i64,
    pub is_crowd: bool,
    pub area: f32,
}

/// Everything one record holds.
#[derive(Debug, Clone)]
pub struct OdRecord<'a> {
    pub height: u32,
    pub width: u32,
    pub filename: &'a str,
    pub source_id: String,
    pub sha256_hex: String,
    pub encoded: &'a [u8],
    pub format: &'a str,
    pub objects: Vec<OdObject<'a>>,
}

impl OdRecord<'_> {
    /// Serialize as a `tf.train.Example` (keys sorted: byte-deterministic). Images without
    /// objects get empty lists, as the TF OD converter writes them.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.example().encode_into(out);
    }

    /// [`OdRecord::encode_into`] without copying `encoded`: the payload is
    /// `split.parts(self.encoded)` concatenated.
    pub fn encode_split(&self) -> SplitEncoding {
        self.example().encode_split(keys::ENCODED)
    }

    fn example(&self) -> Example<'_> {
        let mut ex = Example::default();
        let objs = &self.objects;
        let f = |sel: fn(&OdObject) -> f32| Feature::Float(objs.iter().map(sel).collect());
        let bytes = |b: &[u8]| Feature::Bytes(vec![Cow::Owned(b.to_vec())]);
        let int = |v: i64| Feature::Int64(vec![v]);
        let feats = &mut ex.features;
        feats.insert(keys::HEIGHT.into(), int(i64::from(self.height)));
        feats.insert(keys::WIDTH.into(), int(i64::from(self.width)));
        feats.insert(keys::FILENAME.into(), bytes(self.filename.as_bytes()));
        feats.insert(keys::SOURCE_ID.into(), bytes(self.source_id.as_bytes()));
        feats.insert(keys::SHA256.into(), bytes(self.sha256_hex.as_bytes()));
        feats.insert(
            keys::ENCODED.into(),
            Feature::Bytes(vec![Cow::Borrowed(self.encoded)]),
        );
        feats.insert(keys::FORMAT.into(), bytes(self.format.as_bytes()));
        feats.insert(keys::XMIN.into(), f(|o| o.xmin));
        feats.insert(keys::XMAX.into(), f(|o| o.xmax));
        feats.insert(keys::YMIN.into(), f(|o| o.ymin));
        feats.insert(keys::YMAX.into(), f(|o| o.ymax));
        feats.insert(keys::AREA.into(), f(|o| o.area));
        feats.insert(
            keys::CLASS_TEXT.into(),
            Feature::Bytes(
                objs.iter()
                    .map(|o| Cow::Owned(o.class_text.as_bytes().to_vec()))
                    .collect(),
            ),
        );
        feats.insert(
            keys::CLASS_LABEL.into(),
            Feature::Int64(objs.iter().map(|o| o.class_label).collect()),
        );
        feats.insert(
            keys::IS_CROWD.into(),
            Feature::Int64(objs.iter().map(|o| i64::from(o.is_crowd)).collect()),
        );
        ex
    }
}

/// The labels a record may carry: `image/object/class/label` → the class text it must come
/// with (from the manifest's categories and label mode).
pub type LabelMap = std::collections::HashMap<i64, String>;

/// Checks the invariants every record dsprep writes holds, so a damaged or edited record names
/// what is wrong: the image and its sha256, a positive width and height, a file name and a
/// numeric source id, object lists of one length, boxes finite inside `[0, 1]` with
/// `min <= max`, labels known to `labels` with their class text, `is_crowd` 0 or 1, areas
/// finite and not negative. Returns the decoded record for further checks.
pub fn check_record<'a>(payload: &'a [u8], labels: &LabelMap) -> Result<Example<'a>, String> {
    use sha2::Digest;
    let ex = Example::decode(payload).map_err(|e| format!("not a tf.train.Example: {e}"))?;
    let one_bytes = |k: &str| -> Result<&[u8], String> {
        match ex.get_bytes(k) {
            Some([v]) => Ok(v.as_ref()),
            Some(v) => Err(format!("{k} has {} values, expected 1", v.len())),
            None => Err(format!("no {k} feature")),
        }
    };
    let one_int = |k: &str| -> Result<i64, String> {
        match ex.get_int64s(k) {
            Some([v]) => Ok(*v),
            Some(v) => Err(format!("{k} has {} values, expected 1", v.len())),
            None => Err(format!("no {k} feature")),
        }
    };
    let encoded = one_bytes(keys::ENCODED)?;
    let sha = one_bytes(keys::SHA256)?;
    if hex::encode(sha2::Sha256::digest(encoded)).as_bytes() != sha {
        return Err("image/encoded does not match image/key/sha256".into());
    }
    for k in [keys::WIDTH, keys::HEIGHT] {
        let v = one_int(k)?;
        if v <= 0 {
            return Err(format!("{k} is {v}"));
        }
    }
    one_bytes(keys::FILENAME)?;
    let id = one_bytes(keys::SOURCE_ID)?;
    if std::str::from_utf8(id)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .is_none()
    {
        return Err(format!(
            "image/source_id is not a number ({} bytes)",
            id.len()
        ));
    }
    let floats = |k: &str| ex.get_floats(k).unwrap_or(&[]);
    let (xmin, xmax, ymin, ymax) = (
        floats(keys::XMIN),
        floats(keys::XMAX),
        floats(keys::YMIN),
        floats(keys::YMAX),
    );
    let area = floats(keys::AREA);
    let label = ex.get_int64s(keys::CLASS_LABEL).unwrap_or(&[]);
    let crowd = ex.get_int64s(keys::IS_CROWD).unwrap_or(&[]);
    let text = ex.get_bytes(keys::CLASS_TEXT).unwrap_or(&[]);
    let n = xmin.len();
    let lens = [
        (keys::XMAX, xmax.len()),
        (keys::YMIN, ymin.len()),
        (keys::YMAX, ymax.len()),
        (keys::AREA, area.len()),
        (keys::CLASS_LABEL, label.len()),
        (keys::IS_CROWD, crowd.len()),
        (keys::CLASS_TEXT, text.len()),
    ];
    if let Some((k, len)) = lens.iter().find(|(_, len)| *len != n) {
        return Err(format!("{k} has {len} values but {} has {n}", keys::XMIN));
    }
    for i in 0..n {
        for (name, v) in [
            ("xmin", xmin[i]),
            ("xmax", xmax[i]),
            ("ymin", ymin[i]),
            ("ymax", ymax[i]),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(format!("box {i}: {name} {v} is not inside [0, 1]"));
            }
        }
        if xmin[i] > xmax[i] || ymin[i] > ymax[i] {
            return Err(format!(
                "box {i}: min above max (x {}..{}, y {}..{})",
                xmin[i], xmax[i], ymin[i], ymax[i]
            ));
        }
        match labels.get(&label[i]) {
            None => {
                return Err(format!(
                    "box {i}: label {} is not in the label map",
                    label[i]
                ))
            }
            Some(name) if name.as_bytes() != text[i].as_ref() => {
                return Err(format!(
                    "box {i}: class text does not match label {} ({name:?})",
                    label[i]
                ))
            }
            Some(_) => {}
        }
        if !matches!(crowd[i], 0 | 1) {
            return Err(format!("box {i}: is_crowd is {}", crowd[i]));
        }
        if !(area[i].is_finite() && area[i] >= 0.0) {
            return Err(format!("box {i}: area {} is not a size", area[i]));
        }
    }
    Ok(ex)
}

/// A record with its image replaced by a resized version of the same picture (presize of a
/// shard folder): new `image/encoded`, `image/format`, width, height and sha256; areas scaled by
/// `sx·sy` (the factors from stored to new pixels); normalised boxes, classes and everything
/// else unchanged. Returns the new payload.
pub fn rewrite_image(
    ex: &Example<'_>,
    image: Vec<u8>,
    width: u32,
    height: u32,
    sx: f64,
    sy: f64,
) -> Vec<u8> {
    use sha2::Digest;
    let mut out = ex.clone();
    let area = ex.get_floats(keys::AREA).map(|a| {
        a.iter()
            .map(|v| (f64::from(*v) * sx * sy) as f32)
            .collect::<Vec<_>>()
    });
    out.insert_str(keys::SHA256, [hex::encode(sha2::Sha256::digest(&image))]);
    out.insert_int64s(keys::WIDTH, [i64::from(width)]);
    out.insert_int64s(keys::HEIGHT, [i64::from(height)]);
    if let Some(a) = area {
        out.insert_floats(keys::AREA, a);
    }
    out.insert_str(keys::FORMAT, ["jpeg"]);
    out.insert_bytes(keys::ENCODED, [image]);
    out.to_bytes()
}

/// The image of a record, with the reason when there is none.
pub fn encoded_image(payload: &[u8]) -> Result<&[u8], String> {
    match super::example::find_bytes_feature(payload, keys::ENCODED) {
        Ok(Some(jpeg)) => Ok(jpeg),
        Ok(None) => Err("record has no image/encoded".into()),
        Err(e) => Err(format!("bad tf.train.Example: {e}")),
    }
}

/// `image/filename` and `image/source_id` of a record, for naming it in reports (empty name
/// and id -1 when absent or unparsable).
pub fn record_identity(ex: &Example<'_>) -> (String, i64) {
    let text = |k: &str| {
        ex.get_bytes(k)
            .and_then(|v| v.first())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    (
        text(keys::FILENAME),
        text(keys::SOURCE_ID).parse().unwrap_or(-1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(objects: Vec<OdObject<'_>>) -> Vec<u8> {
        let r = OdRecord {
            height: 48,
            width: 64,
            filename: "a/ñ.jpg",
            source_id: "107".into(),
            sha256_hex: "ab".repeat(32),
            encoded: b"\xff\xd8jpeg\xff\xd9",
            format: "jpeg",
            objects,
        };
        let mut out = Vec::new();
        r.encode_into(&mut out);
        out
    }

    #[test]
    fn round_trips_every_key() {
        let out = record(vec![OdObject {
            xmin: 0.25,
            ymin: 0.5,
            xmax: 0.75,
            ymax: 1.0,
            class_text: "dog",
            class_label: 18,
            is_crowd: true,
            area: 12.5,
        }]);
        let ex = Example::decode(&out).unwrap();
        assert_eq!(ex.get_int64s(keys::HEIGHT), Some(&[48i64][..]));
        assert_eq!(ex.get_int64s(keys::WIDTH), Some(&[64i64][..]));
        assert_eq!(ex.get_floats(keys::XMIN), Some(&[0.25f32][..]));
        assert_eq!(ex.get_floats(keys::YMAX), Some(&[1.0f32][..]));
        assert_eq!(ex.get_int64s(keys::CLASS_LABEL), Some(&[18i64][..]));
        assert_eq!(ex.get_int64s(keys::IS_CROWD), Some(&[1i64][..]));
        let enc = crate::shard::example::find_bytes_feature(&out, keys::ENCODED).unwrap();
        assert_eq!(enc, Some(&b"\xff\xd8jpeg\xff\xd9"[..]));
        assert_eq!(ex.features.len(), 15);
    }

    #[test]
    fn split_encoding_leaves_out_exactly_the_image() {
        let r = OdRecord {
            height: 1,
            width: 2,
            filename: "x.jpg",
            source_id: "7".into(),
            sha256_hex: "cd".repeat(32),
            encoded: b"\xff\xd8image bytes\xff\xd9",
            format: "jpeg",
            objects: vec![],
        };
        let mut plain = Vec::new();
        r.encode_into(&mut plain);
        let split = r.encode_split();
        assert_eq!(split.hole_len, r.encoded.len());
        assert_eq!(split.parts(r.encoded).concat(), plain);
    }

    #[test]
    fn no_objects_gives_empty_lists_and_same_bytes_twice() {
        let a = record(vec![]);
        let b = record(vec![]);
        assert_eq!(a, b);
        let ex = Example::decode(&a).unwrap();
        assert_eq!(ex.get_floats(keys::XMIN).map(<[f32]>::len), Some(0));
        assert_eq!(ex.get_int64s(keys::CLASS_LABEL).map(<[i64]>::len), Some(0));
    }
}
