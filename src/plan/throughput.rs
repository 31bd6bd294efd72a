//! `verify-throughput` arguments → a complete [`Job`]: the throughput layer's own config types
//! (the clap enums stop here), the shard list resolved once (manifest-listed, else found by
//! looking), and with several GPUs one config per GPU with its share of the shards.
//!
//! Tuning knobs that have no flag yet are read from the environment here, once, so the pipeline
//! never looks at it (see bench/gpu/README.md): `DSPREP_HW_WORKERS`, `DSPREP_HW_CHUNK`,
//! `DSPREP_CUDA_WORKERS`, `DSPREP_CUDA_BACKEND` (hybrid|gpu_hybrid), `DSPREP_SLOTS`,
//! `DSPREP_WARMUP_S`.

use crate::cli::{DecoderChoice, DeviceKind, VerifyThroughputArgs};
use crate::shard::format::ShardRef;
use crate::throughput::config::{self as tc, default_cuda_workers, default_readers};
use crate::throughput::{DecoderSet, DeviceChoice, Job, PipelineConfig, Stop};
use std::path::PathBuf;

/// What is wrong with a verify-throughput invocation.
#[derive(Debug, thiserror::Error)]
pub enum ThroughputPlanError {
    #[error("{0}: not a folder (give the output folder of `dsprep convert`)")]
    NotADir(PathBuf),
    #[error("--batch must be between 1 and 65536 (got {0})")]
    Batch(u32),
    #[error("--size must be between 8 and 8192 pixels (got {0})")]
    Size(u32),
    #[error("--seconds must be a positive number (got {0})")]
    Seconds(f64),
    #[error("--epochs must be at least 1")]
    Epochs,
    #[error("--target-ips must be a positive number (got {0})")]
    Target(f64),
    #[error("--readers must be at least 1")]
    Readers,
    #[error(
        "{dir}: no .tfrecord or .lmdb shards found (is this a `dsprep convert` output folder?)"
    )]
    NoShards { dir: PathBuf },
    #[error("{dir}: cannot list the shards: {source}")]
    Shards {
        dir: PathBuf,
        #[source]
        source: crate::shard::ShardError,
    },
    #[error("--gpus: GPU {0} is listed twice (give each ordinal once, e.g. --gpus 0,1)")]
    DuplicateGpu(u32),
    #[error("--gpus: {gpus} GPUs but only {shards} shard(s) in {dir}; each GPU needs at least one shard (use fewer GPUs, or `dsprep convert --shards N` with N >= {gpus})")]
    TooFewShards {
        dir: PathBuf,
        shards: usize,
        gpus: usize,
    },
    #[error("environment variable {var}={value:?}: {why}")]
    Env {
        var: &'static str,
        value: String,
        why: &'static str,
    },
}

/// A validated verify-throughput run.
#[derive(Debug, Clone)]
pub struct ThroughputPlan {
    /// What runs: the device choice, the whole-folder config (on the first GPU), and with
    /// several GPUs one config per GPU.
    pub job: Job,
    pub target_ips: Option<f64>,
    pub json: Option<PathBuf>,
    pub quiet: bool,
    /// GPU ordinals, distinct, in the order given (`[0]` when `--gpus` was not given).
    pub gpus: Vec<u32>,
}

fn env_usize(var: &'static str, default: usize, min: usize) -> Result<usize, ThroughputPlanError> {
    match std::env::var(var) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ThroughputPlanError::Env {
                var,
                value: v,
                why: "expected a whole number in range",
            }),
        },
        Err(_) => Ok(default),
    }
}

/// Builds the plan; `cores` is the machine's core count (injected for tests).
pub fn plan_throughput(
    a: &VerifyThroughputArgs,
    cores: usize,
) -> Result<ThroughputPlan, ThroughputPlanError> {
    if !a.dir.is_dir() {
        return Err(ThroughputPlanError::NotADir(a.dir.clone()));
    }
    if a.batch == 0 || a.batch > 65536 {
        return Err(ThroughputPlanError::Batch(a.batch));
    }
    if !(8..=8192).contains(&a.size) {
        return Err(ThroughputPlanError::Size(a.size));
    }
    let stop = match (a.seconds, a.epochs) {
        (Some(s), _) if !(s.is_finite() && s > 0.0) => return Err(ThroughputPlanError::Seconds(s)),
        (Some(s), _) => Stop::Seconds(s),
        (None, Some(0)) => return Err(ThroughputPlanError::Epochs),
        (None, Some(n)) => Stop::Epochs(n),
        (None, None) => Stop::Seconds(10.0),
    };
    if let Some(t) = a.target_ips {
        if !(t.is_finite() && t > 0.0) {
            return Err(ThroughputPlanError::Target(t));
        }
    }
    if a.readers == Some(0) {
        return Err(ThroughputPlanError::Readers);
    }
    let mut gpus: Vec<u32> = Vec::with_capacity(a.gpus.len().max(1));
    for &g in &a.gpus {
        if gpus.contains(&g) {
            return Err(ThroughputPlanError::DuplicateGpu(g));
        }
        gpus.push(g);
    }
    if gpus.is_empty() {
        gpus.push(0);
    }
    let shards = crate::shard::source::shards_in(&a.dir, a.split.as_deref()).map_err(|source| {
        ThroughputPlanError::Shards {
            dir: a.dir.clone(),
            source,
        }
    })?;
    if shards.is_empty() {
        return Err(ThroughputPlanError::NoShards { dir: a.dir.clone() });
    }
    // Each GPU's pipeline gets an equal share of the cores (its readers, its CUDA decoder
    // threads): the hybrid CUDA decoder does Huffman on the CPU, so two pipelines sized for the
    // whole machine would just fight over it. `--readers` is the total over all GPUs.
    // With one GPU this is exactly the single-GPU sizing.
    let cores = (cores.max(1) / gpus.len()).max(1);
    let mut config = PipelineConfig::with_defaults(a.dir.clone(), shards, cores);
    config.readers = a
        .readers
        .map(|r| (r / gpus.len()).max(1))
        .unwrap_or(default_readers(cores));
    // The CPU pipeline decodes on every core: its readers mostly wait (reading a record costs
    // about 1 % of decoding it), so leaving cores to them only idles those cores.
    config.cpu_threads = cores;
    config.batch = a.batch as usize;
    config.side = a.size;
    config.resize = match a.resize {
        crate::cli::ResizeMode::Stretch => tc::ResizeMode::Stretch,
        crate::cli::ResizeMode::Letterbox => tc::ResizeMode::Letterbox,
    };
    config.dtype = match a.dtype {
        crate::cli::DType::Fp32 => tc::DType::Fp32,
        crate::cli::DType::Fp16 => tc::DType::Fp16,
    };
    config.bgr = a.bgr;
    config.decode_only = a.decode_only;
    config.stop = stop;
    config.warmup_s = match std::env::var("DSPREP_WARMUP_S") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or(ThroughputPlanError::Env {
                var: "DSPREP_WARMUP_S",
                value: v,
                why: "expected seconds >= 0",
            })?,
        Err(_) => config.warmup_s,
    };
    let g = &mut config.gpu;
    g.ordinal = gpus[0];
    g.decoders = match a.decoders {
        DecoderChoice::Both => DecoderSet::Both,
        DecoderChoice::Hw => DecoderSet::HardwareOnly,
        DecoderChoice::Cuda => DecoderSet::CudaOnly,
    };
    g.cuda_backend = match std::env::var("DSPREP_CUDA_BACKEND").as_deref() {
        Err(_) | Ok("hybrid") => 1,
        Ok("gpu_hybrid") => 2,
        Ok(v) => {
            return Err(ThroughputPlanError::Env {
                var: "DSPREP_CUDA_BACKEND",
                value: v.to_string(),
                why: "expected hybrid or gpu_hybrid",
            })
        }
    };
    // One thread drives the engines by default ([`tc::GpuTuning::with_defaults`] says why).
    g.hw_workers = env_usize("DSPREP_HW_WORKERS", g.hw_workers, 1)?;
    if g.hw_workers > 1 && std::env::var_os("DSPREP_ALLOW_HW_WORKERS").is_none() {
        return Err(ThroughputPlanError::Env {
            var: "DSPREP_HW_WORKERS",
            value: g.hw_workers.to_string(),
            why: "more than one hardware-decoder thread deadlocked nvJPEG 13.0 on an H100; set DSPREP_ALLOW_HW_WORKERS=1 to try anyway",
        });
    }
    let cuda_default = default_cuda_workers(cores, config.readers, g.hw_workers);
    g.cuda_workers = env_usize("DSPREP_CUDA_WORKERS", cuda_default, 1)?;
    g.hw_chunk = env_usize("DSPREP_HW_CHUNK", g.hw_chunk, 1)?;
    g.slots = env_usize("DSPREP_SLOTS", g.slots, 3)?;
    let device = match a.device {
        DeviceKind::Auto => DeviceChoice::Auto,
        DeviceKind::Gpu => DeviceChoice::Gpu,
        DeviceKind::Cpu => DeviceChoice::Cpu,
    };
    // Several GPUs only matter when a GPU runs (`--device cpu` measures the CPU over all shards).
    let per_gpu = if gpus.len() > 1 && device != DeviceChoice::Cpu {
        per_gpu_configs(&config, &gpus)?
    } else {
        Vec::new()
    };
    Ok(ThroughputPlan {
        job: Job {
            device,
            config,
            per_gpu,
        },
        target_ips: a.target_ips,
        json: a.json.clone(),
        quiet: a.quiet,
        gpus,
    })
}

/// Deterministic shard → GPU assignment: shard `i` (in the plan's shard order) goes to GPU
/// `i mod n_gpus`, so the split is the same on every run and the GPUs' shares differ by at most
/// one shard. Refuses when some GPU would get nothing (splitting inside a shard would need
/// record ranges the readers do not support).
pub fn partition_shards<T: Clone>(
    shards: &[T],
    n_gpus: usize,
    dir: &std::path::Path,
) -> Result<Vec<Vec<T>>, ThroughputPlanError> {
    let n = n_gpus.max(1);
    if shards.len() < n {
        return Err(ThroughputPlanError::TooFewShards {
            dir: dir.to_path_buf(),
            shards: shards.len(),
            gpus: n,
        });
    }
    let mut parts = vec![Vec::with_capacity(shards.len() / n + 1); n];
    for (i, s) in shards.iter().enumerate() {
        if let Some(p) = parts.get_mut(i % n) {
            p.push(s.clone());
        }
    }
    Ok(parts)
}

/// One pipeline configuration per GPU: the same work, the GPU's ordinal, its share of
/// `base`'s shards (see [`partition_shards`]); readers and decoder threads were already sized
/// per GPU.
pub fn per_gpu_configs(
    base: &PipelineConfig,
    gpus: &[u32],
) -> Result<Vec<PipelineConfig>, ThroughputPlanError> {
    let parts: Vec<Vec<ShardRef>> = partition_shards(&base.shards, gpus.len(), &base.dir)?;
    Ok(gpus
        .iter()
        .zip(parts)
        .map(|(&g, part)| {
            let mut c = base.clone();
            c.gpu.ordinal = g;
            c.shards = part;
            c
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A folder with `n` (empty) TFRecord shards, found by name.
    fn shard_dir(n: usize) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for i in 0..n {
            std::fs::write(d.path().join(format!("s{i}.tfrecord")), b"").unwrap();
        }
        d
    }

    fn args(extra: &[&str], dir: &std::path::Path) -> VerifyThroughputArgs {
        let mut v = vec!["dsprep", "verify-throughput", dir.to_str().unwrap()];
        v.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(v).unwrap().command {
            crate::cli::Command::VerifyThroughput(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_the_benchmark_setup() {
        let d = shard_dir(4);
        let p = plan_throughput(&args(&[], d.path()), 16).unwrap();
        assert_eq!(p.job.config.batch, 256);
        assert_eq!(p.job.config.side, 640);
        assert_eq!(p.job.config.stop, Stop::Seconds(10.0));
        assert_eq!(p.job.config.readers, 2);
        assert_eq!(p.job.config.gpu.cuda_workers, 11);
        assert!(p.job.config.gpu.slots >= 3);
    }

    #[test]
    fn rejects_bad_values_with_the_flag_name() {
        let d = shard_dir(4);
        let e = plan_throughput(&args(&["--batch", "0"], d.path()), 4).unwrap_err();
        assert!(e.to_string().contains("--batch"));
        let e = plan_throughput(&args(&["--seconds=-1"], d.path()), 4).unwrap_err();
        assert!(e.to_string().contains("--seconds"));
        let e = plan_throughput(&args(&["--size", "2"], d.path()), 4).unwrap_err();
        assert!(e.to_string().contains("--size"));
        let e = plan_throughput(&args(&["--target-ips", "0"], d.path()), 4).unwrap_err();
        assert!(e.to_string().contains("--target-ips"));
        let e = plan_throughput(&args(&["--epochs", "0"], d.path()), 4).unwrap_err();
        assert!(e.to_string().contains("--epochs"));
        let missing = d.path().join("nope");
        let e = plan_throughput(&args(&[], &missing), 4).unwrap_err();
        assert!(matches!(e, ThroughputPlanError::NotADir(_)));
    }

    #[test]
    fn small_machines_still_get_one_of_each() {
        let d = shard_dir(4);
        let p = plan_throughput(&args(&["--epochs", "2"], d.path()), 2).unwrap();
        assert_eq!(p.job.config.readers, 1);
        assert_eq!(p.job.config.gpu.cuda_workers, 1);
        assert_eq!(p.job.config.cpu_threads, 2);
        assert_eq!(p.job.config.stop, Stop::Epochs(2));
    }

    #[test]
    fn single_gpu_default_is_gpu_zero_with_whole_machine() {
        let d = shard_dir(4);
        let p = plan_throughput(&args(&["--gpus", "0"], d.path()), 16).unwrap();
        assert_eq!(p.gpus, vec![0]);
        assert_eq!(p.job.config.readers, 2);
        assert_eq!(p.job.config.gpu.cuda_workers, 11);
        let p = plan_throughput(&args(&[], d.path()), 16).unwrap();
        assert_eq!(p.gpus, vec![0]);
        assert_eq!(p.job.config.gpu.ordinal, 0);
    }

    #[test]
    fn several_gpus_share_the_cores() {
        let d = shard_dir(4);
        let p = plan_throughput(&args(&["--gpus", "1,0"], d.path()), 32).unwrap();
        assert_eq!(p.gpus, vec![1, 0]);
        assert_eq!(p.job.config.gpu.ordinal, 1);
        // 16 cores per GPU: the same sizing one GPU gets on a 16-core machine.
        assert_eq!(p.job.config.readers, 2);
        assert_eq!(p.job.config.gpu.cuda_workers, 11);
        let p = plan_throughput(&args(&["--gpus", "0,1", "--readers", "6"], d.path()), 32).unwrap();
        assert_eq!(p.job.config.readers, 3);
        let e = plan_throughput(&args(&["--gpus", "0,1,0"], d.path()), 32).unwrap_err();
        assert!(matches!(e, ThroughputPlanError::DuplicateGpu(0)), "{e}");
        assert!(e.to_string().contains("GPU 0 is listed twice"));
    }

    #[test]
    fn shards_go_round_robin_and_too_few_is_refused() {
        let dir = std::path::Path::new("out");
        let s: Vec<u32> = (0..5).collect();
        let p = partition_shards(&s, 2, dir).unwrap();
        assert_eq!(p, vec![vec![0, 2, 4], vec![1, 3]]);
        let p = partition_shards(&s, 1, dir).unwrap();
        assert_eq!(p, vec![s.clone()]);
        let p = partition_shards(&s, 5, dir).unwrap();
        assert!(p.iter().all(|x| x.len() == 1));
        let e = partition_shards(&s, 6, dir).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("6 GPUs but only 5 shard(s) in out"), "{m}");
        assert!(m.contains("--shards"), "{m}");
    }

    #[test]
    fn per_gpu_configs_set_ordinal_and_shards() {
        let d = shard_dir(4);
        let p = plan_throughput(&args(&["--gpus", "2,3"], d.path()), 32).unwrap();
        let c = &p.job.per_gpu;
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].gpu.ordinal, 2);
        assert_eq!(c[1].gpu.ordinal, 3);
        let names = |c: &PipelineConfig| c.shards.iter().map(|s| s.name()).collect::<Vec<_>>();
        assert_eq!(names(&c[0]), ["s0.tfrecord", "s2.tfrecord"]);
        assert_eq!(names(&c[1]), ["s1.tfrecord", "s3.tfrecord"]);
        assert_eq!(p.job.ordinals(), [2, 3]);
        assert!(per_gpu_configs(&p.job.config, &[0, 1, 2, 3, 4]).is_err());
        // One GPU, or the CPU: no per-GPU split, and one shard is enough.
        let one = shard_dir(1);
        let p = plan_throughput(&args(&["--gpus", "0,1", "--device", "cpu"], one.path()), 8);
        assert!(p.unwrap().job.per_gpu.is_empty());
        let e = plan_throughput(&args(&["--gpus", "0,1"], one.path()), 8).unwrap_err();
        assert!(e.to_string().contains("2 GPUs but only 1 shard(s)"), "{e}");
        let p = plan_throughput(&args(&[], one.path()), 8).unwrap();
        assert!(p.job.per_gpu.is_empty());
        // --split keeps the shards named `<split>-*` of a folder without a manifest.
        let d = tempfile::tempdir().unwrap();
        for n in [
            "train-00000-of-00001.tfrecord",
            "val-00000-of-00001.tfrecord",
        ] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        let p = plan_throughput(&args(&["--split", "val"], d.path()), 8).unwrap();
        let names: Vec<String> = p.job.config.shards.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["val-00000-of-00001.tfrecord"]);
        assert_eq!(p.job.ordinals(), [0]);
    }

    #[test]
    fn the_plan_lists_the_shards_once_and_maps_every_flag() {
        let empty = tempfile::tempdir().unwrap();
        let e = plan_throughput(&args(&[], empty.path()), 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no .tfrecord or .lmdb shards found (is this a `dsprep convert` output folder?)",
                empty.path().display()
            )
        );
        let d = shard_dir(3);
        let flags = [
            "--resize",
            "letterbox",
            "--dtype",
            "fp16",
            "--decoders",
            "hw",
            "--device",
            "gpu",
            "--bgr",
            "--decode-only",
            "--batch",
            "8",
            "--size",
            "64",
        ];
        let p = plan_throughput(&args(&flags, d.path()), 4).unwrap();
        let c = &p.job.config;
        assert_eq!(c.shards.len(), 3);
        assert_eq!(c.shards[0].path, d.path().join("s0.tfrecord"));
        assert_eq!(c.resize, tc::ResizeMode::Letterbox);
        assert_eq!(c.dtype, tc::DType::Fp16);
        assert_eq!(c.gpu.decoders, DecoderSet::HardwareOnly);
        assert_eq!(p.job.device, DeviceChoice::Gpu);
        assert!(c.bgr && c.decode_only);
        assert_eq!((c.batch, c.side), (8, 64));
    }
}
