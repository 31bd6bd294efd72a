//! Where the fused kernel writes its batch tensors.
//!
//! `verify-throughput` throws the tensors away, so two buffers alternate (the kernels run on one
//! stream, so the next kernel into a buffer runs after the previous one). The loader hands each
//! tensor to the training loop instead (zero copy, through DLPack), so its buffers form a ring:
//! a buffer is lent out with the batch ([`DeviceLease`]) and comes back when the consumer drops
//! the tensor; the next kernel into it first waits (on the GPU) for the consumer's stream to be
//! done with it. When the consumer holds more batches than the ring has buffers, the ring
//! grows, up to `cap` buffers; past that the loader reports that the consumer holds too many.

use crate::gpu::device::Gpu;
use crate::gpu::ffi::cuda::{DeviceBuffer, Event, ForeignStream};
use crate::gpu::GpuError;
use cudarc::driver::CudaContext;
use std::sync::{Arc, Mutex};

/// Kernel outputs of one run.
pub enum Outputs {
    /// Two buffers used in turn (nothing reads them).
    Alternating(Vec<DeviceBuffer>),
    /// Buffers lent to a consumer.
    Ring(Arc<OutputRing>),
}

impl Outputs {
    pub fn alternating(gpu: &Gpu, bytes: usize) -> Result<Self, GpuError> {
        Ok(Outputs::Alternating(vec![
            DeviceBuffer::alloc(&gpu.ctx, bytes)?,
            DeviceBuffer::alloc(&gpu.ctx, bytes)?,
        ]))
    }
}

/// One output buffer and its two events.
pub struct OutBuf {
    /// Position in the ring, from 0 (stable for the buffer's life).
    pub id: usize,
    pub buf: DeviceBuffer,
    /// Recorded after the kernel that wrote the current batch.
    pub ready: Event,
    /// Recorded on the consumer's stream when it let go; the next kernel waits for it.
    pub released: Event,
}

#[derive(Default)]
struct RingState {
    free: Vec<OutBuf>,
    /// Buffers made so far.
    made: usize,
    /// Buffers lent out and not yet back.
    lent: usize,
}

/// Output buffers lent to a consumer, grown on demand up to a cap.
pub struct OutputRing {
    ctx: Arc<CudaContext>,
    bytes: usize,
    cap: usize,
    state: Mutex<RingState>,
}

impl OutputRing {
    /// A ring of `initial` buffers of `bytes` each, growing to at most `cap`.
    pub fn new(gpu: &Gpu, bytes: usize, initial: usize, cap: usize) -> Result<Arc<Self>, GpuError> {
        let ring = Arc::new(OutputRing {
            ctx: gpu.ctx.clone(),
            bytes,
            cap: cap.max(initial).max(1),
            state: Mutex::new(RingState::default()),
        });
        let mut made = Vec::new();
        for id in 0..initial {
            made.push(ring.make(id)?);
        }
        if let Ok(mut s) = ring.state.lock() {
            s.made = made.len();
            s.free = made;
        }
        Ok(ring)
    }

    fn make(&self, id: usize) -> Result<OutBuf, GpuError> {
        Ok(OutBuf {
            id,
            buf: DeviceBuffer::alloc(&self.ctx, self.bytes)?,
            ready: Event::new(false)?,
            released: Event::new(false)?,
        })
    }

    /// A free buffer (the one returned longest ago... any free one), a new one when none is
    /// free and the ring is below its cap, else `None` (every buffer is lent out).
    pub fn try_acquire(&self) -> Result<Option<OutBuf>, GpuError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| GpuError::Invalid("output ring lock poisoned".into()))?;
        if !s.free.is_empty() {
            let b = s.free.remove(0);
            s.lent += 1;
            return Ok(Some(b));
        }
        if s.made >= self.cap {
            return Ok(None);
        }
        let id = s.made;
        let b = self.make(id)?;
        s.made += 1;
        s.lent += 1;
        Ok(Some(b))
    }

    fn give_back(&self, b: OutBuf) {
        if let Ok(mut s) = self.state.lock() {
            s.lent = s.lent.saturating_sub(1);
            s.free.push(b);
        }
    }

    /// (buffers made, buffers lent out, cap).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.state
            .lock()
            .map(|s| (s.made, s.lent, self.cap))
            .unwrap_or((0, 0, self.cap))
    }

    /// Bytes of one buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.bytes
    }
}

/// A batch tensor lent to the consumer; dropping it gives the buffer back to the ring (after
/// recording, on the consumer's stream, that the consumer is done with it).
pub struct DeviceLease {
    out: Option<OutBuf>,
    ring: Arc<OutputRing>,
    /// The stream the consumer imported the tensor on (the last one, if several).
    consumer: Option<ForeignStream>,
}

impl DeviceLease {
    pub(super) fn new(out: OutBuf, ring: Arc<OutputRing>) -> Self {
        DeviceLease {
            out: Some(out),
            ring,
            consumer: None,
        }
    }

    /// Device address of the tensor.
    pub fn address(&self) -> u64 {
        self.out.as_ref().map_or(0, |o| o.buf.ptr())
    }

    /// Which ring buffer holds it.
    pub fn buffer_id(&self) -> usize {
        self.out.as_ref().map_or(usize::MAX, |o| o.id)
    }

    /// Makes the batch ready on `stream` (it waits, on the GPU, for the kernel that wrote it)
    /// and remembers the stream, so giving the buffer back waits for the consumer's work there.
    pub fn ready_on(&mut self, stream: ForeignStream) -> Result<(), GpuError> {
        let out = self
            .out
            .as_ref()
            .ok_or_else(|| GpuError::Invalid("batch already given back".into()))?;
        self.ring.ctx.bind_to_thread().map_err(|e| GpuError::Cuda {
            call: "cuCtxSetCurrent",
            message: format!("{e:?}"),
        })?;
        out.ready.wait_foreign(stream)?;
        self.consumer = Some(stream);
        Ok(())
    }

    /// Waits (on the host) until the kernel that wrote the batch has finished.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        match &self.out {
            Some(o) => o.ready.synchronize(),
            None => Ok(()),
        }
    }
}

impl Drop for DeviceLease {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            if let Some(stream) = self.consumer {
                // A failure here (the context going away at exit) leaves the event as it was:
                // the next kernel then waits for the consumer's earlier use only.
                if self.ring.ctx.bind_to_thread().is_ok() {
                    let _ = out.released.record_foreign(stream);
                }
            }
            self.ring.give_back(out);
        }
    }
}
