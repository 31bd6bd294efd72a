//! The CUDA kernels of `kernels/*.cu`, embedded with `include_str!`, compiled at start by NVRTC
//! for the device's architecture and cached on disk, then loaded as a module.
//!
//! Cache: `$DSPREP_CACHE_DIR`, else `$XDG_CACHE_HOME/dsprep/kernels`, else
//! `~/.cache/dsprep/kernels`; one file per (source, options, target, NVRTC version) hash, so a
//! changed kernel or compiler never reuses a stale image. Any cache problem just means compiling.

use crate::gpu::device::Gpu;
use crate::gpu::ffi::preprocess::{Precision, PreprocessKernel};
use crate::gpu::ffi::{cuda, nvrtc};
use crate::gpu::GpuError;
use cudarc::driver::CudaModule;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Every kernel source file: (file name, text).
pub const SOURCES: &[(&str, &str)] =
    &[("preprocess.cu", include_str!("../../kernels/preprocess.cu"))];

/// Options for every kernel: fast but IEEE-exact division/sqrt (results are compared against
/// the CPU reference at 1e-3), and full fp32 denormals.
pub fn compile_options() -> Vec<String> {
    vec![
        "--std=c++17".into(),
        "--prec-div=true".into(),
        "--ftz=false".into(),
    ]
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DSPREP_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("dsprep/kernels"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/dsprep/kernels"))
}

fn cache_key(name: &str, source: &str, target: nvrtc::Target, nvrtc_version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(source.as_bytes());
    h.update([0]);
    for o in compile_options() {
        h.update(o.as_bytes());
        h.update([0]);
    }
    h.update(target.arch_flag().as_bytes());
    h.update(format!("{nvrtc_version:?}").as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Compiles `name` for `target`, reading/writing the on-disk cache. Returns (image, cache hit).
pub fn compile_cached(
    name: &str,
    source: &str,
    target: nvrtc::Target,
) -> Result<(Vec<u8>, bool), GpuError> {
    cuda::nvrtc_present()?;
    let version = nvrtc::version()?;
    let ext = match target {
        nvrtc::Target::Cubin { .. } => "cubin",
        nvrtc::Target::Ptx { .. } => "ptx",
    };
    let file = cache_dir().map(|d| {
        d.join(format!(
            "{}-{}.{ext}",
            name.trim_end_matches(".cu"),
            cache_key(name, source, target, version)
        ))
    });
    if let Some(f) = &file {
        if let Ok(bytes) = std::fs::read(f) {
            if !bytes.is_empty() {
                return Ok((bytes, true));
            }
        }
    }
    let image = nvrtc::compile(name, source, target, &compile_options())?;
    if let Some(f) = &file {
        if let Some(parent) = f.parent() {
            if std::fs::create_dir_all(parent).is_ok() {
                let tmp = f.with_extension(format!("tmp{}", std::process::id()));
                if std::fs::write(&tmp, &image).is_ok() {
                    let _ = std::fs::rename(&tmp, f);
                }
            }
        }
    }
    Ok((image, false))
}

/// Compiles every file of [`SOURCES`] for `target` without a GPU (CI): Ok(names) or the first
/// compiler error with its log.
pub fn compile_all(target: nvrtc::Target) -> Result<Vec<String>, GpuError> {
    let mut done = Vec::new();
    for (name, src) in SOURCES {
        nvrtc::compile(name, src, target, &compile_options())?;
        done.push(name.to_string());
    }
    Ok(done)
}

/// Loaded preprocessing kernels for one device.
pub struct Kernels {
    _module: Arc<CudaModule>,
    pub preprocess_f32: PreprocessKernel,
    pub preprocess_f16: PreprocessKernel,
    /// Whether the image came from the on-disk cache.
    pub cache_hit: bool,
    pub compile_ms: f64,
}

impl Kernels {
    pub fn load(gpu: &Gpu) -> Result<Self, GpuError> {
        let t = std::time::Instant::now();
        let (name, src) = SOURCES[0];
        let target = nvrtc::Target::Cubin {
            major: gpu.cc.0,
            minor: gpu.cc.1,
        };
        let (image, cache_hit) = compile_cached(name, src, target)?;
        gpu.bind()?;
        let module = gpu
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(image))
            .map_err(|e| GpuError::Cuda {
                call: "cuModuleLoadData",
                message: format!("{e:?}"),
            })?;
        Ok(Self {
            preprocess_f32: PreprocessKernel::load(&module, Precision::F32)?,
            preprocess_f16: PreprocessKernel::load(&module, Precision::F16)?,
            _module: module,
            cache_hit,
            compile_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cu"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = SOURCES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new kernels/*.cu files to SOURCES");
    }

    #[test]
    fn cache_key_changes_with_source_and_target() {
        let a = cache_key(
            "a.cu",
            "x",
            nvrtc::Target::Cubin { major: 9, minor: 0 },
            (13, 0),
        );
        let b = cache_key(
            "a.cu",
            "y",
            nvrtc::Target::Cubin { major: 9, minor: 0 },
            (13, 0),
        );
        let c = cache_key(
            "a.cu",
            "x",
            nvrtc::Target::Cubin { major: 8, minor: 0 },
            (13, 0),
        );
        let d = cache_key(
            "a.cu",
            "x",
            nvrtc::Target::Cubin { major: 9, minor: 0 },
            (13, 5),
        );
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(
            a,
            cache_key(
                "a.cu",
                "x",
                nvrtc::Target::Cubin { major: 9, minor: 0 },
                (13, 0)
            )
        );
    }
}
