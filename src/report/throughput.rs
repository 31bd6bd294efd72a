//! The verify-throughput report: one serialisable struct that feeds both the terminal table and
//! `--json`, so the two can never disagree.

use crate::throughput::config::{DType, GpuTuning, Job, PipelineConfig, ResizeMode};
use crate::throughput::meter::{median, steady};
use crate::throughput::{BadRecord, Outcome, RunResult};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct StageTimes {
    /// Thread-busy seconds summed over threads (reading+parsing, decoding) or GPU seconds
    /// (kernels); per-image microseconds alongside.
    pub read_s: f64,
    pub decode_hardware_s: f64,
    pub decode_cuda_s: f64,
    pub decode_cpu_s: f64,
    pub kernels_gpu_s: f64,
    /// Assembler idle, waiting for decoded batches.
    pub assembler_starved_s: f64,
    /// Readers blocked on a free slot (decode/kernels were the bottleneck).
    pub reader_backpressure_s: f64,
    pub read_us_per_image: f64,
    pub kernels_us_per_image: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecoderCounts {
    pub hardware: u64,
    pub cuda: u64,
    pub cpu: u64,
    pub undecodable: u64,
}

/// One GPU's share of a multi-GPU run (`--gpus 0,1,...`).
#[derive(Debug, Clone, Serialize)]
pub struct GpuRow {
    pub ordinal: u32,
    pub device: String,
    pub shards: usize,
    /// This GPU's median images/s over its own intervals after its warm-up.
    pub images_per_s: f64,
    pub interval_ips_min: f64,
    pub images: u64,
    pub decoders: DecoderCounts,
    pub gpu_memory_used_by_run_mib: Option<f64>,
    pub readers: usize,
    pub cuda_workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target_ips: f64,
    pub median_ips: f64,
    /// The slowest steady interval, the honest "does it keep up all the time" figure.
    pub min_interval_ips: f64,
    pub keeps_up: bool,
    pub headroom: f64,
}

impl Verdict {
    /// Judges a median rate (and its slowest interval) against a target rate.
    fn new(target_ips: f64, median_ips: f64, min_interval_ips: f64) -> Self {
        Verdict {
            target_ips,
            median_ips,
            min_interval_ips,
            keeps_up: median_ips >= target_ips,
            headroom: median_ips / target_ips,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    pub dir: String,
    pub device: String,
    pub fell_back_to_cpu: Option<String>,
    pub batch: usize,
    pub size: u32,
    pub resize: ResizeMode,
    pub dtype: DType,
    pub bgr: bool,
    pub decode_only: bool,
    /// Median images/s over the intervals after the warm-up.
    pub images_per_s: f64,
    /// Median JPEG megabytes/s (1e6) over the same intervals.
    pub mb_per_s: f64,
    pub intervals_measured: usize,
    pub interval_ips_min: f64,
    pub interval_ips_max: f64,
    pub warmup_s: f64,
    pub elapsed_s: f64,
    pub images: u64,
    pub batches: u64,
    pub epochs_started: u64,
    pub decoders: DecoderCounts,
    pub stages: StageTimes,
    pub gpu_memory_total_mib: Option<f64>,
    pub gpu_memory_used_by_run_mib: Option<f64>,
    pub hw_jpeg_engines: Option<u32>,
    pub hw_cores_per_engine: Option<u32>,
    pub nvjpeg: Option<String>,
    pub kernel_cache_hit: Option<bool>,
    pub kernel_compile_ms: Option<f64>,
    pub tuning: Option<GpuTuning>,
    pub bad_record_count: u64,
    pub bad_records: Vec<BadRecord>,
    pub target: Option<Verdict>,
    pub notes: Vec<String>,
    /// Per-GPU rows of a multi-GPU run; absent for one GPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_gpu: Vec<GpuRow>,
    /// How `images_per_s` was formed when several GPUs ran; absent for one GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
}

/// How [`ThroughputReport::combine`] forms the totals (also written into the report).
pub const AGGREGATE_RULE: &str = "sum of per-GPU medians (each GPU's median over its own 0.5 s intervals after its warm-up; the pipelines run concurrently from one start, intervals are not clock-aligned across GPUs); min/max are sums of per-GPU min/max";

impl ThroughputReport {
    /// The report of a finished `job`: one run's ([`Self::new`]), or the per-GPU runs combined
    /// ([`Self::combine`]). `fell_back`: why an `auto` run went to the CPU.
    pub fn of(
        job: &Job,
        outcome: &Outcome,
        target_ips: Option<f64>,
        fell_back: Option<String>,
    ) -> Self {
        match outcome {
            Outcome::Cpu(r) => Self::new(&job.config, r, target_ips, fell_back, false),
            Outcome::Gpu(r) => Self::new(&job.config, r, target_ips, fell_back, true),
            Outcome::Gpus(rs) => {
                let parts = job
                    .per_gpu
                    .iter()
                    .zip(rs)
                    .map(|(c, r)| {
                        let rep = Self::new(c, r, None, None, true);
                        (c.gpu.ordinal, c.shards.len(), rep)
                    })
                    .collect();
                Self::combine(&job.config, parts, target_ips)
            }
        }
    }

    pub fn new(
        cfg: &PipelineConfig,
        r: &RunResult,
        target_ips: Option<f64>,
        fell_back: Option<String>,
        gpu: bool,
    ) -> Self {
        let st = steady(&r.intervals, cfg.warmup_s);
        // Drop a trailing short interval (the drain at the end is not steady state).
        let st: Vec<_> = st
            .into_iter()
            .filter(|i| i.t_end - i.t_start >= cfg.interval_s * 0.5)
            .collect();
        let mut notes = r.notes.clone();
        let (ips, mbps) = match (
            median(st.iter().map(|i| i.ips()).collect()),
            median(st.iter().map(|i| i.mbps()).collect()),
        ) {
            (Some(a), Some(b)) if st.len() >= 3 => (a, b),
            _ => {
                notes.push(format!(
                    "run too short for a median after the {:.1} s warm-up: figures are images/elapsed over the whole run (use --seconds)",
                    cfg.warmup_s
                ));
                let e = r.elapsed_s.max(1e-9);
                (r.images as f64 / e, r.bytes as f64 / e / 1e6)
            }
        };
        let min_iv = st.iter().map(|i| i.ips()).fold(f64::INFINITY, f64::min);
        let max_iv = st.iter().map(|i| i.ips()).fold(0.0, f64::max);
        let min_iv = if min_iv.is_finite() { min_iv } else { ips };
        let per = |s: f64| {
            if r.images > 0 {
                s * 1e6 / r.images as f64
            } else {
                0.0
            }
        };
        Self {
            dir: cfg.dir.display().to_string(),
            device: r.device.clone(),
            fell_back_to_cpu: fell_back,
            batch: cfg.batch,
            size: cfg.side,
            resize: cfg.resize,
            dtype: cfg.dtype,
            bgr: cfg.bgr,
            decode_only: cfg.decode_only,
            images_per_s: ips,
            mb_per_s: mbps,
            intervals_measured: st.len(),
            interval_ips_min: min_iv,
            interval_ips_max: if max_iv > 0.0 { max_iv } else { ips },
            warmup_s: cfg.warmup_s,
            elapsed_s: r.elapsed_s,
            images: r.images,
            batches: r.batches,
            epochs_started: r.epochs_started,
            decoders: DecoderCounts {
                hardware: r.by_hardware,
                cuda: r.by_cuda,
                cpu: r.by_cpu,
                undecodable: r.undecodable,
            },
            stages: StageTimes {
                read_s: r.read_s,
                decode_hardware_s: r.decode_hw_s,
                decode_cuda_s: r.decode_cuda_s,
                decode_cpu_s: r.decode_cpu_s,
                kernels_gpu_s: r.kernel_gpu_s,
                assembler_starved_s: r.starved_s,
                reader_backpressure_s: r.backpressure_s,
                read_us_per_image: per(r.read_s),
                kernels_us_per_image: per(r.kernel_gpu_s),
            },
            gpu_memory_total_mib: r.gpu_mem_total.map(|b| b as f64 / 1048576.0),
            gpu_memory_used_by_run_mib: r.gpu_mem_used_by_run.map(|b| b as f64 / 1048576.0),
            hw_jpeg_engines: r.hw_engines.map(|x| x.0),
            hw_cores_per_engine: r.hw_engines.map(|x| x.1),
            nvjpeg: r.nvjpeg.clone(),
            kernel_cache_hit: r.kernel_cache_hit,
            kernel_compile_ms: r.kernel_compile_ms,
            tuning: gpu.then(|| cfg.gpu.clone()),
            bad_record_count: r.bad_record_count,
            bad_records: r.bad_records.clone(),
            target: target_ips.map(|t| Verdict::new(t, ips, min_iv)),
            notes,
            per_gpu: Vec::new(),
            aggregate: None,
        }
    }

    /// One report for several GPUs that ran concurrently: `parts` are (ordinal, shards given to
    /// it, readers, CUDA decoder threads, its own report). Throughput adds up ([`AGGREGATE_RULE`]),
    /// counts and busy times add up, elapsed is the longest, memory adds up, and each GPU keeps
    /// a row.
    pub fn combine(
        base: &PipelineConfig,
        parts: Vec<(u32, usize, ThroughputReport)>,
        target_ips: Option<f64>,
    ) -> Self {
        let rows: Vec<GpuRow> = parts
            .iter()
            .map(|(o, n, r)| GpuRow {
                ordinal: *o,
                device: r.device.clone(),
                shards: *n,
                images_per_s: r.images_per_s,
                interval_ips_min: r.interval_ips_min,
                images: r.images,
                decoders: r.decoders.clone(),
                gpu_memory_used_by_run_mib: r.gpu_memory_used_by_run_mib,
                readers: base.readers,
                cuda_workers: r.tuning.as_ref().map_or(0, |t| t.cuda_workers),
            })
            .collect();
        let reps: Vec<&ThroughputReport> = parts.iter().map(|p| &p.2).collect();
        let sum = |f: &dyn Fn(&ThroughputReport) -> f64| reps.iter().map(|r| f(r)).sum::<f64>();
        let sumu = |f: &dyn Fn(&ThroughputReport) -> u64| reps.iter().map(|r| f(r)).sum::<u64>();
        let sumo = |f: &dyn Fn(&ThroughputReport) -> Option<f64>| {
            reps.iter()
                .map(|r| f(r))
                .try_fold(0.0, |a, x| x.map(|x| a + x))
        };
        let ips = sum(&|r| r.images_per_s);
        let min_iv = sum(&|r| r.interval_ips_min);
        let images = sumu(&|r| r.images);
        let per = |s: f64| {
            if images > 0 {
                s * 1e6 / images as f64
            } else {
                0.0
            }
        };
        let read_s = sum(&|r| r.stages.read_s);
        let kernels_s = sum(&|r| r.stages.kernels_gpu_s);
        let mut bad: Vec<BadRecord> = reps.iter().flat_map(|r| r.bad_records.clone()).collect();
        bad.sort_by(|a, b| a.shard.cmp(&b.shard).then(a.offset.cmp(&b.offset)));
        let mut notes = Vec::new();
        for (o, _, r) in &parts {
            for n in &r.notes {
                notes.push(format!("GPU {o}: {n}"));
            }
        }
        let first = reps.first();
        let device = format!(
            "{} GPUs: {}",
            rows.len(),
            rows.iter()
                .map(|r| r.device.clone())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        Self {
            dir: base.dir.display().to_string(),
            device,
            fell_back_to_cpu: None,
            batch: base.batch,
            size: base.side,
            resize: base.resize,
            dtype: base.dtype,
            bgr: base.bgr,
            decode_only: base.decode_only,
            images_per_s: ips,
            mb_per_s: sum(&|r| r.mb_per_s),
            intervals_measured: reps.iter().map(|r| r.intervals_measured).min().unwrap_or(0),
            interval_ips_min: min_iv,
            interval_ips_max: sum(&|r| r.interval_ips_max),
            warmup_s: base.warmup_s,
            elapsed_s: reps.iter().map(|r| r.elapsed_s).fold(0.0, f64::max),
            images,
            batches: sumu(&|r| r.batches),
            epochs_started: sumu(&|r| r.epochs_started),
            decoders: DecoderCounts {
                hardware: sumu(&|r| r.decoders.hardware),
                cuda: sumu(&|r| r.decoders.cuda),
                cpu: sumu(&|r| r.decoders.cpu),
                undecodable: sumu(&|r| r.decoders.undecodable),
            },
            stages: StageTimes {
                read_s,
                decode_hardware_s: sum(&|r| r.stages.decode_hardware_s),
                decode_cuda_s: sum(&|r| r.stages.decode_cuda_s),
                decode_cpu_s: sum(&|r| r.stages.decode_cpu_s),
                kernels_gpu_s: kernels_s,
                assembler_starved_s: sum(&|r| r.stages.assembler_starved_s),
                reader_backpressure_s: sum(&|r| r.stages.reader_backpressure_s),
                read_us_per_image: per(read_s),
                kernels_us_per_image: per(kernels_s),
            },
            gpu_memory_total_mib: sumo(&|r| r.gpu_memory_total_mib),
            gpu_memory_used_by_run_mib: sumo(&|r| r.gpu_memory_used_by_run_mib),
            hw_jpeg_engines: first.and_then(|r| r.hw_jpeg_engines),
            hw_cores_per_engine: first.and_then(|r| r.hw_cores_per_engine),
            nvjpeg: first.and_then(|r| r.nvjpeg.clone()),
            kernel_cache_hit: first.and_then(|r| r.kernel_cache_hit),
            kernel_compile_ms: first.and_then(|r| r.kernel_compile_ms),
            tuning: first.and_then(|r| r.tuning.clone()),
            bad_record_count: sumu(&|r| r.bad_record_count),
            bad_records: bad,
            target: target_ips.map(|t| Verdict::new(t, ips, min_iv)),
            notes,
            per_gpu: rows,
            aggregate: Some(AGGREGATE_RULE.to_string()),
        }
    }

    /// Whether a `--target-ips` was given and missed.
    pub fn missed_target(&self) -> bool {
        self.target.as_ref().is_some_and(|v| !v.keeps_up)
    }

    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "verify-throughput  {}", self.dir);
        let _ = writeln!(s, "  device            {}", self.device);
        if let Some(why) = &self.fell_back_to_cpu {
            let _ = writeln!(
                s,
                "  NOTE              GPU path unavailable, ran on the CPU: {why}"
            );
        }
        let _ = writeln!(
            s,
            "  work              batch {} → {}×{} {:?} {:?}{}{}",
            self.batch,
            self.size,
            self.size,
            self.resize,
            self.dtype,
            if self.bgr { " BGR" } else { "" },
            if self.decode_only {
                ", decode only"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  images/s          {:.0}  (median of {} intervals after {:.1} s warm-up; min {:.0}, max {:.0})",
            self.images_per_s, self.intervals_measured, self.warmup_s, self.interval_ips_min, self.interval_ips_max
        );
        if self.aggregate.is_some() {
            let _ = writeln!(
                s,
                "                    (sum of the per-GPU medians below; GPUs ran concurrently)"
            );
        }
        let _ = writeln!(s, "  JPEG MB/s         {:.1}", self.mb_per_s);
        let _ = writeln!(
            s,
            "  images            {} in {} batches, {:.1} s, {} epoch(s) started",
            self.images, self.batches, self.elapsed_s, self.epochs_started
        );
        let d = &self.decoders;
        let _ = writeln!(
            s,
            "  decoded by        hardware {}  cuda {}  cpu {}  undecodable {}",
            d.hardware, d.cuda, d.cpu, d.undecodable
        );
        let t = &self.stages;
        let _ = writeln!(
            s,
            "  stage busy (s)    read {:.2}  decode-hw {:.2}  decode-cuda {:.2}  decode-cpu {:.2}  kernels(GPU) {:.3}",
            t.read_s, t.decode_hardware_s, t.decode_cuda_s, t.decode_cpu_s, t.kernels_gpu_s
        );
        let _ = writeln!(
            s,
            "  per image (µs)    read {:.1}  kernels {:.1};  assembler starved {:.2} s, readers back-pressured {:.2} s",
            t.read_us_per_image, t.kernels_us_per_image, t.assembler_starved_s, t.reader_backpressure_s
        );
        if let (Some(total), Some(used)) =
            (self.gpu_memory_total_mib, self.gpu_memory_used_by_run_mib)
        {
            let _ = writeln!(
                s,
                "  GPU memory        {used:.0} MiB used by the run of {total:.0} MiB"
            );
        }
        if let (Some(e), Some(c)) = (self.hw_jpeg_engines, self.hw_cores_per_engine) {
            let _ = writeln!(s, "  JPEG engines      {e} (× {c} cores)");
        }
        if let Some(n) = &self.nvjpeg {
            let _ = writeln!(s, "  nvJPEG            {n}");
        }
        if !self.per_gpu.is_empty() {
            let _ = writeln!(
                s,
                "  per GPU           {:>3} {:>6} {:>9} {:>9} {:>9} {:>8} {:>5} {:>8}",
                "gpu", "shards", "img/s", "min iv", "hardware", "cuda", "cpu", "mem MiB"
            );
            for g in &self.per_gpu {
                let _ = writeln!(
                    s,
                    "                    {:>3} {:>6} {:>9.0} {:>9.0} {:>9} {:>8} {:>5} {:>8}",
                    g.ordinal,
                    g.shards,
                    g.images_per_s,
                    g.interval_ips_min,
                    g.decoders.hardware,
                    g.decoders.cuda,
                    g.decoders.cpu,
                    g.gpu_memory_used_by_run_mib
                        .map_or_else(|| "-".to_string(), |m| format!("{m:.0}"))
                );
            }
        }
        if self.bad_record_count > 0 {
            let _ = writeln!(
                s,
                "  bad records       {} (the run went on):",
                self.bad_record_count
            );
            for b in self.bad_records.iter().take(20) {
                let _ = writeln!(s, "    {} @ {}: {}", b.shard.display(), b.offset, b.reason);
            }
            if self.bad_records.len() > 20 {
                let _ = writeln!(s, "    … {} more in --json", self.bad_records.len() - 20);
            }
        }
        if let Some(v) = &self.target {
            let _ = writeln!(
                s,
                "  target            {:.0} img/s: {} (median {:.0}, slowest interval {:.0}, headroom ×{:.2})",
                v.target_ips,
                if v.keeps_up { "KEEPS UP" } else { "FALLS SHORT" },
                v.median_ips,
                v.min_interval_ips,
                v.headroom
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // tests tweak a few fields of a default result
mod tests {
    use super::*;
    use crate::throughput::config::{DecoderSet, Stop};
    use crate::throughput::meter::Interval;

    fn cfg() -> PipelineConfig {
        PipelineConfig {
            dir: "d".into(),
            shards: vec![],
            batch: 4,
            side: 8,
            resize: ResizeMode::Stretch,
            dtype: DType::Fp32,
            bgr: false,
            mean: crate::throughput::preprocess::IMAGENET_MEAN,
            std: crate::throughput::preprocess::IMAGENET_STD,
            decode_only: false,
            stop: Stop::Seconds(2.0),
            warmup_s: 1.0,
            interval_s: 0.5,
            readers: 1,
            cpu_threads: 1,
            seed: 0,
            gpu: GpuTuning {
                ordinal: 0,
                decoders: DecoderSet::Both,
                hw_workers: 1,
                hw_chunk: 4,
                cuda_workers: 1,
                cuda_backend: 1,
                slots: 3,
            },
        }
    }

    #[test]
    fn median_after_warmup_and_verdict() {
        let mut r = RunResult::default();
        r.intervals = (0..6)
            .map(|k| Interval {
                t_start: k as f64 * 0.5,
                t_end: (k + 1) as f64 * 0.5,
                images: [1, 1, 100, 200, 300, 400][k],
                bytes: 1_000_000,
            })
            .collect();
        r.images = 1002;
        let rep = ThroughputReport::new(&cfg(), &r, Some(500.0), None, true);
        assert_eq!(rep.intervals_measured, 4);
        assert_eq!(rep.images_per_s, 500.0);
        assert_eq!(rep.mb_per_s, 2.0);
        let v = rep.target.as_ref().unwrap();
        assert!(v.keeps_up);
        assert_eq!(v.min_interval_ips, 200.0);
        assert!(!rep.missed_target());
        let rep = ThroughputReport::new(&cfg(), &r, Some(501.0), None, true);
        assert!(rep.missed_target());
        let table = rep.render_table();
        assert!(table.contains("FALLS SHORT"), "{table}");
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["images_per_s"], 500.0);
    }

    #[test]
    fn short_runs_fall_back_to_overall_rate_with_a_note() {
        let mut r = RunResult::default();
        r.intervals = vec![Interval {
            t_start: 0.0,
            t_end: 0.5,
            images: 10,
            bytes: 0,
        }];
        r.images = 10;
        r.elapsed_s = 0.5;
        let rep = ThroughputReport::new(&cfg(), &r, None, None, false);
        assert_eq!(rep.images_per_s, 20.0);
        assert!(rep.notes.iter().any(|n| n.contains("too short")));
        assert!(rep.tuning.is_none());
    }

    #[test]
    fn bad_records_are_listed_in_the_table() {
        let mut r = RunResult::default();
        r.bad_records = vec![BadRecord {
            shard: "s.tfrecord".into(),
            offset: 42,
            reason: "data CRC mismatch".into(),
        }];
        r.bad_record_count = 1;
        let t = ThroughputReport::new(&cfg(), &r, None, Some("no libcuda".into()), false)
            .render_table();
        assert!(t.contains("s.tfrecord @ 42: data CRC mismatch"), "{t}");
        assert!(t.contains("ran on the CPU: no libcuda"));
    }

    fn gpu_result(ips_per_interval: u64, hw: u64, cuda: u64) -> RunResult {
        let mut r = RunResult::default();
        r.device = "H100".into();
        r.intervals = (0..8)
            .map(|k| Interval {
                t_start: k as f64 * 0.5,
                t_end: (k + 1) as f64 * 0.5,
                images: ips_per_interval / 2 + k,
                bytes: 500_000,
            })
            .collect();
        r.images = hw + cuda;
        r.by_hardware = hw;
        r.by_cuda = cuda;
        r.elapsed_s = 4.0;
        r.batches = 3;
        r.gpu_mem_total = Some(80 << 30);
        r.gpu_mem_used_by_run = Some(1 << 30);
        r.notes = vec!["n".into()];
        r
    }

    #[test]
    fn combine_sums_per_gpu_medians_and_keeps_rows() {
        let c = cfg();
        let a = ThroughputReport::new(&c, &gpu_result(1000, 900, 100), None, None, true);
        let b = ThroughputReport::new(&c, &gpu_result(2000, 1500, 500), None, None, true);
        let (ia, ib) = (a.images_per_s, b.images_per_s);
        assert!(ia > 0.0 && ib > ia);
        let rep = ThroughputReport::combine(&c, vec![(0, 8, a), (1, 8, b)], Some(ia + ib - 1.0));
        assert_eq!(rep.images_per_s, ia + ib);
        assert_eq!(rep.images, 3000);
        assert_eq!(rep.decoders.hardware, 2400);
        assert_eq!(rep.decoders.cuda, 600);
        assert_eq!(rep.batches, 6);
        assert_eq!(rep.gpu_memory_used_by_run_mib, Some(2048.0));
        assert_eq!(rep.elapsed_s, 4.0);
        assert_eq!(rep.per_gpu.len(), 2);
        assert_eq!(rep.per_gpu[1].ordinal, 1);
        assert_eq!(rep.per_gpu[1].images_per_s, ib);
        assert_eq!(rep.per_gpu[1].decoders.cuda, 500);
        assert!(rep.target.as_ref().unwrap().keeps_up);
        assert!(rep.notes.iter().any(|n| n == "GPU 1: n"));
        let t = rep.render_table();
        assert!(t.contains("per GPU"), "{t}");
        assert!(t.contains("sum of the per-GPU medians"), "{t}");
        assert!(
            t.starts_with("verify-throughput  d\n  device            2 GPUs: H100 | H100"),
            "{t}"
        );
        let j = serde_json::to_value(&rep).unwrap();
        assert_eq!(j["per_gpu"][0]["ordinal"], 0);
        assert_eq!(j["per_gpu"][1]["shards"], 8);
        assert_eq!(j["images_per_s"], ia + ib);
        assert!(j["aggregate"]
            .as_str()
            .unwrap()
            .starts_with("sum of per-GPU medians"));
    }

    /// The JSON keys and enum spellings consumers read (bench scripts, users' dashboards).
    #[test]
    fn json_shape_is_pinned() {
        let rep = ThroughputReport::new(&cfg(), &gpu_result(1000, 1, 1), None, None, true);
        let j = serde_json::to_value(&rep).unwrap();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = vec![
            "dir",
            "device",
            "fell_back_to_cpu",
            "batch",
            "size",
            "resize",
            "dtype",
            "bgr",
            "decode_only",
            "images_per_s",
            "mb_per_s",
            "intervals_measured",
            "interval_ips_min",
            "interval_ips_max",
            "warmup_s",
            "elapsed_s",
            "images",
            "batches",
            "epochs_started",
            "decoders",
            "stages",
            "gpu_memory_total_mib",
            "gpu_memory_used_by_run_mib",
            "hw_jpeg_engines",
            "hw_cores_per_engine",
            "nvjpeg",
            "kernel_cache_hit",
            "kernel_compile_ms",
            "tuning",
            "bad_record_count",
            "bad_records",
            "target",
            "notes",
        ];
        let mut got = keys.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(
            (j["resize"].as_str(), j["dtype"].as_str()),
            (Some("stretch"), Some("fp32"))
        );
        let t = &j["tuning"];
        assert_eq!(t["decoders"], "both");
        let tk: Vec<&str> = t.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut tk = tk.clone();
        tk.sort_unstable();
        assert_eq!(
            tk,
            [
                "cuda_backend",
                "cuda_workers",
                "decoders",
                "hw_chunk",
                "hw_workers",
                "ordinal",
                "slots"
            ]
        );
        let mut c = cfg();
        c.gpu.decoders = DecoderSet::HardwareOnly;
        c.resize = ResizeMode::Letterbox;
        c.dtype = DType::Fp16;
        let j = serde_json::to_value(ThroughputReport::new(
            &c,
            &gpu_result(1, 1, 1),
            None,
            None,
            true,
        ))
        .unwrap();
        assert_eq!(j["tuning"]["decoders"], "hardware_only");
        assert_eq!(
            (j["resize"].as_str(), j["dtype"].as_str()),
            (Some("letterbox"), Some("fp16"))
        );
        let t = ThroughputReport::new(&c, &gpu_result(1, 1, 1), None, None, true).render_table();
        assert!(t.contains("Letterbox Fp16"), "{t}");
    }

    #[test]
    fn single_gpu_json_has_no_multi_gpu_fields() {
        let rep = ThroughputReport::new(&cfg(), &gpu_result(1000, 1, 1), None, None, true);
        let j = serde_json::to_value(&rep).unwrap();
        assert!(j.get("per_gpu").is_none());
        assert!(j.get("aggregate").is_none());
        assert!(!rep.render_table().contains("per GPU"));
    }
}
