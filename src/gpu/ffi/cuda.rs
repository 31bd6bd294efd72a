//! Thin wrappers over the CUDA driver calls that cudarc exposes only as `unsafe`: raw device and
//! pinned host buffers (the pipeline hands raw pointers to nvJPEG, so cudarc's tracked
//! `CudaSlice` does not fit), events, asynchronous copies and the preprocessing kernel launch.
//!
//! Threading: every call needs the device's context current on the calling thread; pipeline
//! threads call [`crate::gpu::device::Gpu::bind`] once when they start.

use crate::gpu::{libs, GpuError};
use cudarc::driver::{
    result, sys, CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg,
};
use std::sync::Arc;

fn cuda_err(call: &'static str, e: result::DriverError) -> GpuError {
    GpuError::Cuda {
        call,
        message: format!("{e:?}"),
    }
}

/// True when libcuda can be opened (first as the system loader finds it, then from the driver
/// folders in [`libs::search_dirs`]). cudarc panics on first use without it, so check first.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library by name; no CUDA call is made.
    if unsafe { sys::is_culib_present() } {
        return true;
    }
    let dirs = libs::search_dirs();
    for d in &dirs {
        let p = d.join("libcuda.so.1");
        if p.is_file() && super::preload_global(&p) {
            // SAFETY: as above.
            return unsafe { sys::is_culib_present() };
        }
    }
    false
}

/// True when libnvrtc can be opened; pre-loads it from [`libs::search_dirs`] when the system
/// loader alone cannot find it. Returns the path used, when we had to look for it.
pub fn nvrtc_present() -> Result<Option<std::path::PathBuf>, GpuError> {
    // SAFETY: only tries to dlopen the library by name.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Ok(None);
    }
    let dirs = libs::search_dirs();
    match libs::find_in_dirs("nvrtc", &dirs) {
        Some(p) if super::preload_global(&p) => {
            // SAFETY: as above.
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                Ok(Some(p))
            } else {
                Err(GpuError::Missing {
                    what: format!(
                        "libnvrtc (found {} but it does not load under its soname)",
                        p.display()
                    ),
                    hint: libs::install_hint("nvrtc"),
                })
            }
        }
        _ => Err(GpuError::Missing {
            what: "libnvrtc".into(),
            hint: libs::install_hint("nvrtc"),
        }),
    }
}

/// Device memory from `cuMemAlloc`, freed on drop. Allocated once per pipeline slot and grown
/// only when a batch needs more, so steady state allocates nothing.
pub struct DeviceBuffer {
    ctx: Arc<CudaContext>,
    ptr: sys::CUdeviceptr,
    bytes: usize,
}

impl DeviceBuffer {
    pub fn alloc(ctx: &Arc<CudaContext>, bytes: usize) -> Result<Self, GpuError> {
        ctx.bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e))?;
        let bytes = bytes.max(1);
        // SAFETY: plain allocation with the context bound; the pointer is owned by the returned
        // value and freed exactly once in Drop.
        let ptr = unsafe { result::malloc_sync(bytes) }.map_err(|e| cuda_err("cuMemAlloc", e))?;
        Ok(Self {
            ctx: ctx.clone(),
            ptr,
            bytes,
        })
    }
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    /// Grows to at least `bytes` (contents are not kept). Callers guarantee no GPU work still
    /// uses the old memory.
    pub fn ensure(&mut self, bytes: usize) -> Result<bool, GpuError> {
        if bytes <= self.bytes {
            return Ok(false);
        }
        let grown = bytes.max(self.bytes + self.bytes / 4);
        *self = Self::alloc(&self.ctx, grown)?;
        Ok(true)
    }
    /// Synchronous copy of the whole buffer (or its first `dst.len()` bytes) to the host; tests.
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<(), GpuError> {
        if dst.len() > self.bytes {
            return Err(GpuError::Invalid(format!(
                "copy of {} bytes from a {}-byte device buffer",
                dst.len(),
                self.bytes
            )));
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e))?;
        // SAFETY: dst.len() <= self.bytes was checked; the device pointer is live.
        unsafe { result::memcpy_dtoh_sync(dst, self.ptr) }.map_err(|e| cuda_err("cuMemcpyDtoH", e))
    }
    /// Synchronous upload of `src` at byte `offset`; tests and rare fallbacks.
    pub fn copy_from_host(&self, offset: usize, src: &[u8]) -> Result<(), GpuError> {
        if offset
            .checked_add(src.len())
            .is_none_or(|end| end > self.bytes)
        {
            return Err(GpuError::Invalid(format!(
                "upload of {} bytes at {offset} into a {}-byte device buffer",
                src.len(),
                self.bytes
            )));
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e))?;
        // SAFETY: the range was checked to lie inside the allocation.
        unsafe { result::memcpy_htod_sync(self.ptr + offset as u64, src) }
            .map_err(|e| cuda_err("cuMemcpyHtoD", e))
    }
    /// Fills `bytes` bytes from `offset` with `value` on `stream` (poisoning outputs in tests).
    pub fn fill_async(&self, value: u8, stream: &CudaStream) -> Result<(), GpuError> {
        // SAFETY: the whole allocation is written; the stream belongs to this context.
        unsafe { result::memset_d8_async(self.ptr, value, self.bytes, stream.cu_stream()) }
            .map_err(|e| cuda_err("cuMemsetD8Async", e))
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: the pointer came from cuMemAlloc and is freed once; owners make sure no
            // GPU work still reads it (slots are recycled only after their completion event).
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

/// Page-locked host memory (`cuMemHostAlloc`, portable): the staging area the readers copy JPEG
/// bytes into once, so host→device transfers are true DMA and can run asynchronously.
pub struct PinnedBuffer {
    ctx: Arc<CudaContext>,
    ptr: *mut u8,
    bytes: usize,
}

// SAFETY: the buffer is plain host memory owned by this value; moving it between threads is
// fine, and shared access goes through &self (read-only slices).
unsafe impl Send for PinnedBuffer {}
// SAFETY: &PinnedBuffer only hands out shared slices.
unsafe impl Sync for PinnedBuffer {}

impl PinnedBuffer {
    pub fn alloc(ctx: &Arc<CudaContext>, bytes: usize) -> Result<Self, GpuError> {
        ctx.bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e))?;
        let bytes = bytes.max(1);
        // SAFETY: allocation with the context bound; CU_MEMHOSTALLOC_PORTABLE = 1.
        let ptr =
            unsafe { result::malloc_host(bytes, 1) }.map_err(|e| cuda_err("cuMemHostAlloc", e))?;
        Ok(Self {
            ctx: ctx.clone(),
            ptr: ptr as *mut u8,
            bytes,
        })
    }
    pub fn len(&self) -> usize {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for `bytes` bytes for the life of self (cuMemHostAlloc).
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }
    /// Grows to at least `bytes`, keeping the first `keep` bytes.
    pub fn ensure(&mut self, bytes: usize, keep: usize) -> Result<(), GpuError> {
        if bytes <= self.bytes {
            return Ok(());
        }
        let mut next = Self::alloc(&self.ctx, bytes.max(self.bytes + self.bytes / 2))?;
        let keep = keep.min(self.bytes);
        next.as_mut_slice()[..keep].copy_from_slice(&self.as_slice()[..keep]);
        *self = next;
        Ok(())
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc, freed once; no async copy still reads it
            // (owners recycle buffers only after the batch's completion event).
            let _ = unsafe { result::free_host(self.ptr as *mut std::ffi::c_void) };
        }
    }
}

/// A CUDA event (`cuEventCreate`), destroyed on drop.
pub struct Event {
    raw: sys::CUevent,
}

// SAFETY: CUDA events are driver objects usable from any thread of the process that has the
// owning context current.
unsafe impl Send for Event {}
// SAFETY: record/query/synchronize are thread-safe driver calls.
unsafe impl Sync for Event {}

impl Event {
    /// `timing`: false creates a cheaper event used only for ordering.
    pub fn new(timing: bool) -> Result<Self, GpuError> {
        let flags = if timing {
            sys::CUevent_flags::CU_EVENT_DEFAULT
        } else {
            sys::CUevent_flags::CU_EVENT_DISABLE_TIMING
        };
        let raw = result::event::create(flags).map_err(|e| cuda_err("cuEventCreate", e))?;
        Ok(Self { raw })
    }
    pub fn record(&self, stream: &CudaStream) -> Result<(), GpuError> {
        // SAFETY: both handles are live and belong to the current context.
        unsafe { result::event::record(self.raw, stream.cu_stream()) }
            .map_err(|e| cuda_err("cuEventRecord", e))
    }
    pub fn synchronize(&self) -> Result<(), GpuError> {
        // SAFETY: live event handle.
        unsafe { result::event::synchronize(self.raw) }
            .map_err(|e| cuda_err("cuEventSynchronize", e))
    }
    /// True when all work captured by the last record has completed.
    pub fn is_done(&self) -> Result<bool, GpuError> {
        // SAFETY: live event handle.
        match unsafe { result::event::query(self.raw) } {
            Ok(()) => Ok(true),
            Err(result::DriverError(sys::cudaError_enum::CUDA_ERROR_NOT_READY)) => Ok(false),
            Err(e) => Err(cuda_err("cuEventQuery", e)),
        }
    }
    /// Milliseconds from `start` to self (both recorded with timing enabled and complete).
    pub fn elapsed_ms_since(&self, start: &Event) -> Result<f32, GpuError> {
        // SAFETY: live event handles.
        unsafe { result::event::elapsed(start.raw, self.raw) }
            .map_err(|e| cuda_err("cuEventElapsedTime", e))
    }
    /// Makes `stream` wait (on the GPU) for the work captured by this event.
    pub fn wait_on(&self, stream: &CudaStream) -> Result<(), GpuError> {
        // SAFETY: live handles; flags 0 is the only defined value.
        unsafe {
            result::stream::wait_event(
                stream.cu_stream(),
                self.raw,
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
        }
        .map_err(|e| cuda_err("cuStreamWaitEvent", e))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by cuEventCreate, destroyed once. Destroying an event with pending
        // work is allowed (resources are released when it completes).
        let _ = unsafe { result::event::destroy(self.raw) };
    }
}

/// Asynchronous host→device copy of `src` to `dst` (+`offset`). `src` must stay alive and
/// unchanged until the stream has passed this point (callers use pinned slot buffers that are
/// recycled only after the batch's completion event).
pub fn copy_htod_async(
    dst: &DeviceBuffer,
    offset: usize,
    src: &[u8],
    stream: &CudaStream,
) -> Result<(), GpuError> {
    if offset
        .checked_add(src.len())
        .is_none_or(|end| end > dst.len())
    {
        return Err(GpuError::Invalid(format!(
            "async upload of {} bytes at {offset} into a {}-byte device buffer",
            src.len(),
            dst.len()
        )));
    }
    // SAFETY: the destination range was checked; the lifetime of `src` is the caller's contract
    // documented above.
    unsafe { result::memcpy_htod_async(dst.ptr() + offset as u64, src, stream.cu_stream()) }
        .map_err(|e| cuda_err("cuMemcpyHtoDAsync", e))
}

/// Raw `cudaStream_t` for libraries (nvJPEG) that take runtime-API streams; the driver's
/// CUstream is the same object.
pub fn raw_stream(stream: &CudaStream) -> *mut std::ffi::c_void {
    stream.cu_stream() as *mut std::ffi::c_void
}

/// Arguments of `preprocess_f32` / `preprocess_f16` in kernels/preprocess.cu (same order).
#[derive(Debug, Clone, Copy)]
pub struct PreprocessLaunch {
    pub arena: u64,
    pub descs: u64,
    pub out: u64,
    pub side: i32,
    pub batch: i32,
    pub mean: [f32; 3],
    pub inv_std: [f32; 3],
    pub pad: f32,
    pub bgr: i32,
}

/// Launches the fused preprocessing kernel over a `side × side × batch` grid.
pub fn launch_preprocess(
    func: &CudaFunction,
    stream: &CudaStream,
    a: &PreprocessLaunch,
) -> Result<(), GpuError> {
    if a.side <= 0 || a.batch <= 0 {
        return Err(GpuError::Invalid(format!(
            "kernel launch with side {} batch {}",
            a.side, a.batch
        )));
    }
    let (bx, by) = (32u32, 8u32);
    let side = a.side as u32;
    let cfg = LaunchConfig {
        grid_dim: (side.div_ceil(bx), side.div_ceil(by), a.batch as u32),
        block_dim: (bx, by, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(func);
    b.arg(&a.arena)
        .arg(&a.descs)
        .arg(&a.out)
        .arg(&a.side)
        .arg(&a.batch)
        .arg(&a.mean[0])
        .arg(&a.mean[1])
        .arg(&a.mean[2])
        .arg(&a.inv_std[0])
        .arg(&a.inv_std[1])
        .arg(&a.inv_std[2])
        .arg(&a.pad)
        .arg(&a.bgr);
    // SAFETY: the argument list matches the kernel signature (pointer, pointer, pointer, int,
    // int, 6 floats, float, int); the pointers are device allocations the caller keeps alive
    // until the stream passes this launch, and the kernel bounds-checks x/y/z.
    unsafe { b.launch(cfg) }.map_err(|e| cuda_err("cuLaunchKernel", e))?;
    Ok(())
}

/// Asynchronous host→device copy to a raw device address inside an allocation the caller owns
/// (a decode destination in a slot arena, sized from the image header by the reader).
pub fn copy_htod_raw_async(dst: u64, src: &[u8], stream: &CudaStream) -> Result<(), GpuError> {
    if dst == 0 {
        return Err(GpuError::Invalid("upload to a null device address".into()));
    }
    // SAFETY: callers pass a destination range they allocated (arena offset + 3·w·h bytes, with
    // w and h checked against the decoded image); `src` is pinned memory kept alive and
    // unchanged until the stream is synchronized (the CPU fallback synchronizes right after).
    unsafe { result::memcpy_htod_async(dst, src, stream.cu_stream()) }
        .map_err(|e| cuda_err("cuMemcpyHtoDAsync", e))
}
