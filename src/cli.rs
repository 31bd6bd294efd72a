//! Command-line surface (clap derive structs only). Raw values are validated once, in
//! [`crate::plan`], into plans the workers trust.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "dsprep",
    version,
    about = "Get object-detection datasets ready for fast GPU training",
    long_about = "Convert COCO-style folders to indexed TFRecord or LMDB shards, pre-resize them \
                  near training size, and measure how fast the shards can feed a GPU."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// COCO-style JPEG folder → indexed TFRecord (or LMDB) shards + manifest + label map.
    Convert(ConvertArgs),
    /// Check every record's CRCs, every index line and the counts against the manifest.
    Verify(VerifyArgs),
    /// Write DALI-compatible `.idx` files for TFRecords made by other tools (streaming).
    Index(IndexArgs),
    /// Pre-resize a COCO folder or a shard folder to slightly above training size.
    Presize(PresizeArgs),
    /// Load the shards through the GPU (or CPU) pipeline and report images/s.
    VerifyThroughput(VerifyThroughputArgs),
    /// Join the parts of a task-mode convert (`--tasks`) into manifest.json + label map.
    Merge(MergeArgs),
}

/// Output container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardFormat {
    /// `.tfrecord` + DALI `.idx` pairs.
    Tfrecord,
    /// LMDB environments (one folder per shard), values = serialized tf.train.Example.
    Lmdb,
}

/// What `image/object/class/label` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelMode {
    /// The COCO category id (gaps kept, e.g. 1..90); matches label_map.pbtxt.
    Coco,
    /// Contiguous 0..K-1 in category-id order (the mapping is in the manifest).
    Contiguous,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// `COCO_DIR OUT_DIR`, or just `OUT_DIR` with --annotations/--images. COCO_DIR is a
    /// standard (`annotations/instances_<split>.json`) or Roboflow (`<split>/_annotations.coco.json`)
    /// folder; OUT_DIR is created and must be empty unless --overwrite or --resume.
    #[arg(required = true, num_args = 1..=2, value_names = ["COCO_DIR", "OUT_DIR"])]
    pub paths: Vec<PathBuf>,
    /// Explicit annotation file (instead of discovering splits in INPUT).
    #[arg(long, requires = "images")]
    pub annotations: Option<PathBuf>,
    /// Folder the annotation file's `file_name`s are relative to (with --annotations).
    #[arg(long, requires = "annotations")]
    pub images: Option<PathBuf>,
    /// Convert only this split (e.g. train2017).
    #[arg(long)]
    pub split: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ShardFormat::Tfrecord)]
    pub format: ShardFormat,
    /// Target shard size, e.g. 256MB, 1GiB (number of shards = total image bytes / this).
    #[arg(long, default_value = "256MiB", conflicts_with = "shards")]
    pub shard_size: String,
    /// Exact number of shards per split (overrides --shard-size).
    #[arg(long)]
    pub shards: Option<u32>,
    /// What image/object/class/label holds.
    #[arg(long, value_enum, default_value_t = LabelMode::Coco)]
    pub labels: LabelMode,
    /// Fully decode every image (slower) instead of the cheap header/marker check.
    #[arg(long)]
    pub decode_check: bool,
    /// Fail on the first problem (skipped image, dropped box, size mismatch) instead of reporting it.
    #[arg(long)]
    pub strict: bool,
    /// Resize while converting: longest side at most N pixels (never upscales).
    #[arg(long, value_name = "N")]
    pub presize: Option<u32>,
    /// fsync every shard before it gets its final name, so finished shards also survive a
    /// power loss (a process crash or Ctrl-C is safe without it). Costs the disk's write speed.
    #[arg(long)]
    pub fsync: bool,
    /// Largest image file read, e.g. 256MiB, 2GiB; larger files are skipped with the reason.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub max_image_bytes: String,
    /// Task mode: this process is one of M tasks (a job-array task, an Indexed Job pod) and
    /// writes only the shards it owns (shard s of every split where s mod M = K) plus its part
    /// of the manifest; `dsprep merge OUT_DIR` joins the parts. `auto`: M and K from the Slurm
    /// array (SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN).
    #[arg(long, value_name = "M|auto")]
    pub tasks: Option<String>,
    /// This task's index K, 0..M (default: JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX
    /// or the Slurm array variables).
    #[arg(long, value_name = "K", requires = "tasks")]
    pub task: Option<u32>,
    /// Deal images to shards in this seed's permutation instead of the annotation file's
    /// order (sequential readers then see mixed images); recorded in the manifest.
    #[arg(long, value_name = "SEED")]
    pub shuffle: Option<u64>,
    /// Round each split's shard count up to a multiple of N (e.g. GPUs x loader workers), so
    /// every DDP rank gets the same number of shards.
    #[arg(long, value_name = "N")]
    pub shard_multiple: Option<u32>,
    #[command(flatten)]
    pub existing: ExistingOutput,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The OUT_DIR every task of a `dsprep convert --tasks` run wrote into.
    pub dir: PathBuf,
    /// fsync the manifest and label map (power-loss safe).
    #[arg(long)]
    pub fsync: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What to do with an output folder that is not empty (convert, presize).
#[derive(Debug, Args)]
pub struct ExistingOutput {
    /// Replace the contents of a non-empty OUTPUT.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Continue an interrupted run: keep what is complete and matches its checksum.
    #[arg(long)]
    pub resume: bool,
}

/// Flags of every subcommand that works through a dataset (convert, verify, presize).
#[derive(Debug, Args)]
pub struct RunFlags {
    /// Worker threads (default: all cores). Output is identical for any value.
    #[arg(long, short = 'j')]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Folder written by `dsprep convert`.
    pub dir: PathBuf,
    /// Also fully decode every image.
    #[arg(long)]
    pub decode: bool,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// TFRecord files; each gets `<name>.idx` beside it (replacing a `.tfrecord` suffix).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the index files into this folder instead.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// How `presize` fits images to `--size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresizeMode {
    /// Longest side at most SIZE, aspect kept (what YOLO's letterbox wants).
    Longest,
    /// Shorter side = SIZE, aspect kept (ImageNet style).
    Shortest,
}

#[derive(Debug, Args)]
pub struct PresizeArgs {
    /// COCO-style folder or a dsprep shard folder.
    pub input: PathBuf,
    /// Output folder (same kind as the input).
    pub output: PathBuf,
    /// Target size in pixels (704 for 640 training).
    #[arg(long, default_value_t = 704)]
    pub size: u32,
    /// Which side --size limits.
    #[arg(long, value_enum, default_value_t = PresizeMode::Longest)]
    pub mode: PresizeMode,
    /// JPEG quality of resized images.
    #[arg(long, default_value_t = 92)]
    pub quality: u8,
    /// Re-encode images that are already within the limit (default: copy them byte-identical).
    #[arg(long)]
    pub reencode: bool,
    /// Fail on the first bad image instead of reporting it.
    #[arg(long)]
    pub strict: bool,
    /// fsync what is written before it gets its final name, so finished output also survives
    /// a power loss (a process crash or Ctrl-C is safe without it).
    #[arg(long)]
    pub fsync: bool,
    /// Largest image file read, e.g. 256MiB, 2GiB; larger files are reported as failed.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub max_image_bytes: String,
    #[command(flatten)]
    pub existing: ExistingOutput,
    #[command(flatten)]
    pub run: RunFlags,
}

/// Where verify-throughput decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// GPU if a driver and nvJPEG are found, else CPU (with a message saying what was missing).
    Auto,
    Gpu,
    Cpu,
}

/// How verify-throughput fits images into SIZE×SIZE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Stretch to SIZE×SIZE.
    Stretch,
    /// Keep aspect, pad with 114 (YOLO).
    Letterbox,
}

/// Output element type of the batch tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Fp32,
    Fp16,
}

/// GPU decoders verify-throughput may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderChoice {
    Both,
    Hw,
    Cuda,
}

#[derive(Debug, Args)]
pub struct VerifyThroughputArgs {
    /// Folder written by `dsprep convert` (TFRecord or LMDB shards).
    pub dir: PathBuf,
    /// Read only this split of a folder holding several (default: every shard).
    #[arg(long)]
    pub split: Option<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    pub batch: u32,
    /// Output side length (SIZE×SIZE).
    #[arg(long, default_value_t = 640)]
    pub size: u32,
    #[arg(long, value_enum, default_value_t = ResizeMode::Stretch)]
    pub resize: ResizeMode,
    #[arg(long, value_enum, default_value_t = DType::Fp32)]
    pub dtype: DType,
    /// Swap channels to BGR.
    #[arg(long)]
    pub bgr: bool,
    /// Run for this many seconds (after warm-up).
    #[arg(long, conflicts_with = "epochs")]
    pub seconds: Option<f64>,
    /// Run for this many passes over the data.
    #[arg(long)]
    pub epochs: Option<u32>,
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    pub device: DeviceKind,
    /// GPU ordinals to use, e.g. 0,1 (default: 0).
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<u32>,
    /// Which GPU decoders take work: both (hardware engines and the CUDA decoder pull from one
    /// queue), only the hardware engines (what the hardware cannot take still goes to CUDA), or
    /// only the CUDA decoder.
    #[arg(long, value_enum, default_value_t = DecoderChoice::Both)]
    pub decoders: DecoderChoice,
    /// Decode only (no resize/normalise kernels): measures the decoders alone.
    #[arg(long)]
    pub decode_only: bool,
    /// Report whether the pipeline keeps a job consuming this many images/s fed.
    #[arg(long, value_name = "N")]
    pub target_ips: Option<f64>,
    /// Reader threads.
    #[arg(long)]
    pub readers: Option<usize>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Write the report as JSON to this file ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
