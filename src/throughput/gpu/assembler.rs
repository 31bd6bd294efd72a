//! The assembler thread: for each fully decoded batch, on its own stream, waits (on the GPU)
//! for the fences of the decoders that wrote into the slot, uploads the batch's descriptors and
//! launches the fused kernel into one of two output tensors; a batch is retired (counted, bad
//! images listed, slot released) once its completion event has passed, at most three in flight.

use super::batch::{Batch, Item};
use super::outputs::{DeviceLease, OutputRing, Outputs};
use super::shared::{Feed, Shared};
use super::watchdog::{Phase, Who};
use crate::gpu::ffi::cuda::DeviceBuffer;
use crate::gpu::ffi::preprocess::{launch_preprocess, PreprocessParams};
use crate::gpu::kernels::Kernels;
use crate::gpu::GpuError;
use crate::throughput::config::{DType, ResizeMode};
use crate::throughput::feed::{replacements, Delivered};
use crate::throughput::preprocess::{describe, ImageDesc, FLAG_EMPTY, FLAG_HSV};
use crate::throughput::read::BadRecord;
use crate::throughput::PipelineError;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kernel's descriptors for `items`: where each decoded image is and where it lands;
/// the `failed` items are marked empty (their blocks get the padding value).
pub(super) fn descriptors(
    items: &[Item],
    failed: &[usize],
    side: u32,
    resize: ResizeMode,
) -> Vec<ImageDesc> {
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let mut d = describe(it.arena_off, it.width, it.height, side, resize, it.flip);
            if failed.contains(&i) {
                d.flags |= FLAG_EMPTY;
            }
            if it.hsv != crate::throughput::hsv::IDENTITY {
                d.hsv = it.hsv;
                d.flags |= FLAG_HSV;
            }
            d
        })
        .collect()
}

/// Counts a batch whose kernel has finished and lists its undecodable images.
fn retire(sh: &Shared<'_>, b: Arc<Batch>) -> Result<(), PipelineError> {
    let res = b.res()?;
    sh.phases.set(Who::Assembler, Phase::Retire);
    res.done.synchronize()?;
    if let Ok(ms) = res.done.elapsed_ms_since(&res.start) {
        sh.counters
            .kernel_ns
            .fetch_add((ms as f64 * 1e6) as u64, SeqCst);
    }
    let failures = b.failures.lock().map(|f| f.clone()).unwrap_or_default();
    for (i, reason) in &failures {
        if let Some(it) = b.items.get(*i) {
            sh.bad.push(BadRecord {
                shard: sh
                    .schedule
                    .shard(it.shard as usize)
                    .map(|s| s.path.clone())
                    .unwrap_or_default(),
                offset: it.offset,
                reason: reason.clone(),
            });
        }
    }
    let good = (b.items.len() - failures.len()) as u64;
    sh.counters.failed.fetch_add(failures.len() as u64, SeqCst);
    sh.counters.bytes.fetch_add(b.bytes, SeqCst);
    sh.counters.batches.fetch_add(1, SeqCst);
    sh.counters.images.fetch_add(good, SeqCst);
    Ok(())
}

/// Queues batch `b`'s kernel on `stream` (after the decoders' fences) into `out`; `kernels` is
/// `None` in decode-only runs (descriptors and events still go through, the kernel does not).
/// Failed items show the image of their replacement ([`replacements`]) in planned batches.
fn launch(
    sh: &Shared<'_>,
    stream: &cudarc::driver::CudaStream,
    kernels: Option<&Kernels>,
    out: Option<&DeviceBuffer>,
    b: &Batch,
) -> Result<Vec<Option<usize>>, PipelineError> {
    let res = b.res()?;
    let slot = res.id;
    let mask = b.fence_mask.load(SeqCst);
    for (w, f) in sh.fences.iter().enumerate() {
        if mask & (1u64 << w) != 0 {
            f.get(slot)
                .ok_or_else(|| GpuError::Invalid(format!("no fence for slot {slot}")))?
                .wait_on(stream)?;
        }
    }
    let failed: Vec<usize> = b
        .failures
        .lock()
        .map(|f| f.iter().map(|x| x.0).collect())
        .unwrap_or_default();
    let mut descs = descriptors(&b.items, &failed, sh.cfg.side, sh.cfg.resize);
    let source = replacements(b.items.len(), &failed);
    if b.planned.is_some() {
        for &i in &failed {
            if let Some(Some(j)) = source.get(i) {
                descs[i] = descs[*j];
            }
        }
    }
    let mut staging = res
        .descs
        .lock()
        .map_err(|_| PipelineError::Failed("descriptor buffer lock poisoned".into()))?;
    staging.upload(&descs, stream)?;
    res.start.record(stream)?;
    if let (Some(k), Some(out)) = (kernels, out) {
        let kernel = match sh.cfg.dtype {
            DType::Fp32 => &k.preprocess_f32,
            DType::Fp16 => &k.preprocess_f16,
        };
        let norm = sh.cfg.normalize();
        let params = PreprocessParams {
            side: sh.cfg.side,
            mean: norm.mean,
            inv_std: norm.inv_std,
            pad: norm.pad,
            bgr: norm.bgr,
        };
        launch_preprocess(kernel, stream, &res.arena, &staging, out, &params)?;
    }
    res.done.record(stream)?;
    Ok(source)
}

/// Launches `b` into the alternating buffers (`verify-throughput`).
fn launch_discarded(
    sh: &Shared<'_>,
    stream: &cudarc::driver::CudaStream,
    kernels: Option<&Kernels>,
    outs: &[DeviceBuffer],
    b: &Batch,
) -> Result<(), PipelineError> {
    let out = outs.get((b.seq % outs.len().max(1) as u64) as usize);
    if kernels.is_some() && out.is_none() {
        return Err(GpuError::Invalid("no output tensor".into()).into());
    }
    launch(sh, stream, kernels, out, b).map(|_| ())
}

/// Launches planned batch `b` into a ring buffer and hands it to the consumer; `Ok(false)` when
/// the run stopped or the consumer is gone.
fn launch_delivered(
    sh: &Shared<'_>,
    stream: &cudarc::driver::CudaStream,
    kernels: Option<&Kernels>,
    ring: &Arc<OutputRing>,
    deliver: &SyncSender<Delivered<DeviceLease>>,
    b: &Batch,
) -> Result<bool, PipelineError> {
    sh.phases.set(Who::Assembler, Phase::WaitRing);
    let out = loop {
        if sh.abort.load(SeqCst) || sh.schedule.halted() {
            return Ok(false);
        }
        match ring.try_acquire()? {
            Some(o) => break o,
            None => {
                sh.consumer_waits.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    // The consumer's last use of this buffer (on its stream) comes before the new kernel.
    sh.phases.set(Who::Assembler, Phase::Launch);
    out.released.wait_on(stream)?;
    let source = launch(sh, stream, kernels, Some(&out.buf), b)?;
    out.ready.record(stream)?;
    let (index, items) = b.planned.clone().unwrap_or_default();
    let failed = b.failures.lock().map(|f| f.clone()).unwrap_or_default();
    let mut msg = Delivered {
        index,
        items,
        failed,
        source,
        images: DeviceLease::new(out, ring.clone()),
    };
    sh.phases.set(Who::Assembler, Phase::Deliver);
    loop {
        match deliver.try_send(msg) {
            Ok(()) => return Ok(true),
            Err(TrySendError::Disconnected(_)) => return Ok(false),
            Err(TrySendError::Full(m)) => {
                if sh.abort.load(SeqCst) || sh.schedule.halted() {
                    return Ok(false);
                }
                msg = m;
                sh.consumer_waits.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Runs until every submitted batch is retired after the readers are done, or the run stops.
/// Planned batches are launched in plan order (decoding finishes them in any order).
pub(super) fn assembler(
    sh: &Shared<'_>,
    kernels: Option<&Kernels>,
    outs: &Outputs,
    rx: Receiver<Arc<Batch>>,
) -> Result<(), PipelineError> {
    sh.gpu.bind()?;
    let stream = sh.gpu.new_stream()?;
    let mut inflight: VecDeque<Arc<Batch>> = VecDeque::new();
    let mut waiting: BTreeMap<u64, Arc<Batch>> = BTreeMap::new();
    let mut next_index: Option<u64> = None;
    let mut launched = 0u64;
    loop {
        while let Some(front) = inflight.front() {
            if front.res()?.done.is_done()? || inflight.len() > 2 {
                if let Some(b) = inflight.pop_front() {
                    retire(sh, b)?;
                }
            } else {
                break;
            }
        }
        if sh.abort.load(SeqCst) {
            return Ok(());
        }
        let t = Instant::now();
        sh.phases.set(Who::Assembler, Phase::WaitBatch);
        let got = rx.recv_timeout(Duration::from_millis(2));
        if matches!(got, Err(RecvTimeoutError::Timeout)) {
            sh.starved_at_us
                .store(sh.t0.elapsed().as_micros() as u64, SeqCst);
        }
        match got {
            Ok(b) => match (sh.feed, outs) {
                (Feed::Planned { deliver, .. }, Outputs::Ring(ring)) => {
                    let index = b.planned.as_ref().map_or(0, |p| p.0);
                    next_index.get_or_insert(sh.first_planned());
                    waiting.insert(index, b);
                    while let Some(b) = next_index.and_then(|k| waiting.remove(&k)) {
                        launched += 1;
                        if !launch_delivered(sh, &stream, kernels, ring, deliver, &b)? {
                            sh.halt();
                        }
                        next_index = next_index.map(|k| k + 1);
                        inflight.push_back(b);
                    }
                }
                (_, Outputs::Alternating(bufs)) => {
                    launch_discarded(sh, &stream, kernels, bufs, &b)?;
                    launched += 1;
                    inflight.push_back(b);
                }
                (_, Outputs::Ring(_)) => {
                    return Err(PipelineError::Failed(
                        "an output ring needs a planned feed".into(),
                    ))
                }
            },
            Err(RecvTimeoutError::Timeout) => {
                crate::throughput::meter::add_since(&sh.counters.starved_ns, t);
                let submitted = sh.submitted.load(SeqCst);
                let drained = launched == submitted || sh.schedule.halted();
                if sh.readers_alive.load(SeqCst) == 0 && drained {
                    while let Some(b) = inflight.pop_front() {
                        retire(sh, b)?;
                    }
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throughput::preprocess::FLAG_FLIP;

    #[test]
    fn descriptors_place_each_image_and_blank_the_failed() {
        let item = |arena_off, w, h, flip| Item {
            jpeg_off: 0,
            jpeg_len: 1,
            width: w,
            height: h,
            arena_off,
            shard: 0,
            offset: 0,
            flip,
            hsv: crate::throughput::hsv::IDENTITY,
            hw: true,
        };
        let mut items = [item(0, 64, 32, false), item(6144, 10, 20, true)];
        items[1].hsv = [1.01, 0.5, 1.2];
        let with_hsv = descriptors(&items, &[], 16, ResizeMode::Letterbox);
        assert_eq!(with_hsv[0].flags & FLAG_HSV, 0);
        assert_eq!(with_hsv[1].flags & FLAG_HSV, FLAG_HSV);
        assert_eq!(with_hsv[1].hsv, [1.01, 0.5, 1.2]);
        items[1].hsv = crate::throughput::hsv::IDENTITY;
        let d = descriptors(&items, &[0], 16, ResizeMode::Letterbox);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].flags, FLAG_EMPTY);
        assert_eq!(
            (d[0].dst_x0, d[0].dst_y0, d[0].dst_w, d[0].dst_h),
            (0, 4, 16, 8)
        );
        assert_eq!(
            (d[1].src_offset, d[1].src_w, d[1].src_pitch),
            (6144, 10, 30)
        );
        assert_eq!(d[1].flags, FLAG_FLIP);
        assert_eq!(d[1].arena_end(), Ok(6144 + 30 * 20));
    }
}
