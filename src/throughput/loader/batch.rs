//! The batch dict's small tensors, built on the host from a delivered batch: boxes in output
//! pixels (after the geometry and the flip), labels, crowd flags, counts, ids, sizes, the
//! factors to map predictions back, and which images are stand-ins (`is_pad`). They are packed
//! into one byte buffer (each field 8-byte aligned) so a CUDA consumer copies them to the
//! device in one transfer and takes views.
//!
//! A failed record shows the image of its replacement ([`crate::throughput::feed::replacements`])
//! and so carries that image's boxes, id, flip and geometry, with `is_pad` set.

use crate::throughput::config::ResizeMode;
use crate::throughput::feed::{Delivered, ItemInfo};
use crate::throughput::geometry::Geometry;

/// Element type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
    Bool,
}

impl Elem {
    pub fn bytes(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::I64 => 8,
            Elem::Bool => 1,
        }
    }
}

/// One tensor inside the packed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub elem: Elem,
    pub shape: Vec<usize>,
    /// Byte offset in the buffer (a multiple of 8).
    pub offset: usize,
}

impl Field {
    pub fn elems(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The packed small tensors of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub bytes: Vec<u8>,
    pub fields: Vec<Field>,
    /// Boxes left out by `max_boxes`.
    pub dropped_boxes: u64,
    /// Items that show another item's image (failed records).
    pub replaced: u64,
    /// Items marked `is_pad` (repeats and replacements).
    pub padded: u64,
}

/// Appends fields to a [`Meta`].
struct Packer(Meta);

impl Packer {
    fn put(&mut self, name: &'static str, elem: Elem, shape: Vec<usize>, data: &[u8]) {
        let b = &mut self.0.bytes;
        b.resize(b.len().div_ceil(8) * 8, 0);
        let offset = b.len();
        b.extend_from_slice(data);
        self.0.fields.push(Field {
            name,
            elem,
            shape,
            offset,
        });
    }
    fn f32s(&mut self, name: &'static str, shape: Vec<usize>, v: &[f32]) {
        let d: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.put(name, Elem::F32, shape, &d);
    }
    fn i64s(&mut self, name: &'static str, shape: Vec<usize>, v: &[i64]) {
        let d: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.put(name, Elem::I64, shape, &d);
    }
    fn bools(&mut self, name: &'static str, shape: Vec<usize>, v: &[bool]) {
        let d: Vec<u8> = v.iter().map(|&x| u8::from(x)).collect();
        self.put(name, Elem::Bool, shape, &d);
    }
}

/// The small tensors of `d`: output side `side`, resize `mode`, at most `max_boxes` per image
/// (else the most in the batch).
pub fn build_meta<I>(
    d: &Delivered<I>,
    side: u32,
    mode: ResizeMode,
    max_boxes: Option<usize>,
) -> Meta {
    let b = d.items.len();
    let shown = |i: usize| -> Option<&ItemInfo> {
        d.source
            .get(i)
            .copied()
            .flatten()
            .and_then(|j| d.items.get(j))
    };
    let most = (0..b)
        .filter_map(shown)
        .map(|it| it.ann.boxes.len())
        .max()
        .unwrap_or(0);
    let n = max_boxes.unwrap_or(most);
    let mut boxes = vec![0f32; b * n * 4];
    let mut labels = vec![-1i64; b * n];
    let mut crowd = vec![false; b * n];
    let (mut num, mut ids) = (vec![0i64; b], vec![-1i64; b]);
    let (mut orig, mut scale, mut pad) = (vec![0i64; 2 * b], vec![1f32; 2 * b], vec![0f32; 2 * b]);
    let (mut flipped, mut is_pad) = (vec![false; b], vec![false; b]);
    let mut meta = Meta::default();
    for i in 0..b {
        let replaced = d.source.get(i).copied().flatten() != Some(i);
        is_pad[i] = replaced || d.items.get(i).is_some_and(|it| it.planned.repeat);
        meta.replaced += u64::from(replaced);
        meta.padded += u64::from(is_pad[i]);
        let Some(it) = shown(i) else { continue };
        let (fw, fh) = it.frame;
        let g = Geometry::of(fw, fh, side, mode);
        let (sx, sy) = g.scale(fw, fh);
        let flip = it.planned.flip;
        flipped[i] = flip;
        ids[i] = it.ann.image_id;
        let w = if it.ann.width > 0 { it.ann.width } else { fw };
        let h = if it.ann.height > 0 { it.ann.height } else { fh };
        orig[2 * i..2 * i + 2].copy_from_slice(&[i64::from(w), i64::from(h)]);
        scale[2 * i..2 * i + 2].copy_from_slice(&[sx as f32, sy as f32]);
        pad[2 * i..2 * i + 2].copy_from_slice(&[g.pad_x as f32, g.pad_y as f32]);
        let k = it.ann.boxes.len().min(n);
        meta.dropped_boxes += (it.ann.boxes.len() - k) as u64;
        num[i] = k as i64;
        for j in 0..k {
            let at = i * n + j;
            boxes[4 * at..4 * at + 4].copy_from_slice(&g.place_box(it.ann.boxes[j], flip));
            labels[at] = it.ann.labels.get(j).copied().unwrap_or(-1);
            crowd[at] = it.ann.is_crowd.get(j).copied().unwrap_or(false);
        }
    }
    let mut p = Packer(meta);
    p.f32s("boxes", vec![b, n, 4], &boxes);
    p.i64s("labels", vec![b, n], &labels);
    p.bools("is_crowd", vec![b, n], &crowd);
    p.i64s("num_boxes", vec![b], &num);
    p.i64s("image_ids", vec![b], &ids);
    p.i64s("orig_size", vec![b, 2], &orig);
    p.bools("flipped", vec![b], &flipped);
    p.f32s("scale", vec![b, 2], &scale);
    p.f32s("pad", vec![b, 2], &pad);
    p.bools("is_pad", vec![b], &is_pad);
    p.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throughput::feed::{replacements, Annotations, PlannedItem};

    fn item(id: i64, boxes: Vec<[f32; 4]>, flip: bool, repeat: bool) -> ItemInfo {
        let n = boxes.len();
        ItemInfo {
            planned: PlannedItem {
                shard: 0,
                number: id as u64,
                flip,
                hsv: crate::throughput::hsv::IDENTITY,
                repeat,
            },
            ann: Annotations {
                image_id: id,
                width: 200,
                height: 100,
                labels: (0..n as i64).map(|k| k + 10).collect(),
                is_crowd: (0..n).map(|k| k == 1).collect(),
                boxes,
            },
            frame: (200, 100),
        }
    }

    fn field<'a>(m: &'a Meta, name: &str) -> &'a Field {
        m.fields.iter().find(|f| f.name == name).unwrap()
    }

    fn f32s(m: &Meta, name: &str) -> Vec<f32> {
        let f = field(m, name);
        m.bytes[f.offset..f.offset + 4 * f.elems()]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn i64s(m: &Meta, name: &str) -> Vec<i64> {
        let f = field(m, name);
        m.bytes[f.offset..f.offset + 8 * f.elems()]
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn dense_boxes_padding_replacement_and_max_boxes() {
        let items = vec![
            item(
                1,
                vec![[0.1, 0.2, 0.5, 1.0], [0.0, 0.0, 1.0, 1.0]],
                false,
                false,
            ),
            item(2, vec![[0.0, 0.0, 0.5, 0.5]], true, false),
            item(3, vec![], false, true),
        ];
        let d = Delivered {
            index: 0,
            items,
            failed: vec![(1, "bad".into())],
            source: replacements(3, &[1]),
            images: (),
        };
        let m = build_meta(&d, 100, ResizeMode::Letterbox, None);
        assert!(m.fields.iter().all(|f| f.offset % 8 == 0));
        assert_eq!(field(&m, "boxes").shape, [3, 2, 4]);
        // Item 1 failed: it shows item 2's image (the next good one), with its boxes and flip.
        assert_eq!(i64s(&m, "image_ids"), [1, 3, 3]);
        assert_eq!(i64s(&m, "num_boxes"), [2, 0, 0]);
        let b = f32s(&m, "boxes");
        assert_eq!(&b[..8], &[10.0, 35.0, 50.0, 75.0, 0.0, 25.0, 100.0, 75.0]);
        assert!(b[8..].iter().all(|&v| v == 0.0));
        assert_eq!(i64s(&m, "labels"), [10, 11, -1, -1, -1, -1]);
        assert_eq!(m.bytes[field(&m, "is_pad").offset..][..3], [0, 1, 1]);
        assert_eq!(m.bytes[field(&m, "is_crowd").offset..][..2], [0, 1]);
        assert_eq!(f32s(&m, "scale"), [0.5; 6]);
        assert_eq!(f32s(&m, "pad"), [0.0, 25.0, 0.0, 25.0, 0.0, 25.0]);
        assert_eq!(i64s(&m, "orig_size"), [200, 100, 200, 100, 200, 100]);
        assert_eq!((m.replaced, m.padded, m.dropped_boxes), (1, 2, 0));
        let m = build_meta(&d, 100, ResizeMode::Letterbox, Some(1));
        assert_eq!(field(&m, "boxes").shape, [3, 1, 4]);
        assert_eq!(m.dropped_boxes, 1);
        let none = Delivered {
            source: replacements(3, &[0, 1, 2]),
            ..d
        };
        let m = build_meta(&none, 100, ResizeMode::Stretch, None);
        assert_eq!(i64s(&m, "image_ids"), [-1, -1, -1]);
        assert_eq!(field(&m, "boxes").shape, [3, 0, 4]);
    }
}
