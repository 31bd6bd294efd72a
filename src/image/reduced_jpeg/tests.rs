//! The reduced decoder against libjpeg-turbo's scaled decode of the same bytes, plus the
//! files it must hand back (`None`) and corrupt data.

use super::*;
use crate::image::scaled_decode::decode_scaled_libjpeg;
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

/// A photo-like RGB test image: gradients, edges, texture and noise.
fn photo(w: usize, h: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let noise = (s % 41) as f32 - 20.0;
            let edge = if (x / 37 + y / 23) % 2 == 0 {
                60.0
            } else {
                0.0
            };
            let wave = 40.0 * ((x as f32) * 0.21).sin() * ((y as f32) * 0.13).cos();
            let base = [x as f32 * 0.5, y as f32 * 0.7, 200.0 - x as f32 * 0.3];
            for (c, b) in base.iter().enumerate() {
                let v = b + edge + wave * (c as f32 - 1.0) + noise;
                px.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    px
}

fn encode(w: usize, h: usize, subsamp: Subsamp, quality: i32) -> Vec<u8> {
    let px = photo(w, h, (w * 31 + h) as u32);
    let mut c = Compressor::new().expect("compressor");
    c.set_quality(quality).expect("quality");
    c.set_subsamp(subsamp).expect("subsamp");
    let img = Image {
        pixels: px.as_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: PixelFormat::RGB,
    };
    c.compress_to_vec(img).expect("encode")
}

/// PSNR of our planes against libjpeg-turbo's over each plane's picture extent.
fn psnr_vs_libjpeg(bytes: &[u8], eighths: u32) -> Vec<f64> {
    let ours = decode_reduced(bytes, eighths, 1 << 30).expect("fast path takes it");
    let theirs = decode_scaled_libjpeg(bytes, eighths, 1 << 30).expect("libjpeg-turbo");
    assert_eq!(ours.layout, theirs.layout);
    assert_eq!(ours.planes.len(), theirs.planes.len());
    let mut out = Vec::new();
    for ((a, b), (ea, eb)) in ours
        .planes
        .iter()
        .zip(&theirs.planes)
        .zip(ours.extents.iter().zip(&theirs.extents))
    {
        assert_eq!(ea, eb, "extents");
        let (w, h) = (ea.0.ceil() as usize, ea.1.ceil() as usize);
        assert!(a.width >= w && a.height >= h && b.width >= w && b.height >= h);
        let mut se = 0f64;
        for y in 0..h {
            for x in 0..w {
                let d = f64::from(a.data[y * a.width + x]) - f64::from(b.data[y * b.width + x]);
                se += d * d;
            }
        }
        let mse = se / (w * h) as f64;
        out.push(if mse == 0.0 {
            99.0
        } else {
            10.0 * (65025.0 / mse).log10()
        });
    }
    out
}

#[test]
fn agrees_with_libjpeg_turbo_for_every_sampling_scale_and_odd_size() {
    for subsamp in [
        Subsamp::Sub2x2,
        Subsamp::Sub2x1,
        Subsamp::Sub1x2,
        Subsamp::None,
        Subsamp::Gray,
    ] {
        for (w, h) in [(333, 211), (64, 48), (17, 9), (1, 1), (250, 3)] {
            let bytes = encode(w, h, subsamp, 92);
            for eighths in [4, 3, 2, 1] {
                let p = psnr_vs_libjpeg(&bytes, eighths);
                eprintln!("{subsamp:?} {w}x{h} {eighths}/8: {p:.1?}");
                for (i, v) in p.iter().enumerate() {
                    assert!(
                        *v >= 36.0,
                        "{subsamp:?} {w}x{h} {eighths}/8 plane {i}: {v:.1} dB"
                    );
                }
            }
        }
    }
}

fn encode_with_restarts(w: usize, h: usize, interval: u16) -> Vec<u8> {
    let px = photo(w, h, 7);
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.set_restart_interval(interval);
    enc.encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .expect("encode");
    out
}

#[test]
fn restart_intervals_are_followed() {
    for interval in [1u16, 3, 7, 64] {
        let bytes = encode_with_restarts(203, 101, interval);
        assert!(
            bytes.windows(2).any(|w| w == [0xFF, 0xD7]) || interval > 7,
            "the file has restart markers"
        );
        for eighths in [4, 3, 1] {
            let p = psnr_vs_libjpeg(&bytes, eighths);
            let floor = if eighths == 1 { 99.0 } else { 36.0 };
            assert!(
                p.iter().all(|&v| v >= floor),
                "interval {interval} {eighths}/8: {p:?}"
            );
        }
    }
}

#[test]
fn other_processes_are_handed_back() {
    let px = photo(64, 48, 3);
    let img = Image {
        pixels: px.as_slice(),
        width: 64,
        pitch: 64 * 3,
        height: 48,
        format: PixelFormat::RGB,
    };
    for (progressive, arithmetic) in [(true, false), (false, true)] {
        let mut c = Compressor::new().expect("compressor");
        c.set_progressive(progressive).expect("progressive");
        c.set_arithmetic(arithmetic).expect("arithmetic");
        let bytes = c.compress_to_vec(img).expect("encode");
        assert!(decode_reduced(&bytes, 4, 1 << 30).is_none());
        // ...and the public entry point still decodes it (through libjpeg-turbo).
        let d = crate::image::scaled_decode::decode_scaled(&bytes, 4, 1 << 30).expect("decoded");
        assert_eq!(d.planes[0].width, 32);
    }
    assert!(
        decode_reduced(&encode(64, 48, Subsamp::Sub2x2, 90), 8, 1 << 30).is_none(),
        "1/1"
    );
    assert!(decode_reduced(b"\xFF\xD8\xFF\xD9", 4, 1 << 30).is_none());
    assert!(decode_reduced(b"", 4, 1 << 30).is_none());
}

#[test]
fn the_pixel_limit_applies() {
    let bytes = encode(333, 211, Subsamp::Sub2x2, 90);
    // 1/2 of 333×211 is 167×106, in planes padded to whole 16×16 MCUs: 168×112.
    assert!(decode_reduced(&bytes, 4, 168 * 112).is_some());
    assert!(decode_reduced(&bytes, 4, 168 * 112 - 1).is_none());
}

/// Truncated and damaged files never panic; a file cut inside its scan is handed back (the
/// caller's libjpeg-turbo then reports it), and so is one with a damaged restart marker.
#[test]
fn corrupt_data_never_panics_and_truncation_is_handed_back() {
    let bytes = encode_with_restarts(203, 101, 4);
    let sos = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS");
    for cut in (0..bytes.len() - 1).step_by(7) {
        let r = decode_reduced(&bytes[..cut], 4, 1 << 30);
        assert!(
            r.is_none(),
            "cut at {cut} of {} (SOS at {sos})",
            bytes.len()
        );
    }
    let mut damaged_some = 0;
    for at in (2..bytes.len()).step_by(5) {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[at] ^= x;
            if decode_reduced(&b, 4, 1 << 30).is_some() {
                damaged_some += 1;
            }
        }
    }
    // Most damage in entropy data still decodes (to wrong pixels), as with libjpeg.
    assert!(damaged_some > 0);
    // A restart marker replaced by the wrong number: handed back.
    let rst = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xD1])
        .expect("RST1");
    let mut b = bytes.clone();
    b[rst + 1] = 0xD5;
    assert!(decode_reduced(&b, 4, 1 << 30).is_none());
}

/// A quantization step of 0 (no baseline encoder writes one) is handed back: the IDCT's
/// float dequantization is exact only for 8-bit non-zero steps.
#[test]
fn zero_quantization_steps_are_handed_back() {
    let mut bytes = encode(64, 48, Subsamp::Sub2x2, 90);
    assert!(decode_reduced(&bytes, 4, 1 << 30).is_some());
    let dqt = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xDB])
        .expect("DQT");
    // FF DB, length (2 bytes), Pq/Tq, then the 64 steps: zero the last (zigzag 63).
    assert_eq!(bytes[dqt + 4] >> 4, 0, "8-bit table");
    bytes[dqt + 5 + 63] = 0;
    assert!(decode_reduced(&bytes, 4, 1 << 30).is_none());
}

#[test]
fn fast_path_output_is_what_decode_scaled_returns() {
    let bytes = encode(333, 211, Subsamp::Sub2x2, 92);
    let fast = decode_reduced(&bytes, 4, 1 << 30).expect("fast");
    let d = crate::image::scaled_decode::decode_scaled(&bytes, 4, 1 << 30).expect("decode");
    assert_eq!(d.planes, fast.planes);
    assert_eq!(d.extents, fast.extents);
}
