//! Thin wrappers over the CUDA driver calls that cudarc exposes only as `unsafe`: device and
//! pinned host buffers (the pipeline hands addresses inside them to nvJPEG, so cudarc's tracked
//! `CudaSlice` does not fit), events and asynchronous copies. Everything here is safe to call:
//!
//! * device memory is reached only through a [`DeviceBuffer`] or a bounds-checked
//!   [`DeviceImage`] borrowed from one, never a bare address;
//! * pinned memory read asynchronously (a copy, nvJPEG's batched decode) is handed over as a
//!   [`PinnedSlice`]; the read is recorded on the buffer (an event on the reading stream), and
//!   the buffer waits for it before it can be changed ([`PinnedBuffer::as_mut_slice`]), grown
//!   or freed;
//! * freeing device memory (`cuMemFree`) waits for outstanding device work that uses it, so a
//!   buffer dropped while a stream still writes it is not released under that work.
//!
//! Threading: every call needs the device's context current on the calling thread; pipeline
//! threads call [`crate::gpu::device::Gpu::bind`] once when they start.

use crate::gpu::{libs, GpuError};
use cudarc::driver::{result, sys, CudaContext, CudaStream};
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::{Arc, Mutex};

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

/// Bytes of device memory held by [`DeviceBuffer`]s in this process, and `cuMemAlloc` calls
/// made so far: what the loader's `stats()` reports (NVML sees the process; PyTorch's allocator
/// does not see these).
static DEVICE_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static DEVICE_ALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// (bytes held by live [`DeviceBuffer`]s, `cuMemAlloc` calls so far) in this process.
pub fn device_allocations() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (DEVICE_BYTES.load(Relaxed), DEVICE_ALLOCS.load(Relaxed))
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
        DEVICE_BYTES.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        DEVICE_ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            ctx: ctx.clone(),
            ptr,
            bytes,
        })
    }
    /// The device address, for the FFI wrappers that pass it on after checking a range.
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    /// The `width`×`height` interleaved RGB8 image at byte `offset` (pitch 3·width): a decode
    /// destination that lies inside this buffer.
    pub fn image(&self, offset: u64, width: u32, height: u32) -> Result<DeviceImage<'_>, GpuError> {
        let size = 3 * u64::from(width) * u64::from(height);
        let fits = offset
            .checked_add(size)
            .is_some_and(|end| end <= self.bytes as u64);
        if width == 0 || height == 0 || !fits {
            return Err(GpuError::Invalid(format!(
                "{width}x{height} RGB image at byte {offset} of a {}-byte device buffer",
                self.bytes
            )));
        }
        Ok(DeviceImage {
            ptr: self.ptr + offset,
            width,
            height,
            _buf: PhantomData,
        })
    }
    /// Grows to at least `bytes` (contents are not kept). Freeing the old memory waits for
    /// device work still using it.
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
            // SAFETY: the pointer came from cuMemAlloc and is freed once; cuMemFree does not
            // release memory that outstanding device work still uses (it waits for it).
            let _ = unsafe { result::free_sync(self.ptr) };
        }
        DEVICE_BYTES.fetch_sub(self.bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An interleaved RGB8 image (pitch 3·width) inside a [`DeviceBuffer`], which it borrows:
/// what decoders write into. Made only by [`DeviceBuffer::image`], so the range is checked.
#[derive(Debug, Clone, Copy)]
pub struct DeviceImage<'a> {
    ptr: u64,
    width: u32,
    height: u32,
    _buf: PhantomData<&'a DeviceBuffer>,
}

impl DeviceImage<'_> {
    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Bytes per row.
    pub fn pitch(&self) -> usize {
        3 * self.width as usize
    }
    /// Bytes of the whole image.
    pub fn bytes(&self) -> usize {
        self.pitch() * self.height as usize
    }
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
}

/// Page-locked host memory (`cuMemHostAlloc`, portable): the staging area the readers copy JPEG
/// bytes into once, so host→device transfers are true DMA and can run asynchronously.
pub struct PinnedBuffer {
    ctx: Arc<CudaContext>,
    ptr: *mut u8,
    bytes: usize,
    /// Asynchronous reads of this memory still possibly running (see [`PinnedSlice`]).
    reads: Mutex<Reads>,
}

/// Events recorded after asynchronous reads of a pinned buffer, and spent ones kept for reuse
/// (creating an event is a driver call; a batch records a few).
#[derive(Default)]
struct Reads {
    pending: Vec<Event>,
    spare: Vec<Event>,
}

// SAFETY: the buffer is plain host memory owned by this value; moving it between threads is
// fine, and shared access goes through &self (read-only slices; the read list is a Mutex).
unsafe impl Send for PinnedBuffer {}
// SAFETY: &PinnedBuffer only hands out shared slices and locks the read list.
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
            reads: Mutex::new(Reads::default()),
        })
    }
    pub fn len(&self) -> usize {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for `bytes` bytes for the life of self (cuMemHostAlloc); the
        // memory is only written through &mut self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }
    /// The memory to write, once every asynchronous read of it has finished.
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8], GpuError> {
        self.wait_for_reads()?;
        // SAFETY: as above, &mut self gives exclusive host access, and no device read of the
        // memory is pending (waited for just now).
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) })
    }
    /// `range` of this buffer, for an asynchronous reader.
    pub fn slice(&self, range: Range<usize>) -> Result<PinnedSlice<'_>, GpuError> {
        if range.start > range.end || range.end > self.bytes {
            return Err(GpuError::Invalid(format!(
                "bytes {range:?} of a {}-byte pinned buffer",
                self.bytes
            )));
        }
        Ok(PinnedSlice { buf: self, range })
    }
    /// Grows to at least `bytes`, keeping the first `keep` bytes.
    pub fn ensure(&mut self, bytes: usize, keep: usize) -> Result<(), GpuError> {
        if bytes <= self.bytes {
            return Ok(());
        }
        let mut next = Self::alloc(&self.ctx, bytes.max(self.bytes + self.bytes / 2))?;
        let keep = keep.min(self.bytes);
        next.as_mut_slice()?[..keep].copy_from_slice(&self.as_slice()[..keep]);
        // The old buffer waits for its pending reads when it is dropped here.
        *self = next;
        Ok(())
    }
    /// Records that `stream` reads this memory from now on (an asynchronous copy or decode was
    /// just queued on it).
    pub(crate) fn note_async_read(&self, stream: &CudaStream) -> Result<(), GpuError> {
        let mut r = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        let ev = match r.spare.pop() {
            Some(e) => e,
            None => Event::new(false)?,
        };
        ev.record(stream)?;
        r.pending.push(ev);
        Ok(())
    }
    fn wait_for_reads(&mut self) -> Result<(), GpuError> {
        let r = self.reads.get_mut().unwrap_or_else(|p| p.into_inner());
        while let Some(ev) = r.pending.pop() {
            let done = ev.synchronize();
            r.spare.push(ev);
            done?;
        }
        Ok(())
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // A failed wait leaves the memory allocated rather than freeing it under a reader.
            if self.wait_for_reads().is_ok() {
                // SAFETY: allocated by cuMemHostAlloc, freed once, and no asynchronous read of
                // it is pending (waited for just now).
                let _ = unsafe { result::free_host(self.ptr as *mut std::ffi::c_void) };
            }
        }
    }
}

/// Bytes of a [`PinnedBuffer`] handed to an asynchronous reader: the buffer keeps the read in
/// its list (see [`PinnedBuffer::as_mut_slice`]) once the reader has queued it.
#[derive(Clone)]
pub struct PinnedSlice<'a> {
    buf: &'a PinnedBuffer,
    range: Range<usize>,
}

impl<'a> PinnedSlice<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        &self.buf.as_slice()[self.range.clone()]
    }
    pub fn len(&self) -> usize {
        self.range.len()
    }
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
    pub(crate) fn buffer(&self) -> &'a PinnedBuffer {
        self.buf
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
    ///
    /// Every event is created with `CU_EVENT_BLOCKING_SYNC`: a thread that waits for one
    /// sleeps instead of spinning. The pipeline's threads wait on events all the time (slot
    /// completion, pinned-buffer reads), and when the GPU is busy with a training step every
    /// spinning waiter burned a core (10 cores for a 1.6k img/s training loop on an H200).
    pub fn new(timing: bool) -> Result<Self, GpuError> {
        const BLOCKING_SYNC: u32 = 0x1;
        const DISABLE_TIMING: u32 = 0x2;
        let flags = BLOCKING_SYNC | if timing { 0 } else { DISABLE_TIMING };
        let mut raw = std::mem::MaybeUninit::<sys::CUevent>::uninit();
        // SAFETY: cuEventCreate writes the new event's handle into `raw` on success, and the
        // flags are a combination of the documented CUevent_flags bits.
        unsafe { sys::cuEventCreate(raw.as_mut_ptr(), flags) }
            .result()
            .map_err(|e| cuda_err("cuEventCreate", e))?;
        // SAFETY: initialised by the successful call above.
        Ok(Self {
            raw: unsafe { raw.assume_init() },
        })
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

/// Whether all work queued on `stream` so far has completed (a non-blocking query).
pub fn stream_done(stream: &CudaStream) -> Result<bool, GpuError> {
    stream
        .context()
        .bind_to_thread()
        .map_err(|e| cuda_err("cuCtxSetCurrent", e))?;
    // SAFETY: the stream handle is live (borrowed from its owner) and its context is current.
    match unsafe { sys::cuStreamQuery(stream.cu_stream()) } {
        sys::cudaError_enum::CUDA_SUCCESS => Ok(true),
        sys::cudaError_enum::CUDA_ERROR_NOT_READY => Ok(false),
        e => Err(cuda_err("cuStreamQuery", result::DriverError(e))),
    }
}

/// A stream that belongs to someone else: the consumer's stream a DLPack import named
/// (`__dlpack__(stream=…)`), or the legacy (1) / per-thread (2) default stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignStream(usize);

impl ForeignStream {
    /// # Safety
    /// `handle` must be 0, 1 (legacy default stream), 2 (per-thread default stream) or a
    /// `CUstream` of the device's primary context that stays alive while events are recorded on
    /// it or it waits on them (the DLPack protocol: the consumer passes its own live stream).
    pub unsafe fn from_raw(handle: usize) -> Self {
        ForeignStream(handle)
    }

    fn raw(self) -> sys::CUstream {
        self.0 as sys::CUstream
    }
}

impl Event {
    /// Records this event on a foreign stream (when a consumer lets go of memory it used there).
    pub fn record_foreign(&self, stream: ForeignStream) -> Result<(), GpuError> {
        // SAFETY: live event; the stream is live by `ForeignStream::from_raw`'s contract.
        unsafe { result::event::record(self.raw, stream.raw()) }
            .map_err(|e| cuda_err("cuEventRecord", e))
    }

    /// Makes a foreign stream wait (on the GPU) for the work captured by this event.
    pub fn wait_foreign(&self, stream: ForeignStream) -> Result<(), GpuError> {
        // SAFETY: live event; the stream is live by `ForeignStream::from_raw`'s contract.
        unsafe {
            result::stream::wait_event(
                stream.raw(),
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

/// Asynchronous copy of `src` into `dst` from byte `offset`, on `stream`; `src` is marked as
/// read by `stream` until the copy has run.
pub fn upload_async(
    dst: &DeviceBuffer,
    offset: usize,
    src: PinnedSlice<'_>,
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
    copy_async(dst.ptr() + offset as u64, &src, stream)
}

/// Asynchronous copy of a whole decoded image (`dst.bytes()` bytes of `src`) on `stream`.
pub fn upload_image_async(
    dst: DeviceImage<'_>,
    src: PinnedSlice<'_>,
    stream: &CudaStream,
) -> Result<(), GpuError> {
    if src.len() != dst.bytes() {
        return Err(GpuError::Invalid(format!(
            "upload of {} bytes into a {}x{} RGB image ({} bytes)",
            src.len(),
            dst.width(),
            dst.height(),
            dst.bytes()
        )));
    }
    copy_async(dst.ptr(), &src, stream)
}

/// The copy behind [`upload_async`] and [`upload_image_async`]; `dst` has room for `src`.
fn copy_async(dst: u64, src: &PinnedSlice<'_>, stream: &CudaStream) -> Result<(), GpuError> {
    // SAFETY: the callers checked that `src.len()` bytes from `dst` lie inside a live device
    // allocation (a DeviceBuffer, borrowed for the call; freeing it waits for this copy); the
    // source is pinned memory that is recorded as read by `stream` right after, so it is not
    // changed or freed before the copy has run.
    unsafe { result::memcpy_htod_async(dst, src.bytes(), stream.cu_stream()) }
        .map_err(|e| cuda_err("cuMemcpyHtoDAsync", e))?;
    src.buffer().note_async_read(stream)
}

/// Raw `cudaStream_t` for libraries (nvJPEG) that take runtime-API streams; the driver's
/// CUstream is the same object.
pub(crate) fn raw_stream(stream: &CudaStream) -> *mut std::ffi::c_void {
    stream.cu_stream() as *mut std::ffi::c_void
}
