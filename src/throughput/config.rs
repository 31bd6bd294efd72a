//! The pipeline's own configuration types. They carry no CLI types: `plan::throughput` maps the
//! clap arguments onto them once, and any other driver (the Python loader) builds them directly,
//! starting from [`PipelineConfig::with_defaults`].
//!
//! A config is complete: it holds the resolved shard list (never looked up again below), the
//! output tensor's shape and type, when to stop and how to size the threads. The serialized
//! names (`stretch`, `fp32`, `hardware_only`, ...) are what the JSON report shows.

use crate::shard::format::ShardRef;
use serde::Serialize;
use std::path::PathBuf;

/// How an image is fitted into the `side`×`side` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Stretch to the square (aspect ratio not kept).
    Stretch,
    /// Keep the aspect ratio and pad with 114 (YOLO's letterbox).
    Letterbox,
}

/// Element type of the batch tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Fp32,
    Fp16,
}

impl DType {
    /// Bytes of one element.
    pub fn bytes(self) -> usize {
        match self {
            DType::Fp32 => 4,
            DType::Fp16 => 2,
        }
    }
}

/// Which GPU decoders take part (for measuring each alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderSet {
    Both,
    HardwareOnly,
    CudaOnly,
}

/// Where the caller wants the pipeline to run; [`super::device::select_device`] turns it into a
/// [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The GPU when driver, nvJPEG and NVRTC are found, else the CPU (saying what was missing).
    Auto,
    Gpu,
    Cpu,
}

/// Where a pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Gpu,
}

/// When the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Measure this many seconds after the warm-up.
    Seconds(f64),
    /// This many passes over the data (warm-up included).
    Epochs(u32),
}

impl Stop {
    /// End of the time budget in seconds from the start (warm-up included), for a timed run.
    pub fn budget_s(self, warmup_s: f64) -> Option<f64> {
        match self {
            Stop::Seconds(s) => Some(warmup_s + s),
            Stop::Epochs(_) => None,
        }
    }
}

/// GPU tuning (defaults from [`GpuTuning::with_defaults`]; the CLI lets environment variables
/// override them for benchmarking, listed in bench/gpu/README.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuTuning {
    pub ordinal: u32,
    pub decoders: DecoderSet,
    /// Threads driving the hardware engines (each with its own nvJPEG state and stream).
    pub hw_workers: usize,
    /// Images per hardware decode call.
    pub hw_chunk: usize,
    /// CUDA/hybrid decoder threads.
    pub cuda_workers: usize,
    /// nvJPEG backend of the CUDA decoders: 1 = HYBRID (CPU Huffman), 2 = GPU_HYBRID.
    pub cuda_backend: i32,
    /// Batch slots in flight (≥ 3: one filling, one decoding, one in the kernel).
    pub slots: usize,
}

/// Reader threads for `cores` cores: two keep a fast GPU fed, one is enough on a small machine.
pub fn default_readers(cores: usize) -> usize {
    if cores >= 8 {
        2
    } else {
        1
    }
}

/// CUDA decoder threads for `cores` cores: a core each is left for the readers, the hardware
/// decoder threads, the assembler and the meter; the rest decode (the hybrid CUDA decoder does
/// its Huffman stage on the CPU).
pub fn default_cuda_workers(cores: usize, readers: usize, hw_workers: usize) -> usize {
    cores.saturating_sub(readers + hw_workers + 2).clamp(1, 48)
}

impl GpuTuning {
    /// The defaults for GPU `ordinal` with `cores` cores and `readers` reader threads. One
    /// thread drives the hardware engines: two (two nvJPEG states, one handle) stalled
    /// nvJPEG 13.0.1's hardware path for good on an H100 (bench/BENCHMARKS.md, 2026-11-27), and
    /// one already keeps all 7 engines busy.
    pub fn with_defaults(ordinal: u32, cores: usize, readers: usize) -> Self {
        let hw_workers = 1;
        GpuTuning {
            ordinal,
            decoders: DecoderSet::Both,
            hw_workers,
            hw_chunk: 128,
            cuda_workers: default_cuda_workers(cores, readers, hw_workers),
            cuda_backend: 1,
            slots: 4,
        }
    }
}

/// One pipeline run: which shards, what tensor, when to stop, how many threads.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The folder the shards came from; only shown in reports.
    pub dir: PathBuf,
    /// The shards, in reading order. The runners read exactly these (an empty list is a run
    /// that ends at once with nothing measured; the CLI's plan refuses it earlier).
    pub shards: Vec<ShardRef>,
    /// Images per batch tensor.
    pub batch: usize,
    /// Output side length (`side`×`side`).
    pub side: u32,
    pub resize: ResizeMode,
    pub dtype: DType,
    /// Channel order BGR instead of RGB.
    pub bgr: bool,
    /// Per-channel mean and standard deviation (0..255 units, RGB order, applied before a BGR
    /// swap): out = (v − mean) / std.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Decode only: no resize/normalise (measures the decoders alone).
    pub decode_only: bool,
    pub stop: Stop,
    /// Seconds at the start that the median leaves out.
    pub warmup_s: f64,
    /// Length of one meter interval.
    pub interval_s: f64,
    pub readers: usize,
    /// Decode threads of the CPU pipeline (default: one per core; the readers mostly wait).
    pub cpu_threads: usize,
    /// Seed of the random horizontal flips ([`super::schedule::flip_for`]).
    pub seed: u64,
    pub gpu: GpuTuning,
}

impl PipelineConfig {
    /// The normalisation the kernel (and its CPU reference) applies.
    pub fn normalize(&self) -> crate::throughput::preprocess::Normalize {
        crate::throughput::preprocess::Normalize::new(self.mean, self.std, self.bgr)
    }

    /// `verify-throughput`'s defaults (batch 256 of 640×640 fp32, stretch, 10 s after a 2 s
    /// warm-up, threads sized for `cores` cores) over `shards`.
    pub fn with_defaults(dir: PathBuf, shards: Vec<ShardRef>, cores: usize) -> Self {
        let cores = cores.max(1);
        let readers = default_readers(cores);
        PipelineConfig {
            dir,
            shards,
            batch: 256,
            side: 640,
            resize: ResizeMode::Stretch,
            dtype: DType::Fp32,
            bgr: false,
            mean: crate::throughput::preprocess::IMAGENET_MEAN,
            std: crate::throughput::preprocess::IMAGENET_STD,
            decode_only: false,
            stop: Stop::Seconds(10.0),
            warmup_s: 2.0,
            interval_s: 0.5,
            readers,
            cpu_threads: cores,
            seed: 0,
            gpu: GpuTuning::with_defaults(0, cores, readers),
        }
    }
}

/// What one `verify-throughput` run executes.
#[derive(Debug, Clone)]
pub struct Job {
    pub device: DeviceChoice,
    /// The run over every shard (on the first GPU when on a GPU); what a CPU or single-GPU run
    /// executes and what a multi-GPU report describes.
    pub config: PipelineConfig,
    /// With several GPUs: one config per GPU, each with its ordinal and its share of the shards
    /// (empty for one GPU or the CPU).
    pub per_gpu: Vec<PipelineConfig>,
}

impl Job {
    /// The GPU ordinals the job would use.
    pub fn ordinals(&self) -> Vec<u32> {
        if self.per_gpu.is_empty() {
            vec![self.config.gpu.ordinal]
        } else {
            self.per_gpu.iter().map(|c| c.gpu.ordinal).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_names_are_the_reports() {
        let j = |v: serde_json::Value| v.to_string();
        assert_eq!(j(serde_json::json!(ResizeMode::Letterbox)), "\"letterbox\"");
        assert_eq!(j(serde_json::json!(DType::Fp16)), "\"fp16\"");
        assert_eq!(
            j(serde_json::json!(DecoderSet::HardwareOnly)),
            "\"hardware_only\""
        );
        assert_eq!(j(serde_json::json!(Stop::Epochs(2))), "{\"epochs\":2}");
        // The table prints these with {:?}.
        assert_eq!(
            format!("{:?} {:?}", ResizeMode::Stretch, DType::Fp32),
            "Stretch Fp32"
        );
    }

    #[test]
    fn defaults_scale_with_cores() {
        let c = PipelineConfig::with_defaults("d".into(), Vec::new(), 16);
        assert_eq!(
            (c.batch, c.side, c.readers, c.cpu_threads),
            (256, 640, 2, 16)
        );
        assert_eq!(
            (c.gpu.hw_workers, c.gpu.cuda_workers, c.gpu.slots),
            (1, 11, 4)
        );
        assert_eq!(c.stop.budget_s(c.warmup_s), Some(12.0));
        let c = PipelineConfig::with_defaults("d".into(), Vec::new(), 2);
        assert_eq!((c.readers, c.cpu_threads, c.gpu.cuda_workers), (1, 2, 1));
        assert_eq!(default_cuda_workers(200, 2, 1), 48);
        assert_eq!(Stop::Epochs(1).budget_s(2.0), None);
    }
}
