//! Several GPUs: one independent GPU pipeline per config (own context, streams, nvJPEG handle,
//! readers and decoder threads), each on its share of the shards, all started together. The
//! caller sees one progress stream adding them up, and gets one result per GPU (the report
//! combines them: images/s = sum of per-GPU medians).

use super::config::PipelineConfig;
use super::{gpu, Event, PipelineError, Progress, RunResult};
use std::sync::Mutex;

/// Progress of several pipelines as one: images and rates add up, the fraction done is the
/// slowest pipeline's.
pub fn combined(parts: &[Progress]) -> Progress {
    Progress {
        elapsed_s: parts.iter().map(|p| p.elapsed_s).fold(0.0, f64::max),
        images: parts.iter().map(|p| p.images).sum(),
        current_ips: parts.iter().map(|p| p.current_ips).sum(),
        fraction: parts.iter().map(|p| p.fraction).fold(1.0, f64::min),
        pipelines: parts.len(),
    }
}

/// Runs one GPU pipeline per config concurrently; results in config order. The first failure
/// is returned as [`PipelineError::OnGpu`] naming the GPU (after all have ended).
pub fn run(
    cfgs: &[PipelineConfig],
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<Vec<RunResult>, PipelineError> {
    let live = Mutex::new((vec![Progress::default(); cfgs.len()], on_event));
    let results: Vec<Result<RunResult, PipelineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = cfgs
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let live = &live;
                s.spawn(move || {
                    let mut forward = |e: &Event| {
                        let Ok(mut g) = live.lock() else { return };
                        let (parts, on_event) = &mut *g;
                        match e {
                            Event::Progress(p) => {
                                if let Some(slot) = parts.get_mut(k) {
                                    *slot = *p;
                                }
                                let all = combined(parts);
                                on_event(&Event::Progress(all));
                            }
                            other => on_event(other),
                        }
                    };
                    gpu::run(c, &mut forward).map_err(|e| PipelineError::OnGpu {
                        ordinal: c.gpu.ordinal,
                        source: Box::new(e),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PipelineError::Failed(
                        "a GPU pipeline thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_adds_up_and_waits_for_the_slowest() {
        let p = |images, ips, fraction| Progress {
            elapsed_s: 1.0,
            images,
            current_ips: ips,
            fraction,
            pipelines: 1,
        };
        let c = combined(&[p(10, 100.0, 0.5), p(30, 250.0, 0.25)]);
        assert_eq!(
            (c.images, c.current_ips, c.fraction, c.pipelines),
            (40, 350.0, 0.25, 2)
        );
        assert_eq!(combined(&[]).fraction, 1.0);
    }
}
