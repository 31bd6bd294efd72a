//! Where presize spends its time, and how close its resize is to an ideal one.
//!
//! `cargo run --release --example presize_stages -- DIR [--size 704] [--quality 90] [--count N]
//!  [--scale auto|8|4|3|2|1] [--chroma direct|box|onepass] [--decoder ours|libjpeg] [--psnr]`
//!
//! Single thread, files read into memory first. For each JPEG: reduced DCT decode to planes,
//! Lanczos3 plane resize, 4:2:0 encode — the same calls `presize_image` makes — timed
//! separately. With `--psnr`, the resized planes (before encoding) are compared with a float
//! Lanczos3 resize of the full-resolution decode (libjpeg-turbo accurate IDCT and fancy
//! upsampling, `fast_image_resize` F32): luma PSNR against the reference's Y, chroma PSNR
//! against the reference's Cb/Cr averaged over 2×2 (the 4:2:0 output cannot hold more).

use dsprep::image::encode::encode_ycc420;
use dsprep::image::presize::{resize_ycc_to_420, ChromaPath, CHROMA};
use dsprep::image::resize::{replicate_edges, Target};
use dsprep::image::scaled_decode::{choose_scale, decode_scaled, decode_scaled_libjpeg, Layout};
use fast_image_resize as fir;
use std::time::Instant;

#[path = "common/args.rs"]
mod args;
use args::arg;

fn psnr(sq_err: f64, n: usize) -> f64 {
    let mse = sq_err / n.max(1) as f64;
    if mse <= 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Float Lanczos3 of the full decode → (Y, Cb 2×2-averaged, Cr 2×2-averaged) as f32 planes.
fn reference(bytes: &[u8], ow: usize, oh: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let img = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::RGB).expect("decode");
    let f: Vec<f32> = img.pixels.iter().map(|&v| f32::from(v)).collect();
    let raw: Vec<u8> = f.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let src = fir::images::ImageRef::new(
        img.width as u32,
        img.height as u32,
        &raw,
        fir::PixelType::F32x3,
    )
    .expect("ref view");
    let mut dst = fir::images::Image::new(ow as u32, oh as u32, fir::PixelType::F32x3);
    let opts = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    fir::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .expect("ref resize");
    let px: Vec<f32> = dst
        .buffer()
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (mut y, mut cb, mut cr) = (
        vec![0f32; ow * oh],
        vec![0f32; ow * oh],
        vec![0f32; ow * oh],
    );
    for i in 0..ow * oh {
        let (r, g, b) = (px[3 * i], px[3 * i + 1], px[3 * i + 2]);
        y[i] = 0.299 * r + 0.587 * g + 0.114 * b;
        cb[i] = 128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b;
        cr[i] = 128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b;
    }
    let down = |p: &[f32]| -> Vec<f32> {
        let (cw, ch) = (ow.div_ceil(2), oh.div_ceil(2));
        let mut out = vec![0f32; cw * ch];
        for cy in 0..ch {
            for cx in 0..cw {
                let (mut s, mut n) = (0f32, 0f32);
                for dy in 0..2 {
                    for dx in 0..2 {
                        let (x, yy) = (2 * cx + dx, 2 * cy + dy);
                        if x < ow && yy < oh {
                            s += p[yy * ow + x];
                            n += 1.0;
                        }
                    }
                }
                out[cy * cw + cx] = s / n;
            }
        }
        out
    };
    let (cb2, cr2) = (down(&cb), down(&cr));
    (y, cb2, cr2)
}

fn sq_err(a: &[u8], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &r)| {
            let d = f64::from(x) - f64::from(r.round().clamp(0.0, 255.0));
            d * d
        })
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: presize_stages DIR [--size 704] [--quality 90] [--count N] [--scale auto|8|4|3|2|1] [--psnr]");
        std::process::exit(2);
    };
    let size: u32 = arg(&args, "--size", 704);
    let quality: u8 = arg(&args, "--quality", 90);
    let count: usize = arg(&args, "--count", usize::MAX);
    let scale_arg: String = arg(&args, "--scale", "auto".to_string());
    let want_psnr = args.iter().any(|a| a == "--psnr");
    // `--decoder libjpeg`: libjpeg-turbo only (no reduced_jpeg fast path), for A/B timing.
    let libjpeg_only = arg(&args, "--decoder", String::new()) == "libjpeg";
    let chroma = match arg(&args, "--chroma", String::new()).as_str() {
        "direct" => ChromaPath::Direct,
        "box" => ChromaPath::FullThenBox,
        "onepass" => ChromaPath::OnePassBox,
        _ => CHROMA,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "jpeg"))
        .collect();
    files.sort();
    files.truncate(count);
    let data: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let target = Target::longest(size);
    if args.iter().any(|a| a == "--compare-decoders") {
        compare_decoders(&data, target);
        return;
    }
    let (mut t_dec, mut t_res, mut t_enc) = (0f64, 0f64, 0f64);
    let (mut py, mut pc) = (Vec::new(), Vec::new());
    let mut scales = std::collections::BTreeMap::new();
    let mut n = 0usize;
    for bytes in &data {
        let hdr = dsprep::image::parse_jpeg_header(bytes).expect("header");
        // Bench images carry no EXIF rotation; stored = displayed.
        let Some((ow, oh)) = target.output_size(hdr.width, hdr.height) else {
            continue;
        };
        let eighths = match scale_arg.parse::<u32>() {
            Ok(d) => d,
            // libjpeg-turbo alone: its SIMD scales (its 3/8 has no SIMD), as presize gives it.
            Err(_) => choose_scale(hdr.width, hdr.height, ow, oh, !libjpeg_only),
        };
        *scales.entry(eighths).or_insert(0) += 1;
        let t0 = Instant::now();
        let mut d = if libjpeg_only {
            decode_scaled_libjpeg(bytes, eighths, 1 << 30)
        } else {
            decode_scaled(bytes, eighths, 1 << 30)
        }
        .expect("decode");
        let t1 = Instant::now();
        assert_eq!(d.layout, Layout::Ycc, "bench expects YCbCr JPEGs");
        for (p, e) in d.planes.iter_mut().zip(&d.extents) {
            replicate_edges(p, *e);
        }
        let (ow, oh) = (ow as usize, oh as usize);
        let [y, cb, cr] = resize_ycc_to_420(&d, ow, oh, chroma).expect("resize");
        let t2 = Instant::now();
        let out = encode_ycc420(&y, &cb, &cr, quality).expect("encode");
        let t3 = Instant::now();
        std::hint::black_box(out);
        t_dec += (t1 - t0).as_secs_f64();
        t_res += (t2 - t1).as_secs_f64();
        t_enc += (t3 - t2).as_secs_f64();
        n += 1;
        if want_psnr {
            let (ry, rcb, rcr) = reference(bytes, ow, oh);
            py.push(psnr(sq_err(&y.data, &ry), ry.len()));
            let c_err = sq_err(&cb.data, &rcb) + sq_err(&cr.data, &rcr);
            pc.push(psnr(c_err, rcb.len() + rcr.len()));
        }
    }
    let total = t_dec + t_res + t_enc;
    let ms = |t: f64| t / n.max(1) as f64 * 1e3;
    println!(
        "{n} images, DCT scales (eighths) {scales:?}: {:.1} img/s single core; per image decode {:.1} ms ({:.0} %), resize {:.1} ms ({:.0} %), encode {:.1} ms ({:.0} %)",
        n as f64 / total,
        ms(t_dec),
        100.0 * t_dec / total,
        ms(t_res),
        100.0 * t_res / total,
        ms(t_enc),
        100.0 * t_enc / total
    );
    for (name, v) in [("luma", &mut py), ("chroma", &mut pc)] {
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        println!(
            "PSNR {name} vs float Lanczos3 of the full image (before encoding): min {:.2} median {:.2} max {:.2} dB",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
}

/// `--compare-decoders`: decode time only, the fast path and libjpeg-turbo alternating image by
/// image (so host speed drift hits both alike), best of 3 passes each.
fn compare_decoders(data: &[Vec<u8>], target: Target) {
    let mut best = [f64::MAX; 2];
    for _ in 0..3 {
        let mut t = [0f64; 2];
        for bytes in data {
            let hdr = dsprep::image::parse_jpeg_header(bytes).expect("header");
            let Some((ow, oh)) = target.output_size(hdr.width, hdr.height) else {
                continue;
            };
            // Both decoders at a scale both have in SIMD (1/2 for the phone set).
            let eighths = choose_scale(hdr.width, hdr.height, ow, oh, false);
            for (i, slot) in t.iter_mut().enumerate() {
                let t0 = Instant::now();
                let d = if i == 0 {
                    decode_scaled_libjpeg(bytes, eighths, 1 << 30)
                } else {
                    decode_scaled(bytes, eighths, 1 << 30)
                };
                std::hint::black_box(d.expect("decode"));
                *slot += t0.elapsed().as_secs_f64();
            }
        }
        for i in 0..2 {
            best[i] = best[i].min(t[i]);
        }
    }
    let n = data.len().max(1) as f64;
    println!(
        "decode per image: libjpeg-turbo {:.2} ms, ours {:.2} ms ({:.2}x)",
        best[0] / n * 1e3,
        best[1] / n * 1e3,
        best[0] / best[1]
    );
}
