//! nvJPEG, loaded at run time with libloading (no link-time dependency: dsprep builds and runs
//! without CUDA, and picks up libnvjpeg.so.13 from the toolkit or the `nvidia-nvjpeg` wheel).
//!
//! Two decode paths are wrapped (see DESIGN.md "nvJPEG and the GPU"):
//! * [`BatchedState`]: `nvjpegDecodeBatched` on a handle created with the HARDWARE backend —
//!   the A100/H100 JPEG engines. Baseline, single-scan, 1 or 3 channels only; ask
//!   [`JpegStream::hw_supported`] per image.
//! * [`Decoupled`]: the decoupled API (parse → host stage → transfer → device stage) with a
//!   HYBRID (CPU Huffman) or GPU_HYBRID decoder, two pinned buffers so the host stage of image
//!   i+1 overlaps the device stage of image i. Takes what the engines cannot (progressive, 4:1:1…)
//!   and, concurrently, a share of the rest.
//!
//! Output is always interleaved RGB (`NVJPEG_OUTPUT_RGBI`, 3 bytes a pixel, pitch = 3·width)
//! written to a caller-provided [`DeviceImage`]: nvJPEG never allocates our outputs. Before
//! anything is written the wrappers check that the image nvJPEG parsed has exactly the
//! destination's size, so a decode never writes past its destination.

use super::cuda::{self, DeviceImage, Event, PinnedSlice};
use crate::gpu::{libs, GpuError};
use cudarc::driver::CudaStream;
use libloading::Library;
use std::ffi::{c_int, c_uint, c_void};
use std::path::PathBuf;
use std::sync::Arc;

type Status = c_int;
type Handle_ = *mut c_void;
type State_ = *mut c_void;
type Stream_ = *mut c_void;
type Decoder_ = *mut c_void;
type Params_ = *mut c_void;
type Pinned_ = *mut c_void;
type DevBuf_ = *mut c_void;
/// `cudaStream_t` (the driver's CUstream is the same object).
type RawStream = *mut c_void;

pub const BACKEND_DEFAULT: c_int = 0;
pub const BACKEND_HYBRID: c_int = 1;
pub const BACKEND_GPU_HYBRID: c_int = 2;
pub const BACKEND_HARDWARE: c_int = 3;
/// `NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION`: chroma upsampled by interpolation, not
/// replication.
pub const NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION: u32 = 1 << 5;
const OUTPUT_RGBI: c_int = 5;
const STATUS_ARCH_MISMATCH: c_int = 7;
const STATUS_JPEG_NOT_SUPPORTED: c_int = 4;
const STATUS_BAD_JPEG: c_int = 3;
const STATUS_INCOMPLETE: c_int = 10;

/// `nvjpegImage_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Image {
    channel: [*mut u8; 4],
    pitch: [usize; 4],
}

impl Image {
    fn rgbi(dst: &DeviceImage<'_>) -> Self {
        Self {
            channel: [
                dst.ptr() as *mut u8,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ],
            pitch: [dst.pitch(), 0, 0, 0],
        }
    }
}

/// Name of an nvjpegStatus_t value.
pub fn status_name(s: c_int) -> &'static str {
    match s {
        0 => "NVJPEG_STATUS_SUCCESS",
        1 => "NVJPEG_STATUS_NOT_INITIALIZED",
        2 => "NVJPEG_STATUS_INVALID_PARAMETER",
        3 => "NVJPEG_STATUS_BAD_JPEG",
        4 => "NVJPEG_STATUS_JPEG_NOT_SUPPORTED",
        5 => "NVJPEG_STATUS_ALLOCATOR_FAILURE",
        6 => "NVJPEG_STATUS_EXECUTION_FAILED",
        7 => "NVJPEG_STATUS_ARCH_MISMATCH",
        8 => "NVJPEG_STATUS_INTERNAL_ERROR",
        9 => "NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED",
        10 => "NVJPEG_STATUS_INCOMPLETE_BITSTREAM",
        _ => "unknown nvjpegStatus_t",
    }
}

fn check(call: &'static str, s: Status) -> Result<(), GpuError> {
    if s == 0 {
        Ok(())
    } else {
        Err(GpuError::NvJpeg {
            call,
            status: s,
            name: status_name(s),
        })
    }
}

/// True for statuses that say "this image", not "the library": the image is reported and the
/// run goes on.
pub fn is_image_error(e: &GpuError) -> bool {
    matches!(e, GpuError::NvJpeg { status, .. }
        if *status == STATUS_BAD_JPEG || *status == STATUS_JPEG_NOT_SUPPORTED || *status == STATUS_INCOMPLETE)
}

macro_rules! api {
    ($($name:ident : fn($($arg:ty),*);)*) => {
        /// Function table of the loaded libnvjpeg.
        #[allow(non_snake_case)]
        struct Api { $($name: unsafe extern "C" fn($($arg),*) -> Status,)* }
        impl Api {
            #[allow(non_snake_case)]
            fn load(lib: &Library) -> Result<Self, String> {
                Ok(Self { $($name: {
                    // SAFETY: the symbol is declared with the signature of nvjpeg.h (CUDA 12/13);
                    // the pointer is copied out and used only while `lib` (kept in `NvJpeg`) is
                    // loaded.
                    let s: libloading::Symbol<unsafe extern "C" fn($($arg),*) -> Status> =
                        unsafe { lib.get(concat!(stringify!($name), "\0").as_bytes()) }
                            .map_err(|e| format!("{}: {e}", stringify!($name)))?;
                    *s
                },)* })
            }
        }
    };
}

api! {
    nvjpegCreateEx: fn(c_int, *mut c_void, *mut c_void, c_uint, *mut Handle_);
    nvjpegDestroy: fn(Handle_);
    nvjpegGetHardwareDecoderInfo: fn(Handle_, *mut c_uint, *mut c_uint);
    nvjpegGetProperty: fn(c_int, *mut c_int);
    nvjpegJpegStateCreate: fn(Handle_, *mut State_);
    nvjpegJpegStateDestroy: fn(State_);
    nvjpegDecodeBatchedInitialize: fn(Handle_, State_, c_int, c_int, c_int);
    nvjpegDecodeBatched: fn(Handle_, State_, *const *const u8, *const usize, *mut Image, RawStream);
    nvjpegDecodeBatchedPreAllocate: fn(Handle_, State_, c_int, c_int, c_int, c_int, c_int);
    nvjpegDecodeBatchedSupported: fn(Handle_, Stream_, *mut c_int);
    nvjpegJpegStreamCreate: fn(Handle_, *mut Stream_);
    nvjpegJpegStreamDestroy: fn(Stream_);
    nvjpegJpegStreamParse: fn(Handle_, *const u8, usize, c_int, c_int, Stream_);
    nvjpegJpegStreamParseHeader: fn(Handle_, *const u8, usize, Stream_);
    nvjpegJpegStreamGetFrameDimensions: fn(Stream_, *mut c_uint, *mut c_uint);
    nvjpegJpegStreamGetComponentsNum: fn(Stream_, *mut c_uint);
    nvjpegDecoderCreate: fn(Handle_, c_int, *mut Decoder_);
    nvjpegDecoderDestroy: fn(Decoder_);
    nvjpegDecoderStateCreate: fn(Handle_, Decoder_, *mut State_);
    nvjpegDecoderJpegSupported: fn(Decoder_, Stream_, Params_, *mut c_int);
    nvjpegBufferPinnedCreate: fn(Handle_, *mut c_void, *mut Pinned_);
    nvjpegBufferPinnedDestroy: fn(Pinned_);
    nvjpegBufferDeviceCreate: fn(Handle_, *mut c_void, *mut DevBuf_);
    nvjpegBufferDeviceDestroy: fn(DevBuf_);
    nvjpegStateAttachPinnedBuffer: fn(State_, Pinned_);
    nvjpegStateAttachDeviceBuffer: fn(State_, DevBuf_);
    nvjpegDecodeParamsCreate: fn(Handle_, *mut Params_);
    nvjpegDecodeParamsDestroy: fn(Params_);
    nvjpegDecodeParamsSetOutputFormat: fn(Params_, c_int);
    nvjpegDecodeParamsSetAllowCMYK: fn(Params_, c_int);
    nvjpegDecodeJpegHost: fn(Handle_, Decoder_, State_, Params_, Stream_);
    nvjpegDecodeJpegTransferToDevice: fn(Handle_, Decoder_, State_, Stream_, RawStream);
    nvjpegDecodeJpegDevice: fn(Handle_, Decoder_, State_, *mut Image, RawStream);
}

/// The loaded library.
pub struct NvJpeg {
    api: Api,
    pub path: PathBuf,
    pub version: (i32, i32, i32),
    _lib: Library,
}

// SAFETY: the function table is immutable after loading and nvJPEG's entry points are callable
// from any thread (per-thread objects are separate states/streams).
unsafe impl Send for NvJpeg {}
// SAFETY: as above.
unsafe impl Sync for NvJpeg {}

impl NvJpeg {
    /// Finds and loads libnvjpeg ([`libs::search_dirs`], then the system loader's own search).
    pub fn load() -> Result<Arc<Self>, GpuError> {
        let dirs = libs::search_dirs();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = libs::find_in_dirs("nvjpeg", &dirs) {
            candidates.push(p);
        }
        candidates.extend(libs::file_names("nvjpeg").into_iter().map(PathBuf::from));
        let mut errors = Vec::new();
        for c in candidates {
            // SAFETY: libnvjpeg's initialisers are safe to run; it is designed to be dlopen'ed.
            match unsafe { Library::new(&c) } {
                Ok(lib) => {
                    let api = Api::load(&lib).map_err(|e| GpuError::Missing {
                        what: format!("a usable libnvjpeg ({} lacks {e})", c.display()),
                        hint: libs::install_hint("nvjpeg"),
                    })?;
                    let mut v = [0 as c_int; 3];
                    for (i, slot) in v.iter_mut().enumerate() {
                        // SAFETY: property ids 0..2 = MAJOR/MINOR/PATCH; valid out-pointer.
                        let _ = unsafe { (api.nvjpegGetProperty)(i as c_int, slot) };
                    }
                    return Ok(Arc::new(Self {
                        api,
                        path: c,
                        version: (v[0], v[1], v[2]),
                        _lib: lib,
                    }));
                }
                Err(e) => errors.push(format!("{}: {e}", c.display())),
            }
        }
        Err(GpuError::Missing {
            what: format!(
                "libnvjpeg (looked in {} folders; {})",
                dirs.len(),
                errors.last().cloned().unwrap_or_default()
            ),
            hint: libs::install_hint("nvjpeg"),
        })
    }
}

/// An nvJPEG library handle. Thread-safe; one per device, shared by all decoders.
pub struct Handle {
    lib: Arc<NvJpeg>,
    raw: Handle_,
    /// Backend the handle was created with (HARDWARE when the engines are usable).
    pub backend: c_int,
}

// SAFETY: nvJPEG handles may be used concurrently from several threads as long as each thread
// uses its own state objects, which is how the pipeline uses them.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Handle {
    /// Creates a handle, preferring the hardware backend (falls back to DEFAULT when the GPU has
    /// no JPEG engine: NVJPEG_STATUS_ARCH_MISMATCH or NOT_SUPPORTED). `flags`: NVJPEG_FLAGS_*.
    pub fn new(lib: &Arc<NvJpeg>, want_hardware: bool, flags: u32) -> Result<Arc<Self>, GpuError> {
        let mut raw: Handle_ = std::ptr::null_mut();
        let mut backend = BACKEND_DEFAULT;
        if want_hardware {
            // SAFETY: null allocators select the defaults; valid out-pointer.
            let s = unsafe {
                (lib.api.nvjpegCreateEx)(
                    BACKEND_HARDWARE,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    flags,
                    &mut raw,
                )
            };
            if s == 0 {
                backend = BACKEND_HARDWARE;
            } else if s != STATUS_ARCH_MISMATCH && s != STATUS_JPEG_NOT_SUPPORTED && s != 9 {
                return Err(GpuError::NvJpeg {
                    call: "nvjpegCreateEx(HARDWARE)",
                    status: s,
                    name: status_name(s),
                });
            }
        }
        if backend != BACKEND_HARDWARE {
            // SAFETY: as above.
            check("nvjpegCreateEx(DEFAULT)", unsafe {
                (lib.api.nvjpegCreateEx)(
                    BACKEND_DEFAULT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    flags,
                    &mut raw,
                )
            })?;
        }
        Ok(Arc::new(Self {
            lib: lib.clone(),
            raw,
            backend,
        }))
    }

    /// (engines, cores per engine) of the hardware decoder; (0, 0) when there is none.
    pub fn hardware_info(&self) -> (u32, u32) {
        if self.backend != BACKEND_HARDWARE {
            return (0, 0);
        }
        let (mut e, mut c) = (0u32, 0u32);
        // SAFETY: live handle, valid out-pointers.
        let s = unsafe { (self.lib.api.nvjpegGetHardwareDecoderInfo)(self.raw, &mut e, &mut c) };
        if s == 0 {
            (e, c)
        } else {
            (0, 0)
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: every state/stream/decoder holds an Arc<Handle>, so this runs last.
        let _ = unsafe { (self.lib.api.nvjpegDestroy)(self.raw) };
    }
}

/// Header facts nvJPEG parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub width: u32,
    pub height: u32,
    pub components: u32,
}

/// A parsed JPEG bitstream object (`nvjpegJpegStream_t`), reused across images.
pub struct JpegStream {
    h: Arc<Handle>,
    raw: Stream_,
}

// SAFETY: owned by one thread at a time (moved, never shared).
unsafe impl Send for JpegStream {}

impl JpegStream {
    pub fn new(h: &Arc<Handle>) -> Result<Self, GpuError> {
        let mut raw: Stream_ = std::ptr::null_mut();
        // SAFETY: live handle, valid out-pointer.
        check("nvjpegJpegStreamCreate", unsafe {
            (h.lib.api.nvjpegJpegStreamCreate)(h.raw, &mut raw)
        })?;
        Ok(Self { h: h.clone(), raw })
    }

    /// Parses only the header (cheap) and returns its facts.
    pub fn parse_header(&mut self, data: &[u8]) -> Result<StreamInfo, GpuError> {
        let api = &self.h.lib.api;
        // SAFETY: data is a valid slice for the call; nvJPEG copies what it keeps.
        check("nvjpegJpegStreamParseHeader", unsafe {
            (api.nvjpegJpegStreamParseHeader)(self.h.raw, data.as_ptr(), data.len(), self.raw)
        })?;
        self.info()
    }

    /// Full parse (needed before the decoupled host stage).
    pub fn parse(&mut self, data: &[u8]) -> Result<StreamInfo, GpuError> {
        let api = &self.h.lib.api;
        // SAFETY: as above; save_metadata = 0, save_stream = 0 (nvJPEG keeps its own copy of
        // what the host stage needs).
        check("nvjpegJpegStreamParse", unsafe {
            (api.nvjpegJpegStreamParse)(self.h.raw, data.as_ptr(), data.len(), 0, 0, self.raw)
        })?;
        self.info()
    }

    fn info(&self) -> Result<StreamInfo, GpuError> {
        let api = &self.h.lib.api;
        let (mut w, mut hgt, mut c) = (0u32, 0u32, 0u32);
        // SAFETY: parsed stream, valid out-pointers.
        check("nvjpegJpegStreamGetFrameDimensions", unsafe {
            (api.nvjpegJpegStreamGetFrameDimensions)(self.raw, &mut w, &mut hgt)
        })?;
        // SAFETY: as above.
        check("nvjpegJpegStreamGetComponentsNum", unsafe {
            (api.nvjpegJpegStreamGetComponentsNum)(self.raw, &mut c)
        })?;
        Ok(StreamInfo {
            width: w,
            height: hgt,
            components: c,
        })
    }

    /// Whether the hardware batched decoder takes the image last parsed into this stream.
    pub fn hw_supported(&self) -> Result<bool, GpuError> {
        let mut s: c_int = 1;
        // SAFETY: live handle and parsed stream; valid out-pointer.
        check("nvjpegDecodeBatchedSupported", unsafe {
            (self.h.lib.api.nvjpegDecodeBatchedSupported)(self.h.raw, self.raw, &mut s)
        })?;
        Ok(s == 0)
    }
}

impl Drop for JpegStream {
    fn drop(&mut self) {
        // SAFETY: created by nvjpegJpegStreamCreate, destroyed once.
        let _ = unsafe { (self.h.lib.api.nvjpegJpegStreamDestroy)(self.raw) };
    }
}

/// State of the hardware batched decoder (one per decoding thread), with the bitstream object
/// it checks each image with first.
pub struct BatchedState {
    h: Arc<Handle>,
    raw: State_,
    parser: JpegStream,
    batch: usize,
    ptrs: Vec<*const u8>,
    lens: Vec<usize>,
    outs: Vec<Image>,
}

// SAFETY: owned by one thread at a time; the raw pointer vectors are scratch space refilled on
// every call.
unsafe impl Send for BatchedState {}

impl BatchedState {
    pub fn new(h: &Arc<Handle>) -> Result<Self, GpuError> {
        let parser = JpegStream::new(h)?;
        let mut raw: State_ = std::ptr::null_mut();
        // SAFETY: live handle, valid out-pointer.
        check("nvjpegJpegStateCreate", unsafe {
            (h.lib.api.nvjpegJpegStateCreate)(h.raw, &mut raw)
        })?;
        Ok(Self {
            h: h.clone(),
            raw,
            parser,
            batch: 0,
            ptrs: Vec::new(),
            lens: Vec::new(),
            outs: Vec::new(),
        })
    }

    /// Reserves the decoder's internal buffers for `batch` images of up to `w`×`h` 4:2:0 so the
    /// first batches do not allocate (best effort: older libraries may refuse).
    pub fn preallocate(&mut self, batch: usize, w: u32, hgt: u32) {
        // SAFETY: live handle/state; NVJPEG_CSS_420 = 2.
        let _ = unsafe {
            (self.h.lib.api.nvjpegDecodeBatchedPreAllocate)(
                self.h.raw,
                self.raw,
                batch as c_int,
                w as c_int,
                hgt as c_int,
                2,
                OUTPUT_RGBI,
            )
        };
    }

    /// Decodes `data[i]` into `dst[i]` on `stream` (asynchronously) for every image the engines
    /// take: its header parses to exactly `dst[i]`'s size and `nvjpegDecodeBatchedSupported`
    /// accepts it. `accepted[i]` says which were decoded (the others are the caller's to route
    /// elsewhere). The pinned inputs are recorded as read by `stream`.
    pub fn decode(
        &mut self,
        data: &[PinnedSlice<'_>],
        dst: &[DeviceImage<'_>],
        accepted: &mut Vec<bool>,
        stream: &CudaStream,
    ) -> Result<(), GpuError> {
        if data.len() != dst.len() {
            return Err(GpuError::Invalid(format!(
                "batched decode of {} images into {} outputs",
                data.len(),
                dst.len()
            )));
        }
        accepted.clear();
        for (d, o) in data.iter().zip(dst) {
            let ok = match self.parser.parse_header(d.bytes()) {
                Ok(info) => {
                    info.width == o.width()
                        && info.height == o.height()
                        && self.parser.hw_supported().unwrap_or(false)
                }
                Err(_) => false,
            };
            accepted.push(ok);
        }
        let n = accepted.iter().filter(|&&a| a).count();
        if n == 0 {
            return Ok(());
        }
        let api = &self.h.lib.api;
        if self.batch != n {
            // SAFETY: live handle/state; one CPU thread (0 is rejected by the library).
            check("nvjpegDecodeBatchedInitialize", unsafe {
                (api.nvjpegDecodeBatchedInitialize)(
                    self.h.raw,
                    self.raw,
                    n as c_int,
                    1,
                    OUTPUT_RGBI,
                )
            })?;
            self.batch = n;
        }
        self.ptrs.clear();
        self.lens.clear();
        self.outs.clear();
        for ((d, o), _) in data.iter().zip(dst).zip(accepted.iter()).filter(|x| *x.1) {
            self.ptrs.push(d.bytes().as_ptr());
            self.lens.push(d.len());
            self.outs.push(Image::rgbi(o));
        }
        // SAFETY: arrays of exactly `batch` entries; every input is pinned memory that is
        // recorded as read by `stream` below (so it is neither changed nor freed before the
        // decode has run); every output is a DeviceImage inside a live device allocation whose
        // size matches the frame nvJPEG parsed from that input (checked above), written at
        // pitch 3·width; freeing the allocation waits for this decode.
        let status = unsafe {
            (api.nvjpegDecodeBatched)(
                self.h.raw,
                self.raw,
                self.ptrs.as_ptr(),
                self.lens.as_ptr(),
                self.outs.as_mut_ptr(),
                cuda::raw_stream(stream),
            )
        };
        let mut last: Option<*const cuda::PinnedBuffer> = None;
        for (d, _) in data.iter().zip(accepted.iter()).filter(|x| *x.1) {
            let b: *const cuda::PinnedBuffer = d.buffer();
            if last != Some(b) {
                d.buffer().note_async_read(stream)?;
                last = Some(b);
            }
        }
        check("nvjpegDecodeBatched", status)
    }
}

impl Drop for BatchedState {
    fn drop(&mut self) {
        // SAFETY: created by nvjpegJpegStateCreate, destroyed once.
        let _ = unsafe { (self.h.lib.api.nvjpegJpegStateDestroy)(self.raw) };
    }
}

/// Decoupled decoder (HYBRID or GPU_HYBRID backend) with its own state, two pinned buffers, one
/// device buffer and two JPEG stream objects, for double-buffered single-image decoding.
pub struct Decoupled {
    h: Arc<Handle>,
    decoder: Decoder_,
    state: State_,
    params: Params_,
    pinned: [Pinned_; 2],
    device: DevBuf_,
    streams: [JpegStream; 2],
    /// Frame of the host stage last run on each pinned buffer, until its device stage.
    staged: [Option<StreamInfo>; 2],
    /// Per pinned buffer: its last host→device transfer has finished (recorded after it).
    transferred: [Event; 2],
    transfer_queued: [bool; 2],
    next: usize,
}

// SAFETY: owned by one thread at a time.
unsafe impl Send for Decoupled {}

impl Decoupled {
    pub fn new(h: &Arc<Handle>, backend: c_int) -> Result<Self, GpuError> {
        let api = &h.lib.api;
        let mut decoder: Decoder_ = std::ptr::null_mut();
        // SAFETY: live handle, valid out-pointer.
        check("nvjpegDecoderCreate", unsafe {
            (api.nvjpegDecoderCreate)(h.raw, backend, &mut decoder)
        })?;
        let mut me = Self {
            h: h.clone(),
            decoder,
            state: std::ptr::null_mut(),
            params: std::ptr::null_mut(),
            pinned: [std::ptr::null_mut(); 2],
            device: std::ptr::null_mut(),
            streams: [JpegStream::new(h)?, JpegStream::new(h)?],
            staged: [None, None],
            transferred: [Event::new(false)?, Event::new(false)?],
            transfer_queued: [false, false],
            next: 0,
        };
        // From here Drop of `me` releases whatever was created if a later step fails.
        // SAFETY: live handle and decoder, valid out-pointers; null allocators = defaults.
        unsafe {
            check(
                "nvjpegDecoderStateCreate",
                (api.nvjpegDecoderStateCreate)(h.raw, me.decoder, &mut me.state),
            )?;
            check(
                "nvjpegDecodeParamsCreate",
                (api.nvjpegDecodeParamsCreate)(h.raw, &mut me.params),
            )?;
            check(
                "nvjpegDecodeParamsSetOutputFormat",
                (api.nvjpegDecodeParamsSetOutputFormat)(me.params, OUTPUT_RGBI),
            )?;
            let _ = (api.nvjpegDecodeParamsSetAllowCMYK)(me.params, 1);
            check(
                "nvjpegBufferPinnedCreate",
                (api.nvjpegBufferPinnedCreate)(h.raw, std::ptr::null_mut(), &mut me.pinned[0]),
            )?;
            check(
                "nvjpegBufferPinnedCreate",
                (api.nvjpegBufferPinnedCreate)(h.raw, std::ptr::null_mut(), &mut me.pinned[1]),
            )?;
            check(
                "nvjpegBufferDeviceCreate",
                (api.nvjpegBufferDeviceCreate)(h.raw, std::ptr::null_mut(), &mut me.device),
            )?;
            check(
                "nvjpegStateAttachDeviceBuffer",
                (api.nvjpegStateAttachDeviceBuffer)(me.state, me.device),
            )?;
        }
        Ok(me)
    }

    /// Parse + CPU stage (Huffman decoding for HYBRID) into the next of the two pinned
    /// buffers, once that buffer's previous transfer has finished. Fails for images this backend
    /// cannot take (status JPEG_NOT_SUPPORTED / BAD_JPEG).
    pub fn host_stage(&mut self, data: &[u8]) -> Result<StreamInfo, GpuError> {
        let i = self.next;
        if self.transfer_queued[i] {
            self.transferred[i].synchronize()?;
            self.transfer_queued[i] = false;
        }
        self.staged[i] = None;
        let info = self.streams[i].parse(data)?;
        let api = &self.h.lib.api;
        let mut supported: c_int = 1;
        // SAFETY: live decoder, parsed stream, params; valid out-pointer.
        check("nvjpegDecoderJpegSupported", unsafe {
            (api.nvjpegDecoderJpegSupported)(
                self.decoder,
                self.streams[i].raw,
                self.params,
                &mut supported,
            )
        })?;
        if supported != 0 {
            return Err(GpuError::NvJpeg {
                call: "nvjpegDecoderJpegSupported",
                status: STATUS_JPEG_NOT_SUPPORTED,
                name: status_name(STATUS_JPEG_NOT_SUPPORTED),
            });
        }
        // SAFETY: live objects; no transfer reads pinned buffer `i` any more (waited above).
        unsafe {
            check(
                "nvjpegStateAttachPinnedBuffer",
                (api.nvjpegStateAttachPinnedBuffer)(self.state, self.pinned[i]),
            )?;
            check(
                "nvjpegDecodeJpegHost",
                (api.nvjpegDecodeJpegHost)(
                    self.h.raw,
                    self.decoder,
                    self.state,
                    self.params,
                    self.streams[i].raw,
                ),
            )?;
        }
        self.staged[i] = Some(info);
        Ok(info)
    }

    /// Host→device transfer of the last host stage's output on `stream`.
    pub fn transfer(&mut self, stream: &CudaStream) -> Result<(), GpuError> {
        let i = self.next;
        if self.staged[i].is_none() {
            return Err(GpuError::Invalid("transfer without a host stage".into()));
        }
        let api = &self.h.lib.api;
        // SAFETY: live objects; follows a successful host stage on the same stream object.
        check("nvjpegDecodeJpegTransferToDevice", unsafe {
            (api.nvjpegDecodeJpegTransferToDevice)(
                self.h.raw,
                self.decoder,
                self.state,
                self.streams[i].raw,
                cuda::raw_stream(stream),
            )
        })?;
        self.transferred[i].record(stream)?;
        self.transfer_queued[i] = true;
        Ok(())
    }

    /// Device stage writing RGBI to `dst` on `stream`; `dst` must have the staged frame's size.
    /// Flips to the other pinned buffer.
    pub fn device_stage(
        &mut self,
        dst: DeviceImage<'_>,
        stream: &CudaStream,
    ) -> Result<(), GpuError> {
        let i = self.next;
        match self.staged[i] {
            Some(f)
                if self.transfer_queued[i]
                    && (f.width, f.height) == (dst.width(), dst.height()) => {}
            other => {
                return Err(GpuError::Invalid(format!(
                    "device stage of {other:?} into a {}x{} image",
                    dst.width(),
                    dst.height()
                )))
            }
        }
        self.staged[i] = None;
        let api = &self.h.lib.api;
        let mut img = Image::rgbi(&dst);
        self.next ^= 1;
        // SAFETY: live objects; `dst` lies inside a live device allocation and has exactly the
        // size of the frame staged (checked above), written at pitch 3·width; freeing the
        // allocation waits for this decode.
        check("nvjpegDecodeJpegDevice", unsafe {
            (api.nvjpegDecodeJpegDevice)(
                self.h.raw,
                self.decoder,
                self.state,
                &mut img,
                cuda::raw_stream(stream),
            )
        })
    }
}

impl Drop for Decoupled {
    fn drop(&mut self) {
        let api = &self.h.lib.api;
        // SAFETY: each object was created above (or is null and skipped) and is destroyed once,
        // state before buffers before decoder.
        unsafe {
            if !self.state.is_null() {
                let _ = (api.nvjpegJpegStateDestroy)(self.state);
            }
            if !self.params.is_null() {
                let _ = (api.nvjpegDecodeParamsDestroy)(self.params);
            }
            for p in self.pinned {
                if !p.is_null() {
                    let _ = (api.nvjpegBufferPinnedDestroy)(p);
                }
            }
            if !self.device.is_null() {
                let _ = (api.nvjpegBufferDeviceDestroy)(self.device);
            }
            if !self.decoder.is_null() {
                let _ = (api.nvjpegDecoderDestroy)(self.decoder);
            }
        }
    }
}
