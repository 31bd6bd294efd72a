//! What a run measures, the same way for the CPU and GPU runners: lock-free [`Counters`] the
//! threads add to, the deduplicated [`BadList`], the [`Meter`] the calling thread ticks (0.5 s
//! [`Interval`]s behind the images/s figure, progress, the time budget) and [`RunResult`],
//! assembled from all of them by [`Counters::result`].

use super::read::BadRecord;
use super::{Event, Progress};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Instant;

/// Lock-free counters; times in nanoseconds of thread busy time (summed over threads).
#[derive(Default)]
pub struct Counters {
    pub images: AtomicU64,
    pub bytes: AtomicU64,
    pub batches: AtomicU64,
    pub by_hw: AtomicU64,
    pub by_cuda: AtomicU64,
    pub by_cpu: AtomicU64,
    pub failed: AtomicU64,
    pub read_ns: AtomicU64,
    pub hw_ns: AtomicU64,
    pub cuda_ns: AtomicU64,
    pub cpu_ns: AtomicU64,
    pub kernel_ns: AtomicU64,
    pub preprocess_ns: AtomicU64,
    /// Assembler waiting for a decoded batch (the GPU kernels were starved).
    pub starved_ns: AtomicU64,
    /// Readers waiting for a free slot (back-pressure: decode is the bottleneck).
    pub backpressure_ns: AtomicU64,
}

pub fn add_since(c: &AtomicU64, t: Instant) {
    c.fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
}

/// Listed bad records, the (shard, offset) pairs already seen, and how many were not listed.
type BadState = (Vec<BadRecord>, HashSet<(std::path::PathBuf, u64)>, u64);

/// Bad records, deduplicated (later epochs see the same ones) and capped for memory.
pub struct BadList {
    inner: Mutex<BadState>,
    cap: usize,
}

impl BadList {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new((Vec::new(), HashSet::new(), 0)),
            cap,
        }
    }
    pub fn push(&self, b: BadRecord) {
        if let Ok(mut g) = self.inner.lock() {
            if g.1.insert((b.shard.clone(), b.offset)) {
                g.2 += 1;
                if g.0.len() < self.cap {
                    g.0.push(b);
                }
            }
        }
    }
    /// (listed records sorted by shard and offset, total distinct count).
    pub fn take(&self) -> (Vec<BadRecord>, u64) {
        match self.inner.lock() {
            Ok(mut g) => {
                let mut v = std::mem::take(&mut g.0);
                v.sort_by(|a, b| a.shard.cmp(&b.shard).then(a.offset.cmp(&b.offset)));
                (v, g.2)
            }
            Err(_) => (Vec::new(), 0),
        }
    }
}

/// Cuts the run into [`Interval`]s from periodic samples of the image/byte counters, and says
/// what to report as progress; the CPU and GPU pipelines' meters share it, so both measure the
/// same way.
pub struct IntervalMeter {
    last_t: f64,
    last_images: u64,
    last_bytes: u64,
    /// End of the time budget (warm-up included), when the run is time-limited.
    budget_s: Option<f64>,
    pub intervals: Vec<Interval>,
}

impl IntervalMeter {
    pub fn new(budget_s: Option<f64>) -> Self {
        IntervalMeter {
            last_t: 0.0,
            last_images: 0,
            last_bytes: 0,
            budget_s,
            intervals: Vec::new(),
        }
    }

    /// Whether an interval of `every` seconds has passed at `t`.
    pub fn due(&self, t: f64, every: f64) -> bool {
        t - self.last_t >= every
    }

    /// Closes the interval ending at `t` with the counters' totals (none when no time passed)
    /// and returns the progress to report.
    pub fn cut(&mut self, t: f64, images: u64, bytes: u64) -> Progress {
        let di = images.saturating_sub(self.last_images);
        if t > self.last_t {
            self.intervals.push(Interval {
                t_start: self.last_t,
                t_end: t,
                images: di,
                bytes: bytes.saturating_sub(self.last_bytes),
            });
        }
        let progress = Progress {
            elapsed_s: t,
            images,
            current_ips: di as f64 / (t - self.last_t).max(1e-9),
            fraction: self.budget_s.map_or(0.0, |b| (t / b).min(1.0)),
            pipelines: 1,
        };
        self.last_t = t;
        self.last_images = images;
        self.last_bytes = bytes;
        progress
    }
}

/// The calling thread's side of a run: it ticks every few tens of milliseconds, the meter
/// cuts an interval every `interval_s` (reporting progress), and says when the time budget is
/// spent. After that nothing more is measured: the drain at the end is not steady state.
pub struct Meter {
    t0: Instant,
    intervals: IntervalMeter,
    every_s: f64,
    budget_s: Option<f64>,
    stopped_at: Option<f64>,
}

/// What one [`Meter::tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// An interval was closed (and progress reported).
    pub cut: bool,
    /// The time budget was spent at this tick (once): halt the readers now.
    pub budget_spent: bool,
}

impl Meter {
    /// Starts the clock of a run that measures every `every_s` seconds and, when timed, ends
    /// at `budget_s` seconds.
    pub fn start(every_s: f64, budget_s: Option<f64>) -> Self {
        Meter {
            t0: Instant::now(),
            intervals: IntervalMeter::new(budget_s),
            every_s,
            budget_s,
            stopped_at: None,
        }
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// At time `t`, with the counters as they are: closes an interval when one is due (always
    /// when `finished`) unless the budget already ended the measurement, and reports it.
    pub fn tick(
        &mut self,
        t: f64,
        c: &Counters,
        finished: bool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Tick {
        let mut tick = Tick {
            cut: false,
            budget_spent: false,
        };
        if self.stopped_at.is_none() && (finished || self.intervals.due(t, self.every_s)) {
            let p = self
                .intervals
                .cut(t, c.images.load(SeqCst), c.bytes.load(SeqCst));
            on_event(&Event::Progress(p));
            tick.cut = true;
        }
        if let Some(b) = self.budget_s {
            if self.stopped_at.is_none() && t >= b {
                self.stopped_at = Some(t);
                tick.budget_spent = true;
            }
        }
        tick
    }

    /// (elapsed seconds of the measurement, its intervals) for a run that finished at `t`.
    pub fn finish(self, t: f64) -> (f64, Vec<Interval>) {
        (self.stopped_at.unwrap_or(t), self.intervals.intervals)
    }
}

/// Everything a run measured; the report layer turns it into the table/JSON.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunResult {
    pub device: String,
    pub elapsed_s: f64,
    pub images: u64,
    pub bytes: u64,
    pub batches: u64,
    pub intervals: Vec<Interval>,
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
    pub bad_records: Vec<BadRecord>,
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

impl Counters {
    /// The result of a finished run on `device`: the counters, the meter's measurement, the
    /// bad records and the epochs begun. Device-specific facts (GPU memory, nvJPEG, kernels,
    /// notes) are the runner's to add.
    pub fn result(
        &self,
        device: String,
        (elapsed_s, intervals): (f64, Vec<Interval>),
        bad: &BadList,
        epochs_started: u64,
    ) -> RunResult {
        let (bad_records, bad_record_count) = bad.take();
        let n = |a: &AtomicU64| a.load(SeqCst);
        let s = |a: &AtomicU64| a.load(SeqCst) as f64 / 1e9;
        RunResult {
            device,
            elapsed_s,
            images: n(&self.images),
            bytes: n(&self.bytes),
            batches: n(&self.batches),
            intervals,
            by_hardware: n(&self.by_hw),
            by_cuda: n(&self.by_cuda),
            by_cpu: n(&self.by_cpu),
            undecodable: n(&self.failed),
            read_s: s(&self.read_ns),
            decode_hw_s: s(&self.hw_ns),
            decode_cuda_s: s(&self.cuda_ns),
            decode_cpu_s: s(&self.cpu_ns),
            preprocess_s: s(&self.preprocess_ns),
            kernel_gpu_s: s(&self.kernel_ns),
            starved_s: s(&self.starved_ns),
            backpressure_s: s(&self.backpressure_ns),
            bad_records,
            bad_record_count,
            epochs_started,
            ..Default::default()
        }
    }
}

/// One meter interval: images and JPEG bytes completed in (t_start, t_end].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    pub t_start: f64,
    pub t_end: f64,
    pub images: u64,
    pub bytes: u64,
}

impl Interval {
    pub fn ips(&self) -> f64 {
        let dt = self.t_end - self.t_start;
        if dt > 0.0 {
            self.images as f64 / dt
        } else {
            0.0
        }
    }
    pub fn mbps(&self) -> f64 {
        let dt = self.t_end - self.t_start;
        if dt > 0.0 {
            self.bytes as f64 / dt / 1e6
        } else {
            0.0
        }
    }
}

/// Median of `v` (None when empty). NaN-free input assumed (rates are finite).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Intervals that start at or after `warmup` seconds.
pub fn steady(intervals: &[Interval], warmup: f64) -> Vec<Interval> {
    intervals
        .iter()
        .copied()
        .filter(|i| i.t_start >= warmup - 1e-9)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_meter_cuts_intervals_and_reports_progress() {
        let mut m = IntervalMeter::new(Some(10.0));
        assert!(!m.due(0.5, 1.0));
        assert!(m.due(1.0, 1.0));
        let p = m.cut(1.0, 100, 5_000);
        assert_eq!((p.images, p.current_ips, p.fraction), (100, 100.0, 0.1));
        let p = m.cut(3.0, 500, 25_000);
        assert_eq!(p.current_ips, 200.0);
        m.cut(3.0, 500, 25_000); // no time passed: no empty interval
        assert_eq!(
            m.intervals,
            vec![
                Interval {
                    t_start: 0.0,
                    t_end: 1.0,
                    images: 100,
                    bytes: 5_000
                },
                Interval {
                    t_start: 1.0,
                    t_end: 3.0,
                    images: 400,
                    bytes: 20_000
                },
            ]
        );
        assert_eq!(IntervalMeter::new(None).cut(20.0, 1, 1).fraction, 0.0);
    }

    #[test]
    fn meter_cuts_when_due_stops_measuring_at_the_budget_and_finishes() {
        let c = Counters::default();
        let mut seen = Vec::new();
        let mut on = |e: &Event| {
            if let Event::Progress(p) = e {
                seen.push(p.images);
            }
        };
        let mut m = Meter::start(0.5, Some(1.0));
        c.images.store(10, SeqCst);
        let t = m.tick(0.2, &c, false, &mut on);
        assert_eq!((t.cut, t.budget_spent), (false, false));
        assert!(m.tick(0.5, &c, false, &mut on).cut);
        c.images.store(30, SeqCst);
        let t = m.tick(1.0, &c, false, &mut on);
        assert_eq!((t.cut, t.budget_spent), (true, true));
        // Past the budget: the drain is not measured, even when finishing.
        c.images.store(99, SeqCst);
        let t = m.tick(1.6, &c, true, &mut on);
        assert_eq!((t.cut, t.budget_spent), (false, false));
        let (elapsed, iv) = m.finish(1.7);
        assert_eq!(elapsed, 1.0);
        assert_eq!(iv.iter().map(|i| i.images).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(seen, [10, 30]);
        // An epoch run measures to the end, the last interval cut when it finishes.
        let mut m = Meter::start(0.5, None);
        c.images.store(5, SeqCst);
        assert!(m.tick(0.1, &c, true, &mut |_| {}).cut);
        assert_eq!(m.finish(0.1).0, 0.1);
    }

    #[test]
    fn result_takes_every_counter() {
        let c = Counters::default();
        c.images.store(7, SeqCst);
        c.by_cpu.store(7, SeqCst);
        c.failed.store(1, SeqCst);
        c.cpu_ns.store(2_000_000_000, SeqCst);
        c.kernel_ns.store(500_000_000, SeqCst);
        let bad = BadList::new(10);
        bad.push(BadRecord {
            shard: "s".into(),
            offset: 3,
            reason: "r".into(),
        });
        let r = c.result("CPU".into(), (1.5, Vec::new()), &bad, 2);
        assert_eq!(
            (r.images, r.by_cpu, r.undecodable, r.epochs_started),
            (7, 7, 1, 2)
        );
        assert_eq!(
            (r.decode_cpu_s, r.kernel_gpu_s, r.elapsed_s),
            (2.0, 0.5, 1.5)
        );
        assert_eq!((r.bad_record_count, r.bad_records[0].offset), (1, 3));
        assert_eq!(r.device, "CPU");
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn steady_drops_warmup_and_rates_are_per_second() {
        let iv = [
            Interval {
                t_start: 0.0,
                t_end: 0.5,
                images: 10,
                bytes: 1_000_000,
            },
            Interval {
                t_start: 0.5,
                t_end: 1.0,
                images: 100,
                bytes: 2_000_000,
            },
            Interval {
                t_start: 1.0,
                t_end: 1.5,
                images: 120,
                bytes: 3_000_000,
            },
        ];
        let s = steady(&iv, 0.5);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].ips(), 200.0);
        assert_eq!(s[1].mbps(), 6.0);
    }

    #[test]
    fn bad_list_dedups_and_caps() {
        let b = BadList::new(1);
        let r = |o| BadRecord {
            shard: "a".into(),
            offset: o,
            reason: "x".into(),
        };
        b.push(r(5));
        b.push(r(5));
        b.push(r(7));
        let (v, n) = b.take();
        assert_eq!(n, 2);
        assert_eq!(v.len(), 1);
    }
}
