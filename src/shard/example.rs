//! `tf.train.Example` protobuf encode/decode by hand: map entries sorted by key (deterministic),
//! floats and int64s packed; a borrowed decode that finds `image/encoded` without copying.
//!
//! Wire layout (tensorflow/core/example/{example,feature}.proto):
//! ```text
//! Example  { 1: Features }
//! Features { 1: repeated MapEntry }          MapEntry { 1: string key, 2: Feature value }
//! Feature  { oneof: 1 BytesList | 2 FloatList | 3 Int64List }
//! BytesList{ 1: repeated bytes }  FloatList{ 1: repeated float [packed] }
//! Int64List{ 1: repeated int64 [packed] }
//! ```
//! Why by hand: a generated (prost) `Example` keeps features in a `HashMap`, so its bytes change
//! from run to run; and a borrowed decode lets the GPU reader hand `image/encoded` to nvJPEG
//! straight out of an mmap'd shard. The decoder follows protobuf's merge rules (a repeated
//! message field merges, the last map entry for a key wins, the last `oneof` member wins, packed
//! and unpacked encodings of a repeated scalar are both accepted, unknown fields are skipped), so
//! it reads what any other writer produced, and it checks every length, so damaged input gives
//! an error, never a panic or an oversized allocation.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// One feature value list. Bytes values borrow from the decoded payload where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature<'a> {
    Bytes(Vec<Cow<'a, [u8]>>),
    Float(Vec<f32>),
    Int64(Vec<i64>),
}

impl Feature<'_> {
    /// Name of the kind as TensorFlow spells it, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Feature::Bytes(_) => "bytes_list",
            Feature::Float(_) => "float_list",
            Feature::Int64(_) => "int64_list",
        }
    }

    /// Copies borrowed bytes so the feature outlives the buffer it was decoded from.
    pub fn into_owned(self) -> Feature<'static> {
        match self {
            Feature::Bytes(v) => {
                Feature::Bytes(v.into_iter().map(|c| Cow::Owned(c.into_owned())).collect())
            }
            Feature::Float(v) => Feature::Float(v),
            Feature::Int64(v) => Feature::Int64(v),
        }
    }

    /// Bytes of the `Feature` message body (without its own tag and length).
    fn body_len(&self) -> usize {
        let list = self.list_len();
        1 + varint_len(list as u64) + list
    }

    /// Bytes of the inner `*List` message body.
    fn list_len(&self) -> usize {
        match self {
            Feature::Bytes(v) => v
                .iter()
                .map(|b| 1 + varint_len(b.len() as u64) + b.len())
                .sum(),
            Feature::Float(v) => packed_len(v.len() * 4),
            Feature::Int64(v) => packed_len(v.iter().map(|&x| varint_len(x as u64)).sum()),
        }
    }

    /// `hole`: leave the first bytes value out of `out` (see [`Example::encode_split`]).
    fn encode_body<O: ProtoOut>(&self, out: &mut O, hole: bool) {
        let list = self.list_len();
        let tag = match self {
            Feature::Bytes(_) => key(1, WT_LEN),
            Feature::Float(_) => key(2, WT_LEN),
            Feature::Int64(_) => key(3, WT_LEN),
        };
        out.push(tag);
        put_varint(out, list as u64);
        match self {
            Feature::Bytes(v) => {
                for (i, b) in v.iter().enumerate() {
                    out.push(key(1, WT_LEN));
                    put_varint(out, b.len() as u64);
                    if hole && i == 0 {
                        out.hole(b);
                    } else {
                        out.put(b);
                    }
                }
            }
            Feature::Float(v) => {
                if !v.is_empty() {
                    out.push(key(1, WT_LEN));
                    put_varint(out, (v.len() * 4) as u64);
                    for f in v {
                        out.put(&f.to_le_bytes());
                    }
                }
            }
            Feature::Int64(v) => {
                if !v.is_empty() {
                    out.push(key(1, WT_LEN));
                    put_varint(
                        out,
                        v.iter().map(|&x| varint_len(x as u64)).sum::<usize>() as u64,
                    );
                    for &x in v {
                        put_varint(out, x as u64);
                    }
                }
            }
        }
    }
}

/// Where the encoder writes: a plain buffer, or a [`SplitEncoding`] that leaves one large value
/// out so it can go from the caller's buffer to the file without being copied twice.
trait ProtoOut {
    fn push(&mut self, b: u8);
    fn put(&mut self, b: &[u8]);
    /// The value to leave out; a plain buffer takes it like any other.
    fn hole(&mut self, b: &[u8]);
}

impl ProtoOut for Vec<u8> {
    #[inline]
    fn push(&mut self, b: u8) {
        Vec::push(self, b);
    }
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    #[inline]
    fn hole(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// An encoded Example with one bytes value left out: the payload is
/// `bytes[..hole_at] ++ value ++ bytes[hole_at..]`, where `value` is `hole_len` bytes the
/// caller still holds (for records, the image). Lets a writer hand the image to the kernel
/// straight from the buffer it was read into, instead of copying it into a payload buffer and
/// again into a write buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitEncoding {
    pub bytes: Vec<u8>,
    pub hole_at: usize,
    pub hole_len: usize,
}

impl SplitEncoding {
    /// The payload's three pieces in order, given the left-out value.
    pub fn parts<'a>(&'a self, value: &'a [u8]) -> [&'a [u8]; 3] {
        let (head, tail) = self.bytes.split_at(self.hole_at.min(self.bytes.len()));
        [head, value, tail]
    }

    /// Length of the whole payload.
    pub fn payload_len(&self) -> usize {
        self.bytes.len() + self.hole_len
    }
}

impl ProtoOut for SplitEncoding {
    #[inline]
    fn push(&mut self, b: u8) {
        self.bytes.push(b);
    }
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }
    fn hole(&mut self, b: &[u8]) {
        self.hole_at = self.bytes.len();
        self.hole_len = b.len();
    }
}

/// A `tf.train.Example`: feature name → values, kept sorted so encoding is deterministic.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Example<'a> {
    pub features: BTreeMap<String, Feature<'a>>,
}

/// Why a payload is not a readable `tf.train.Example`. Offsets are byte positions within the
/// payload (add the record offset + 12 for a position in the shard).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExampleError {
    #[error("malformed tf.train.Example at byte {at}: {reason}")]
    Malformed { at: usize, reason: &'static str },
    #[error("tf.train.Example feature key at byte {at} is not valid UTF-8")]
    KeyNotUtf8 { at: usize },
    #[error("feature {key:?} is a {found}, expected a {expected}")]
    WrongKind {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
}

impl<'a> Example<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a bytes feature; values may be borrowed (`&[u8]`) or owned (`Vec<u8>`).
    pub fn insert_bytes<I, B>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = B>,
        B: Into<Cow<'a, [u8]>>,
    {
        let v = values.into_iter().map(Into::into).collect();
        self.features.insert(key.to_owned(), Feature::Bytes(v));
    }

    /// Sets a bytes feature from strings (stored as their UTF-8 bytes, as TF does).
    pub fn insert_str<I, S>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'a, str>>,
    {
        let v = values
            .into_iter()
            .map(|s| match s.into() {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            })
            .collect();
        self.features.insert(key.to_owned(), Feature::Bytes(v));
    }

    pub fn insert_floats<I: IntoIterator<Item = f32>>(&mut self, key: &str, values: I) {
        self.features
            .insert(key.to_owned(), Feature::Float(values.into_iter().collect()));
    }

    pub fn insert_int64s<I: IntoIterator<Item = i64>>(&mut self, key: &str, values: I) {
        self.features
            .insert(key.to_owned(), Feature::Int64(values.into_iter().collect()));
    }

    /// The bytes values of `key`; `None` when absent or of another kind.
    pub fn get_bytes(&self, key: &str) -> Option<&[Cow<'a, [u8]>]> {
        match self.features.get(key)? {
            Feature::Bytes(v) => Some(v),
            _ => None,
        }
    }

    /// The float values of `key`; `None` when absent or of another kind.
    pub fn get_floats(&self, key: &str) -> Option<&[f32]> {
        match self.features.get(key)? {
            Feature::Float(v) => Some(v),
            _ => None,
        }
    }

    /// The int64 values of `key`; `None` when absent or of another kind.
    pub fn get_int64s(&self, key: &str) -> Option<&[i64]> {
        match self.features.get(key)? {
            Feature::Int64(v) => Some(v),
            _ => None,
        }
    }

    pub fn into_owned(self) -> Example<'static> {
        Example {
            features: self
                .features
                .into_iter()
                .map(|(k, f)| (k, f.into_owned()))
                .collect(),
        }
    }

    /// Bytes of the `Features` message body.
    fn features_len(&self) -> usize {
        self.features
            .iter()
            .map(|(k, f)| {
                let entry = entry_len(k, f);
                1 + varint_len(entry as u64) + entry
            })
            .sum()
    }

    /// Exact size of [`Example::encode_into`]'s output.
    pub fn encoded_len(&self) -> usize {
        let features = self.features_len();
        1 + varint_len(features as u64) + features
    }

    /// Appends the serialized Example to `out` (which is not cleared, so a caller can reuse one
    /// buffer per thread). One reservation of the exact size, no intermediate buffers.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.encode_to(out, None);
    }

    /// Encodes with the first value of the bytes feature `hole_key` left out (see
    /// [`SplitEncoding`]). Without that feature (or with it empty) there is no hole:
    /// `hole_len` is 0 and `hole_at` is the end.
    pub fn encode_split(&self, hole_key: &str) -> SplitEncoding {
        let hole_len = match self.features.get(hole_key) {
            Some(Feature::Bytes(v)) => v.first().map_or(0, |b| b.len()),
            _ => 0,
        };
        let mut out = SplitEncoding {
            bytes: Vec::with_capacity(self.encoded_len() - hole_len),
            hole_at: 0,
            hole_len: 0,
        };
        self.encode_to(&mut out, Some(hole_key));
        if out.hole_len == 0 {
            out.hole_at = out.bytes.len();
        }
        out
    }

    fn encode_to<O: ProtoOut>(&self, out: &mut O, hole_key: Option<&str>) {
        let features = self.features_len();
        out.push(key(1, WT_LEN));
        put_varint(out, features as u64);
        for (k, f) in &self.features {
            out.push(key(1, WT_LEN));
            put_varint(out, entry_len(k, f) as u64);
            out.push(key(1, WT_LEN));
            put_varint(out, k.len() as u64);
            out.put(k.as_bytes());
            out.push(key(2, WT_LEN));
            put_varint(out, f.body_len() as u64);
            f.encode_body(out, hole_key == Some(k.as_str()));
        }
    }

    /// Serializes into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Parses a serialized Example, borrowing bytes values from `payload`.
    pub fn decode(payload: &'a [u8]) -> Result<Example<'a>, ExampleError> {
        let mut example = Example::new();
        let mut r = Reader::new(payload, 0);
        while let Some((field, wt)) = r.key()? {
            if field == 1 && wt == WT_LEN {
                let mut features = r.sub()?;
                while let Some((field, wt)) = features.key()? {
                    if field == 1 && wt == WT_LEN {
                        let entry = features.sub()?;
                        if let Some((k, f)) = decode_entry(entry)? {
                            example.features.insert(k, f);
                        }
                    } else {
                        features.skip(wt)?;
                    }
                }
            } else {
                r.skip(wt)?;
            }
        }
        Ok(example)
    }
}

fn entry_len(k: &str, f: &Feature<'_>) -> usize {
    let body = f.body_len();
    1 + varint_len(k.len() as u64) + k.len() + 1 + varint_len(body as u64) + body
}

/// Parses one map entry. A key that is absent is `""` (protobuf default); an entry whose value
/// is absent or has no kind set carries no values of any type, and is left out.
fn decode_entry(mut r: Reader<'_>) -> Result<Option<(String, Feature<'_>)>, ExampleError> {
    let mut key_str = String::new();
    let mut value: Option<Feature<'_>> = None;
    while let Some((field, wt)) = r.key()? {
        match (field, wt) {
            (1, WT_LEN) => {
                let bytes = r.bytes()?;
                let at = r.pos() - bytes.len();
                key_str = std::str::from_utf8(bytes)
                    .map_err(|_| ExampleError::KeyNotUtf8 { at })?
                    .to_owned();
            }
            (2, WT_LEN) => {
                // A repeated message field merges into the earlier one.
                let sub = r.sub()?;
                decode_feature(sub, &mut value)?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(value.map(|v| (key_str, v)))
}

/// Merges one `Feature` message into `value` (oneof: a different kind replaces, the same kind
/// appends, as protobuf's merge does).
fn decode_feature<'a>(
    mut r: Reader<'a>,
    value: &mut Option<Feature<'a>>,
) -> Result<(), ExampleError> {
    while let Some((field, wt)) = r.key()? {
        match (field, wt) {
            (1, WT_LEN) => {
                let mut list = r.sub()?;
                let mut v = match value.take() {
                    Some(Feature::Bytes(v)) => v,
                    _ => Vec::new(),
                };
                while let Some((field, wt)) = list.key()? {
                    if field == 1 && wt == WT_LEN {
                        v.push(Cow::Borrowed(list.bytes()?));
                    } else {
                        list.skip(wt)?;
                    }
                }
                *value = Some(Feature::Bytes(v));
            }
            (2, WT_LEN) => {
                let mut list = r.sub()?;
                let mut v = match value.take() {
                    Some(Feature::Float(v)) => v,
                    _ => Vec::new(),
                };
                while let Some((field, wt)) = list.key()? {
                    match (field, wt) {
                        (1, WT_LEN) => {
                            let packed = list.bytes()?;
                            let at = list.pos() - packed.len();
                            if packed.len() % 4 != 0 {
                                return Err(ExampleError::Malformed {
                                    at,
                                    reason: "packed float list length is not a multiple of 4",
                                });
                            }
                            v.reserve(packed.len() / 4);
                            v.extend(
                                packed
                                    .chunks_exact(4)
                                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                            );
                        }
                        (1, WT_I32) => v.push(f32::from_le_bytes(list.fixed32()?)),
                        _ => list.skip(wt)?,
                    }
                }
                *value = Some(Feature::Float(v));
            }
            (3, WT_LEN) => {
                let mut list = r.sub()?;
                let mut v = match value.take() {
                    Some(Feature::Int64(v)) => v,
                    _ => Vec::new(),
                };
                while let Some((field, wt)) = list.key()? {
                    match (field, wt) {
                        (1, WT_LEN) => {
                            let mut packed = list.sub()?;
                            while !packed.is_empty() {
                                v.push(packed.varint()? as i64);
                            }
                        }
                        (1, WT_VARINT) => v.push(list.varint()? as i64),
                        _ => list.skip(wt)?,
                    }
                }
                *value = Some(Feature::Int64(v));
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(())
}

/// Returns the first value of the bytes feature `key` without decoding anything else: the map
/// entries are walked by length, and only entries with the wanted key are parsed. Used by readers
/// to find `image/encoded`. `Ok(None)` when the key is absent or its list is empty; an error when
/// the feature is not a bytes list.
///
/// Follows the same merge rules as [`Example::decode`] (the last entry for a key wins), so for
/// any payload `decode` accepts, the answer equals `decode(payload).get_bytes(key).first()`.
/// Payloads damaged inside *other* features' values may be accepted here and rejected there.
pub fn find_bytes_feature<'a>(
    payload: &'a [u8],
    key_wanted: &str,
) -> Result<Option<&'a [u8]>, ExampleError> {
    let mut found: Option<Feature<'a>> = None;
    let mut r = Reader::new(payload, 0);
    while let Some((field, wt)) = r.key()? {
        if field != 1 || wt != WT_LEN {
            r.skip(wt)?;
            continue;
        }
        let mut features = r.sub()?;
        while let Some((field, wt)) = features.key()? {
            if field != 1 || wt != WT_LEN {
                features.skip(wt)?;
                continue;
            }
            let entry = features.sub()?;
            // Find the entry's key (the last one wins, as in decode) by skipping everything else.
            let mut e = entry.clone();
            let mut entry_key: &[u8] = b"";
            while let Some((field, wt)) = e.key()? {
                if field == 1 && wt == WT_LEN {
                    entry_key = e.bytes()?;
                } else {
                    e.skip(wt)?;
                }
            }
            if entry_key == key_wanted.as_bytes() {
                if let Some((_, f)) = decode_entry(entry)? {
                    found = Some(f);
                }
            }
        }
    }
    match found {
        None => Ok(None),
        Some(Feature::Bytes(v)) => Ok(v.into_iter().next().and_then(|c| match c {
            Cow::Borrowed(b) => Some(b),
            // decode_entry only ever borrows; an owned value cannot occur.
            Cow::Owned(_) => None,
        })),
        Some(other) => Err(ExampleError::WrongKind {
            key: key_wanted.to_owned(),
            expected: "bytes_list",
            found: other.kind_name(),
        }),
    }
}

// ---- protobuf wire primitives ----

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

/// One-byte field key (all fields here are numbered below 16).
#[inline]
const fn key(field: u8, wt: u8) -> u8 {
    (field << 3) | wt
}

#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Size of a packed field holding `payload` bytes (absent entirely when empty, as protobuf
/// serializers emit it).
#[inline]
fn packed_len(payload: usize) -> usize {
    if payload == 0 {
        0
    } else {
        1 + varint_len(payload as u64) + payload
    }
}

#[inline]
fn put_varint<O: ProtoOut>(out: &mut O, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bounds-checked cursor over a protobuf message body. `base` is the body's offset in the
/// whole payload, so errors point at absolute positions.
#[derive(Clone)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn pos(&self) -> usize {
        self.base + self.pos
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, reason: &'static str) -> ExampleError {
        ExampleError::Malformed {
            at: self.pos(),
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, ExampleError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("varint runs past the end"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Next field key, or `None` at the end of the message.
    fn key(&mut self) -> Result<Option<(u64, u8)>, ExampleError> {
        if self.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok(Some((field, (k & 7) as u8)))
    }

    /// A length-delimited field's bytes.
    fn bytes(&mut self) -> Result<&'a [u8], ExampleError> {
        let len = self.varint()?;
        let start = self.pos;
        let remaining = self.buf.len() - start;
        if len > remaining as u64 {
            return Err(self.err("length runs past the end of its message"));
        }
        let end = start + len as usize;
        self.pos = end;
        self.buf.get(start..end).ok_or(ExampleError::Malformed {
            at: self.base + start,
            reason: "length runs past the end of its message",
        })
    }

    /// A length-delimited field as a nested message reader.
    fn sub(&mut self) -> Result<Reader<'a>, ExampleError> {
        let b = self.bytes()?;
        Ok(Reader::new(b, self.base + self.pos - b.len()))
    }

    fn fixed32(&mut self) -> Result<[u8; 4], ExampleError> {
        let b = self
            .buf
            .get(self.pos..)
            .and_then(|r| r.first_chunk::<4>())
            .copied()
            .ok_or_else(|| self.err("fixed32 runs past the end"))?;
        self.pos += 4;
        Ok(b)
    }

    fn skip(&mut self, wt: u8) -> Result<(), ExampleError> {
        match wt {
            WT_VARINT => self.varint().map(drop),
            WT_I64 => {
                if self.buf.len() - self.pos < 8 {
                    return Err(self.err("fixed64 runs past the end"));
                }
                self.pos += 8;
                Ok(())
            }
            WT_LEN => self.bytes().map(drop),
            WT_I32 => self.fixed32().map(drop),
            _ => Err(self.err("unsupported wire type (groups or invalid)")),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The independent encoder/decoder is the `tfrecord` crate (0.15, prost types generated from
    //! TensorFlow's protos and shipped prebuilt, so it builds offline with
    //! `default-features = false`). prost writes packed repeated scalars only, so the unpacked
    //! encoding is checked with hand-built bytes below.
    use super::*;
    use tfrecord::protobuf::{feature::Kind, BytesList, Feature as PFeature, FloatList, Int64List};
    use tfrecord::{Example as PExample, Record as _};

    #[test]
    fn split_encoding_reassembles_to_the_plain_encoding() {
        let e = sample();
        let plain = e.to_bytes();
        let split = e.encode_split("image/encoded");
        assert_eq!(split.hole_len, 70_000);
        assert_eq!(split.payload_len(), plain.len());
        let value = vec![0xffu8; 70_000];
        assert_eq!(split.parts(&value).concat(), plain);
        // The hole is where the value sits: the bytes around it are not 0xff runs.
        assert_ne!(split.bytes[split.hole_at..].first(), Some(&0xff));
    }

    #[test]
    fn split_without_the_key_has_an_empty_hole_at_the_end() {
        let e = sample();
        let split = e.encode_split("no/such/key");
        assert_eq!(split.hole_len, 0);
        assert_eq!(split.hole_at, split.bytes.len());
        assert_eq!(split.parts(&[]).concat(), e.to_bytes());
    }

    fn sample() -> Example<'static> {
        let mut e = Example::new();
        e.insert_int64s("image/height", [480]);
        e.insert_int64s("image/width", [640]);
        e.insert_str("image/filename", ["sub dir/ünï.jpg"]);
        e.insert_str("image/format", [String::from("jpeg")]);
        e.insert_bytes("image/encoded", [vec![0xffu8; 70_000]]);
        e.insert_floats("image/object/bbox/xmin", [0.0, 0.25, 1.0, -0.5]);
        e.insert_floats("image/object/bbox/empty", []);
        e.insert_int64s(
            "image/object/class/label",
            [1, 90, -1, i64::MIN, i64::MAX, 0],
        );
        e.insert_str::<_, &str>("image/object/class/text", []);
        e.insert_bytes("multi", [&b""[..], b"x", &[7u8; 200][..]]);
        e
    }

    #[test]
    fn exact_bytes_of_tiny_example() {
        let mut e = Example::new();
        e.insert_int64s("a", [1]);
        assert_eq!(
            e.to_bytes(),
            [0x0a, 0x0c, 0x0a, 0x0a, 0x0a, 0x01, b'a', 0x12, 0x05, 0x1a, 0x03, 0x0a, 0x01, 0x01]
        );
        // Empty lists keep their kind: Feature{float_list: {}} is `12 00`.
        let mut e = Example::new();
        e.insert_floats("f", []);
        assert_eq!(
            e.to_bytes(),
            [0x0a, 0x09, 0x0a, 0x07, 0x0a, 0x01, b'f', 0x12, 0x02, 0x12, 0x00]
        );
        assert_eq!(Example::new().to_bytes(), [0x0a, 0x00]);
    }

    #[test]
    fn varint_len_matches_encoding() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX >> 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out, 0);
            assert_eq!(r.varint().unwrap(), v);
        }
    }

    #[test]
    fn round_trip_and_exact_length() {
        let e = sample();
        let bytes = e.to_bytes();
        assert_eq!(bytes.len(), e.encoded_len());
        let d = Example::decode(&bytes).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.get_int64s("image/height"), Some(&[480][..]));
        assert_eq!(d.get_bytes("image/format").unwrap()[0].as_ref(), b"jpeg");
        assert_eq!(d.get_floats("image/object/bbox/empty"), Some(&[][..]));
        assert_eq!(
            d.get_bytes("image/object/class/text").map(|v| v.len()),
            Some(0)
        );
        assert_eq!(
            d.get_floats("image/height"),
            None,
            "wrong kind reads as absent"
        );
        // Bytes values borrow from the payload.
        assert!(matches!(
            d.get_bytes("image/encoded").unwrap()[0],
            Cow::Borrowed(_)
        ));
        // encode_into appends.
        let mut out = vec![9u8];
        e.encode_into(&mut out);
        assert_eq!(&out[1..], &bytes[..]);
        // NaN and infinities survive bit-exactly.
        let mut e = Example::new();
        e.insert_floats("f", [f32::NAN, f32::INFINITY, -0.0, f32::MIN_POSITIVE]);
        let b = e.to_bytes();
        let d = Example::decode(&b).unwrap();
        let bits: Vec<u32> = d
            .get_floats("f")
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect();
        assert_eq!(
            bits,
            [
                f32::NAN.to_bits(),
                f32::INFINITY.to_bits(),
                (-0.0f32).to_bits(),
                f32::MIN_POSITIVE.to_bits()
            ]
        );
    }

    #[test]
    fn encoding_is_independent_of_insertion_order() {
        let mut a = Example::new();
        a.insert_int64s("z", [1]);
        a.insert_str("a", ["x"]);
        a.insert_floats("m", [1.5]);
        let mut b = Example::new();
        b.insert_floats("m", [1.5]);
        b.insert_int64s("z", [1]);
        b.insert_str("a", ["x"]);
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    fn to_prost(e: &Example<'_>) -> PExample {
        let mut map = std::collections::HashMap::new();
        for (k, f) in &e.features {
            let kind = match f {
                Feature::Bytes(v) => Kind::BytesList(BytesList {
                    value: v.iter().map(|b| b.to_vec()).collect(),
                }),
                Feature::Float(v) => Kind::FloatList(FloatList { value: v.clone() }),
                Feature::Int64(v) => Kind::Int64List(Int64List { value: v.clone() }),
            };
            map.insert(k.clone(), PFeature { kind: Some(kind) });
        }
        PExample {
            features: Some(tfrecord::protobuf::Features { feature: map }),
        }
    }

    #[test]
    fn independent_decoder_reads_our_bytes() {
        let e = sample();
        let theirs = PExample::from_bytes(e.to_bytes()).unwrap();
        assert_eq!(theirs, to_prost(&e));
    }

    #[test]
    fn we_read_independent_encoder_bytes() {
        let e = sample();
        let theirs = PExample::to_bytes(to_prost(&e)).unwrap();
        // prost's HashMap order differs from ours, but the content is the same.
        assert_eq!(theirs.len(), e.encoded_len());
        assert_eq!(Example::decode(&theirs).unwrap(), e);
        assert_eq!(
            find_bytes_feature(&theirs, "image/encoded").unwrap(),
            Some(&[0xffu8; 70_000][..])
        );
    }

    /// Appends a length-delimited field.
    fn ld(out: &mut Vec<u8>, field: u8, body: &[u8]) {
        out.push(key(field, WT_LEN));
        put_varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }

    fn entry(k: &str, feature_body: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        ld(&mut e, 1, k.as_bytes());
        ld(&mut e, 2, feature_body);
        e
    }

    #[test]
    fn unpacked_unknown_fields_and_merge_rules() {
        // FloatList with unpacked values (wire type 5) mixed with a packed run.
        let mut floats = Vec::new();
        floats.push(key(1, WT_I32));
        floats.extend_from_slice(&1.5f32.to_le_bytes());
        ld(
            &mut floats,
            1,
            &[2.5f32.to_le_bytes(), 3.5f32.to_le_bytes()].concat(),
        );
        floats.push(key(1, WT_I32));
        floats.extend_from_slice(&4.5f32.to_le_bytes());
        // Int64List unpacked (wire type 0), including a negative value (10-byte varint).
        let mut ints = Vec::new();
        for v in [5i64, -2, 300] {
            ints.push(key(1, WT_VARINT));
            put_varint(&mut ints, v as u64);
        }
        // Unknown fields of every skippable wire type inside the list and the feature.
        ints.push(key(7, WT_I64));
        ints.extend_from_slice(&[0; 8]);
        let mut f_float = Vec::new();
        ld(&mut f_float, 2, &floats);
        f_float.push(key(9, WT_VARINT));
        f_float.push(0x05);
        let mut f_int = Vec::new();
        ld(&mut f_int, 3, &ints);
        // A bytes feature split over two BytesList occurrences (merged), and an entry whose
        // value is set twice with different kinds (the last kind wins).
        let mut bl1 = Vec::new();
        ld(&mut bl1, 1, b"first");
        let mut bl2 = Vec::new();
        ld(&mut bl2, 1, b"second");
        let mut f_bytes = Vec::new();
        ld(&mut f_bytes, 1, &bl1);
        ld(&mut f_bytes, 1, &bl2);
        let mut f_switch = Vec::new();
        ld(&mut f_switch, 1, &bl1);
        ld(&mut f_switch, 3, &ints[..2]); // key(1,VARINT), 5
        let mut features = Vec::new();
        ld(&mut features, 1, &entry("k/int", &f_int));
        ld(&mut features, 1, &entry("k/float", &f_float));
        ld(&mut features, 1, &entry("k/bytes", &f_bytes));
        ld(&mut features, 1, &entry("k/switch", &f_switch));
        ld(&mut features, 1, &entry("dup", &f_bytes));
        ld(&mut features, 1, &entry("dup", &f_int)); // last entry for a key wins
        features.push(key(3, WT_I32));
        features.extend_from_slice(&[1, 2, 3, 4]);
        let mut payload = Vec::new();
        payload.push(key(2, WT_VARINT)); // unknown top-level field first
        payload.push(0x01);
        ld(&mut payload, 1, &features);
        // A second Features occurrence merges into the first.
        let mut more = Vec::new();
        ld(&mut more, 1, &entry("k/late", &f_int));
        ld(&mut payload, 1, &more);

        let d = Example::decode(&payload).unwrap();
        assert_eq!(d.get_floats("k/float"), Some(&[1.5, 2.5, 3.5, 4.5][..]));
        assert_eq!(d.get_int64s("k/int"), Some(&[5, -2, 300][..]));
        assert_eq!(d.get_int64s("k/late"), Some(&[5, -2, 300][..]));
        let bytes: Vec<&[u8]> = d
            .get_bytes("k/bytes")
            .unwrap()
            .iter()
            .map(|c| c.as_ref())
            .collect();
        assert_eq!(bytes, [&b"first"[..], b"second"]);
        assert_eq!(d.get_int64s("k/switch"), Some(&[5][..]));
        assert_eq!(d.get_int64s("dup"), Some(&[5, -2, 300][..]));
        assert_eq!(d.features.len(), 6);
        // The independent decoder agrees.
        let theirs = PExample::from_bytes(payload.clone()).unwrap();
        let mut ours_as_prost = to_prost(&d);
        assert_eq!(theirs, std::mem::take(&mut ours_as_prost));

        assert_eq!(
            find_bytes_feature(&payload, "k/bytes").unwrap(),
            Some(&b"first"[..])
        );
        assert_eq!(find_bytes_feature(&payload, "absent").unwrap(), None);
        assert!(matches!(
            find_bytes_feature(&payload, "dup"),
            Err(ExampleError::WrongKind {
                found: "int64_list",
                ..
            })
        ));
        assert!(matches!(
            find_bytes_feature(&payload, "k/switch"),
            Err(ExampleError::WrongKind { .. })
        ));
    }

    #[test]
    fn find_bytes_feature_cases() {
        let e = sample();
        let b = e.to_bytes();
        assert_eq!(
            find_bytes_feature(&b, "image/encoded").unwrap(),
            Some(&[0xffu8; 70_000][..])
        );
        assert_eq!(find_bytes_feature(&b, "multi").unwrap(), Some(&b""[..]));
        assert_eq!(
            find_bytes_feature(&b, "image/object/class/text").unwrap(),
            None
        );
        assert_eq!(find_bytes_feature(&b, "image").unwrap(), None);
        assert!(matches!(
            find_bytes_feature(&b, "image/height"),
            Err(ExampleError::WrongKind {
                expected: "bytes_list",
                found: "int64_list",
                ..
            })
        ));
        // The value borrows from the payload (zero copy).
        let v = find_bytes_feature(&b, "image/encoded").unwrap().unwrap();
        let range = b.as_ptr_range();
        assert!(range.contains(&v.as_ptr()));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x0a], "varint runs past"),
            (&[0x0a, 0x05, 0x00], "length runs past"),
            (&[0x00, 0x00], "field number 0"),
            (&[0x0b], "unsupported wire type"),
            (&[0x0d, 1, 2], "fixed32 runs past"),
            (&[0x09, 1, 2, 3], "fixed64 runs past"),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "longer than 10",
            ),
        ];
        for (bytes, want) in cases {
            let err = Example::decode(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{bytes:?}: {err}");
            assert!(find_bytes_feature(bytes, "x").is_err());
        }
        // A packed float list whose length is not a multiple of 4.
        let mut list = Vec::new();
        ld(&mut list, 1, &[0, 0, 0]);
        let mut f = Vec::new();
        ld(&mut f, 2, &list);
        let mut features = Vec::new();
        ld(&mut features, 1, &entry("f", &f));
        let mut p = Vec::new();
        ld(&mut p, 1, &features);
        let err = Example::decode(&p).unwrap_err();
        assert!(
            matches!(err, ExampleError::Malformed { at: 13, .. }),
            "{err:?}"
        );
        // A key that is not UTF-8.
        let mut e = Vec::new();
        ld(&mut e, 1, &[0xff, 0xfe]);
        let mut features = Vec::new();
        ld(&mut features, 1, &e);
        let mut p = Vec::new();
        ld(&mut p, 1, &features);
        assert!(matches!(
            Example::decode(&p),
            Err(ExampleError::KeyNotUtf8 { at: 6 })
        ));
    }

    /// Small deterministic PRNG (xorshift64*), so the fuzz loop needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Decode and find must never panic; where decode succeeds, find must agree with it.
    fn check_consistent(bytes: &[u8]) {
        let decoded = Example::decode(bytes);
        for k in ["image/encoded", "multi", "image/height", "k"] {
            let found = find_bytes_feature(bytes, k);
            if let Ok(d) = &decoded {
                let expect = match d.features.get(k) {
                    None => Ok(None),
                    Some(Feature::Bytes(v)) => Ok(v.first().map(|c| c.as_ref())),
                    Some(_) => Err(()),
                };
                assert_eq!(found.map_err(drop), expect, "key {k} in {bytes:?}");
            }
        }
    }

    #[test]
    fn fuzz_truncations_and_mutations_never_panic() {
        let mut e = sample();
        e.insert_bytes("image/encoded", [vec![1u8; 300]]); // keep the loop fast
        let good = e.to_bytes();
        for cut in 0..good.len() {
            check_consistent(&good[..cut]);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            buf.extend_from_slice(&good);
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % buf.len();
                buf[i] = match rng.next() % 3 {
                    0 => rng.next() as u8,
                    1 => buf[i] ^ (1 << (rng.next() % 8)),
                    _ => 0xff,
                };
            }
            check_consistent(&buf);
        }
        for _ in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check_consistent(&noise);
        }
    }
}
