//! The decoders behind one [`Decoder`] trait: nvJPEG's hardware engines (batched), nvJPEG's
//! CUDA/hybrid decoupled decoder (one image at a time, double-buffered, with a CPU fallback for
//! what nvJPEG rejects), and the CPU decoder (`image` crate; the reference the GPU is tested
//! against). GPU decoders write interleaved RGB8 asynchronously into the batch's device arena on
//! their own stream and record a per-slot event ([`Decoder::fence`]) the kernel stream waits on.

use crate::gpu::device::Gpu;
use crate::gpu::ffi::cuda::{self, DeviceImage, Event, PinnedBuffer, PinnedSlice};
use crate::gpu::ffi::nvjpeg::{self, BatchedState, Decoupled, Handle};
use crate::gpu::GpuError;
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// Which decoder handled an image (report counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    Hardware,
    Cuda,
    Cpu,
}

/// One image to decode: its JPEG bytes (in a slot's pinned staging) into `dst` (interleaved
/// RGB of the size the reader's header parse found).
pub struct Job<'a> {
    pub data: PinnedSlice<'a>,
    pub dst: DeviceImage<'a>,
}

/// Outcome of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Done(DecoderKind),
    /// This decoder cannot take it; another should.
    Retry,
    /// Nobody can: the record is reported (shard, offset, reason) and its slot is padded.
    Failed(String),
}

/// A decode backend. `decode` issues work; `fence(slot)` records the event the kernel stream
/// will wait on for everything this decoder wrote into that slot's arena so far.
pub trait Decoder: Send {
    fn kind(&self) -> DecoderKind;
    /// How many images one claim should take (hardware: a chunk; others: 1).
    fn claim_size(&self) -> usize;
    fn decode(&mut self, jobs: &[Job<'_>], results: &mut Vec<JobResult>) -> Result<(), GpuError>;
    fn fence(&mut self, slot: usize) -> Result<(), GpuError>;
    /// The stream it decodes on (the watchdog asks whether its work has completed).
    fn stream(&self) -> Arc<CudaStream>;
}

/// Decodes on the CPU into interleaved RGB8: (pixels, width, height). The strict reference
/// decoder ([`crate::image::decode_rgb8`]): corrupt data, and scan data that ends before the
/// last block, are errors (a record then counts as undecodable), as on every CPU path.
pub fn cpu_decode_rgb8(data: &[u8]) -> Result<(Vec<u8>, u32, u32), String> {
    let img = crate::image::decode_rgb8(data).map_err(|e| format!("CPU decoder: {e}"))?;
    Ok((img.data, img.width, img.height))
}

/// Per-slot fence events of one decoder, shared with the assembler.
pub type Fences = Arc<Vec<Event>>;

pub fn new_fences(slots: usize) -> Result<Fences, GpuError> {
    let mut v = Vec::with_capacity(slots);
    for _ in 0..slots {
        v.push(Event::new(false)?);
    }
    Ok(Arc::new(v))
}

fn record_fence(fences: &Fences, slot: usize, stream: &CudaStream) -> Result<(), GpuError> {
    fences
        .get(slot)
        .ok_or_else(|| GpuError::Invalid(format!("no fence for slot {slot}")))?
        .record(stream)
}

/// nvJPEG batched decode on the hardware JPEG engines.
pub struct HwDecoder {
    state: BatchedState,
    stream: Arc<CudaStream>,
    fences: Fences,
    chunk: usize,
    accepted: Vec<bool>,
}

impl HwDecoder {
    pub fn new(
        gpu: &Gpu,
        handle: &Arc<Handle>,
        fences: Fences,
        chunk: usize,
    ) -> Result<Self, GpuError> {
        gpu.bind()?;
        let mut state = BatchedState::new(handle)?;
        state.preallocate(chunk, 1024, 1024);
        Ok(Self {
            state,
            stream: gpu.new_stream()?,
            fences,
            chunk: chunk.max(1),
            accepted: Vec::new(),
        })
    }
}

impl Decoder for HwDecoder {
    fn kind(&self) -> DecoderKind {
        DecoderKind::Hardware
    }
    fn claim_size(&self) -> usize {
        self.chunk
    }
    fn decode(&mut self, jobs: &[Job<'_>], results: &mut Vec<JobResult>) -> Result<(), GpuError> {
        results.clear();
        results.resize(jobs.len(), JobResult::Retry);
        if jobs.is_empty() {
            return Ok(());
        }
        let data: Vec<PinnedSlice<'_>> = jobs.iter().map(|j| j.data.clone()).collect();
        let dst: Vec<DeviceImage<'_>> = jobs.iter().map(|j| j.dst).collect();
        match self
            .state
            .decode(&data, &dst, &mut self.accepted, &self.stream)
        {
            Ok(()) => {
                for (r, &ok) in results.iter_mut().zip(&self.accepted) {
                    if ok {
                        *r = JobResult::Done(DecoderKind::Hardware);
                    }
                }
                Ok(())
            }
            // One bad image fails the whole hardware batch: hand them all to the CUDA decoder,
            // which decodes one at a time and reports the culprit.
            Err(e) if nvjpeg::is_image_error(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
    fn fence(&mut self, slot: usize) -> Result<(), GpuError> {
        record_fence(&self.fences, slot, &self.stream)
    }
    fn stream(&self) -> Arc<CudaStream> {
        self.stream.clone()
    }
}

/// nvJPEG decoupled CUDA/hybrid decoder, with CPU decode + upload as the last resort.
pub struct CudaDecoder {
    dec: Decoupled,
    stream: Arc<CudaStream>,
    fences: Fences,
    staging: PinnedBuffer,
    pub cpu_fallbacks: u64,
}

impl CudaDecoder {
    pub fn new(
        gpu: &Gpu,
        handle: &Arc<Handle>,
        backend: i32,
        fences: Fences,
    ) -> Result<Self, GpuError> {
        gpu.bind()?;
        Ok(Self {
            dec: Decoupled::new(handle, backend)?,
            stream: gpu.new_stream()?,
            fences,
            staging: PinnedBuffer::alloc(&gpu.ctx, 4 << 20)?,
            cpu_fallbacks: 0,
        })
    }

    /// Host stage (after the pinned buffer's previous transfer), transfer, device stage: the
    /// host stage of the next image overlaps this one's device stage.
    fn nvjpeg_one(&mut self, j: &Job<'_>) -> Result<(), GpuError> {
        let info = self.dec.host_stage(j.data.bytes())?;
        if info.width != j.dst.width() || info.height != j.dst.height() {
            return Err(GpuError::Invalid(format!(
                "nvJPEG sees {}x{}, the header parse {}x{}",
                info.width,
                info.height,
                j.dst.width(),
                j.dst.height()
            )));
        }
        self.dec.transfer(&self.stream)?;
        self.dec.device_stage(j.dst, &self.stream)
    }

    fn cpu_one(&mut self, j: &Job<'_>) -> Result<(), String> {
        let (px, w, h) = cpu_decode_rgb8(j.data.bytes())?;
        if w != j.dst.width() || h != j.dst.height() {
            return Err(format!(
                "CPU decoder gives {w}x{h}, the header says {}x{}",
                j.dst.width(),
                j.dst.height()
            ));
        }
        let map = |e: GpuError| e.to_string();
        // The staging buffer is reused: wait for its previous upload first (rare path).
        self.stream.synchronize().map_err(|e| format!("{e:?}"))?;
        self.staging.ensure(px.len(), 0).map_err(map)?;
        self.staging.as_mut_slice().map_err(map)?[..px.len()].copy_from_slice(&px);
        let src = self.staging.slice(0..px.len()).map_err(map)?;
        cuda::upload_image_async(j.dst, src, &self.stream).map_err(map)?;
        self.stream.synchronize().map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}

impl Decoder for CudaDecoder {
    fn kind(&self) -> DecoderKind {
        DecoderKind::Cuda
    }
    fn claim_size(&self) -> usize {
        1
    }
    fn decode(&mut self, jobs: &[Job<'_>], results: &mut Vec<JobResult>) -> Result<(), GpuError> {
        results.clear();
        for j in jobs {
            match self.nvjpeg_one(j) {
                Ok(()) => results.push(JobResult::Done(DecoderKind::Cuda)),
                Err(e @ (GpuError::NvJpeg { .. } | GpuError::Invalid(_))) => {
                    // nvJPEG cannot take it (CMYK, odd sampling, damaged): try the CPU decoder.
                    self.cpu_fallbacks += 1;
                    match self.cpu_one(j) {
                        Ok(()) => results.push(JobResult::Done(DecoderKind::Cpu)),
                        Err(cpu) => results.push(JobResult::Failed(format!("nvJPEG: {e}; {cpu}"))),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    fn fence(&mut self, slot: usize) -> Result<(), GpuError> {
        record_fence(&self.fences, slot, &self.stream)
    }
    fn stream(&self) -> Arc<CudaStream> {
        self.stream.clone()
    }
}
