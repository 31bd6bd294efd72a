//! The throughput pipeline behind `dsprep verify-throughput`:
//! readers ([`source`]) → decoders ([`decoders`], one [`decoders::Decoder`] trait: nvJPEG
//! hardware, nvJPEG CUDA/hybrid, CPU) → batch assembler (the fused kernel of
//! kernels/preprocess.cu, or its CPU reference [`preprocess`]) writing one contiguous
//! `[B, 3, S, S]` tensor per batch.
//!
//! GPU path ([`gpu`]): a fixed pool of batch slots (pinned JPEG staging, device decode arena,
//! descriptors) circulates reader → decoders → kernel → reader, so steady state allocates
//! nothing and reading, decoding and kernels of different batches overlap. The hardware and CUDA
//! decoders *steal work* from the same open batches — hardware takes chunks from the front, CUDA
//! workers single images from the back — so the split adapts to whatever each one manages
//! (DALI's fixed `hw_decoder_load` split waits for the slower half).
//!
//! CPU path ([`cpu`]): readers → rayon decode + the same preprocessing into the same tensor
//! layout.

pub mod cpu;
pub mod decoders;
pub mod gpu;
pub mod jpeg;
pub mod preprocess;
pub mod source;
pub mod stats;

use crate::cli::{DType, ResizeMode};
use std::path::PathBuf;

/// Errors that stop a run (per-record problems are [`source::BadRecord`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

/// When the run ends.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Measure this many seconds after the warm-up.
    Seconds(f64),
    /// This many passes over the data (warm-up included).
    Epochs(u32),
}

/// Which GPU decoders take part (for measuring each alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderSet {
    Both,
    HardwareOnly,
    CudaOnly,
}

/// GPU tuning, from the plan (defaults there; overridable by environment variables for
/// benchmarking, listed in bench/gpu/README.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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

/// A validated run description (built by `plan::throughput`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineConfig {
    pub dir: PathBuf,
    pub shards: Vec<PathBuf>,
    pub batch: usize,
    pub side: u32,
    pub resize: ResizeMode,
    pub dtype: DType,
    pub bgr: bool,
    pub decode_only: bool,
    pub stop: Stop,
    pub warmup_s: f64,
    pub interval_s: f64,
    pub readers: usize,
    pub cpu_threads: usize,
    pub seed: u64,
    pub gpu: GpuTuning,
}

/// Live numbers for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub elapsed_s: f64,
    pub images: u64,
    pub current_ips: f64,
    /// Fraction done when known (epochs), or of the time budget.
    pub fraction: f64,
}

/// Everything a run measured; the report layer turns it into the table/JSON.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunResult {
    pub device: String,
    pub elapsed_s: f64,
    pub images: u64,
    pub bytes: u64,
    pub batches: u64,
    pub intervals: Vec<stats::Interval>,
    pub by_hardware: u64,
    pub by_cuda: u64,
    pub by_cpu: u64,
    pub undecodable: u64,
    pub read_s: f64,
    pub decode_hw_s: f64,
    pub decode_cuda_s: f64,
    pub decode_cpu_s: f64,
    pub preprocess_s: f64,
    pub kernel_gpu_s: f64,
    pub starved_s: f64,
    pub backpressure_s: f64,
    pub bad_records: Vec<source::BadRecord>,
    pub bad_record_count: u64,
    pub gpu_mem_total: Option<u64>,
    pub gpu_mem_used_by_run: Option<u64>,
    pub hw_engines: Option<(u32, u32)>,
    pub nvjpeg: Option<String>,
    pub kernel_cache_hit: Option<bool>,
    pub kernel_compile_ms: Option<f64>,
    pub epochs_started: u64,
    pub notes: Vec<String>,
}
