//! COCO pixel boxes → normalised `[0,1]` corners, with clipping and drop reasons.

/// A box normalised by the image size, corners in `[0, 1]`.
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
    /// Overhung the image and was clipped to it.
    Clipped(NormalizedBox),
    /// Width or height zero or negative (before clipping).
    DroppedDegenerate,
    /// Entirely outside the image (nothing left after clipping).
    DroppedOutside,
    /// NaN or infinite coordinates.
    DroppedInvalid,
}

/// Normalise `[x, y, w, h]` (pixels) by `width` × `height`.
pub fn normalize_box(bbox: [f64; 4], width: u32, height: u32) -> BoxOutcome {
    let _ = (bbox, width, height);
    todo!("dataset helper implements")
}
