//! A reader thread: shards from the schedule, each record's JPEG copied once into the filling
//! slot's pinned staging with its decoded size and hardware routing from the header
//! ([`crate::throughput::frame`]), and the batch submitted to the decoders when it is full.

use super::batch::{Batch, Claim, Item};
use super::shared::Shared;
use super::slots::{Layout, SlotRes};
use crate::gpu::GpuError;
use crate::shard::source::Flow;
use crate::throughput::frame::frame_of;
use crate::throughput::read::{read_jpegs, BadRecord};
use crate::throughput::PipelineError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A batch being filled.
struct Filling {
    res: SlotRes,
    items: Vec<Item>,
    layout: Layout,
    bytes: u64,
}

/// Reads until the schedule ends; the last partial batch is submitted unless the run stopped.
pub(super) fn reader(sh: &Shared<'_>) -> Result<(), PipelineError> {
    sh.gpu.bind()?;
    let mut buf = Vec::new();
    let mut cur: Option<Filling> = None;
    let mut err: Option<GpuError> = None;
    let batch = sh.cfg.batch;
    while let Some((epoch, si)) = sh.schedule.next() {
        let Some(shard) = sh.schedule.shard(si) else {
            break;
        };
        let t0 = Instant::now();
        let wait0 = sh.counters.backpressure_ns.load(SeqCst);
        read_jpegs(
            shard,
            &mut buf,
            &mut |r| {
                if sh.schedule.halted() {
                    return Flow::Stop;
                }
                let frame = match frame_of(r.jpeg) {
                    Ok(f) => f,
                    Err(reason) => {
                        sh.bad.push(BadRecord {
                            shard: shard.path.clone(),
                            offset: r.offset,
                            reason,
                        });
                        return Flow::Continue;
                    }
                };
                if cur.is_none() {
                    match sh.acquire_slot() {
                        Some(res) => {
                            cur = Some(Filling {
                                res,
                                items: Vec::with_capacity(batch),
                                layout: Layout::default(),
                                bytes: 0,
                            })
                        }
                        None => return Flow::Stop,
                    }
                }
                let Some(f) = cur.as_mut() else {
                    return Flow::Stop;
                };
                let len = r.jpeg.len();
                let at = f.layout.host_len;
                if let Err(e) = f.res.host.ensure(at + len, at) {
                    err = Some(e);
                    return Flow::Stop;
                }
                match f.res.host.as_mut_slice() {
                    Ok(host) => host[at..at + len].copy_from_slice(r.jpeg),
                    Err(e) => {
                        err = Some(e);
                        return Flow::Stop;
                    }
                }
                let (jpeg_off, arena_off) = f.layout.place(len, frame.width, frame.height);
                f.items.push(Item {
                    jpeg_off,
                    jpeg_len: len,
                    width: frame.width,
                    height: frame.height,
                    arena_off,
                    shard: si as u32,
                    offset: r.offset,
                    flip: sh.schedule.flip(epoch, si, r.number),
                    hw: frame.hardware,
                });
                f.bytes += len as u64;
                if f.items.len() >= batch {
                    if let Some(full) = cur.take() {
                        if let Err(e) = submit(sh, full) {
                            err = Some(e);
                            return Flow::Stop;
                        }
                    }
                }
                Flow::Continue
            },
            &mut |b| sh.bad.push(b),
        );
        // Reading time without the waits for a free slot.
        let waited = sh
            .counters
            .backpressure_ns
            .load(SeqCst)
            .saturating_sub(wait0);
        sh.counters.read_ns.fetch_add(
            (t0.elapsed().as_nanos() as u64).saturating_sub(waited),
            SeqCst,
        );
        if let Some(e) = err.take() {
            return Err(e.into());
        }
    }
    if let Some(f) = cur.take() {
        if !f.items.is_empty() && !sh.schedule.halted() {
            submit(sh, f)?;
        } else {
            let _ = sh.pool_tx.send(f.res);
        }
    }
    Ok(())
}

/// Opens a filled batch to the decoders (the arena grown to fit it first).
fn submit(sh: &Shared<'_>, mut f: Filling) -> Result<(), GpuError> {
    f.res.arena.ensure(f.layout.arena_len as usize)?;
    let claim = Claim::route(f.items.iter().map(|it| it.hw), sh.cfg.gpu.decoders);
    let batch = Arc::new(Batch {
        res: Some(f.res),
        items: f.items,
        claim: Mutex::new(claim),
        finished: AtomicUsize::new(0),
        fence_mask: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
        bytes: f.bytes,
        seq: sh.seq.fetch_add(1, SeqCst),
        pool: sh.pool_tx.clone(),
    });
    sh.submitted.fetch_add(1, SeqCst);
    if let Ok(mut o) = sh.open.lock() {
        o.push_back(batch);
    }
    sh.open_cv.notify_all();
    Ok(())
}
