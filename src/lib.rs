//! dsprep: get object-detection datasets ready for fast GPU training.
//!
//! Layers, each importing only the ones below it (and nothing above `cmd` prints):
//! - `dataset` (COCO discovery, streaming parse, box rules, annotation rescaling, path
//!   confinement), `shard` (TFRecord, Example, index, LMDB, naming, the one reader, atomic
//!   writes, manifests), `image` (CPU JPEG inspect, decode, resize, encode), `gpu` (cudarc,
//!   nvJPEG and NVRTC; all `unsafe` in `gpu::ffi`): the formats and codecs;
//! - `jobs` (convert, presize, verify, index: typed specs in, outcomes out) and `throughput`
//!   (the decode pipeline behind `verify-throughput`, drivable without the CLI);
//! - `report` (one Serialize struct per report, feeding the table and `--json`);
//! - `cli` (clap structs) and `plan` (raw arguments → complete job specs, once);
//! - `cmd` (plan → job → report → print; the only user of anyhow and indicatif).

pub mod cli;
pub mod cmd;
pub mod dataset;
pub mod gpu;
pub mod image;
pub mod jobs;
pub mod plan;
pub mod report;
pub mod shard;
pub mod throughput;

pub use cmd::run;
