//! dsprep: get object-detection datasets ready for fast GPU training.
//!
//! Layers follow the data flow and only ever import downwards:
//! `dataset` (COCO parsing) → `shard` (TFRecord / Example / index / LMDB / manifest) →
//! `image` (CPU JPEG inspect, decode, resize, encode) → `gpu` (cudarc, nvJPEG FFI, kernels) →
//! `throughput` (the pipeline: schedule → readers → decoders → batches; no CLI types) → `report` (one Serialize struct per report) →
//! `plan` (validated options) → `cmd` (orchestration; the only user of anyhow and indicatif).

pub mod cli;
pub mod cmd;
pub mod dataset;
pub mod gpu;
pub mod image;
pub mod plan;
pub mod report;
pub mod shard;
pub mod throughput;

pub use cmd::run;
