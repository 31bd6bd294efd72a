//! A reader thread: shards from the schedule, each record's JPEG copied once into the filling
//! slot's pinned staging with its decoded size and hardware routing from the header
//! ([`crate::throughput::frame`]), and the batch submitted to the decoders when it is full.

use super::batch::{Batch, Claim, Item};
use super::shared::{Feed, Shared};
use super::slots::{Layout, SlotRes};
use super::watchdog::{Phase, Who};
use crate::gpu::GpuError;
use crate::shard::source::Flow;
use crate::throughput::feed::{parse_record, ItemInfo, PlannedFeed};
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

/// Reads until the feed ends: whole shards from the schedule, or planned batches.
pub(super) fn reader(sh: &Shared<'_>, r: usize) -> Result<(), PipelineError> {
    let res = match sh.feed {
        Feed::Shards => shard_reader(sh, r),
        Feed::Planned { feed, .. } => planned_reader(sh, feed, r),
    };
    sh.phases.set(Who::Reader(r), Phase::Done);
    res
}

/// Planned batches, each record read by random access with its annotations; a record that
/// cannot be read, parsed or sized keeps its place in the batch, marked failed.
fn planned_reader(sh: &Shared<'_>, feed: &PlannedFeed<'_>, r: usize) -> Result<(), PipelineError> {
    sh.gpu.bind()?;
    let mut buf = Vec::new();
    while !sh.schedule.halted() {
        // The slot first, then the batch number: the assembler launches batches in number
        // order, so a reader holding a number while it waits for a slot could wait for ever
        // behind slots all held by later numbers (readers take numbers in one order and get
        // slots in another). A number taken with a slot in hand is always submitted.
        let t0 = Instant::now();
        let Some(res) = sh.acquire_slot(r) else {
            break;
        };
        let wait = t0.elapsed();
        let Some((index, planned)) = feed.take() else {
            let _ = sh.pool_tx.send(res);
            break;
        };
        let mut f = Filling {
            res,
            items: Vec::with_capacity(planned.len()),
            layout: Layout::default(),
            bytes: 0,
        };
        let mut infos = Vec::with_capacity(planned.len());
        let mut early = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            let shard = feed.shards.get(p.shard as usize);
            let offset = shard.map_or(p.number, |s| s.offset_of(p.number));
            let got = match shard {
                None => Err(format!("no shard {}", p.shard)),
                Some(s) => s.read(p.number, &mut buf).and_then(|payload| {
                    let (jpeg, ann) = parse_record(payload)?;
                    let frame = frame_of(jpeg)?;
                    Ok((jpeg, ann, frame))
                }),
            };
            let mut item = Item {
                jpeg_off: f.layout.host_len,
                jpeg_len: 0,
                width: 0,
                height: 0,
                arena_off: 0,
                shard: p.shard,
                offset,
                flip: p.flip,
                hsv: p.hsv,
                hw: false,
            };
            match got {
                Ok((jpeg, ann, frame)) => {
                    stage(&mut f, &mut item, jpeg, frame.width, frame.height)?;
                    item.hw = frame.hardware;
                    infos.push(ItemInfo {
                        planned: *p,
                        ann,
                        frame: (frame.width, frame.height),
                    });
                }
                Err(reason) => {
                    early.push((i, reason));
                    infos.push(ItemInfo {
                        planned: *p,
                        ann: Default::default(),
                        frame: (0, 0),
                    });
                }
            }
            f.items.push(item);
        }
        sh.counters
            .read_ns
            .fetch_add(t0.elapsed().saturating_sub(wait).as_nanos() as u64, SeqCst);
        submit_planned(sh, r, f, index, infos, early)?;
    }
    Ok(())
}

/// Copies `jpeg` into the filling slot's staging and places its decoded image in the arena.
fn stage(f: &mut Filling, item: &mut Item, jpeg: &[u8], w: u32, h: u32) -> Result<(), GpuError> {
    let len = jpeg.len();
    let at = f.layout.host_len;
    f.res.host.ensure(at + len, at)?;
    f.res.host.as_mut_slice()?[at..at + len].copy_from_slice(jpeg);
    let (jpeg_off, arena_off) = f.layout.place(len, w, h);
    item.jpeg_off = jpeg_off;
    item.jpeg_len = len;
    item.arena_off = arena_off;
    item.width = w;
    item.height = h;
    f.bytes += len as u64;
    Ok(())
}

/// Whole shards from the schedule; the last partial batch is submitted unless the run stopped.
fn shard_reader(sh: &Shared<'_>, me: usize) -> Result<(), PipelineError> {
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
                    match sh.acquire_slot(me) {
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
                    hsv: crate::throughput::hsv::IDENTITY,
                    hw: frame.hardware,
                });
                f.bytes += len as u64;
                if f.items.len() >= batch {
                    if let Some(full) = cur.take() {
                        if let Err(e) = submit(sh, me, full) {
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
            submit(sh, me, f)?;
        } else {
            let _ = sh.pool_tx.send(f.res);
        }
    }
    Ok(())
}

/// Opens a filled batch to the decoders (the arena grown to fit it first).
fn submit(sh: &Shared<'_>, reader: usize, f: Filling) -> Result<(), GpuError> {
    submit_with(sh, reader, f, None, Vec::new())
}

/// Opens planned batch `index`; items in `early` failed before decoding and are never claimed
/// (a batch where every item failed goes straight to the assembler).
fn submit_planned(
    sh: &Shared<'_>,
    reader: usize,
    f: Filling,
    index: u64,
    infos: Vec<ItemInfo>,
    early: Vec<(usize, String)>,
) -> Result<(), GpuError> {
    submit_with(sh, reader, f, Some((index, infos)), early)
}

fn submit_with(
    sh: &Shared<'_>,
    reader: usize,
    mut f: Filling,
    planned: Option<(u64, Vec<ItemInfo>)>,
    early: Vec<(usize, String)>,
) -> Result<(), GpuError> {
    sh.phases.set(Who::Reader(reader), Phase::GrowArena);
    f.res.arena.ensure(f.layout.arena_len as usize)?;
    sh.phases.set(Who::Reader(reader), Phase::Reading);
    let decode: Vec<Option<bool>> = f
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| (!early.iter().any(|e| e.0 == i)).then_some(it.hw))
        .collect();
    let claim = Claim::route_some(decode, sh.cfg.gpu.decoders);
    let all_failed = early.len() >= f.items.len();
    let batch = Arc::new(Batch {
        res: Some(f.res),
        items: f.items,
        claim: Mutex::new(claim),
        finished: AtomicUsize::new(early.len()),
        fence_mask: AtomicU64::new(0),
        failures: Mutex::new(early),
        bytes: f.bytes,
        seq: sh.seq.fetch_add(1, SeqCst),
        pool: sh.pool_tx.clone(),
        planned,
    });
    sh.submitted.fetch_add(1, SeqCst);
    if all_failed {
        let _ = sh.complete_tx.send(batch);
        return Ok(());
    }
    if let Ok(mut o) = sh.open.lock() {
        o.push_back(batch);
    }
    sh.open_cv.notify_all();
    Ok(())
}
