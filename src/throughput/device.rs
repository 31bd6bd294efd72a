//! Where a job runs: the caller's [`DeviceChoice`] against what this machine has (driver, the
//! GPU, nvJPEG, NVRTC; [`crate::gpu::device::probe`]). `auto` falls back to the CPU and says
//! what is missing (a value for the caller to print); asking for a GPU that cannot run, or for
//! several GPUs of which one cannot run, is an error naming what is missing.

use super::config::{Device, DeviceChoice, Job};

/// Why an `auto` run went to the CPU: what the GPU path lacks, each with how to install it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub missing: Vec<String>,
}

impl Fallback {
    /// One line for the report.
    pub fn reason(&self) -> String {
        self.missing.join("; ")
    }
}

/// A device that was asked for and cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A GPU run (`gpu`) where the GPU path cannot run at all.
    #[error("the GPU path cannot run here:\n  - {}", .missing.join("\n  - "))]
    GpuUnavailable { missing: Vec<String> },
    /// One GPU of a multi-GPU run cannot run (there is no silent fallback for those).
    #[error("GPU {ordinal} cannot run:\n  - {}", .missing.join("\n  - "))]
    GpuUnusable { ordinal: u32, missing: Vec<String> },
}

/// Picks the device for `job` on this machine.
pub fn select_device(job: &Job) -> Result<(Device, Option<Fallback>), DeviceError> {
    select_with(job.device, &job.ordinals(), |g| {
        crate::gpu::device::probe(g).missing
    })
}

/// [`select_device`] with the machine's answers given by `missing` (what GPU `ordinal` lacks).
pub fn select_with(
    choice: DeviceChoice,
    ordinals: &[u32],
    missing: impl Fn(u32) -> Vec<String>,
) -> Result<(Device, Option<Fallback>), DeviceError> {
    if choice == DeviceChoice::Cpu {
        return Ok((Device::Cpu, None));
    }
    if ordinals.len() > 1 {
        // Several GPUs were asked for by name: every one must be usable.
        for &ordinal in ordinals {
            let m = missing(ordinal);
            if !m.is_empty() {
                return Err(DeviceError::GpuUnusable {
                    ordinal,
                    missing: m,
                });
            }
        }
        return Ok((Device::Gpu, None));
    }
    let m = missing(ordinals.first().copied().unwrap_or(0));
    match (choice, m.is_empty()) {
        (_, true) => Ok((Device::Gpu, None)),
        (DeviceChoice::Auto, false) => Ok((Device::Cpu, Some(Fallback { missing: m }))),
        _ => Err(DeviceError::GpuUnavailable { missing: m }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(gpus: u32) -> impl Fn(u32) -> Vec<String> {
        move |g| {
            if g < gpus {
                Vec::new()
            } else {
                vec![format!("no CUDA device {g}"), "libnvjpeg".into()]
            }
        }
    }

    #[test]
    fn auto_falls_back_and_says_why() {
        let (d, f) = select_with(DeviceChoice::Auto, &[0], machine(0)).unwrap();
        assert_eq!(d, Device::Cpu);
        assert_eq!(f.unwrap().reason(), "no CUDA device 0; libnvjpeg");
        assert_eq!(
            select_with(DeviceChoice::Auto, &[0], machine(1)).unwrap(),
            (Device::Gpu, None)
        );
        assert_eq!(
            select_with(DeviceChoice::Cpu, &[0, 1], machine(0)).unwrap(),
            (Device::Cpu, None)
        );
    }

    #[test]
    fn asked_for_gpus_must_run() {
        let e = select_with(DeviceChoice::Gpu, &[0], machine(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the GPU path cannot run here:\n  - no CUDA device 0\n  - libnvjpeg"
        );
        // Several GPUs: no fallback even with auto; the first unusable one is named.
        let e = select_with(DeviceChoice::Auto, &[0, 2, 3], machine(2)).unwrap_err();
        assert!(
            matches!(e, DeviceError::GpuUnusable { ordinal: 2, .. }),
            "{e}"
        );
        assert!(e
            .to_string()
            .starts_with("GPU 2 cannot run:\n  - no CUDA device 2"));
        assert_eq!(
            select_with(DeviceChoice::Gpu, &[0, 1], machine(2)).unwrap(),
            (Device::Gpu, None)
        );
    }

    #[test]
    fn this_machine_answers_consistently() {
        let job = Job {
            device: DeviceChoice::Auto,
            config: super::super::PipelineConfig::with_defaults("d".into(), Vec::new(), 2),
            per_gpu: Vec::new(),
        };
        let missing = crate::gpu::device::probe(0).missing;
        let (d, f) = select_device(&job).unwrap();
        if missing.is_empty() {
            assert_eq!((d, f), (Device::Gpu, None));
        } else {
            assert_eq!(d, Device::Cpu);
            assert_eq!(f.unwrap().missing, missing);
        }
    }
}
