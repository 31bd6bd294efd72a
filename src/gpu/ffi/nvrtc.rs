//! NVRTC compilation of `kernels/*.cu` to a cubin (or PTX), through cudarc's raw bindings.
//!
//! Why our own wrapper instead of `cudarc::nvrtc::compile_ptx_with_opts`: that one only returns
//! PTX and unwraps on a few error paths. We compile straight to a **cubin** for the device's
//! real architecture (`sm_90` on H100): a PTX written by a newer NVRTC (say the 13.5 pip wheel)
//! cannot be JIT-compiled by an older driver (13.0), while a cubin loads on any driver of the
//! same major version.

use crate::gpu::GpuError;
use cudarc::nvrtc::sys;
use std::ffi::{c_char, CString};

/// What to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Machine code for `sm_<cc>`.
    Cubin { major: u32, minor: u32 },
    /// Portable PTX for `compute_<cc>`.
    Ptx { major: u32, minor: u32 },
}

impl Target {
    pub fn arch_flag(&self) -> String {
        match *self {
            Target::Cubin { major, minor } => format!("--gpu-architecture=sm_{major}{minor}"),
            Target::Ptx { major, minor } => format!("--gpu-architecture=compute_{major}{minor}"),
        }
    }
}

fn check(call: &'static str, r: sys::nvrtcResult) -> Result<(), GpuError> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(GpuError::Nvrtc {
            call,
            message: format!("{r:?}"),
        })
    }
}

/// NVRTC's version (major, minor). Requires [`super::cuda::nvrtc_present`] first.
pub fn version() -> Result<(i32, i32), GpuError> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    check("nvrtcVersion", unsafe {
        sys::nvrtcVersion(&mut major, &mut minor)
    })?;
    Ok((major, minor))
}

/// Compiles `source` (named `name` in diagnostics) with `options` plus the target's arch flag.
/// Returns the image bytes (cubin, or PTX text without the trailing NUL).
pub fn compile(
    name: &str,
    source: &str,
    target: Target,
    options: &[String],
) -> Result<Vec<u8>, GpuError> {
    let c_src = CString::new(source)
        .map_err(|_| GpuError::Invalid(format!("{name}: source contains a NUL byte")))?;
    let c_name = CString::new(name)
        .map_err(|_| GpuError::Invalid(format!("{name}: name contains a NUL byte")))?;
    let mut opts: Vec<CString> = Vec::with_capacity(options.len() + 1);
    for o in options
        .iter()
        .cloned()
        .chain(std::iter::once(target.arch_flag()))
    {
        opts.push(
            CString::new(o)
                .map_err(|_| GpuError::Invalid(format!("{name}: option contains a NUL byte")))?,
        );
    }
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();

    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings that outlive the call; no headers passed.
    check("nvrtcCreateProgram", unsafe {
        sys::nvrtcCreateProgram(
            &mut prog,
            c_src.as_ptr(),
            c_name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    })?;
    let result = (|| {
        // SAFETY: `prog` was created above; the option pointers are valid for the call.
        let compiled =
            unsafe { sys::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr()) };
        if compiled != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(GpuError::Compile {
                file: name.to_string(),
                log: program_log(prog),
            });
        }
        let mut size = 0usize;
        match target {
            Target::Cubin { .. } => {
                // SAFETY: valid program and out-pointer.
                check("nvrtcGetCUBINSize", unsafe {
                    sys::nvrtcGetCUBINSize(prog, &mut size)
                })?;
                let mut buf = vec![0u8; size];
                // SAFETY: buf has exactly the size NVRTC reported.
                check("nvrtcGetCUBIN", unsafe {
                    sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char)
                })?;
                Ok(buf)
            }
            Target::Ptx { .. } => {
                // SAFETY: valid program and out-pointer.
                check("nvrtcGetPTXSize", unsafe {
                    sys::nvrtcGetPTXSize(prog, &mut size)
                })?;
                let mut buf = vec![0u8; size];
                // SAFETY: buf has exactly the size NVRTC reported.
                check("nvrtcGetPTX", unsafe {
                    sys::nvrtcGetPTX(prog, buf.as_mut_ptr() as *mut c_char)
                })?;
                while buf.last() == Some(&0) {
                    buf.pop();
                }
                Ok(buf)
            }
        }
    })();
    // SAFETY: destroys the program created above exactly once.
    unsafe { sys::nvrtcDestroyProgram(&mut prog) };
    result
}

fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: valid program and out-pointer.
    if unsafe { sys::nvrtcGetProgramLogSize(prog, &mut size) } != sys::nvrtcResult::NVRTC_SUCCESS
        || size == 0
    {
        return String::from("(no compiler log)");
    }
    let mut buf = vec![0u8; size];
    // SAFETY: buf has the size NVRTC reported.
    if unsafe { sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) }
        != sys::nvrtcResult::NVRTC_SUCCESS
    {
        return String::from("(compiler log unavailable)");
    }
    while buf.last() == Some(&0) {
        buf.pop();
    }
    String::from_utf8_lossy(&buf).into_owned()
}
