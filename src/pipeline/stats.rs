//! Counters shared by the pipeline threads and the interval meter behind the images/s figure.

use super::source::BadRecord;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    pub epochs_started: AtomicU64,
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
    pub fn cut(&mut self, t: f64, images: u64, bytes: u64) -> super::Progress {
        let di = images.saturating_sub(self.last_images);
        if t > self.last_t {
            self.intervals.push(Interval {
                t_start: self.last_t,
                t_end: t,
                images: di,
                bytes: bytes.saturating_sub(self.last_bytes),
            });
        }
        let progress = super::Progress {
            elapsed_s: t,
            images,
            current_ips: di as f64 / (t - self.last_t).max(1e-9),
            fraction: self.budget_s.map_or(0.0, |b| (t / b).min(1.0)),
        };
        self.last_t = t;
        self.last_images = images;
        self.last_bytes = bytes;
        progress
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
