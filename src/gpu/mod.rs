//! GPU layer: CUDA context and streams ([`device`]), the hardware queues a context needs
//! ([`connections`]), kernels compiled at start by NVRTC
//! ([`kernels`]), library search ([`libs`]) and all FFI ([`ffi`]: cudarc's unsafe calls and
//! nvJPEG through libloading). Builds without CUDA; everything is found at run time.

pub mod connections;
pub mod device;
pub mod ffi;
pub mod kernels;
pub mod libs;

/// Errors of the GPU layer. `Missing` says what is absent and how to install it.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("{what} not found: {hint}")]
    Missing { what: String, hint: &'static str },
    #[error("no CUDA device {ordinal} (the driver reports {count} device(s))")]
    NoDevice { ordinal: u32, count: i32 },
    #[error("CUDA driver call {call} failed: {message}")]
    Cuda { call: &'static str, message: String },
    #[error("nvJPEG call {call} failed: {name} ({status})")]
    NvJpeg {
        call: &'static str,
        status: i32,
        name: &'static str,
    },
    #[error("NVRTC call {call} failed: {message}")]
    Nvrtc { call: &'static str, message: String },
    #[error("NVRTC could not compile kernels/{file}:\n{log}")]
    Compile { file: String, log: String },
    #[error("{0}")]
    Invalid(String),
}
