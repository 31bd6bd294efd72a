//! The verify-throughput report: one serialisable struct that feeds both the terminal table and
//! `--json`, so the two can never disagree.

use crate::pipeline::source::BadRecord;
use crate::pipeline::stats::{median, steady};
use crate::pipeline::{PipelineConfig, RunResult};
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

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target_ips: f64,
    pub median_ips: f64,
    /// The slowest steady interval, the honest "does it keep up all the time" figure.
    pub min_interval_ips: f64,
    pub keeps_up: bool,
    pub headroom: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    pub dir: String,
    pub device: String,
    pub fell_back_to_cpu: Option<String>,
    pub batch: usize,
    pub size: u32,
    pub resize: crate::cli::ResizeMode,
    pub dtype: crate::cli::DType,
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
    pub tuning: Option<crate::pipeline::GpuTuning>,
    pub bad_record_count: u64,
    pub bad_records: Vec<BadRecord>,
    pub target: Option<Verdict>,
    pub notes: Vec<String>,
}

impl ThroughputReport {
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
            target: target_ips.map(|t| Verdict {
                target_ips: t,
                median_ips: ips,
                min_interval_ips: min_iv,
                keeps_up: ips >= t,
                headroom: ips / t,
            }),
            notes,
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
    use crate::cli::{DType, ResizeMode};
    use crate::pipeline::stats::Interval;
    use crate::pipeline::{DecoderSet, GpuTuning, Stop};

    fn cfg() -> PipelineConfig {
        PipelineConfig {
            dir: "d".into(),
            shards: vec![],
            batch: 4,
            side: 8,
            resize: ResizeMode::Stretch,
            dtype: DType::Fp32,
            bgr: false,
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
}
