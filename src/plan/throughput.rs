//! `verify-throughput` arguments → a validated [`PipelineConfig`] plus the device choice.
//!
//! Tuning knobs that have no flag yet are read from the environment here, once, so the pipeline
//! never looks at it (see bench/gpu/README.md): `DSPREP_HW_WORKERS`, `DSPREP_HW_CHUNK`, `DSPREP_CUDA_WORKERS`, `DSPREP_CUDA_BACKEND`
//! (hybrid|gpu_hybrid), `DSPREP_SLOTS`, `DSPREP_WARMUP_S`.

use crate::cli::{DeviceKind, VerifyThroughputArgs};
use crate::pipeline::{DecoderSet, GpuTuning, PipelineConfig, Stop};
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
    pub config: PipelineConfig,
    pub device: DeviceKind,
    pub target_ips: Option<f64>,
    pub json: Option<PathBuf>,
    pub quiet: bool,
    /// GPU ordinals, distinct, in the order given (`[0]` when `--gpus` was not given).
    /// `config` is the run on the first one; [`per_gpu_configs`] makes one per ordinal.
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
    // Each GPU's pipeline gets an equal share of the cores (its readers, its CUDA decoder
    // threads): the hybrid CUDA decoder does Huffman on the CPU, so two pipelines sized for the
    // whole machine would just fight over it. `--readers` is the total over all GPUs.
    // With one GPU this is exactly the single-GPU sizing.
    let cores = (cores.max(1) / gpus.len()).max(1);
    let readers = a
        .readers
        .map(|r| (r / gpus.len()).max(1))
        .unwrap_or(if cores >= 8 { 2 } else { 1 });
    let decoders = match a.decoders {
        crate::cli::DecoderChoice::Both => DecoderSet::Both,
        crate::cli::DecoderChoice::Hw => DecoderSet::HardwareOnly,
        crate::cli::DecoderChoice::Cuda => DecoderSet::CudaOnly,
    };
    let cuda_backend = match std::env::var("DSPREP_CUDA_BACKEND").as_deref() {
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
    // One thread drives the engines: with two threads (two nvJPEG states, one handle) decoding
    // concurrently, nvJPEG 13.0.1's hardware path stalled for good on an H100
    // (bench/BENCHMARKS.md, verify-throughput, 2026-11-27), and one thread already keeps all 7 engines busy.
    let hw_workers = env_usize("DSPREP_HW_WORKERS", 1, 1)?;
    if hw_workers > 1 && std::env::var_os("DSPREP_ALLOW_HW_WORKERS").is_none() {
        return Err(ThroughputPlanError::Env {
            var: "DSPREP_HW_WORKERS",
            value: hw_workers.to_string(),
            why: "more than one hardware-decoder thread deadlocked nvJPEG 13.0 on an H100; set DSPREP_ALLOW_HW_WORKERS=1 to try anyway",
        });
    }
    // Leave a core each for the readers, the assembler and the meter; the rest decode.
    let cuda_default = cores.saturating_sub(readers + hw_workers + 2).clamp(1, 48);
    let cuda_workers = env_usize("DSPREP_CUDA_WORKERS", cuda_default, 1)?;
    let warmup_s = match std::env::var("DSPREP_WARMUP_S") {
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
        Err(_) => 2.0,
    };
    Ok(ThroughputPlan {
        config: PipelineConfig {
            dir: a.dir.clone(),
            shards: Vec::new(),
            batch: a.batch as usize,
            side: a.size,
            resize: a.resize,
            dtype: a.dtype,
            bgr: a.bgr,
            decode_only: a.decode_only,
            stop,
            warmup_s,
            interval_s: 0.5,
            readers,
            cpu_threads: cores.saturating_sub(readers).max(1),
            seed: 0,
            gpu: GpuTuning {
                ordinal: gpus.first().copied().unwrap_or(0),
                decoders,
                hw_workers,
                hw_chunk: env_usize("DSPREP_HW_CHUNK", 128, 1)?,
                cuda_workers,
                cuda_backend,
                slots: env_usize("DSPREP_SLOTS", 4, 3)?,
            },
        },
        device: a.device,
        target_ips: a.target_ips,
        json: a.json.clone(),
        quiet: a.quiet,
        gpus,
    })
}

/// Deterministic shard → GPU assignment: shard `i` (in the sorted order of
/// `source::discover`) goes to GPU `i mod n_gpus`, so the split is the same on every run and
/// the GPUs' shares differ by at most one shard. Refuses when some GPU would get nothing
/// (splitting inside a shard would need record ranges the readers do not support).
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

/// One pipeline configuration per GPU of the plan: same work, the GPU's ordinal, its share of
/// the shards (see [`partition_shards`]); readers and decoder threads were already sized per
/// GPU by [`plan_throughput`]. `shards` are all shards of `plan.config.dir`, sorted.
pub fn per_gpu_configs(
    plan: &ThroughputPlan,
    shards: &[PathBuf],
) -> Result<Vec<PipelineConfig>, ThroughputPlanError> {
    let parts = partition_shards(shards, plan.gpus.len(), &plan.config.dir)?;
    Ok(plan
        .gpus
        .iter()
        .zip(parts)
        .map(|(&g, part)| {
            let mut c = plan.config.clone();
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
        let d = tempfile::tempdir().unwrap();
        let p = plan_throughput(&args(&[], d.path()), 16).unwrap();
        assert_eq!(p.config.batch, 256);
        assert_eq!(p.config.side, 640);
        assert_eq!(p.config.stop, Stop::Seconds(10.0));
        assert_eq!(p.config.readers, 2);
        assert_eq!(p.config.gpu.cuda_workers, 11);
        assert!(p.config.gpu.slots >= 3);
    }

    #[test]
    fn rejects_bad_values_with_the_flag_name() {
        let d = tempfile::tempdir().unwrap();
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
        let d = tempfile::tempdir().unwrap();
        let p = plan_throughput(&args(&["--epochs", "2"], d.path()), 2).unwrap();
        assert_eq!(p.config.readers, 1);
        assert_eq!(p.config.gpu.cuda_workers, 1);
        assert_eq!(p.config.cpu_threads, 1);
        assert_eq!(p.config.stop, Stop::Epochs(2));
    }

    #[test]
    fn single_gpu_default_is_gpu_zero_with_whole_machine() {
        let d = tempfile::tempdir().unwrap();
        let p = plan_throughput(&args(&["--gpus", "0"], d.path()), 16).unwrap();
        assert_eq!(p.gpus, vec![0]);
        assert_eq!(p.config.readers, 2);
        assert_eq!(p.config.gpu.cuda_workers, 11);
        let p = plan_throughput(&args(&[], d.path()), 16).unwrap();
        assert_eq!(p.gpus, vec![0]);
        assert_eq!(p.config.gpu.ordinal, 0);
    }

    #[test]
    fn several_gpus_share_the_cores() {
        let d = tempfile::tempdir().unwrap();
        let p = plan_throughput(&args(&["--gpus", "1,0"], d.path()), 32).unwrap();
        assert_eq!(p.gpus, vec![1, 0]);
        assert_eq!(p.config.gpu.ordinal, 1);
        // 16 cores per GPU: the same sizing one GPU gets on a 16-core machine.
        assert_eq!(p.config.readers, 2);
        assert_eq!(p.config.gpu.cuda_workers, 11);
        let p = plan_throughput(&args(&["--gpus", "0,1", "--readers", "6"], d.path()), 32).unwrap();
        assert_eq!(p.config.readers, 3);
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
        let d = tempfile::tempdir().unwrap();
        let p = plan_throughput(&args(&["--gpus", "2,3"], d.path()), 32).unwrap();
        let shards: Vec<PathBuf> = (0..4).map(|i| PathBuf::from(format!("s{i}"))).collect();
        let c = per_gpu_configs(&p, &shards).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].gpu.ordinal, 2);
        assert_eq!(c[1].gpu.ordinal, 3);
        assert_eq!(c[0].shards, vec![PathBuf::from("s0"), PathBuf::from("s2")]);
        assert_eq!(c[1].shards, vec![PathBuf::from("s1"), PathBuf::from("s3")]);
        assert!(per_gpu_configs(&p, &shards[..1]).is_err());
    }
}
