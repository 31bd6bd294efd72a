//! Every `unsafe` block of the GPU code lives under this module, each with a `// SAFETY:` note:
//! the CUDA driver calls cudarc leaves unsafe (raw device/pinned memory, events, kernel launch),
//! NVRTC compilation to a cubin, the nvJPEG library loaded at run time with libloading, and the
//! preprocessing kernel's ABI and launch. Every function here is safe to call: device memory is
//! reached through typed, bounds-checked buffers and images, asynchronous reads of pinned memory
//! are tracked by the buffer, and kernel descriptors are checked before they reach the device.
//! Everything outside `ffi` is safe Rust over these wrappers.

pub mod cuda;
pub mod nvjpeg;
pub mod nvrtc;
pub mod preprocess;

/// Opens `path` with `RTLD_GLOBAL` and keeps it loaded for the life of the process.
///
/// Why: cudarc opens libcuda/libnvrtc by *soname* only (through the system loader's search
/// path). A library already loaded under the same soname satisfies that lookup, so pre-loading
/// the copy we found in CUDA_HOME or a pip wheel makes cudarc use it without the user having to
/// set LD_LIBRARY_PATH.
pub(crate) fn preload_global(path: &std::path::Path) -> bool {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading a CUDA shared library runs its initialisers; the libraries we load here
    // (libcuda, libnvrtc) are designed to be dlopen'ed and have no unsound initialisers.
    match unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) } {
        Ok(lib) => {
            // Never unloaded: cudarc keeps function pointers into it for the whole process.
            std::mem::forget(lib);
            true
        }
        Err(_) => false,
    }
}
