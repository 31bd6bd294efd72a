//! HSV colour jitter with YOLO's meaning (ultralytics `augment_hsv`): per image, gains
//! `r = U(-1, 1) · (h, s, v) + 1`; in OpenCV's 8-bit HSV (hue 0..180, saturation and value
//! 0..255) hue becomes `(hue · r_h) mod 180`, saturation and value are multiplied by their gain
//! and clipped to 0..255. Applied to the whole output canvas, letterbox padding included, as
//! YOLO applies it after the letterbox.
//!
//! This is the CPU reference; kernels/preprocess.cu does the same arithmetic in the same order
//! (in f32; YOLO's own lookup tables round to whole levels, so results agree with YOLO's
//! within a level).

/// The gains of one image from three uniform numbers in `[0, 1)` and the jitter's maxima.
pub fn gains(max: [f32; 3], u: [f64; 3]) -> [f32; 3] {
    let g = |i: usize| ((2.0 * u[i] - 1.0) as f32) * max[i] + 1.0;
    [g(0), g(1), g(2)]
}

/// Gains that change nothing.
pub const IDENTITY: [f32; 3] = [1.0, 1.0, 1.0];

/// Applies `gains` to one RGB pixel (components 0..255).
pub fn apply(rgb: [f32; 3], gains: [f32; 3]) -> [f32; 3] {
    let [r, g, b] = rgb;
    let v = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = v - min;
    let s = if v > 0.0 { 255.0 * delta / v } else { 0.0 };
    // Hue in OpenCV's 8-bit range: degrees / 2.
    let mut h = if delta <= 0.0 {
        0.0
    } else if v == r {
        60.0 * (g - b) / delta
    } else if v == g {
        120.0 + 60.0 * (b - r) / delta
    } else {
        240.0 + 60.0 * (r - g) / delta
    };
    if h < 0.0 {
        h += 360.0;
    }
    let h = h * 0.5;
    let h2 = (h * gains[0]).rem_euclid(180.0);
    let s2 = (s * gains[1]).clamp(0.0, 255.0);
    let v2 = (v * gains[2]).clamp(0.0, 255.0);
    from_hsv(h2, s2, v2)
}

/// OpenCV-range HSV (hue 0..180, saturation and value 0..255) back to RGB.
fn from_hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let sat = s / 255.0;
    let hh = (h * 2.0) / 60.0; // sector 0..6
    let sector = hh.floor();
    let f = hh - sector;
    let p = v * (1.0 - sat);
    let q = v * (1.0 - sat * f);
    let t = v * (1.0 - sat * (1.0 - f));
    match sector as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f32; 3], b: [f32; 3], tol: f32) -> bool {
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn identity_gains_change_nothing() {
        let mut k = 0u32;
        for r in (0..=255).step_by(17) {
            for g in (0..=255).step_by(23) {
                for b in (0..=255).step_by(29) {
                    let px = [r as f32, g as f32, b as f32];
                    let out = apply(px, IDENTITY);
                    assert!(close(out, px, 1e-3), "{px:?} -> {out:?}");
                    k += 1;
                }
            }
        }
        assert!(k > 1000);
    }

    #[test]
    fn each_gain_does_what_yolo_s_does() {
        // Value: the largest component scales, clipped at 255; hue and saturation stay.
        assert!(close(
            apply([200.0, 100.0, 50.0], [1.0, 1.0, 0.5]),
            [100.0, 50.0, 25.0],
            1e-3
        ));
        assert!(close(
            apply([200.0, 100.0, 50.0], [1.0, 1.0, 2.0]),
            [255.0, 127.5, 63.75],
            1e-3
        ));
        // Saturation 0: grey of the same value.
        assert!(close(
            apply([200.0, 100.0, 50.0], [1.0, 0.0, 1.0]),
            [200.0; 3],
            1e-3
        ));
        // Grey has no hue and no saturation: only the value gain acts (letterbox padding).
        assert!(close(apply([114.0; 3], [1.4, 1.7, 1.0]), [114.0; 3], 1e-3));
        assert!(close(apply([114.0; 3], [1.0, 1.0, 1.2]), [136.8; 3], 1e-3));
        // Hue: pure red (hue 0) stays red under any hue gain; green (60 in OpenCV's range)
        // times 2 is hue 120 = blue; times 3.5 is 210 mod 180 = 30 = yellow.
        assert!(close(
            apply([255.0, 0.0, 0.0], [1.5, 1.0, 1.0]),
            [255.0, 0.0, 0.0],
            1e-3
        ));
        assert!(close(
            apply([0.0, 255.0, 0.0], [2.0, 1.0, 1.0]),
            [0.0, 0.0, 255.0],
            1e-3
        ));
        assert!(close(
            apply([0.0, 255.0, 0.0], [3.5, 1.0, 1.0]),
            [255.0, 255.0, 0.0],
            1e-3
        ));
    }

    #[test]
    fn gains_span_one_plus_minus_the_maximum() {
        assert_eq!(gains([0.015, 0.7, 0.4], [0.5, 0.5, 0.5]), IDENTITY);
        let lo = gains([0.015, 0.7, 0.4], [0.0, 0.0, 0.0]);
        let hi = gains([0.015, 0.7, 0.4], [0.999_999, 0.999_999, 0.999_999]);
        assert!(close(lo, [0.985, 0.3, 0.6], 1e-6));
        assert!(close(hi, [1.015, 1.7, 1.4], 1e-5));
    }
}
