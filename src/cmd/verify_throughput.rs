//! `dsprep verify-throughput`: plan → pick the device (auto falls back to the CPU with a message
//! naming what is missing and how to install it) → run the pipeline with an indicatif progress
//! bar → one report, printed as a table and/or written as JSON.

use crate::cli::{DeviceKind, VerifyThroughputArgs};
use crate::pipeline::{self, PipelineConfig, Progress};
use crate::report::throughput::ThroughputReport;
use anyhow::{Context, Result};
use std::process::ExitCode;

/// Exit 0 when the run completed (and met `--target-ips` if given), 1 when the target was
/// missed or records were bad, 2 on failure (returned as Err).
pub fn run(args: &VerifyThroughputArgs) -> Result<ExitCode> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let plan = crate::plan::throughput::plan_throughput(args, cores)?;
    let cfg = &plan.config;
    let multi = plan.gpus.len() > 1 && plan.device != DeviceKind::Cpu;
    if multi {
        // Several GPUs were asked for by name: every one must be usable, no silent CPU fallback.
        for &g in &plan.gpus {
            let p = crate::gpu::device::probe(g);
            if !p.missing.is_empty() {
                anyhow::bail!(
                    "--gpus {}: GPU {g} cannot run:\n  - {}",
                    plan.gpus
                        .iter()
                        .map(|g| g.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    p.missing.join("\n  - ")
                );
            }
        }
    }
    let (use_gpu, fell_back) = match plan.device {
        DeviceKind::Cpu => (false, None),
        DeviceKind::Gpu => {
            let p = crate::gpu::device::probe(cfg.gpu.ordinal);
            if !p.missing.is_empty() {
                anyhow::bail!(
                    "--device gpu: the GPU path cannot run here:\n  - {}\n(use --device cpu or --device auto to measure the CPU path instead)",
                    p.missing.join("\n  - ")
                );
            }
            (true, None)
        }
        DeviceKind::Auto => {
            let p = crate::gpu::device::probe(cfg.gpu.ordinal);
            if p.missing.is_empty() {
                (true, None)
            } else {
                let why = p.missing.join("; ");
                eprintln!(
                    "verify-throughput: GPU path unavailable, falling back to the CPU:\n  - {}",
                    p.missing.join("\n  - ")
                );
                (false, Some(why))
            }
        }
    };
    let bar = if plan.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(1000);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let mut on_progress = |p: &Progress| {
        bar.set_position((p.fraction * 1000.0) as u64);
        bar.set_message(format!("{} images, {:.0} img/s", p.images, p.current_ips));
    };
    let report = if multi && use_gpu {
        let r = run_multi_gpu(&plan, &bar);
        bar.finish_and_clear();
        r?
    } else {
        let result = run_pipeline(cfg, use_gpu, &mut on_progress);
        bar.finish_and_clear();
        let result = result?;
        ThroughputReport::new(cfg, &result, plan.target_ips, fell_back, use_gpu)
    };
    let to_stdout_json = plan.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if !to_stdout_json {
        print!("{}", report.render_table());
    }
    if let Some(path) = &plan.json {
        let text = serde_json::to_string_pretty(&report)?;
        if to_stdout_json {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        }
    }
    Ok(ExitCode::from(
        if report.missed_target() || report.bad_record_count > 0 {
            super::EXIT_PROBLEMS
        } else {
            super::EXIT_OK
        },
    ))
}

fn run_pipeline(
    cfg: &PipelineConfig,
    gpu: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<pipeline::RunResult> {
    if gpu {
        pipeline::gpu::run(cfg, progress)
            .context("GPU pipeline failed (try --device cpu to measure the CPU path)")
    } else {
        pipeline::cpu::run(cfg, progress).context("CPU pipeline failed")
    }
}

/// One independent GPU pipeline per listed ordinal (own context, streams, nvJPEG handle, readers
/// and decoder threads), each on its round-robin share of the shards, all started together;
/// the per-GPU reports are combined (images/s = sum of per-GPU medians).
fn run_multi_gpu(
    plan: &crate::plan::throughput::ThroughputPlan,
    bar: &indicatif::ProgressBar,
) -> Result<ThroughputReport> {
    let dir = &plan.config.dir;
    let shards: Vec<std::path::PathBuf> = pipeline::source::discover(dir)
        .with_context(|| format!("cannot list shards in {}", dir.display()))?
        .into_iter()
        .map(|s| s.path)
        .collect();
    let cfgs = crate::plan::throughput::per_gpu_configs(plan, &shards)?;
    let live = std::sync::Mutex::new(vec![Progress::default(); cfgs.len()]);
    let results: Vec<Result<pipeline::RunResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = cfgs
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let live = &live;
                s.spawn(move || {
                    let mut on_progress = |p: &Progress| {
                        if let Ok(mut v) = live.lock() {
                            if let Some(slot) = v.get_mut(k) {
                                *slot = *p;
                            }
                            let images: u64 = v.iter().map(|p| p.images).sum();
                            let ips: f64 = v.iter().map(|p| p.current_ips).sum();
                            let frac = v.iter().map(|p| p.fraction).fold(1.0, f64::min);
                            bar.set_position((frac * 1000.0) as u64);
                            bar.set_message(format!(
                                "{images} images, {ips:.0} img/s on {} GPUs",
                                v.len()
                            ));
                        }
                    };
                    pipeline::gpu::run(c, &mut on_progress).with_context(|| {
                        format!(
                            "GPU {} pipeline failed (try --gpus with fewer GPUs, or --device cpu)",
                            c.gpu.ordinal
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a GPU pipeline thread panicked")))
            })
            .collect()
    });
    let mut parts = Vec::with_capacity(cfgs.len());
    for (c, r) in cfgs.iter().zip(results) {
        let r = r?;
        parts.push((
            c.gpu.ordinal,
            c.shards.len(),
            ThroughputReport::new(c, &r, None, None, true),
        ));
    }
    Ok(ThroughputReport::combine(
        &plan.config,
        parts,
        plan.target_ips,
    ))
}
