//! The ABI of the fused preprocessing kernel (kernels/preprocess.cu) and its safe launch.
//!
//! The kernel trusts its descriptors: it reads each image at `src_offset` in the decode arena
//! and writes `batch` blocks of `3·side²` elements. So descriptors reach the device only through
//! [`DescriptorStaging::upload`], which checks each one and remembers how much arena they need,
//! and [`launch_preprocess`] checks arena, output and batch against that before launching.
//! Uploading over descriptors a queued kernel still reads waits (on the GPU) for that kernel.

use super::cuda::{self, DeviceBuffer, Event, PinnedBuffer};
use crate::gpu::GpuError;
use cudarc::driver::{CudaFunction, CudaModule, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// Per-image descriptor read by the kernel; layout must match `struct ImageDesc` in
/// kernels/preprocess.cu (64 bytes, no padding surprises: one u64, ten i32, four f32).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ImageDesc {
    pub src_offset: u64,
    pub src_w: i32,
    pub src_h: i32,
    pub src_pitch: i32,
    pub dst_x0: i32,
    pub dst_y0: i32,
    pub dst_w: i32,
    pub dst_h: i32,
    pub flags: i32,
    pub reserved0: i32,
    pub reserved1: i32,
    /// HSV jitter gains (hue, saturation, value), applied with [`FLAG_HSV`]
    /// (see `crate::throughput::hsv`).
    pub hsv: [f32; 3],
    pub reserved2: f32,
}

/// Mirror the image horizontally.
pub const FLAG_FLIP: i32 = 1;
/// No image: the block is filled with the padding value (undecodable records).
pub const FLAG_EMPTY: i32 = 2;
/// Jitter the colours by `hsv` (the whole canvas, padding included).
pub const FLAG_HSV: i32 = 4;
/// Bytes of one descriptor on the device.
pub const DESC_BYTES: usize = 64;

impl ImageDesc {
    /// The descriptor as the bytes the kernel reads.
    pub fn to_bytes(&self) -> [u8; DESC_BYTES] {
        let mut b = [0u8; DESC_BYTES];
        b[..8].copy_from_slice(&self.src_offset.to_le_bytes());
        let ints = [
            self.src_w,
            self.src_h,
            self.src_pitch,
            self.dst_x0,
            self.dst_y0,
            self.dst_w,
            self.dst_h,
            self.flags,
            self.reserved0,
            self.reserved1,
        ];
        for (i, v) in ints.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let floats = [self.hsv[0], self.hsv[1], self.hsv[2], self.reserved2];
        for (i, v) in floats.iter().enumerate() {
            b[48 + 4 * i..52 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Arena bytes the kernel may read for this image: the end of its last row (0 for an empty
    /// one), or why the kernel cannot be given it.
    pub fn arena_end(&self) -> Result<u64, String> {
        if self.flags & FLAG_EMPTY != 0 {
            return Ok(0);
        }
        if self.src_w <= 0 || self.src_h <= 0 || self.dst_w <= 0 || self.dst_h <= 0 {
            return Err(format!("degenerate descriptor {self:?}"));
        }
        if i64::from(self.src_pitch) < 3 * i64::from(self.src_w) {
            return Err(format!("pitch shorter than a row in {self:?}"));
        }
        let last_row = self.src_pitch as u64 * (self.src_h as u64 - 1);
        self.src_offset
            .checked_add(last_row + 3 * self.src_w as u64)
            .ok_or_else(|| format!("offset overflow in {self:?}"))
    }
}

/// Output element of a kernel variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

impl Precision {
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
    fn function_name(self) -> &'static str {
        match self {
            Precision::F32 => "preprocess_f32",
            Precision::F16 => "preprocess_f16",
        }
    }
}

/// One variant of the preprocessing kernel, loaded from a module, with the element size its
/// output has (so a launch can check the output buffer).
pub struct PreprocessKernel {
    func: CudaFunction,
    precision: Precision,
}

impl PreprocessKernel {
    /// The `precision` variant of the module compiled from kernels/preprocess.cu.
    pub fn load(module: &Arc<CudaModule>, precision: Precision) -> Result<Self, GpuError> {
        let name = precision.function_name();
        let func = module.load_function(name).map_err(|e| GpuError::Cuda {
            call: "cuModuleGetFunction",
            message: format!("{name}: {e:?}"),
        })?;
        Ok(Self { func, precision })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }
}

/// Normalisation and layout arguments of a launch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessParams {
    pub side: u32,
    pub mean: [f32; 3],
    pub inv_std: [f32; 3],
    pub pad: f32,
    pub bgr: bool,
}

/// A batch slot's descriptors: pinned staging, the device copy the kernel reads, and what the
/// last upload holds (count, arena bytes needed).
pub struct DescriptorStaging {
    host: PinnedBuffer,
    dev: DeviceBuffer,
    count: usize,
    arena_end: u64,
    /// Recorded after each launch that reads `dev`; the next upload waits for it.
    read_by_kernel: Event,
}

impl DescriptorStaging {
    /// Room for `images` descriptors (grows when a batch needs more).
    pub fn alloc(ctx: &Arc<cudarc::driver::CudaContext>, images: usize) -> Result<Self, GpuError> {
        let bytes = images.max(1) * DESC_BYTES;
        Ok(Self {
            host: PinnedBuffer::alloc(ctx, bytes)?,
            dev: DeviceBuffer::alloc(ctx, bytes)?,
            count: 0,
            arena_end: 0,
            read_by_kernel: Event::new(false)?,
        })
    }

    /// Checks `descs` and copies them to the device on `stream` (asynchronously).
    pub fn upload(&mut self, descs: &[ImageDesc], stream: &CudaStream) -> Result<(), GpuError> {
        let mut arena_end = 0u64;
        for d in descs {
            arena_end = arena_end.max(d.arena_end().map_err(GpuError::Invalid)?);
        }
        let n = descs.len() * DESC_BYTES;
        self.host.ensure(n, 0)?;
        let host = self.host.as_mut_slice()?;
        for (k, d) in descs.iter().enumerate() {
            host[k * DESC_BYTES..(k + 1) * DESC_BYTES].copy_from_slice(&d.to_bytes());
        }
        // A kernel queued on another stream may still read the old descriptors.
        self.read_by_kernel.wait_on(stream)?;
        self.dev.ensure(n)?;
        cuda::upload_async(&self.dev, 0, self.host.slice(0..n)?, stream)?;
        self.count = descs.len();
        self.arena_end = arena_end;
        Ok(())
    }
}

/// Launches `kernel` on `stream` over the last uploaded descriptors: one `side × side` image per
/// descriptor from `arena` into `out` (`[count, 3, side, side]`).
pub fn launch_preprocess(
    kernel: &PreprocessKernel,
    stream: &CudaStream,
    arena: &DeviceBuffer,
    descs: &DescriptorStaging,
    out: &DeviceBuffer,
    p: &PreprocessParams,
) -> Result<(), GpuError> {
    let batch = descs.count;
    let out_bytes = (batch as u64)
        .saturating_mul(3 * u64::from(p.side) * u64::from(p.side))
        .saturating_mul(kernel.precision.bytes() as u64);
    if batch == 0 || p.side == 0 || p.side > i32::MAX as u32 || batch > u16::MAX as usize {
        return Err(GpuError::Invalid(format!(
            "kernel launch with side {} batch {batch}",
            p.side
        )));
    }
    if descs.arena_end > arena.len() as u64 || out_bytes > out.len() as u64 {
        return Err(GpuError::Invalid(format!(
            "kernel launch needs {} arena bytes (has {}) and {out_bytes} output bytes (has {})",
            descs.arena_end,
            arena.len(),
            out.len()
        )));
    }
    let (bx, by) = (32u32, 8u32);
    let cfg = LaunchConfig {
        grid_dim: (p.side.div_ceil(bx), p.side.div_ceil(by), batch as u32),
        block_dim: (bx, by, 1),
        shared_mem_bytes: 0,
    };
    let (a, d, o) = (arena.ptr(), descs.dev.ptr(), out.ptr());
    let (side, n, bgr) = (p.side as i32, batch as i32, p.bgr as i32);
    let mut b = stream.launch_builder(&kernel.func);
    b.arg(&a)
        .arg(&d)
        .arg(&o)
        .arg(&side)
        .arg(&n)
        .arg(&p.mean[0])
        .arg(&p.mean[1])
        .arg(&p.mean[2])
        .arg(&p.inv_std[0])
        .arg(&p.inv_std[1])
        .arg(&p.inv_std[2])
        .arg(&p.pad)
        .arg(&bgr);
    // SAFETY: the argument list matches the kernel signature (pointer, pointer, pointer, int,
    // int, 6 floats, float, int). The descriptors on the device are the `batch` checked by
    // `upload` (a later upload waits for this launch through `read_by_kernel`), so every read
    // lies in the first `arena_end` bytes of the arena, which were checked to exist; the kernel
    // writes `batch · 3 · side²` elements of `precision`, checked against `out`; x/y/z are
    // bounds-checked in the kernel. The buffers are borrowed for the call and freeing them
    // waits for the launch.
    unsafe { b.launch(cfg) }.map_err(|e| GpuError::Cuda {
        call: "cuLaunchKernel",
        message: format!("{e:?}"),
    })?;
    descs.read_by_kernel.record(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_bytes_layout_matches_kernel_struct() {
        let d = ImageDesc {
            src_offset: 0x0102030405060708,
            src_w: 1,
            src_h: 2,
            src_pitch: 3,
            dst_x0: 4,
            dst_y0: 5,
            dst_w: 6,
            dst_h: 7,
            flags: 8,
            reserved0: 0,
            reserved1: 0,
            hsv: [1.5, 0.25, 2.0],
            reserved2: 0.0,
        };
        assert_eq!(std::mem::size_of::<ImageDesc>(), DESC_BYTES);
        let b = d.to_bytes();
        assert_eq!(&b[..8], &0x0102030405060708u64.to_le_bytes());
        assert_eq!(i32::from_le_bytes(b[8..12].try_into().unwrap()), 1);
        assert_eq!(i32::from_le_bytes(b[36..40].try_into().unwrap()), 8);
        assert_eq!(f32::from_le_bytes(b[48..52].try_into().unwrap()), 1.5);
        assert_eq!(f32::from_le_bytes(b[56..60].try_into().unwrap()), 2.0);
    }

    #[test]
    fn arena_end_is_the_last_byte_read_or_a_refusal() {
        let d = ImageDesc {
            src_offset: 512,
            src_w: 10,
            src_h: 4,
            src_pitch: 30,
            dst_w: 8,
            dst_h: 8,
            ..Default::default()
        };
        assert_eq!(d.arena_end(), Ok(512 + 30 * 3 + 30));
        let empty = ImageDesc {
            flags: FLAG_EMPTY,
            ..Default::default()
        };
        assert_eq!(empty.arena_end(), Ok(0));
        for bad in [
            ImageDesc { src_w: 0, ..d },
            ImageDesc { dst_h: 0, ..d },
            ImageDesc { src_pitch: 29, ..d },
            ImageDesc {
                src_offset: u64::MAX,
                ..d
            },
        ] {
            assert!(bad.arena_end().is_err(), "{bad:?}");
        }
    }
}
