//! The fast path against the exact reference (`cpu_decode_rgb8` + `preprocess_image`): same
//! geometry, elements within the stated tolerance, the same images refused.

use super::*;
use crate::throughput::decoders::cpu_decode_rgb8;
use crate::throughput::hsv::IDENTITY;
use crate::throughput::preprocess::{describe, preprocess_image};

/// Identity normalisation: elements are 0..255 levels, padding 114.
fn levels() -> Normalize {
    Normalize {
        mean: [0.0; 3],
        inv_std: [1.0; 3],
        pad: 114.0,
        bgr: false,
    }
}

/// A photo-like test image: smooth gradients, a few edges and some grain.
fn photo(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let grain = (s & 15) as i32 - 8;
            let edge = if (x / 23 + y / 17) % 2 == 0 { 60 } else { 0 };
            let r = (x * 200 / w.max(1)) as i32 + edge + grain;
            let g = (y * 180 / h.max(1)) as i32 + grain;
            let b = ((x + y) * 120 / (w + h)) as i32 + 60 - edge / 2 + grain;
            px.extend([r, g, b].map(|v| v.clamp(0, 255) as u8));
        }
    }
    px
}

fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = crate::image::RgbImage {
        width: w,
        height: h,
        data: photo(w, h, seed),
    };
    crate::image::encode_baseline_jpeg(&img, 92).unwrap()
}

fn reference(bytes: &[u8], t: &Target, flip: bool) -> Result<Vec<f32>, String> {
    let (px, w, h) = cpu_decode_rgb8(bytes)?;
    let d = describe(0, w, h, t.side, t.mode, flip);
    let mut out = vec![0f32; 3 * (t.side * t.side) as usize];
    preprocess_image(&px, &d, t.side, &t.norm, &mut out)?;
    Ok(out)
}

fn fast(bytes: &[u8], t: &Target, flip: bool) -> Result<Vec<f32>, FastError> {
    let mut out = vec![f32::NAN; 3 * (t.side * t.side) as usize];
    preprocess_jpeg(bytes, t, flip, IDENTITY, &mut out)?;
    Ok(out)
}

/// (max, mean) absolute difference.
fn diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let (mut max, mut sum) = (0f32, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        assert!(d.is_finite(), "unwritten element");
        max = max.max(d);
        sum += f64::from(d);
    }
    (max, (sum / a.len() as f64) as f32)
}

#[test]
fn full_size_decodes_match_the_reference_within_the_tolerance() {
    // Up- and downscales (both under 2×: no DCT scaling), odd sizes, both fits, both flips.
    for (w, h, side) in [
        (97u32, 61u32, 64u32),
        (64, 48, 64),
        (40, 30, 64),
        (61, 97, 64),
        (120, 90, 64),
        (33, 33, 33),
    ] {
        let bytes = jpeg(w, h, w * h);
        for mode in [ResizeMode::Stretch, ResizeMode::Letterbox] {
            let t = Target {
                side,
                mode,
                norm: levels(),
            };
            assert_eq!(
                dct_denominator(w, h, side, side),
                1,
                "{w}x{h} is decoded at full size"
            );
            for flip in [false, true] {
                let want = reference(&bytes, &t, flip).unwrap();
                let got = fast(&bytes, &t, flip).unwrap();
                let (max, mean) = diff(&got, &want);
                assert!(
                    max <= TOLERANCE_LEVELS && mean <= TOLERANCE_MEAN_LEVELS,
                    "{w}x{h} -> {side} {mode:?} flip {flip}: max {max} mean {mean}"
                );
            }
        }
    }
}

#[test]
fn dct_scaled_decodes_stay_close_to_the_reference() {
    // 4× and 2.5× the output: decoded at 1/4 and 1/2, then resampled. The reduced IDCT is a
    // different low-pass from the reference's wide triangle, so only the mean difference is
    // held to a few levels on noise (the worst case: all of its energy is where the two filters
    // differ); edges differ more. Photos: see `examples/cpu_fast_check`.
    for (w, h, side, denom) in [(256u32, 256u32, 64u32, 4u32), (160, 160, 64, 2)] {
        let bytes = jpeg(w, h, 7);
        let t = Target {
            side,
            mode: ResizeMode::Stretch,
            norm: levels(),
        };
        assert_eq!(dct_denominator(w, h, side, side), denom);
        let want = reference(&bytes, &t, false).unwrap();
        let got = fast(&bytes, &t, false).unwrap();
        let (max, mean) = diff(&got, &want);
        assert!(mean <= 3.0 && max <= 40.0, "{w}x{h}: max {max} mean {mean}");
    }
}

#[test]
fn flip_is_an_exact_mirror_and_fp16_matches_fp32() {
    let bytes = jpeg(90, 45, 3);
    let t = Target {
        side: 64,
        mode: ResizeMode::Letterbox,
        norm: Normalize::imagenet(true),
    };
    let a = fast(&bytes, &t, false).unwrap();
    let b = fast(&bytes, &t, true).unwrap();
    for row in 0..3 * 64 {
        let (ra, rb) = (&a[row * 64..(row + 1) * 64], &b[row * 64..(row + 1) * 64]);
        assert!(ra.iter().rev().eq(rb.iter()), "row {row}");
    }
    let mut h = vec![half::f16::ZERO; a.len()];
    preprocess_jpeg(&bytes, &t, false, IDENTITY, &mut h).unwrap();
    assert!(h.iter().zip(&a).all(|(x, y)| *x == half::f16::from_f32(*y)));
    // Padding rows above and below the 64x32 image.
    let pad0 = (114.0 - t.norm.mean[2]) * t.norm.inv_std[2];
    assert_eq!(a[0], pad0);
}

#[test]
fn the_fixtures_are_refused_and_accepted_as_by_the_reference() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/odd");
    let t = Target {
        side: 32,
        mode: ResizeMode::Letterbox,
        norm: levels(),
    };
    let mut seen = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "jpg") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match (reference(&bytes, &t, false), fast(&bytes, &t, false)) {
            (Ok(want), Ok(got)) => {
                // Small fixtures upscaled to 32: a level or two, as above (CMYK and lossless
                // go through the reference decoder and differ by the resize only).
                let (max, _) = diff(&got, &want);
                assert!(max <= TOLERANCE_LEVELS, "{name}: max {max}");
            }
            (Err(_), Err(_)) => {}
            (r, f) => panic!("{name}: reference {:?}, fast {:?}", r.err(), f.err()),
        }
        seen += 1;
    }
    assert!(seen >= 20, "{seen} fixtures");
}

#[test]
fn cut_and_corrupt_scans_are_errors_and_the_block_can_be_padded() {
    let bytes = jpeg(128, 96, 11);
    let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let t = Target {
        side: 64,
        mode: ResizeMode::Stretch,
        norm: levels(),
    };
    let mut cut = bytes[..sos + (bytes.len() - sos) / 3].to_vec();
    cut.extend_from_slice(&[0xFF, 0xD9]);
    assert!(reference(&cut, &t, false).is_err());
    assert!(fast(&cut, &t, false).is_err());
    // Damage inside the scan: JPEG's Huffman code often resynchronises, so some damage is
    // undetectable by any decoder; what matters is that the fast path refuses what the
    // reference refuses and accepts what it accepts.
    let (mut refused, mut total) = (0, 0);
    for (k, fill) in [0x55u8, 0x00, 0xA7, 0x13].into_iter().enumerate() {
        for frac in [0.2, 0.5, 0.8] {
            let mut corrupt = bytes.clone();
            let at = sos + ((bytes.len() - sos) as f64 * frac) as usize;
            corrupt[at..at + 8 + 16 * k].fill(fill);
            let r = reference(&corrupt, &t, false).is_err();
            let f = fast(&corrupt, &t, false).is_err();
            assert_eq!(
                r, f,
                "fill {fill:#x} at {frac}: reference refuses {r}, fast {f}"
            );
            refused += usize::from(f);
            total += 1;
        }
    }
    assert!(refused > 0, "no damage of {total} refused");
    let mut out = vec![0f32; 3 * 64 * 64];
    pad_block(&t, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 114.0));
    // And the thread's scratch still works.
    assert!(fast(&bytes, &t, false).is_ok());
}

#[test]
fn denominators_keep_the_decode_at_least_the_placed_size() {
    assert_eq!(dct_denominator(640, 480, 640, 640), 1);
    assert_eq!(dct_denominator(1280, 960, 640, 480), 2);
    assert_eq!(dct_denominator(1280, 960, 640, 640), 1);
    assert_eq!(dct_denominator(4032, 3024, 640, 480), 4);
    assert_eq!(dct_denominator(8000, 6000, 640, 480), 8);
    assert_eq!(dct_denominator(1920, 1080, 640, 360), 2);
}
