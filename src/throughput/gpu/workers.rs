//! A decoder thread: claims images from the open batches ([`super::batch::find_work`]), decodes
//! them into the slot's arena on its own stream, records its fence for that slot, and counts the
//! outcome; the thread that finishes a batch's last image hands it to the assembler.

use super::batch::{find_work, Role};
use super::shared::{Shared, WAIT};
use super::watchdog::{Phase, Who};
use crate::gpu::GpuError;
use crate::throughput::decoders::{Decoder, DecoderKind, Job, JobResult};
use crate::throughput::meter::add_since;
use crate::throughput::PipelineError;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

/// What one decode call came to, per claimed item.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Items finished (decoded or failed for good).
    pub done: usize,
    /// Decoded, by decoder kind.
    pub by_kind: Vec<DecoderKind>,
    /// Items this decoder gave back (to the CUDA decoders).
    pub retry: Vec<usize>,
    /// Items nobody can decode, with why.
    pub failed: Vec<(usize, String)>,
}

/// Tallies `results[k]` for claimed item `items[k]`.
pub(super) fn tally(items: &[usize], results: &[JobResult]) -> Tally {
    let mut t = Tally::default();
    for (r, &item) in results.iter().zip(items) {
        match r {
            JobResult::Done(kind) => {
                t.done += 1;
                t.by_kind.push(*kind);
            }
            JobResult::Retry => t.retry.push(item),
            JobResult::Failed(reason) => {
                t.done += 1;
                t.failed.push((item, reason.clone()));
            }
        }
    }
    t
}

/// Runs decoder `w` until the assembler is done or the run fails.
pub(super) fn worker(
    sh: &Shared<'_>,
    w: usize,
    dec: &mut dyn Decoder,
    role: Role,
) -> Result<(), PipelineError> {
    sh.gpu.bind()?;
    let mut results = Vec::new();
    let busy = match dec.kind() {
        DecoderKind::Hardware => &sh.counters.hw_ns,
        _ => &sh.counters.cuda_ns,
    };
    let me = Who::Decoder(w);
    loop {
        sh.phases.set(me, Phase::WaitWork);
        if sh.abort.load(SeqCst) || sh.workers_exit.load(SeqCst) {
            sh.phases.set(me, Phase::Done);
            return Ok(());
        }
        let role = match role {
            Role::Cuda { steal } => Role::Cuda {
                steal: steal && sh.may_steal(),
            },
            r => r,
        };
        let work = match sh.open.lock() {
            Ok(open) => find_work(&open, role, dec.claim_size()),
            Err(_) => None,
        };
        let Some((batch, idxs)) = work else {
            if let Ok(g) = sh.open.lock() {
                let _ = sh.open_cv.wait_timeout(g, WAIT);
            }
            continue;
        };
        let t = Instant::now();
        let res = batch.res()?;
        let mut jobs = Vec::with_capacity(idxs.len());
        for &i in &idxs {
            let it = batch
                .items
                .get(i)
                .ok_or_else(|| GpuError::Invalid(format!("item {i} out of range")))?;
            jobs.push(Job {
                data: res.host.slice(it.jpeg_off..it.jpeg_off + it.jpeg_len)?,
                dst: res.arena.image(it.arena_off, it.width, it.height)?,
            });
        }
        sh.phases.set(me, Phase::Decode);
        dec.decode(&jobs, &mut results)?;
        sh.phases.set(me, Phase::Fence);
        dec.fence(res.id)?;
        batch.fence_mask.fetch_or(1u64 << w, SeqCst);
        let t_out = tally(&idxs, &results);
        for kind in &t_out.by_kind {
            let c = match kind {
                DecoderKind::Hardware => &sh.counters.by_hw,
                DecoderKind::Cuda => &sh.counters.by_cuda,
                DecoderKind::Cpu => &sh.counters.by_cpu,
            };
            c.fetch_add(1, SeqCst);
        }
        if !t_out.failed.is_empty() {
            if let Ok(mut f) = batch.failures.lock() {
                f.extend(t_out.failed);
            }
        }
        if !t_out.retry.is_empty() {
            if let Ok(mut c) = batch.claim.lock() {
                c.retry(t_out.retry);
            }
            sh.open_cv.notify_all();
        }
        add_since(busy, t);
        let done = t_out.done;
        let prev = batch.finished.fetch_add(done, SeqCst);
        if done > 0 && prev + done == batch.items.len() {
            sh.complete(&batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_sorts_outcomes_by_item() {
        let r = [
            JobResult::Done(DecoderKind::Hardware),
            JobResult::Retry,
            JobResult::Failed("bad".into()),
            JobResult::Done(DecoderKind::Cpu),
        ];
        let t = tally(&[7, 3, 9, 1], &r);
        assert_eq!(t.done, 3);
        assert_eq!(t.by_kind, [DecoderKind::Hardware, DecoderKind::Cpu]);
        assert_eq!(t.retry, [3]);
        assert_eq!(t.failed, [(9, "bad".to_string())]);
        assert_eq!(tally(&[], &[]), Tally::default());
    }
}
