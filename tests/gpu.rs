//! GPU integration tests. On a machine without a GPU (or without nvJPEG / NVRTC) each test
//! prints "skipped: …" saying what was missing and passes; on the GPU machine they really run
//! (bench/gpu/device_run.sh runs this binary there).
//!
//! * NVRTC compiles every kernels/*.cu (CI: `pip install nvidia-cuda-nvrtc` + LD_LIBRARY_PATH).
//! * nvJPEG (hardware and CUDA decoders) vs the CPU decoder on the fixtures.
//! * The fused kernel vs its CPU reference on random sizes, outputs poisoned first.
//! * The whole GPU pipeline on small shards with a corrupt record; the CPU pipeline (no GPU).

use dsprep::gpu::device::{probe, Gpu};
use dsprep::gpu::ffi::cuda::{self, DeviceBuffer, PinnedBuffer};
use dsprep::gpu::ffi::nvjpeg::{Handle, NvJpeg, BACKEND_GPU_HYBRID, BACKEND_HYBRID};
use dsprep::gpu::ffi::nvrtc::Target;
use dsprep::gpu::ffi::preprocess::{launch_preprocess, DescriptorStaging, PreprocessParams};
use dsprep::gpu::kernels::{self, Kernels};
use dsprep::image::jpeg_header::parse_jpeg_header_until_scan;
use dsprep::shard::{example::Example, index, tfrecord};
use dsprep::throughput::decoders::{
    self, cpu_decode_rgb8, CudaDecoder, Decoder, HwDecoder, Job, JobResult,
};
use dsprep::throughput::frame::frame_of;
use dsprep::throughput::preprocess::{
    describe, preprocess_image, ImageDesc, Normalize, FLAG_EMPTY,
};
use dsprep::throughput::{
    self, DType, DecoderSet, GpuTuning, PipelineConfig, ResizeMode, RunResult, Stop,
};
use std::path::{Path, PathBuf};

/// Some(reason) when the GPU tests cannot run here.
fn no_gpu() -> Option<String> {
    let p = probe(0);
    if p.missing.is_empty() {
        None
    } else {
        Some(p.missing.join("; "))
    }
}

macro_rules! need_gpu {
    () => {
        if let Some(why) = no_gpu() {
            println!("skipped: no GPU ({why})");
            return;
        }
    };
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn jpeg_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jpg" || x == "jpeg") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn kernels_compile_with_nvrtc() {
    match cuda::nvrtc_present() {
        Err(e) => println!("skipped: no NVRTC ({e})"),
        Ok(path) => {
            for t in [
                Target::Cubin { major: 9, minor: 0 },
                Target::Cubin { major: 8, minor: 0 },
                Target::Ptx { major: 7, minor: 5 },
            ] {
                let names = kernels::compile_all(t).unwrap_or_else(|e| panic!("{t:?}: {e}"));
                assert_eq!(names.len(), kernels::SOURCES.len());
            }
            println!(
                "compiled {} kernel file(s) with NVRTC {:?} ({path:?})",
                kernels::SOURCES.len(),
                dsprep::gpu::ffi::nvrtc::version().ok()
            );
        }
    }
}

/// Decodes `data` with `dec` into device memory; Ok(None) when the decoder declines.
fn gpu_decode(
    gpu: &Gpu,
    dec: &mut dyn Decoder,
    data: &[u8],
    w: u32,
    h: u32,
) -> Option<Result<Vec<u8>, String>> {
    let n = (3 * w * h) as usize;
    let buf = DeviceBuffer::alloc(&gpu.ctx, n + 256).unwrap();
    let mut staged = PinnedBuffer::alloc(&gpu.ctx, data.len()).unwrap();
    staged.as_mut_slice().unwrap()[..data.len()].copy_from_slice(data);
    let mut results = Vec::new();
    let job = Job {
        data: staged.slice(0..data.len()).unwrap(),
        dst: buf.image(0, w, h).unwrap(),
    };
    dec.decode(std::slice::from_ref(&job), &mut results)
        .unwrap();
    dec.fence(0).unwrap();
    gpu.ctx.synchronize().unwrap();
    match &results[0] {
        JobResult::Retry => None,
        JobResult::Failed(r) => Some(Err(r.clone())),
        JobResult::Done(_) => {
            let mut out = vec![0u8; n];
            buf.copy_to_host(&mut out).unwrap();
            Some(Ok(out))
        }
    }
}

fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        sum += d as u64;
        max = max.max(d);
    }
    (sum as f64 / a.len().max(1) as f64, max)
}

#[test]
fn nvjpeg_matches_cpu_decoder_on_fixtures() {
    need_gpu!();
    let gpu = Gpu::open(0).unwrap();
    let lib = NvJpeg::load().unwrap();
    let flags: u32 = std::env::var("DSPREP_NVJPEG_FLAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(dsprep::gpu::ffi::nvjpeg::NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION);
    let handle = Handle::new(&lib, true, flags).unwrap();
    let (engines, cores) = handle.hardware_info();
    println!(
        "{} nvJPEG {:?} engines {engines}x{cores} flags {flags}",
        gpu.name, lib.version
    );
    let mut hw = (engines > 0)
        .then(|| HwDecoder::new(&gpu, &handle, decoders::new_fences(1).unwrap(), 1).unwrap());
    let mut hy = CudaDecoder::new(
        &gpu,
        &handle,
        BACKEND_HYBRID,
        decoders::new_fences(1).unwrap(),
    )
    .unwrap();
    let mut gh = CudaDecoder::new(
        &gpu,
        &handle,
        BACKEND_GPU_HYBRID,
        decoders::new_fences(1).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    let mut worst: Vec<String> = Vec::new();
    for f in jpeg_files(&fixtures()) {
        let data = std::fs::read(&f).unwrap();
        let Ok((cpu, w, h)) = cpu_decode_rgb8(&data) else {
            continue;
        };
        let Ok(info) = parse_jpeg_header_until_scan(&data) else {
            continue;
        };
        if (info.width, info.height) != (w, h) {
            continue;
        }
        let name = f.strip_prefix(fixtures()).unwrap().display().to_string();
        // Damaged files decode to different garbage in every decoder; Adobe-RGB (transform 0)
        // is a known nvJPEG limitation (it applies YCbCr->RGB anyway), printed, not asserted.
        let damaged =
            name.contains("corrupt") || name.contains("truncated") || name.contains("coco-bad");
        let known = name.contains("rgb_adobe");
        let cmyk = info.components.len() == 4;
        let mut lanes: Vec<(&str, &mut dyn Decoder)> =
            vec![("cuda-hybrid", &mut hy), ("cuda-gpu-hybrid", &mut gh)];
        if let Some(h) = hw.as_mut() {
            lanes.insert(0, ("hardware", h));
        }
        for (lane, dec) in lanes {
            match gpu_decode(&gpu, dec, &data, w, h) {
                None => println!("  {name:40} {lane:16} declined (not for this decoder)"),
                Some(Err(e)) => println!("  {name:40} {lane:16} failed: {e}"),
                Some(Ok(px)) => {
                    let (mean, max) = diff(&px, &cpu);
                    println!("  {name:40} {lane:16} {w}x{h} mean |d| {mean:.3} max {max}");
                    if !cmyk && !damaged && !known && (mean > 1.0 || max > 8) {
                        worst.push(format!("{name} {lane}: mean {mean:.3} max {max}"));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} decodes compared");
    assert!(
        worst.is_empty(),
        "nvJPEG differs from the CPU decoder: {worst:?}"
    );
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[test]
fn kernel_matches_cpu_reference_on_random_sizes() {
    need_gpu!();
    let gpu = Gpu::open(0).unwrap();
    let k = Kernels::load(&gpu).unwrap();
    let stream = gpu.new_stream().unwrap();
    let mut rng = Lcg(0x5eed ^ std::process::id() as u64);
    for round in 0..12 {
        let side = rng.range(8, 320);
        let batch = rng.range(1, 6) as usize;
        let dtype = if round % 3 == 2 {
            DType::Fp16
        } else {
            DType::Fp32
        };
        let mode = if round % 2 == 0 {
            ResizeMode::Stretch
        } else {
            ResizeMode::Letterbox
        };
        let norm = Normalize::imagenet(round % 4 == 1);
        let mut arena_host = Vec::new();
        let mut descs = Vec::new();
        let mut images = Vec::new();
        for i in 0..batch {
            let (w, h) = (rng.range(1, 1300), rng.range(1, 900));
            let px: Vec<u8> = (0..3 * w * h).map(|_| rng.next() as u8).collect();
            let off = arena_host.len() as u64;
            arena_host.extend_from_slice(&px);
            arena_host.resize(arena_host.len().div_ceil(256) * 256, 0);
            let mut d = describe(off, w, h, side, mode, rng.next().is_multiple_of(2));
            if i == 1 && round % 5 == 0 {
                d.flags |= FLAG_EMPTY;
            }
            descs.push(d);
            images.push(px);
        }
        let arena = DeviceBuffer::alloc(&gpu.ctx, arena_host.len()).unwrap();
        arena.copy_from_host(0, &arena_host).unwrap();
        let mut staging = DescriptorStaging::alloc(&gpu.ctx, batch).unwrap();
        staging.upload(&descs, &stream).unwrap();
        let per = 3 * (side * side) as usize;
        let eb = if dtype == DType::Fp32 { 4 } else { 2 };
        let out = DeviceBuffer::alloc(&gpu.ctx, batch * per * eb).unwrap();
        out.fill_async(0xFF, &stream).unwrap(); // NaN poison: unwritten elements fail
        let f = if dtype == DType::Fp32 {
            &k.preprocess_f32
        } else {
            &k.preprocess_f16
        };
        launch_preprocess(
            f,
            &stream,
            &arena,
            &staging,
            &out,
            &PreprocessParams {
                side,
                mean: norm.mean,
                inv_std: norm.inv_std,
                pad: norm.pad,
                bgr: norm.bgr,
            },
        )
        .unwrap();
        stream.synchronize().unwrap();
        let mut raw = vec![0u8; batch * per * eb];
        out.copy_to_host(&mut raw).unwrap();
        let mut max_err = 0f32;
        for (i, (d, px)) in descs.iter().zip(&images).enumerate() {
            let mut want = vec![0f32; per];
            let local = ImageDesc {
                src_offset: 0,
                ..*d
            };
            preprocess_image(px, &local, side, &norm, &mut want).unwrap();
            for (j, wv) in want.iter().enumerate() {
                let at = (i * per + j) * eb;
                let got = if eb == 4 {
                    f32::from_le_bytes(raw[at..at + 4].try_into().unwrap())
                } else {
                    half::f16::from_le_bytes([raw[at], raw[at + 1]]).to_f32()
                };
                assert!(
                    got.is_finite(),
                    "round {round}: element {j} of image {i} not written ({d:?})"
                );
                let err = (got - wv).abs();
                let tol = if eb == 4 {
                    1e-3
                } else {
                    2e-3 + 1e-3 * wv.abs()
                };
                assert!(err <= tol, "round {round} {dtype:?} {mode:?} side {side} image {i} {d:?}: elem {j} got {got} want {wv}");
                max_err = max_err.max(err);
            }
        }
        println!(
            "round {round}: {dtype:?} {mode:?} side {side} batch {batch} max abs err {max_err:.2e}"
        );
    }
}

fn write_shards(
    dir: &Path,
    jpegs: &[Vec<u8>],
    n: usize,
    corrupt_second_record_of_first: bool,
) -> Vec<(PathBuf, u64)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut files: Vec<_> = (0..n)
        .map(|i| {
            let p = dir.join(format!("train-{i:05}-of-{n:05}.tfrecord"));
            (std::fs::File::create(&p).unwrap(), String::new(), 0u64, p)
        })
        .collect();
    for (k, j) in jpegs.iter().enumerate() {
        let mut e = Example::new();
        e.insert_bytes("image/encoded", [j.clone()]);
        e.insert_str("image/format", ["jpeg"]);
        e.insert_int64s("image/id", [k as i64]);
        let f = &mut files[k % n];
        let size = tfrecord::write_record(&mut f.0, &e.to_bytes()).unwrap();
        let mut line = Vec::new();
        index::write_index_line(&mut line, f.2, size).unwrap();
        f.1.push_str(std::str::from_utf8(&line).unwrap());
        f.2 += size;
    }
    let mut bad = Vec::new();
    for (i, (_, idx, _, p)) in files.into_iter().enumerate() {
        std::fs::write(dir.join(format!("train-{i:05}-of-{n:05}.idx")), &idx).unwrap();
        if i == 0 && corrupt_second_record_of_first {
            let off: u64 = idx
                .lines()
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let mut b = std::fs::read(&p).unwrap();
            let at = off as usize + 40;
            b[at] ^= 0x55;
            std::fs::write(&p, b).unwrap();
            bad.push((p, off));
        }
    }
    bad
}

fn small_set() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = jpeg_files(&fixtures().join("coco"))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    for odd in [
        "gray.jpg",
        "progressive.jpg",
        "s444.jpg",
        "s422.jpg",
        "cmyk_adobe.jpg",
        "restart.jpg",
    ] {
        if let Ok(b) = std::fs::read(fixtures().join("odd").join(odd)) {
            v.push(b);
        }
    }
    v.push(b"not a jpeg at all".to_vec());
    v
}

fn config(dir: &Path, stop: Stop, batch: usize) -> PipelineConfig {
    PipelineConfig {
        dir: dir.to_path_buf(),
        shards: dsprep::shard::source::shards_in(dir, None).unwrap(),
        batch,
        side: 64,
        resize: ResizeMode::Letterbox,
        dtype: DType::Fp32,
        bgr: false,
        mean: dsprep::throughput::preprocess::IMAGENET_MEAN,
        std: dsprep::throughput::preprocess::IMAGENET_STD,
        decode_only: false,
        stop,
        warmup_s: 0.0,
        interval_s: 0.1,
        readers: 2,
        cpu_threads: 2,
        seed: 0,
        gpu: GpuTuning {
            ordinal: 0,
            decoders: DecoderSet::Both,
            hw_workers: 1,
            hw_chunk: 3,
            cuda_workers: 2,
            cuda_backend: 1,
            slots: 3,
        },
    }
}

fn check_run(r: &RunResult, expected_good: u64, epochs: u64, bad: &[(PathBuf, u64)]) {
    assert_eq!(r.images + r.undecodable, expected_good * epochs, "{r:?}");
    assert_eq!(r.by_hardware + r.by_cuda + r.by_cpu, r.images, "{r:?}");
    for (p, off) in bad {
        assert!(
            r.bad_records
                .iter()
                .any(|b| &b.shard == p && b.offset == *off && b.reason.contains("CRC")),
            "corrupt record {p:?}@{off} not reported: {:?}",
            r.bad_records
        );
    }
    assert!(
        r.bad_records
            .iter()
            .any(|b| b.reason.contains("not a JPEG")),
        "{:?}",
        r.bad_records
    );
}

#[test]
fn cpu_pipeline_reads_shards_and_reports_bad_records() {
    let d = tempfile::tempdir().unwrap();
    let set = small_set();
    let bad = write_shards(d.path(), &set, 3, true);
    let r = throughput::cpu::run(&config(d.path(), Stop::Epochs(2), 4), &mut |_| {}).unwrap();
    // all but the text record and the corrupted record reach the decoder
    let good = set.len() as u64 - 2;
    assert_eq!(r.images + r.undecodable, good * 2 + 2, "{r:?}"); // "not a JPEG" fails in decode on CPU
    assert!(
        r.bad_records
            .iter()
            .any(|b| b.shard == bad[0].0 && b.offset == bad[0].1),
        "{:?}",
        r.bad_records
    );
}

#[test]
fn gpu_pipeline_end_to_end_on_small_shards() {
    need_gpu!();
    let d = tempfile::tempdir().unwrap();
    let set = small_set();
    let bad = write_shards(d.path(), &set, 3, true);
    // Records whose header parses, minus the one corrupted on disk (record 1 of shard 0 = set[3]).
    let good = set
        .iter()
        .enumerate()
        .filter(|(k, j)| *k != 3 && frame_of(j).is_ok())
        .count() as u64;
    for decoders in [
        DecoderSet::Both,
        DecoderSet::HardwareOnly,
        DecoderSet::CudaOnly,
    ] {
        let mut cfg = config(d.path(), Stop::Epochs(3), 4);
        cfg.gpu.decoders = decoders;
        let r = throughput::gpu::run(&cfg, &mut |_| {}).unwrap();
        println!(
            "{decoders:?}: {} images, hw {} cuda {} cpu {} undecodable {} bad {:?}",
            r.images,
            r.by_hardware,
            r.by_cuda,
            r.by_cpu,
            r.undecodable,
            r.bad_records.iter().map(|b| &b.reason).collect::<Vec<_>>()
        );
        assert_eq!(r.images + r.undecodable, good * 3, "{r:?}");
        assert_eq!(r.by_hardware + r.by_cuda + r.by_cpu, r.images, "{r:?}");
        check_run(&r, good, 3, &bad);
        if decoders == DecoderSet::CudaOnly {
            assert_eq!(r.by_hardware, 0);
        }
    }
}

/// GPUs the driver shows (ordinals 0.. that probe cleanly; nvJPEG/NVRTC missing counts as 0).
fn gpu_count() -> u32 {
    (0..64).take_while(|&g| probe(g).missing.is_empty()).count() as u32
}

/// `verify-throughput --gpus 0,1` through the real command: one pipeline per GPU on its
/// round-robin half of the shards, every record seen once per epoch across the GPUs, the
/// per-GPU rows in the JSON adding up to the totals; and an ordinal past the last GPU refused
/// with a message naming it and the count.
#[test]
fn two_gpus_split_the_shards_and_add_up() {
    let n = gpu_count();
    if n < 2 {
        println!("skipped: needs 2 GPUs (found {n})");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let set = small_set();
    let bad = write_shards(d.path(), &set, 4, true);
    let good = set
        .iter()
        .enumerate()
        .filter(|(k, j)| *k != 4 && frame_of(j).is_ok())
        .count() as u64;
    let json = d.path().join("vt.json");
    let parse = |extra: &[&str]| {
        let mut v = vec![
            "dsprep",
            "verify-throughput",
            d.path().to_str().unwrap(),
            "-q",
            "--device",
            "gpu",
            "--batch",
            "4",
            "--size",
            "64",
            "--epochs",
            "3",
        ];
        v.extend_from_slice(extra);
        match <dsprep::cli::Cli as clap::Parser>::try_parse_from(v)
            .unwrap()
            .command
        {
            dsprep::cli::Command::VerifyThroughput(a) => a,
            _ => unreachable!(),
        }
    };
    let a = parse(&["--gpus", "0,1", "--json", json.to_str().unwrap()]);
    // Bad records exist, so the exit code is "problems" (1), not a failure.
    dsprep::cmd::verify_throughput::run(&a).unwrap();
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&j["per_gpu"]).unwrap());
    let rows = j["per_gpu"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["ordinal"], 0);
    assert_eq!(rows[1]["ordinal"], 1);
    assert_eq!(rows[0]["shards"], 2);
    assert_eq!(rows[1]["shards"], 2);
    let imgs: Vec<u64> = rows.iter().map(|r| r["images"].as_u64().unwrap()).collect();
    assert!(imgs.iter().all(|&i| i > 0), "{imgs:?}");
    assert_eq!(j["images"].as_u64().unwrap(), imgs.iter().sum::<u64>());
    let undecodable = j["decoders"]["undecodable"].as_u64().unwrap();
    assert_eq!(imgs.iter().sum::<u64>() + undecodable, good * 3, "{j}");
    let ips: f64 = rows
        .iter()
        .map(|r| r["images_per_s"].as_f64().unwrap())
        .sum();
    assert!((j["images_per_s"].as_f64().unwrap() - ips).abs() < 1e-6);
    assert!(j["bad_records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["shard"].as_str() == bad[0].0.to_str() && b["offset"] == bad[0].1));

    let missing = n.to_string();
    let a = parse(&["--gpus", &format!("0,{missing}")]);
    let e = format!("{:#}", dsprep::cmd::verify_throughput::run(&a).unwrap_err());
    assert!(e.contains(&format!("no CUDA device {n}")), "{e}");
    assert!(e.contains(&format!("reports {n} device(s)")), "{e}");
}

/// Device-benchmark helper, not a test: writes `DSPREP_SHARDS_N` (16) TFRecord shards + .idx
/// from the JPEGs in `DSPREP_SHARDS_SRC` into `DSPREP_SHARDS_OUT` with the shard layer (used when
/// `dsprep convert` is not wired yet). `cargo test --test gpu -- --ignored make_shards`.
#[test]
#[ignore]
fn make_shards() {
    let (Some(src), Some(out)) = (
        std::env::var_os("DSPREP_SHARDS_SRC"),
        std::env::var_os("DSPREP_SHARDS_OUT"),
    ) else {
        println!("skipped: set DSPREP_SHARDS_SRC and DSPREP_SHARDS_OUT");
        return;
    };
    let n: usize = std::env::var("DSPREP_SHARDS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let files = jpeg_files(Path::new(&src));
    let jpegs: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    write_shards(Path::new(&out), &jpegs, n, false);
    println!("wrote {} records into {n} shards in {:?}", jpegs.len(), out);
}

/// Device-benchmark helper, not a test: runs verify-throughput (plan → pipeline → report) with the
/// arguments in `DSPREP_VT_ARGS` (whitespace-separated, after `verify-throughput`), so the
/// benchmark does not depend on the command being wired. `-- --ignored vt_cli`.
#[test]
#[ignore]
fn vt_cli() {
    use clap::Parser;
    let Ok(args) = std::env::var("DSPREP_VT_ARGS") else {
        println!("skipped: set DSPREP_VT_ARGS");
        return;
    };
    let mut v = vec!["dsprep".to_string(), "verify-throughput".to_string()];
    v.extend(args.split_whitespace().map(String::from));
    let dsprep::cli::Command::VerifyThroughput(a) =
        dsprep::cli::Cli::try_parse_from(v).unwrap().command
    else {
        unreachable!()
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let plan = dsprep::plan::throughput::plan_throughput(&a, cores).unwrap();
    let device = if a.device == dsprep::cli::DeviceKind::Cpu {
        throughput::Device::Cpu
    } else {
        throughput::Device::Gpu
    };
    let r = throughput::run(&plan.job, device, &mut |_| {});
    let r = r.unwrap_or_else(|e| panic!("pipeline failed: {e}"));
    let rep =
        dsprep::report::throughput::ThroughputReport::of(&plan.job, &r, plan.target_ips, None);
    print!("{}", rep.render_table());
    if let Some(j) = &plan.json {
        std::fs::write(j, serde_json::to_string_pretty(&rep).unwrap()).unwrap();
    }
}
