//! COCO pixel boxes → normalised `[0,1]` corners, with clipping and drop reasons.
//!
//! Why clip instead of drop (the TF OD API converter drops): annotation tools routinely write
//! boxes that overhang the image by a fraction of a pixel (float rounding of `x + w`), and a
//! reader that asserts `max <= 1.01` then fails far from the cause. Clipping keeps the object and
//! guarantees every emitted coordinate is in `[0, 1]`; the outcome says what happened so the
//! caller can count it.

/// A box normalised by the image size, corners in `[0, 1]`.
///
/// Guaranteed (as `f32`, the type stored in the Example): `0 <= xmin < xmax <= 1` and
/// `0 <= ymin < ymax <= 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalizedBox {
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
}

/// What became of one COCO box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BoxOutcome {
    /// Inside the image.
    Kept(NormalizedBox),
    /// Overhung the image (by any amount, even a rounding error) and was clipped to it.
    Clipped(NormalizedBox),
    /// Width or height zero or negative (before clipping), or so thin that it has no extent
    /// left once its corners are rounded to `f32`.
    DroppedDegenerate,
    /// Entirely outside the image (nothing left after clipping).
    DroppedOutside,
    /// NaN or infinite coordinates, or an image of width or height 0 (nothing to normalise by;
    /// a missing `bbox` is loaded as NaN so it lands here too).
    DroppedInvalid,
}

impl BoxOutcome {
    /// The normalised box if it is kept (possibly clipped).
    pub fn kept_box(&self) -> Option<NormalizedBox> {
        match self {
            BoxOutcome::Kept(b) | BoxOutcome::Clipped(b) => Some(*b),
            _ => None,
        }
    }

    /// A short, stable reason name for counting and the manifest (`None` when kept unchanged).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            BoxOutcome::Kept(_) => None,
            BoxOutcome::Clipped(_) => Some("clipped"),
            BoxOutcome::DroppedDegenerate => Some("degenerate"),
            BoxOutcome::DroppedOutside => Some("outside"),
            BoxOutcome::DroppedInvalid => Some("invalid"),
        }
    }
}

/// Normalise `[x, y, w, h]` (pixels) by `width` × `height`.
///
/// Order of checks: image size 0 or non-finite input → `DroppedInvalid`; `w <= 0` or
/// `h <= 0` → `DroppedDegenerate`; clip to `[0, W] × [0, H]`, nothing left → `DroppedOutside`;
/// anything cut off → `Clipped`; else `Kept`.
pub fn normalize_box(bbox: [f64; 4], width: u32, height: u32) -> BoxOutcome {
    if width == 0 || height == 0 || bbox.iter().any(|v| !v.is_finite()) {
        return BoxOutcome::DroppedInvalid;
    }
    let [x, y, w, h] = bbox;
    if w <= 0.0 || h <= 0.0 {
        return BoxOutcome::DroppedDegenerate;
    }
    let (wf, hf) = (f64::from(width), f64::from(height));
    // `x + w` may overflow to +inf for absurd inputs; `min` then clips it to the edge.
    let (x1, y1) = (x + w, y + h);
    let cx0 = x.max(0.0);
    let cy0 = y.max(0.0);
    let cx1 = x1.min(wf);
    let cy1 = y1.min(hf);
    if cx1 <= cx0 || cy1 <= cy0 {
        return BoxOutcome::DroppedOutside;
    }
    let clipped = cx0 != x || cy0 != y || cx1 != x1 || cy1 != y1;
    // IEEE division and the f64→f32 cast are monotonic and c/W <= 1 when c <= W, so the
    // clamps never change a value; they are kept as a cheap guard for the documented bounds.
    let xmin = ((cx0 / wf) as f32).clamp(0.0, 1.0);
    let xmax = ((cx1 / wf) as f32).clamp(0.0, 1.0);
    let ymin = ((cy0 / hf) as f32).clamp(0.0, 1.0);
    let ymax = ((cy1 / hf) as f32).clamp(0.0, 1.0);
    if xmin >= xmax || ymin >= ymax {
        return BoxOutcome::DroppedDegenerate;
    }
    let b = NormalizedBox {
        xmin,
        ymin,
        xmax,
        ymax,
    };
    if clipped {
        BoxOutcome::Clipped(b)
    } else {
        BoxOutcome::Kept(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unwrap_box(o: BoxOutcome) -> NormalizedBox {
        match o.kept_box() {
            Some(b) => b,
            None => panic!("expected a kept box, got {o:?}"),
        }
    }

    #[test]
    fn inside_box_is_kept_with_exact_corners() {
        let o = normalize_box([10.0, 20.0, 30.0, 40.0], 100, 200);
        assert_eq!(
            o,
            BoxOutcome::Kept(NormalizedBox {
                xmin: 0.1,
                ymin: 0.1,
                xmax: 0.4,
                ymax: 0.3,
            })
        );
        assert_eq!(o.reason(), None);
    }

    #[test]
    fn full_image_box_is_kept_not_clipped() {
        let o = normalize_box([0.0, 0.0, 640.0, 480.0], 640, 480);
        assert_eq!(
            o,
            BoxOutcome::Kept(NormalizedBox {
                xmin: 0.0,
                ymin: 0.0,
                xmax: 1.0,
                ymax: 1.0,
            })
        );
    }

    #[test]
    fn rounding_overhang_is_clipped_not_dropped() {
        // x + w = 640.01 on a 640 px wide image.
        let o = normalize_box([600.0, 10.0, 40.01, 10.0], 640, 480);
        assert!(matches!(o, BoxOutcome::Clipped(_)), "{o:?}");
        let b = unwrap_box(o);
        assert_eq!(b.xmax, 1.0);
        assert_eq!(o.reason(), Some("clipped"));
        // Negative origin by a hair.
        let o = normalize_box([-0.001, -0.5, 10.0, 10.0], 640, 480);
        let b = unwrap_box(o);
        assert!(matches!(o, BoxOutcome::Clipped(_)));
        assert_eq!((b.xmin, b.ymin), (0.0, 0.0));
    }

    #[test]
    fn large_overhang_is_clipped_to_image() {
        let b = unwrap_box(normalize_box([-50.0, -50.0, 1000.0, 1000.0], 100, 100));
        assert_eq!((b.xmin, b.ymin, b.xmax, b.ymax), (0.0, 0.0, 1.0, 1.0));
    }

    #[test]
    fn degenerate_sizes_are_dropped() {
        for bbox in [
            [1.0, 1.0, 0.0, 5.0],
            [1.0, 1.0, 5.0, 0.0],
            [1.0, 1.0, -3.0, 5.0],
            [1.0, 1.0, 5.0, -0.0],
        ] {
            assert_eq!(
                normalize_box(bbox, 10, 10),
                BoxOutcome::DroppedDegenerate,
                "{bbox:?}"
            );
        }
        // Positive but thinner than f32 can represent around 0.5.
        assert_eq!(
            normalize_box([320.0, 10.0, 1e-9, 10.0], 640, 480),
            BoxOutcome::DroppedDegenerate
        );
    }

    #[test]
    fn boxes_outside_are_dropped() {
        assert_eq!(
            normalize_box([200.0, 10.0, 5.0, 5.0], 100, 100),
            BoxOutcome::DroppedOutside
        );
        assert_eq!(
            normalize_box([-10.0, 10.0, 10.0, 5.0], 100, 100),
            BoxOutcome::DroppedOutside,
            "touching the left edge from outside leaves nothing"
        );
        assert_eq!(
            normalize_box([100.0, 10.0, 10.0, 5.0], 100, 100),
            BoxOutcome::DroppedOutside,
            "starting exactly at the right edge leaves nothing"
        );
        assert_eq!(
            normalize_box([10.0, -30.0, 10.0, 5.0], 100, 100),
            BoxOutcome::DroppedOutside
        );
    }

    #[test]
    fn non_finite_and_zero_size_images_are_invalid() {
        for bbox in [
            [f64::NAN, 0.0, 1.0, 1.0],
            [0.0, f64::INFINITY, 1.0, 1.0],
            [0.0, 0.0, f64::NEG_INFINITY, 1.0],
            [0.0, 0.0, 1.0, f64::NAN],
        ] {
            assert_eq!(normalize_box(bbox, 10, 10), BoxOutcome::DroppedInvalid);
        }
        assert_eq!(
            normalize_box([1.0, 1.0, 2.0, 2.0], 0, 10),
            BoxOutcome::DroppedInvalid
        );
        assert_eq!(
            normalize_box([1.0, 1.0, 2.0, 2.0], 10, 0),
            BoxOutcome::DroppedInvalid
        );
    }

    #[test]
    fn huge_finite_values_do_not_overflow_bounds() {
        let b = unwrap_box(normalize_box([0.0, 0.0, f64::MAX, f64::MAX], 10, 10));
        assert_eq!((b.xmax, b.ymax), (1.0, 1.0));
        let b = unwrap_box(normalize_box(
            [-(f64::MAX / 2.0), 0.0, f64::MAX, 1.0],
            10,
            10,
        ));
        assert_eq!(b.xmin, 0.0);
    }

    #[test]
    fn invariants_hold_over_a_sweep() {
        // Deterministic pseudo-random sweep (LCG) over boxes around and across the image.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64) / ((1u64 << 53) as f64)
        };
        let mut kept = 0;
        for _ in 0..20_000 {
            let (wi, hi) = (1 + (next() * 5000.0) as u32, 1 + (next() * 5000.0) as u32);
            let bbox = [
                next() * 1.4 * f64::from(wi) - 0.2 * f64::from(wi),
                next() * 1.4 * f64::from(hi) - 0.2 * f64::from(hi),
                next() * f64::from(wi) * 0.5,
                next() * f64::from(hi) * 0.5,
            ];
            if let Some(b) = normalize_box(bbox, wi, hi).kept_box() {
                kept += 1;
                assert!(
                    0.0 <= b.xmin && b.xmin < b.xmax && b.xmax <= 1.0,
                    "{bbox:?} {b:?}"
                );
                assert!(
                    0.0 <= b.ymin && b.ymin < b.ymax && b.ymax <= 1.0,
                    "{bbox:?} {b:?}"
                );
            }
        }
        assert!(kept > 10_000, "sweep should mostly keep boxes, kept {kept}");
    }
}
