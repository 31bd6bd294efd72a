//! One CUDA device: its primary context (shared with nvJPEG, which uses the runtime API on the
//! same primary context), streams, and the checks that must pass before cudarc is touched
//! (cudarc panics when libcuda is missing, so [`probe`] asks first).

use crate::gpu::ffi::{cuda, nvjpeg};
use crate::gpu::{libs, GpuError};
use cudarc::driver::{sys, CudaContext, CudaStream};
use std::sync::Arc;

/// An opened device.
pub struct Gpu {
    pub ordinal: u32,
    pub ctx: Arc<CudaContext>,
    pub name: String,
    /// Compute capability (major, minor).
    pub cc: (u32, u32),
    pub total_mem: usize,
}

impl Gpu {
    /// Opens device `ordinal`; checks the driver library first.
    pub fn open(ordinal: u32) -> Result<Self, GpuError> {
        if !cuda::driver_present() {
            return Err(GpuError::Missing {
                what: "the NVIDIA driver library (libcuda.so.1)".into(),
                hint: libs::install_hint("cuda"),
            });
        }
        let count = CudaContext::device_count().map_err(|e| GpuError::Cuda {
            call: "cuDeviceGetCount",
            message: format!("{e:?} (is the NVIDIA driver loaded and a GPU visible?)"),
        })?;
        if ordinal as i64 >= count as i64 {
            return Err(GpuError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal as usize).map_err(|e| GpuError::Cuda {
            call: "cuDevicePrimaryCtxRetain",
            message: format!("{e:?}"),
        })?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let (ma, mi) = ctx.compute_capability().map_err(|e| GpuError::Cuda {
            call: "cuDeviceGetAttribute",
            message: format!("{e:?}"),
        })?;
        let total_mem = ctx.total_mem().unwrap_or(0);
        Ok(Self {
            ordinal,
            ctx,
            name,
            cc: (ma.max(0) as u32, mi.max(0) as u32),
            total_mem,
        })
    }

    /// Makes this device's context current on the calling thread (each pipeline thread once).
    pub fn bind(&self) -> Result<(), GpuError> {
        self.ctx.bind_to_thread().map_err(|e| GpuError::Cuda {
            call: "cuCtxSetCurrent",
            message: format!("{e:?}"),
        })
    }

    pub fn new_stream(&self) -> Result<Arc<CudaStream>, GpuError> {
        self.ctx.new_stream().map_err(|e| GpuError::Cuda {
            call: "cuStreamCreate",
            message: format!("{e:?}"),
        })
    }

    /// (free, total) device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize), GpuError> {
        self.bind()?;
        self.ctx.mem_get_info().map_err(|e| GpuError::Cuda {
            call: "cuMemGetInfo",
            message: format!("{e:?}"),
        })
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> u32 {
        self.ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map(|v| v.max(0) as u32)
            .unwrap_or(0)
    }
}

/// What was found on this machine; `missing` lists what blocks the GPU path, each with how to
/// install it (used for the `--device auto` fallback message).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Probe {
    pub device_name: Option<String>,
    pub compute_capability: Option<(u32, u32)>,
    pub nvjpeg: Option<String>,
    pub nvjpeg_version: Option<(i32, i32, i32)>,
    pub nvrtc: Option<String>,
    pub hw_decoder: Option<(u32, u32)>,
    pub missing: Vec<String>,
}

/// Checks driver, device `ordinal`, nvJPEG and NVRTC without panicking.
pub fn probe(ordinal: u32) -> Probe {
    let mut p = Probe::default();
    match Gpu::open(ordinal) {
        Ok(g) => {
            p.device_name = Some(g.name.clone());
            p.compute_capability = Some(g.cc);
        }
        Err(e) => p.missing.push(e.to_string()),
    }
    match nvjpeg::NvJpeg::load() {
        Ok(l) => {
            p.nvjpeg = Some(l.path.display().to_string());
            p.nvjpeg_version = Some(l.version);
        }
        Err(e) => p.missing.push(e.to_string()),
    }
    match cuda::nvrtc_present() {
        Ok(path) => {
            p.nvrtc = Some(
                path.map(|x| x.display().to_string())
                    .unwrap_or_else(|| "system loader path".into()),
            );
        }
        Err(e) => p.missing.push(e.to_string()),
    }
    p
}
