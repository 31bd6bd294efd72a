//! The throughput pipeline behind `dsprep verify-throughput`, usable without the CLI (the
//! Python loader drives it too): [`config`] (its own types; a config holds the resolved shard
//! list) → [`schedule`] (epoch cursor, stop, flips) → [`read`] (records' JPEG bytes through the
//! shard layer) → decoders ([`decoders`], one [`decoders::Decoder`] trait: nvJPEG hardware,
//! nvJPEG CUDA/hybrid, CPU) → batch assembly (the fused kernel of kernels/preprocess.cu, or its
//! CPU reference [`preprocess`]) writing one contiguous `[B, 3, S, S]` tensor per batch, all
//! measured by [`meter`] the same way on both devices.
//!
//! GPU path ([`gpu`]): a fixed pool of batch slots (pinned JPEG staging, device decode arena,
//! descriptors) circulates reader → decoders → kernel → reader, so steady state allocates
//! nothing and reading, decoding and kernels of different batches overlap. The hardware and CUDA
//! decoders *steal work* from the same open batches — hardware takes chunks from the front, CUDA
//! workers single images from the back — so the split adapts to whatever each one manages
//! (DALI's fixed `hw_decoder_load` split waits for the slower half). Several GPUs: [`multi`].
//!
//! CPU path ([`cpu`]): readers → rayon decode + the same preprocessing into the same tensor
//! layout.
//!
//! Nothing here prints: progress and warnings reach the caller as [`Event`]s and notes in the
//! [`RunResult`].

pub mod config;
pub mod cpu;
pub mod decoders;
pub mod device;
pub mod fast;
pub mod feed;
pub mod frame;
pub mod geometry;
pub mod gpu;
pub mod hsv;
pub mod loader;
pub mod meter;
pub mod multi;
pub mod preprocess;
pub mod read;
pub mod schedule;

pub use config::{
    DType, DecoderSet, Device, DeviceChoice, GpuTuning, Job, PipelineConfig, ResizeMode, Stop,
};
pub use meter::RunResult;
pub use read::BadRecord;
use std::path::PathBuf;

/// Errors that stop a run (per-record problems are [`BadRecord`]s instead).
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
    /// One pipeline of a multi-GPU run failed.
    #[error("GPU {ordinal} pipeline failed")]
    OnGpu {
        ordinal: u32,
        #[source]
        source: Box<PipelineError>,
    },
    #[error("{0}")]
    Failed(String),
}

/// Live numbers for a progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub elapsed_s: f64,
    pub images: u64,
    pub current_ips: f64,
    /// Fraction done when known (epochs), or of the time budget.
    pub fraction: f64,
    /// Pipelines these numbers add up (several on a multi-GPU run).
    pub pipelines: usize,
}

/// What a running pipeline tells its caller while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Progress(Progress),
    /// Nothing finished for a while: the run is being stopped; the text says what every open
    /// batch was waiting for (the run then fails with the same text).
    Stalled(String),
}

/// What [`run`] measured.
#[derive(Debug, Clone)]
pub enum Outcome {
    Cpu(RunResult),
    Gpu(RunResult),
    /// One result per entry of [`Job::per_gpu`], in that order.
    Gpus(Vec<RunResult>),
}

/// Runs `job` on `device` (from [`device::select_device`]): the CPU pipeline, one GPU
/// pipeline, or one per GPU of [`Job::per_gpu`] concurrently.
pub fn run(
    job: &Job,
    device: Device,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<Outcome, PipelineError> {
    match device {
        Device::Cpu => cpu::run(&job.config, on_event).map(Outcome::Cpu),
        Device::Gpu if !job.per_gpu.is_empty() => {
            multi::run(&job.per_gpu, on_event).map(Outcome::Gpus)
        }
        Device::Gpu => gpu::run(&job.config, on_event).map(Outcome::Gpu),
    }
}
