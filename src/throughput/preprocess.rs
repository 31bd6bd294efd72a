//! Output geometry and the CPU reference of the fused preprocessing kernel
//! (kernels/preprocess.cu): same window, same weights, same operation order in f32, so the GPU
//! output can be checked against it to ~1e-6 and the CPU pipeline produces the same tensors.
//!
//! Resampling is a separable triangle filter (bilinear) whose support widens by the scale factor
//! when shrinking (antialiasing), with Pillow's window and half-pixel centres; enlarging it is
//! plain bilinear with edge clamping.

use super::config::ResizeMode;
pub use crate::gpu::ffi::preprocess::{ImageDesc, FLAG_EMPTY, FLAG_FLIP, FLAG_HSV};

/// Where a `w`×`h` image lands in the `side`×`side` output: (x0, y0, width, height); the rule
/// is [`super::geometry::Geometry`]'s (YOLO's letterbox, rounding half to even).
pub fn placement(w: u32, h: u32, side: u32, mode: ResizeMode) -> (i32, i32, i32, i32) {
    super::geometry::Geometry::of(w, h, side, mode).rect()
}

/// Normalisation: out = (v - mean) * inv_std per channel, v in 0..255; `pad` is the raw value of
/// letterbox padding and of undecodable images (114, YOLO's grey).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub inv_std: [f32; 3],
    pub pad: f32,
    pub bgr: bool,
}

impl Normalize {
    /// `mean` and `std` per input channel (RGB order, 0..255 units; applied before a BGR swap).
    pub fn new(mean: [f32; 3], std: [f32; 3], bgr: bool) -> Self {
        Self {
            mean,
            inv_std: [1.0 / std[0], 1.0 / std[1], 1.0 / std[2]],
            pad: 114.0,
            bgr,
        }
    }

    /// ImageNet mean/std (what torchvision-based detectors use), in 0..255 units.
    pub fn imagenet(bgr: bool) -> Self {
        Self::new(IMAGENET_MEAN, IMAGENET_STD, bgr)
    }
}

/// ImageNet mean and standard deviation in 0..255 units (`verify-throughput`'s normalisation).
pub const IMAGENET_MEAN: [f32; 3] = [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0];
pub const IMAGENET_STD: [f32; 3] = [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0];

#[inline]
fn tri(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Same as `window()` in the kernel: (center, 1/filter_scale, first, count).
#[inline]
fn window(o: i32, scale: f32, in_size: i32) -> (f32, f32, i32, i32) {
    let fs = if scale > 1.0 { scale } else { 1.0 };
    let support = fs;
    let c = (o as f32 + 0.5) * scale;
    // `as i32` truncates toward zero like the C cast in the kernel.
    let lo = ((c - support + 0.5) as i32).max(0);
    let hi = ((c + support + 0.5) as i32).min(in_size);
    (c, 1.0 / fs, lo, hi - lo)
}

/// Resampled RGB (0..255 floats) of canvas pixel (`cx`, `cy`) relative to the placement.
fn sample(src: &[u8], d: &ImageDesc, cx: i32, cy: i32) -> [f32; 3] {
    let sx = d.src_w as f32 / d.dst_w as f32;
    let sy = d.src_h as f32 / d.dst_h as f32;
    let (xc, xi, x0, nx) = window(cx, sx, d.src_w);
    let (yc, yi, y0, ny) = window(cy, sy, d.src_h);
    let mut wxs = 0.0f32;
    for i in 0..nx {
        wxs += tri(((i + x0) as f32 - xc + 0.5) * xi);
    }
    let mut wys = 0.0f32;
    let mut a = [0.0f32; 3];
    for j in 0..ny {
        let wy = tri(((j + y0) as f32 - yc + 0.5) * yi);
        wys += wy;
        let row = (j + y0) as usize * d.src_pitch as usize;
        let mut r = [0.0f32; 3];
        for i in 0..nx {
            let wx = tri(((i + x0) as f32 - xc + 0.5) * xi);
            let p = row + 3 * (i + x0) as usize;
            for (c, rc) in r.iter_mut().enumerate() {
                *rc += wx * src.get(p + c).copied().unwrap_or(0) as f32;
            }
        }
        for c in 0..3 {
            a[c] += wy * r[c];
        }
    }
    let norm = 1.0 / (wxs * wys);
    [a[0] * norm, a[1] * norm, a[2] * norm]
}

/// Output element sink, so one loop serves fp32 and fp16 tensors.
pub trait OutElem: Copy {
    fn from_f32(v: f32) -> Self;
}
impl OutElem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl OutElem for half::f16 {
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// Writes one image's `3 × side × side` CHW block into `out` (length `3·side²`).
/// `src` is interleaved RGB8 described by `d` (its `src_offset` is ignored: `src` starts at the
/// image). Panic-free on any descriptor: out-of-range reads give 0, a short `out` is an error.
pub fn preprocess_image<T: OutElem>(
    src: &[u8],
    d: &ImageDesc,
    side: u32,
    n: &Normalize,
    out: &mut [T],
) -> Result<(), String> {
    let s = side as usize;
    let plane = s * s;
    if out.len() < 3 * plane {
        return Err(format!(
            "output block has {} elements, needs {}",
            out.len(),
            3 * plane
        ));
    }
    if d.flags & FLAG_EMPTY == 0 && (d.dst_w <= 0 || d.dst_h <= 0 || d.src_w <= 0 || d.src_h <= 0) {
        return Err(format!("degenerate descriptor {d:?}"));
    }
    let (c0, c2) = if n.bgr { (2, 0) } else { (0, 2) };
    for y in 0..s {
        for x in 0..s {
            let mut cx = if d.flags & FLAG_FLIP != 0 {
                s as i32 - 1 - x as i32
            } else {
                x as i32
            };
            cx -= d.dst_x0;
            let cy = y as i32 - d.dst_y0;
            let inside =
                d.flags & FLAG_EMPTY == 0 && cx >= 0 && cy >= 0 && cx < d.dst_w && cy < d.dst_h;
            let mut rgb = if inside {
                sample(src, d, cx, cy)
            } else {
                [n.pad; 3]
            };
            if d.flags & FLAG_HSV != 0 {
                rgb = super::hsv::apply(rgb, d.hsv);
            }
            let v0 = (rgb[0] - n.mean[0]) * n.inv_std[0];
            let v1 = (rgb[1] - n.mean[1]) * n.inv_std[1];
            let v2 = (rgb[2] - n.mean[2]) * n.inv_std[2];
            let i = y * s + x;
            out[c0 * plane + i] = T::from_f32(v0);
            out[plane + i] = T::from_f32(v1);
            out[c2 * plane + i] = T::from_f32(v2);
        }
    }
    Ok(())
}

/// Descriptor for a decoded `w`×`h` image at arena offset `offset`.
pub fn describe(offset: u64, w: u32, h: u32, side: u32, mode: ResizeMode, flip: bool) -> ImageDesc {
    let (x0, y0, dw, dh) = placement(w, h, side, mode);
    ImageDesc {
        src_offset: offset,
        src_w: w as i32,
        src_h: h as i32,
        src_pitch: 3 * w as i32,
        dst_x0: x0,
        dst_y0: y0,
        dst_w: dw,
        dst_h: dh,
        flags: if flip { FLAG_FLIP } else { 0 },
        reserved0: 0,
        reserved1: 0,
        hsv: super::hsv::IDENTITY,
        reserved2: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        (0..w * h).flat_map(|_| rgb).collect()
    }

    #[test]
    fn letterbox_keeps_aspect_and_centres() {
        assert_eq!(
            placement(640, 480, 640, ResizeMode::Letterbox),
            (0, 80, 640, 480)
        );
        assert_eq!(
            placement(480, 640, 640, ResizeMode::Letterbox),
            (80, 0, 480, 640)
        );
        assert_eq!(
            placement(1280, 720, 640, ResizeMode::Letterbox),
            (0, 140, 640, 360)
        );
        assert_eq!(
            placement(100, 100, 640, ResizeMode::Stretch),
            (0, 0, 640, 640)
        );
        // Extreme aspect never yields an empty image.
        let (_, _, w, h) = placement(10000, 1, 640, ResizeMode::Letterbox);
        assert_eq!((w, h), (640, 1));
    }

    #[test]
    fn solid_colour_survives_any_resize_exactly() {
        let n = Normalize::imagenet(false);
        for (w, h, side) in [
            (7u32, 5u32, 16u32),
            (64, 48, 16),
            (640, 480, 32),
            (3, 100, 9),
        ] {
            let img = solid(w, h, [200, 100, 50]);
            let d = describe(0, w, h, side, ResizeMode::Stretch, false);
            let mut out = vec![0f32; 3 * (side * side) as usize];
            preprocess_image(&img, &d, side, &n, &mut out).unwrap();
            let plane = (side * side) as usize;
            for (c, v) in [200f32, 100.0, 50.0].iter().enumerate() {
                let want = (v - n.mean[c]) * n.inv_std[c];
                for x in &out[c * plane..(c + 1) * plane] {
                    assert!(
                        (x - want).abs() < 1e-5,
                        "{w}x{h}->{side} c{c}: {x} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn identity_size_is_a_copy_and_flip_mirrors() {
        let (w, h) = (5u32, 3u32);
        let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let n = Normalize {
            mean: [0.0; 3],
            inv_std: [1.0; 3],
            pad: 114.0,
            bgr: false,
        };
        // Non-square source into a square output needs stretch; use a square image instead.
        let sq: Vec<u8> = (0..w * w * 3).map(|i| (i * 13 % 251) as u8).collect();
        let d = describe(0, w, w, w, ResizeMode::Stretch, false);
        let mut out = vec![0f32; 3 * (w * w) as usize];
        preprocess_image(&sq, &d, w, &n, &mut out).unwrap();
        for y in 0..w as usize {
            for x in 0..w as usize {
                for c in 0..3 {
                    let got = out[c * 25 + y * 5 + x];
                    assert_eq!(got, sq[(y * 5 + x) * 3 + c] as f32);
                }
            }
        }
        let mut d2 = d;
        d2.flags = FLAG_FLIP;
        let mut flipped = vec![0f32; 75];
        preprocess_image(&sq, &d2, w, &n, &mut flipped).unwrap();
        for y in 0..5 {
            for x in 0..5 {
                assert_eq!(flipped[y * 5 + x], out[y * 5 + (4 - x)]);
            }
        }
        let _ = img;
        let _ = h;
    }

    #[test]
    fn letterbox_pads_with_114_and_bgr_swaps() {
        let n = Normalize::imagenet(true);
        let img = solid(8, 4, [255, 0, 0]);
        let d = describe(0, 8, 4, 8, ResizeMode::Letterbox, false);
        assert_eq!((d.dst_x0, d.dst_y0, d.dst_w, d.dst_h), (0, 2, 8, 4));
        let mut out = vec![0f32; 3 * 64];
        preprocess_image(&img, &d, 8, &n, &mut out).unwrap();
        // BGR: output plane 0 holds the blue channel, normalised with the blue mean/std.
        let pad_c0 = (114.0 - n.mean[2]) * n.inv_std[2];
        // Row 0 is padding; BGR puts red (channel 0 of the input) in output plane 2.
        assert!((out[0] - pad_c0).abs() < 1e-6);
        let red = (255.0 - n.mean[0]) * n.inv_std[0];
        assert!((out[2 * 64 + 3 * 8 + 1] - red).abs() < 1e-5);
    }

    #[test]
    fn downscale_is_antialiased_average() {
        // 4x1 -> 2x1 (stretch over a 2x2 output from a 4x2 source): each output pixel averages
        // with a triangle of radius 2 source pixels, not a 2-tap bilinear pick.
        let img: Vec<u8> = [0u8, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255]
            .iter()
            .copied()
            .cycle()
            .take(4 * 2 * 3)
            .collect();
        let n = Normalize {
            mean: [0.0; 3],
            inv_std: [1.0; 3],
            pad: 0.0,
            bgr: false,
        };
        let d = describe(0, 4, 2, 2, ResizeMode::Stretch, false);
        let mut out = vec![0f32; 12];
        preprocess_image(&img, &d, 2, &n, &mut out).unwrap();
        // Pillow gives 95.625/159.375-like mixes; a plain 2-tap bilinear would give 127.5 exactly.
        assert!(out[0] > 50.0 && out[0] < 127.0, "{}", out[0]);
        assert!(out[1] > 128.0 && out[1] < 205.0, "{}", out[1]);
    }

    #[test]
    fn fp16_output_and_short_buffer_error() {
        let n = Normalize::imagenet(false);
        let img = solid(4, 4, [10, 20, 30]);
        let d = describe(0, 4, 4, 4, ResizeMode::Stretch, false);
        let mut out = vec![half::f16::ZERO; 48];
        preprocess_image(&img, &d, 4, &n, &mut out).unwrap();
        let want = (10.0 - n.mean[0]) * n.inv_std[0];
        assert!((out[0].to_f32() - want).abs() < 2e-3);
        let mut short = vec![0f32; 10];
        assert!(preprocess_image(&img, &d, 4, &n, &mut short).is_err());
    }

    #[test]
    fn hsv_flag_jitters_every_output_pixel_padding_included() {
        let (w, h) = (6u32, 3u32);
        let src: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let n = Normalize::imagenet(false);
        let side = 8;
        let plain_d = describe(0, w, h, side, ResizeMode::Letterbox, false);
        let mut plain = vec![0f32; 3 * 64];
        preprocess_image(&src, &plain_d, side, &n, &mut plain).unwrap();
        // Identity gains: the same output.
        let mut d = plain_d;
        d.flags |= FLAG_HSV;
        let mut same = vec![0f32; 3 * 64];
        preprocess_image(&src, &d, side, &n, &mut same).unwrap();
        assert!(plain.iter().zip(&same).all(|(a, b)| (a - b).abs() < 1e-4));
        // Other gains: each pixel is hsv::apply of the plain pixel (in 0..255, before
        // normalising), the padding rows too.
        d.hsv = [1.01, 0.4, 1.3];
        let mut jit = vec![0f32; 3 * 64];
        preprocess_image(&src, &d, side, &n, &mut jit).unwrap();
        let un = |v: f32, c: usize| v / n.inv_std[c] + n.mean[c];
        for i in 0..64 {
            let px = [un(plain[i], 0), un(plain[64 + i], 1), un(plain[128 + i], 2)];
            let want = crate::throughput::hsv::apply(px, d.hsv);
            for c in 0..3 {
                let got = un(jit[c * 64 + i], c);
                assert!(
                    (got - want[c]).abs() < 1e-2,
                    "pixel {i} channel {c}: {got} vs {}",
                    want[c]
                );
            }
        }
        assert!(plain.iter().zip(&jit).any(|(a, b)| (a - b).abs() > 1e-2));
    }
}
