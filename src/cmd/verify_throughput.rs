//! `dsprep verify-throughput`: plan → pick the device (auto falls back to the CPU with a message
//! naming what is missing and how to install it) → run the job with an indicatif progress bar
//! → one report, printed as a table and/or written as JSON.

use crate::cli::VerifyThroughputArgs;
use crate::report::throughput::ThroughputReport;
use crate::throughput::device::{select_device, DeviceError};
use crate::throughput::{self, Device, Event, PipelineError};
use anyhow::{anyhow, Context, Result};
use std::process::ExitCode;

/// Exit 0 when the run completed (and met `--target-ips` if given), 1 when the target was
/// missed or records were bad, 2 on failure (returned as Err).
pub fn run(args: &VerifyThroughputArgs) -> Result<ExitCode> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = crate::plan::throughput::plan_throughput(args, cores)?;
    let (device, fallback) = select_device(&plan.job).map_err(|e| match e {
        DeviceError::GpuUnavailable { .. } => anyhow!(
            "--device gpu: {e}\n(use --device cpu or --device auto to measure the CPU path instead)"
        ),
        DeviceError::GpuUnusable { .. } => anyhow!("--gpus {}: {e}", list(&plan.gpus)),
    })?;
    if let Some(f) = &fallback {
        eprintln!(
            "verify-throughput: GPU path unavailable, falling back to the CPU:\n  - {}",
            f.missing.join("\n  - ")
        );
    }
    let bar = progress_bar(plan.quiet);
    let mut on_event = |e: &Event| match e {
        Event::Progress(p) => {
            bar.set_position((p.fraction * 1000.0) as u64);
            let on = if p.pipelines > 1 {
                format!(" on {} GPUs", p.pipelines)
            } else {
                String::new()
            };
            bar.set_message(format!(
                "{} images, {:.0} img/s{on}",
                p.images, p.current_ips
            ));
        }
        Event::Stalled(why) => bar.suspend(|| eprintln!("verify-throughput watchdog: {why}")),
    };
    let outcome = throughput::run(&plan.job, device, &mut on_event);
    bar.finish_and_clear();
    let outcome = outcome.map_err(|e| failure(e, device))?;
    let fell_back = fallback.map(|f| f.reason());
    let report = ThroughputReport::of(&plan.job, &outcome, plan.target_ips, fell_back);
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
    let problems = report.missed_target() || report.bad_record_count > 0;
    Ok(ExitCode::from(if problems {
        super::EXIT_PROBLEMS
    } else {
        super::EXIT_OK
    }))
}

fn list(gpus: &[u32]) -> String {
    gpus.iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(1000);
    b.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// A failed run, with what to try instead.
fn failure(e: PipelineError, device: Device) -> anyhow::Error {
    match (e, device) {
        (PipelineError::OnGpu { ordinal, source }, _) => anyhow::Error::new(*source).context(
            format!("GPU {ordinal} pipeline failed (try --gpus with fewer GPUs, or --device cpu)"),
        ),
        (e, Device::Gpu) => anyhow::Error::new(e)
            .context("GPU pipeline failed (try --device cpu to measure the CPU path)"),
        (e, Device::Cpu) => anyhow::Error::new(e).context("CPU pipeline failed"),
    }
}
