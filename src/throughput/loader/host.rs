//! Batch tensors in host memory (the CPU device): a ring of buffers lent to the consumer, as on
//! the GPU ([`crate::throughput::gpu::outputs`]). NumPy (or PyTorch) reads a buffer in place
//! through DLPack; dropping the array gives it back. The ring grows when the consumer holds more
//! batches than it has buffers, up to its cap.

use crate::throughput::config::DType;
use std::sync::{Arc, Mutex};

/// One batch tensor's elements.
pub enum Pixels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

impl Pixels {
    fn new(dtype: DType, len: usize) -> Self {
        match dtype {
            DType::Fp32 => Pixels::F32(vec![0.0; len]),
            DType::Fp16 => Pixels::F16(vec![half::f16::ZERO; len]),
        }
    }

    /// Address of the first element.
    pub fn address(&self) -> u64 {
        match self {
            Pixels::F32(v) => v.as_ptr() as u64,
            Pixels::F16(v) => v.as_ptr() as u64,
        }
    }
}

#[derive(Default)]
struct State {
    free: Vec<(usize, Pixels)>,
    made: usize,
    lent: usize,
}

/// Host batch buffers of `len` elements of `dtype`.
pub struct HostRing {
    dtype: DType,
    len: usize,
    cap: usize,
    state: Mutex<State>,
}

impl HostRing {
    pub fn new(dtype: DType, len: usize, cap: usize) -> Arc<Self> {
        Arc::new(HostRing {
            dtype,
            len,
            cap: cap.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// A free buffer, or a new one below the cap; `None` when every buffer is lent out.
    pub fn try_acquire(self: &Arc<Self>) -> Option<HostLease> {
        let mut s = self.state.lock().ok()?;
        let (id, px) = if !s.free.is_empty() {
            s.free.remove(0)
        } else if s.made < self.cap {
            s.made += 1;
            (s.made - 1, Pixels::new(self.dtype, self.len))
        } else {
            return None;
        };
        s.lent += 1;
        Some(HostLease {
            id,
            px: Some(px),
            ring: self.clone(),
        })
    }

    /// (buffers made, lent out, cap).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.state
            .lock()
            .map(|s| (s.made, s.lent, self.cap))
            .unwrap_or((0, 0, self.cap))
    }

    /// Bytes of one buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.len * self.dtype.bytes()
    }
}

/// A host batch tensor lent to the consumer.
pub struct HostLease {
    id: usize,
    px: Option<Pixels>,
    ring: Arc<HostRing>,
}

impl HostLease {
    pub fn pixels(&self) -> Option<&Pixels> {
        self.px.as_ref()
    }

    pub fn pixels_mut(&mut self) -> Option<&mut Pixels> {
        self.px.as_mut()
    }

    pub fn address(&self) -> u64 {
        self.px.as_ref().map_or(0, Pixels::address)
    }

    pub fn buffer_id(&self) -> usize {
        self.id
    }
}

impl Drop for HostLease {
    fn drop(&mut self) {
        if let Some(px) = self.px.take() {
            if let Ok(mut s) = self.ring.state.lock() {
                s.lent = s.lent.saturating_sub(1);
                s.free.push((self.id, px));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_in_order_and_the_ring_stops_at_its_cap() {
        let r = HostRing::new(DType::Fp16, 12, 2);
        let a = r.try_acquire().unwrap();
        let b = r.try_acquire().unwrap();
        assert!(r.try_acquire().is_none());
        assert_eq!(r.counts(), (2, 2, 2));
        let (ida, addr_a) = (a.buffer_id(), a.address());
        drop(a);
        let c = r.try_acquire().unwrap();
        assert_eq!((c.buffer_id(), c.address()), (ida, addr_a));
        drop((b, c));
        assert_eq!(r.counts(), (2, 0, 2));
        assert_eq!(r.buffer_bytes(), 24);
    }
}
