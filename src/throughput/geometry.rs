//! Where an image lands in the `side`×`side` output, and where its boxes land with it: the one
//! rule the kernel's descriptors, the CPU reference and the loader's boxes all follow.
//!
//! Letterbox (YOLO's): r = min(S/w, S/h), new_w = round(w·r), new_h = round(h·r) with
//! round-half-to-even (Python's `round`, what YOLO's letterbox uses), pad_x = (S − new_w) / 2,
//! pad_y = (S − new_h) / 2 (integer division: the odd pixel goes right/bottom), padding 114.
//! Stretch: the whole square, x scaled by S/w and y by S/h. The pixels are resampled from the
//! `w`×`h` image onto exactly `new_w`×`new_h`, so the true factors are new_w/w and new_h/h:
//! boxes use those ([`Geometry::scale`]), which is what maps a prediction back exactly.
//! A flip mirrors the whole output canvas: x → S − x (xmin and xmax swap).

use super::config::ResizeMode;

/// Placement of one image in the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub side: u32,
    pub new_w: i32,
    pub new_h: i32,
    pub pad_x: i32,
    pub pad_y: i32,
}

impl Geometry {
    /// The placement of a `w`×`h` image (sizes of 0 are treated as 1).
    pub fn of(w: u32, h: u32, side: u32, mode: ResizeMode) -> Self {
        let s = side as i32;
        let (new_w, new_h) = match mode {
            ResizeMode::Stretch => (s, s),
            ResizeMode::Letterbox => {
                let (wf, hf) = (f64::from(w.max(1)), f64::from(h.max(1)));
                let r = (f64::from(side) / wf).min(f64::from(side) / hf);
                let nw = ((wf * r).round_ties_even() as i32).clamp(1, s);
                let nh = ((hf * r).round_ties_even() as i32).clamp(1, s);
                (nw, nh)
            }
        };
        Geometry {
            side,
            new_w,
            new_h,
            pad_x: (s - new_w) / 2,
            pad_y: (s - new_h) / 2,
        }
    }

    /// (x0, y0, width, height) of the resized image in the canvas.
    pub fn rect(&self) -> (i32, i32, i32, i32) {
        (self.pad_x, self.pad_y, self.new_w, self.new_h)
    }

    /// Output pixels per stored pixel, (x, y), for an image stored as `w`×`h`.
    pub fn scale(&self, w: u32, h: u32) -> (f64, f64) {
        (
            f64::from(self.new_w) / f64::from(w.max(1)),
            f64::from(self.new_h) / f64::from(h.max(1)),
        )
    }

    /// A box with corners normalised to the stored image ([xmin, ymin, xmax, ymax] in 0..1), in
    /// output pixels: `v · new_size + pad`, then mirrored when `flip`. Computed in f64 from the
    /// f32 inputs and rounded once to f32.
    pub fn place_box(&self, b: [f32; 4], flip: bool) -> [f32; 4] {
        let x = |v: f32| f64::from(v) * f64::from(self.new_w) + f64::from(self.pad_x);
        let y = |v: f32| f64::from(v) * f64::from(self.new_h) + f64::from(self.pad_y);
        let (mut x0, y0, mut x1, y1) = (x(b[0]), y(b[1]), x(b[2]), y(b[3]));
        if flip {
            let s = f64::from(self.side);
            (x0, x1) = (s - x1, s - x0);
        }
        [x0 as f32, y0 as f32, x1 as f32, y1 as f32]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_rounds_half_to_even_like_python() {
        // 100×3 into 5: r = 0.05, h·r = 0.15 → 0 → clamped to 1; 500×300 into 5: 3.0 exactly.
        let g = Geometry::of(500, 300, 5, ResizeMode::Letterbox);
        assert_eq!((g.new_w, g.new_h, g.pad_x, g.pad_y), (5, 3, 0, 1));
        // 640×250 into 64: h·r = 25.0; 640×245 into 64: 24.5 → 24 (half to even, not 25).
        assert_eq!(Geometry::of(640, 245, 64, ResizeMode::Letterbox).new_h, 24);
        assert_eq!(Geometry::of(640, 235, 64, ResizeMode::Letterbox).new_h, 24); // 23.5 → 24
        let g = Geometry::of(640, 480, 640, ResizeMode::Letterbox);
        assert_eq!(g.rect(), (0, 80, 640, 480));
        let g = Geometry::of(101, 640, 640, ResizeMode::Letterbox);
        assert_eq!(g.rect(), (269, 0, 101, 640)); // odd pixel to the right
        assert_eq!(Geometry::of(10000, 1, 640, ResizeMode::Letterbox).new_h, 1);
    }

    #[test]
    fn boxes_follow_scale_pad_and_flip() {
        let g = Geometry::of(200, 100, 100, ResizeMode::Letterbox);
        assert_eq!(g.rect(), (0, 25, 100, 50));
        assert_eq!(g.scale(200, 100), (0.5, 0.5));
        assert_eq!(
            g.place_box([0.1, 0.2, 0.5, 1.0], false),
            [10.0, 35.0, 50.0, 75.0]
        );
        assert_eq!(
            g.place_box([0.1, 0.2, 0.5, 1.0], true),
            [50.0, 35.0, 90.0, 75.0]
        );
        let s = Geometry::of(200, 100, 64, ResizeMode::Stretch);
        assert_eq!(s.rect(), (0, 0, 64, 64));
        assert_eq!(s.scale(200, 100), (0.32, 0.64));
        assert_eq!(
            s.place_box([0.0, 0.0, 1.0, 1.0], true),
            [0.0, 0.0, 64.0, 64.0]
        );
    }
}
