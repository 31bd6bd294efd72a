//! The training loader behind `import dsprep`: the throughput pipeline's engines driven by a
//! plan instead of a shard walk, yielding one batch dict per step.
//!
//! - [`options`]: the Python arguments, checked once (errors name the argument);
//! - [`plan`]: each epoch's global shuffle, rank split, padding and flips;
//! - [`gpu_engine`] (the GPU engine of `verify-throughput`, kept for the loader's life) or
//!   [`cpu_engine`] (the CPU decoder and the kernel's CPU reference) produce the images;
//! - [`batch`]: the small tensors (boxes in output pixels, labels, ids, geometry, `is_pad`);
//! - [`host`]: host batch buffers lent to NumPy.
//!
//! Position: `(epoch, batches yielded in it)`. `begin()` starts the pass there (an epoch that
//! was finished moves on to the next: forgetting `set_epoch` does not repeat an order);
//! `state()`/`load_state()` save and restore it, and since every batch is a function of the
//! position, a resumed run yields exactly what an uninterrupted one would have.

pub mod batch;
pub mod cpu_engine;
pub mod gpu_engine;
pub mod host;
pub mod options;
pub mod plan;

use self::batch::{build_meta, Meta};
use self::cpu_engine::CpuPass;
use self::gpu_engine::{GpuEngine, GpuPass};
use self::host::{HostLease, HostRing};
use self::options::{ArgError, DeviceRequest, Options, Rank, RawOptions};
use self::plan::{EpochChain, PlanSpec};
use crate::gpu::ffi::cuda::device_allocations;
use crate::shard::format::ShardRef;
use crate::shard::random::RandomShard;
use crate::throughput::config::{
    default_cuda_workers, DecoderSet, GpuTuning, PipelineConfig, Stop,
};
use crate::throughput::device::{select_with, DeviceError};
use crate::throughput::feed::Delivered;
use crate::throughput::gpu::outputs::DeviceLease;
use crate::throughput::meter::Counters;
use crate::throughput::{DeviceChoice, PipelineError};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the loader cannot be made or cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// A bad argument (Python: `ValueError`).
    #[error(transparent)]
    Arg(#[from] ArgError),
    /// A device was asked for that cannot run (says what is missing).
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The consumer holds every buffer the ring may have.
    #[error("the training loop holds {held} batches, the most this loader lends at once ({cap} buffers of {mib} MiB): drop references to old batches (a list of batches keeps their images alive)")]
    TooManyHeld { held: usize, cap: usize, mib: usize },
}

/// The batch tensor of one batch, wherever it lives.
pub enum Images {
    Host(HostLease),
    Device(DeviceLease),
}

/// One batch as the Python side gets it.
pub struct LoaderBatch {
    pub epoch: u64,
    pub index: u64,
    pub images: Images,
    pub meta: Meta,
    /// Records of this batch that could not be used (replaced, marked `is_pad`).
    pub failed: Vec<(std::path::PathBuf, u64, String)>,
}

/// Where the loader runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Cpu,
    Cuda(u32),
}

enum Engine {
    Cpu {
        pool: Arc<rayon::ThreadPool>,
        ring: Arc<HostRing>,
    },
    Gpu(GpuEngine),
}

enum Pass {
    Cpu(CpuPass),
    Gpu(GpuPass),
}

/// The pass in progress: over a chain of epochs from some position, and the chain batch it
/// delivers next. It is kept across epoch ends while the loader's position is that batch.
struct Active {
    chain: Arc<EpochChain>,
    next: u64,
    pass: Pass,
}

/// Counts for `stats()`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub device: String,
    pub batches: u64,
    pub images: u64,
    /// Images per second since the first batch was asked for.
    pub images_per_s: f64,
    pub by_hardware: u64,
    pub by_cuda: u64,
    pub by_cpu: u64,
    /// Records that could not be used (each time it happened).
    pub skipped_records: u64,
    pub dropped_boxes: u64,
    pub padded_images: u64,
    /// Bytes of device memory this process's dsprep buffers hold, and allocations made so far.
    pub device_bytes: u64,
    pub device_allocations: u64,
    /// Batch buffers made, lent out now, and the most there may be.
    pub ring_buffers: (usize, usize, usize),
    pub warnings: Vec<String>,
}

/// The loader.
pub struct Loader {
    opts: Options,
    pub rank: Rank,
    spec: PlanSpec,
    refs: Vec<ShardRef>,
    counters: Arc<Counters>,
    cfg: Arc<PipelineConfig>,
    shards: Arc<Vec<RandomShard>>,
    engine: Engine,
    pass: Option<Active>,
    pub placement: Placement,
    epoch: u64,
    position: u64,
    device: String,
    warnings: Vec<String>,
    started: Option<Instant>,
    batches: u64,
    images: u64,
    dropped_boxes: u64,
    padded: u64,
    skipped: u64,
    /// Why the loader cannot go on (its GPU pipeline stalled).
    broken: Option<String>,
}

/// `(epoch, batches yielded in it)` and what they depend on (checked on load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub batch: u64,
    pub seed: u64,
    pub rank: u32,
    pub world: u32,
    pub records: u64,
    pub batch_size: usize,
}

/// The split names of a shard folder: its manifest's, else the `<split>-` prefixes of the
/// shards found there.
fn split_names(dir: &std::path::Path) -> Result<Vec<String>, ArgError> {
    let bad = |why: String| ArgError { name: "path", why };
    if let Some(m) = crate::shard::manifest::Manifest::load(dir).map_err(|e| bad(e.to_string()))? {
        return Ok(m.splits.iter().map(|s| s.name.clone()).collect());
    }
    let found = crate::shard::format::discover(dir).map_err(|e| bad(e.to_string()))?;
    let mut names: Vec<String> = found
        .iter()
        .filter_map(|s| {
            let n = s.name();
            let stem = n.split('.').next()?.to_string();
            let cut = stem.rfind("-of-")?;
            let head = stem.get(..cut)?;
            Some(head.get(..head.rfind('-')?)?.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

impl Loader {
    /// Opens the shards, plans, picks the device and starts the engine. `env` reads the
    /// environment (torchrun and Slurm variables).
    pub fn open(
        raw: &RawOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, LoaderError> {
        let opts = raw.check()?;
        let rank = options::resolve_rank(raw.rank, raw.world_size, env)?;
        if !opts.path.is_dir() {
            return Err(ArgError {
                name: "path",
                why: format!("{}: not a folder of shards", opts.path.display()),
            }
            .into());
        }
        let names = split_names(&opts.path)?;
        if opts.split.is_none() && names.len() > 1 {
            return Err(ArgError {
                name: "split",
                why: format!(
                    "{} holds several splits ({}): pick one",
                    opts.path.display(),
                    names.join(", ")
                ),
            }
            .into());
        }
        let refs =
            crate::shard::source::shards_in(&opts.path, opts.split.as_deref()).map_err(|e| {
                ArgError {
                    name: if opts.split.is_some() {
                        "split"
                    } else {
                        "path"
                    },
                    why: e.to_string(),
                }
            })?;
        if refs.is_empty() {
            return Err(ArgError {
                name: if opts.split.is_some() {
                    "split"
                } else {
                    "path"
                },
                why: format!("no shards in {}", opts.path.display()),
            }
            .into());
        }
        let mut shards = Vec::with_capacity(refs.len());
        for r in &refs {
            shards.push(RandomShard::open(r).map_err(|e| ArgError {
                name: "path",
                why: e.to_string(),
            })?);
        }
        let spec = PlanSpec {
            shard_records: shards.iter().map(RandomShard::len).collect(),
            batch: opts.batch,
            shuffle: opts.shuffle,
            seed: opts.seed,
            rank: rank.rank,
            world: rank.world,
            drop_last: opts.drop_last,
            flip: opts.flip,
            hsv: opts.hsv,
        };
        let mut warnings = Vec::new();
        let (choice, ordinal) = match opts.device {
            DeviceRequest::Auto => (DeviceChoice::Auto, rank.local),
            DeviceRequest::Cuda(n) => (DeviceChoice::Gpu, n.unwrap_or(rank.local)),
            DeviceRequest::Cpu => (DeviceChoice::Cpu, 0),
        };
        let connections =
            crate::gpu::connections::problem(env(crate::gpu::connections::ENV).as_deref());
        let (device, fallback) = select_with(choice, &[ordinal], |g| {
            let mut missing = crate::gpu::device::probe(g).missing;
            missing.extend(connections.clone());
            missing
        })?;
        if let Some(f) = fallback {
            warnings.push(format!("no usable GPU, running on the CPU: {}", f.reason()));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cfg = Arc::new(pipeline_config(&opts, refs.clone(), ordinal, cores));
        let counters = Arc::new(Counters::default());
        let shards = Arc::new(shards);
        let per = opts.batch * 3 * (opts.side as usize).pow(2);
        let (engine, placement, name) = match device {
            crate::throughput::Device::Gpu => {
                let g = GpuEngine::start(cfg.clone(), shards.clone(), counters.clone())?;
                let name = g.device.clone();
                (Engine::Gpu(g), Placement::Cuda(ordinal), name)
            }
            crate::throughput::Device::Cpu => {
                let threads = opts.threads.unwrap_or(cores);
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("loader-decode-{i}"))
                    .build()
                    .map_err(|e| {
                        PipelineError::Failed(format!("cannot start the decode threads: {e}"))
                    })?;
                let ring = HostRing::new(opts.dtype, per, 16);
                let name = format!("CPU ({threads} decode threads)");
                (
                    Engine::Cpu {
                        pool: Arc::new(pool),
                        ring,
                    },
                    Placement::Cpu,
                    name,
                )
            }
        };
        Ok(Loader {
            opts,
            rank,
            spec,
            refs,
            counters,
            cfg,
            shards,
            engine,
            pass: None,
            placement,
            epoch: 0,
            position: 0,
            device: name,
            warnings,
            started: None,
            batches: 0,
            images: 0,
            dropped_boxes: 0,
            padded: 0,
            skipped: 0,
            broken: None,
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Batches per epoch (the same on every rank).
    pub fn len(&self) -> u64 {
        self.spec.batches()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records in the split.
    pub fn records(&self) -> u64 {
        self.spec.total()
    }

    /// Warnings (the CPU fallback, ...), for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Sets the epoch the next pass runs (from its first batch). The pass in progress goes on
    /// when it was already heading there (the epoch after the one just finished).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.position = 0;
    }

    /// The epoch the current or next pass runs.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Prepares iteration: a finished epoch moves on to the next one.
    pub fn begin(&mut self) {
        if self.position >= self.len() {
            self.epoch += 1;
            self.position = 0;
        }
    }

    pub fn state(&self) -> Position {
        Position {
            epoch: self.epoch,
            batch: self.position,
            seed: self.spec.seed,
            rank: self.spec.rank,
            world: self.spec.world,
            records: self.spec.total(),
            batch_size: self.spec.batch,
        }
    }

    /// Continues from `p` (saved by [`Loader::state`] of a loader over the same data, seed,
    /// batch size and ranks).
    pub fn load_state(&mut self, p: Position) -> Result<(), ArgError> {
        let mine = self.state();
        let check = |name: &'static str, a: u64, b: u64| {
            if a == b {
                Ok(())
            } else {
                Err(ArgError {
                    name: "state_dict",
                    why: format!("saved with {name} {a}, this loader has {b}"),
                })
            }
        };
        check("seed", p.seed, mine.seed)?;
        check("rank", p.rank.into(), mine.rank.into())?;
        check("world_size", p.world.into(), mine.world.into())?;
        check("records", p.records, mine.records)?;
        check("batch_size", p.batch_size as u64, mine.batch_size as u64)?;
        if p.batch > self.len() {
            return Err(ArgError {
                name: "state_dict",
                why: format!(
                    "position {} is past the {} batches of an epoch",
                    p.batch,
                    self.len()
                ),
            });
        }
        self.stop_pass();
        self.epoch = p.epoch;
        self.position = p.batch;
        Ok(())
    }

    fn stop_pass(&mut self) {
        if self.broken.is_some() {
            self.pass = None;
            return;
        }
        if let Some(Active { pass, .. }) = self.pass.take() {
            match (pass, &self.engine) {
                (Pass::Gpu(p), Engine::Gpu(g)) => {
                    let _ = g.finish(p);
                }
                (pass, _) => drop(pass),
            }
        }
    }

    /// Whether the pass in progress delivers the batch at the loader's position next.
    fn pass_fits(&self) -> bool {
        self.pass
            .as_ref()
            .is_some_and(|a| a.chain.index_of(self.epoch, self.position) == Some(a.next))
    }

    fn start_pass(&mut self) -> Result<(), LoaderError> {
        let chain = Arc::new(EpochChain::new(self.spec.clone(), self.epoch));
        let plan = chain.clone();
        let pass = match &self.engine {
            Engine::Gpu(g) => Pass::Gpu(g.run(plan, self.position)?),
            Engine::Cpu { pool, ring } => Pass::Cpu(
                cpu_engine::start(
                    self.cfg.clone(),
                    pool.clone(),
                    self.shards.clone(),
                    ring.clone(),
                    self.counters.clone(),
                    plan,
                    self.position,
                )
                .map_err(PipelineError::Failed)?,
            ),
        };
        self.pass = Some(Active {
            chain,
            next: self.position,
            pass,
        });
        Ok(())
    }

    /// The next batch of the epoch, `None` at its end.
    pub fn next_batch(&mut self) -> Result<Option<LoaderBatch>, LoaderError> {
        if let Some(why) = &self.broken {
            return Err(PipelineError::Failed(why.clone()).into());
        }
        self.started.get_or_insert_with(Instant::now);
        if self.position >= self.len() {
            // The pass flows on into the next epoch (see [`EpochChain`]).
            return Ok(None);
        }
        if !self.pass_fits() {
            self.stop_pass();
        }
        if self.pass.is_none() {
            self.start_pass()?;
        }
        let images = self.receive()?;
        let Some((index, items, failed, source, images)) = images else {
            // The pass ended before the epoch did: the engine's error says why.
            let err = match (self.pass.take(), &self.engine) {
                (
                    Some(Active {
                        pass: Pass::Gpu(p), ..
                    }),
                    Engine::Gpu(g),
                ) => g.finish(p).err(),
                _ => None,
            };
            return Err(err
                .unwrap_or_else(|| PipelineError::Failed("the loader's pass ended early".into()))
                .into());
        };
        let due = self.pass.as_ref().map_or(self.position, |a| a.next);
        if index != due {
            return Err(PipelineError::Failed(format!(
                "batch {index} of the pass arrived where batch {due} was due"
            ))
            .into());
        }
        if let Some(a) = self.pass.as_mut() {
            a.next += 1;
        }
        let d = Delivered {
            index,
            items,
            failed,
            source,
            images: (),
        };
        let meta = build_meta(&d, self.opts.side, self.opts.resize, self.opts.max_boxes);
        let failed = d
            .failed
            .iter()
            .map(|(i, why)| {
                let p = d.items.get(*i).map(|it| it.planned);
                let (path, off) = p
                    .and_then(|p| {
                        self.shards
                            .get(p.shard as usize)
                            .map(|s| (s.path().to_path_buf(), s.offset_of(p.number)))
                    })
                    .unwrap_or_default();
                (path, off, why.clone())
            })
            .collect::<Vec<_>>();
        self.position += 1;
        self.batches += 1;
        self.images += d.items.len() as u64;
        self.dropped_boxes += meta.dropped_boxes;
        self.padded += meta.padded;
        self.skipped += failed.len() as u64;
        Ok(Some(LoaderBatch {
            epoch: self.epoch,
            index,
            images,
            meta,
            failed,
        }))
    }

    /// Waits for the pass's next batch; `None` when the pass ended.
    #[allow(clippy::type_complexity)]
    fn receive(
        &mut self,
    ) -> Result<
        Option<(
            u64,
            Vec<crate::throughput::feed::ItemInfo>,
            Vec<(usize, String)>,
            Vec<Option<usize>>,
            Images,
        )>,
        LoaderError,
    > {
        let mut full_since: Option<Instant> = None;
        loop {
            let got = match self.pass.as_ref().map(|a| &a.pass) {
                Some(Pass::Gpu(p)) => match p.rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(d) => Some(Ok(Some((
                        d.index,
                        d.items,
                        d.failed,
                        d.source,
                        Images::Device(d.images),
                    )))),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Ok(None)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                },
                Some(Pass::Cpu(p)) => match p.rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(d) => Some(Ok(Some((
                        d.index,
                        d.items,
                        d.failed,
                        d.source,
                        Images::Host(d.images),
                    )))),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Ok(None)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                },
                None => Some(Ok(None)),
            };
            if let Some(r) = got {
                return r;
            }
            if let Some(Active {
                pass: Pass::Gpu(p), ..
            }) = self.pass.as_ref()
            {
                if let Some(why) = p.stalled() {
                    // The pass cannot finish (a decoder is stuck): the engine is given up
                    // (its thread is left, not joined) and every later call says why.
                    p.stop.store(true, SeqCst);
                    if let Engine::Gpu(g) = &self.engine {
                        g.abandon();
                    }
                    self.pass = None;
                    let why = format!("the GPU pipeline stopped: {why}");
                    self.broken = Some(why.clone());
                    return Err(PipelineError::Failed(why).into());
                }
            }
            // Nothing yet: the consumer may be holding every buffer the ring may have.
            let (made, lent, cap, bytes) = self.ring_counts();
            if made >= cap && lent >= cap {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    return Err(LoaderError::TooManyHeld {
                        held: lent,
                        cap,
                        mib: bytes >> 20,
                    });
                }
            } else {
                full_since = None;
            }
        }
    }

    fn ring_counts(&self) -> (usize, usize, usize, usize) {
        match &self.engine {
            Engine::Gpu(g) => {
                let (m, l, c) = g.ring.counts();
                (m, l, c, g.ring.buffer_bytes())
            }
            Engine::Cpu { ring, .. } => {
                let (m, l, c) = ring.counts();
                (m, l, c, ring.buffer_bytes())
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let secs = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let (made, lent, cap, _) = self.ring_counts();
        let (bytes, allocs) = device_allocations();
        Stats {
            device: self.device.clone(),
            batches: self.batches,
            images: self.images,
            images_per_s: if secs > 0.0 {
                self.images as f64 / secs
            } else {
                0.0
            },
            by_hardware: c.by_hw.load(SeqCst),
            by_cuda: c.by_cuda.load(SeqCst),
            by_cpu: c.by_cpu.load(SeqCst),
            skipped_records: self.skipped,
            dropped_boxes: self.dropped_boxes,
            padded_images: self.padded,
            device_bytes: bytes,
            device_allocations: allocs,
            ring_buffers: (made, lent, cap),
            warnings: self.warnings.clone(),
        }
    }

    /// The shards read, in order.
    pub fn shard_refs(&self) -> &[ShardRef] {
        &self.refs
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop_pass();
    }
}

/// The pipeline configuration the engines run for the loader's options.
fn pipeline_config(
    o: &Options,
    shards: Vec<ShardRef>,
    ordinal: u32,
    cores: usize,
) -> PipelineConfig {
    let mut c = PipelineConfig::with_defaults(o.path.clone(), shards, cores);
    c.batch = o.batch;
    c.side = o.side;
    c.resize = o.resize;
    c.dtype = o.dtype;
    c.bgr = o.bgr;
    c.mean = o.mean;
    c.std = o.std;
    c.stop = Stop::Epochs(1);
    c.warmup_s = 0.0;
    c.seed = o.seed;
    // Random reads and a full Example parse per record: a third reader on big machines.
    if cores >= 12 {
        c.readers = 3;
    }
    let mut g = GpuTuning::with_defaults(ordinal, cores, c.readers);
    g.decoders = o.decoders;
    if let Some(t) = o.threads {
        g.cuda_workers = default_cuda_workers(t, c.readers, g.hw_workers).max(1);
        c.cpu_threads = t;
    }
    if o.decoders == DecoderSet::HardwareOnly {
        g.cuda_workers = g.cuda_workers.min(2);
    }
    c.gpu = g;
    c
}
