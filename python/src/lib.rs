//! `dsprep._dsprep`: the loader of the dsprep library crate (the pipeline `verify-throughput`
//! runs) for Python. The thin Python package `dsprep` wraps it: it turns each batch's two
//! DLPack exports (the image tensor, and one packed buffer of the small tensors) into PyTorch
//! tensors or NumPy arrays and builds the batch dict. All `unsafe` is in [`dlpack`].

mod dlpack;

use dlpack::{Export, CODE_FLOAT, CODE_UINT, DEVICE_CPU, DEVICE_CUDA};
use dsprep::throughput::config::DType;
use dsprep::throughput::loader::batch::Elem;
use dsprep::throughput::loader::options::RawOptions;
use dsprep::throughput::loader::{Images, Loader, LoaderError, Placement, Position};
use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Mutex;

pyo3::create_exception!(_dsprep, DsprepError, PyRuntimeError);

fn to_py(e: LoaderError) -> PyErr {
    match e {
        LoaderError::Arg(a) => PyValueError::new_err(a.to_string()),
        other => DsprepError::new_err(other.to_string()),
    }
}

/// One tensor to hand over by DLPack (once).
#[pyclass(module = "dsprep._dsprep")]
struct Tensor {
    inner: Mutex<Option<Payload>>,
    device_type: i32,
    device_id: i32,
    /// Address of the data (tests check that the ring's buffers are reused).
    #[pyo3(get)]
    address: u64,
    /// Which ring buffer it is (`-1` for the packed small tensors).
    #[pyo3(get)]
    buffer_id: i64,
}

enum Payload {
    Images {
        images: Images,
        dtype: DType,
        shape: Vec<i64>,
    },
    Bytes(Vec<u64>, usize),
}

#[pymethods]
impl Tensor {
    fn __dlpack_device__(&self) -> (i32, i32) {
        (self.device_type, self.device_id)
    }

    /// The tensor as a DLPack capsule; a CUDA tensor is made ready on `stream` (the consumer's).
    #[pyo3(signature = (stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<i64>,
        max_version: Option<(i64, i64)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let _ = max_version;
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "dsprep tensors are exported without copying",
            ));
        }
        if let Some(d) = dl_device {
            if d != (self.device_type, self.device_id) {
                return Err(PyBufferError::new_err(
                    "dsprep cannot move a tensor to another device",
                ));
            }
        }
        let payload = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("lock poisoned"))?
            .take()
            .ok_or_else(|| PyBufferError::new_err("this dsprep tensor was already exported"))?;
        let export = match payload {
            Payload::Images {
                mut images,
                dtype,
                shape,
            } => {
                let address = match &mut images {
                    Images::Host(h) => h.address(),
                    Images::Device(d) => {
                        // None: the legacy default stream (DLPack); -1: the consumer syncs itself.
                        let s = stream.unwrap_or(1);
                        if s != -1 {
                            d.ready_on(dlpack::foreign_stream(s as usize))
                                .map_err(|e| DsprepError::new_err(e.to_string()))?;
                        }
                        d.address()
                    }
                };
                let bits = match dtype {
                    DType::Fp16 => 16,
                    DType::Fp32 => 32,
                };
                Export {
                    address,
                    device_type: self.device_type,
                    device_id: self.device_id,
                    code: CODE_FLOAT,
                    bits,
                    shape,
                    owner: Box::new(images),
                }
            }
            Payload::Bytes(words, len) => Export {
                address: words.as_ptr() as u64,
                device_type: DEVICE_CPU,
                device_id: 0,
                code: CODE_UINT,
                bits: 8,
                shape: vec![len as i64],
                owner: Box::new(words),
            },
        };
        dlpack::into_capsule(py, export)
    }
}

/// The loader (see the `dsprep` package for the documented Python API).
#[pyclass(module = "dsprep._dsprep")]
struct CoreLoader {
    inner: Mutex<Loader>,
}

fn lock(l: &Mutex<Loader>) -> PyResult<std::sync::MutexGuard<'_, Loader>> {
    l.lock()
        .map_err(|_| PyRuntimeError::new_err("loader lock poisoned"))
}

#[pymethods]
impl CoreLoader {
    #[new]
    #[pyo3(signature = (path, split=None, batch_size=256, size=640, resize="letterbox".to_string(),
        flip=0.0, hsv=None, dtype="float16".to_string(), mean=vec![0.0, 0.0, 0.0],
        std=vec![255.0, 255.0, 255.0], bgr=false, max_boxes=None, shuffle=true, seed=0,
        drop_last=true, device="auto".to_string(), decoders="both".to_string(), threads=None,
        rank=None, world_size=None, connections=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        split: Option<String>,
        batch_size: i64,
        size: i64,
        resize: String,
        flip: f64,
        hsv: Option<Vec<f64>>,
        dtype: String,
        mean: Vec<f64>,
        std: Vec<f64>,
        bgr: bool,
        max_boxes: Option<i64>,
        shuffle: bool,
        seed: i64,
        drop_last: bool,
        device: String,
        decoders: String,
        threads: Option<i64>,
        rank: Option<i64>,
        world_size: Option<i64>,
        connections: Option<String>,
    ) -> PyResult<Self> {
        let raw = RawOptions {
            path,
            split,
            batch_size,
            size,
            resize,
            flip,
            hsv,
            dtype,
            mean,
            std,
            bgr,
            max_boxes,
            shuffle,
            seed,
            drop_last,
            device,
            decoders,
            threads,
            rank,
            world_size,
        };
        let loader = py
            // `connections`: CUDA_DEVICE_MAX_CONNECTIONS as this process's CUDA contexts got it
            // (the package records it at import); the environment now may say otherwise.
            .detach(|| {
                Loader::open(&raw, &|k| match &connections {
                    // "" records that it was unset.
                    Some(c) if k == dsprep::gpu::connections::ENV => {
                        (!c.is_empty()).then(|| c.clone())
                    }
                    _ => std::env::var(k).ok(),
                })
            })
            .map_err(to_py)?;
        Ok(CoreLoader {
            inner: Mutex::new(loader),
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(lock(&self.inner)?.len() as usize)
    }

    /// "cpu" or "cuda:N".
    fn device(&self) -> PyResult<String> {
        Ok(match lock(&self.inner)?.placement {
            Placement::Cpu => "cpu".into(),
            Placement::Cuda(n) => format!("cuda:{n}"),
        })
    }

    fn warnings(&self) -> PyResult<Vec<String>> {
        Ok(lock(&self.inner)?.warnings().to_vec())
    }

    fn rank(&self) -> PyResult<(u32, u32, u32)> {
        let r = lock(&self.inner)?.rank;
        Ok((r.rank, r.world, r.local))
    }

    fn records(&self) -> PyResult<u64> {
        Ok(lock(&self.inner)?.records())
    }

    fn set_epoch(&self, epoch: u64) -> PyResult<()> {
        lock(&self.inner)?.set_epoch(epoch);
        Ok(())
    }

    fn epoch(&self) -> PyResult<u64> {
        Ok(lock(&self.inner)?.epoch())
    }

    fn begin(&self) -> PyResult<()> {
        lock(&self.inner)?.begin();
        Ok(())
    }

    /// The next batch as (epoch, index, images, meta, fields, failed), or None at the end of
    /// the epoch. `fields`: (name, dtype, shape, byte offset) of each small tensor in `meta`.
    #[allow(clippy::type_complexity)]
    fn next_batch(
        &self,
        py: Python<'_>,
    ) -> PyResult<
        Option<(
            u64,
            u64,
            Tensor,
            Tensor,
            Vec<(String, String, Vec<usize>, usize)>,
            Vec<(String, u64, String)>,
        )>,
    > {
        let (got, placement, dtype, side) = {
            let inner = &self.inner;
            py.detach(|| {
                let mut l = inner.lock().map_err(|_| {
                    LoaderError::Pipeline(dsprep::throughput::PipelineError::Failed(
                        "loader lock poisoned".into(),
                    ))
                })?;
                let o = l.options().clone();
                let b = l.next_batch()?;
                Ok::<_, LoaderError>((b, l.placement.clone(), o.dtype, o.side))
            })
            .map_err(to_py)?
        };
        let Some(b) = got else { return Ok(None) };
        let (device_type, device_id) = match placement {
            Placement::Cpu => (DEVICE_CPU, 0),
            Placement::Cuda(n) => (DEVICE_CUDA, n as i32),
        };
        let (address, buffer_id) = match &b.images {
            Images::Host(h) => (h.address(), h.buffer_id() as i64),
            Images::Device(d) => (d.address(), d.buffer_id() as i64),
        };
        let n = b
            .meta
            .fields
            .first()
            .and_then(|f| f.shape.first())
            .copied()
            .unwrap_or(0);
        let images = Tensor {
            inner: Mutex::new(Some(Payload::Images {
                images: b.images,
                dtype,
                shape: vec![n as i64, 3, i64::from(side), i64::from(side)],
            })),
            device_type,
            device_id,
            address,
            buffer_id,
        };
        let len = b.meta.bytes.len();
        let mut words = vec![0u64; len.div_ceil(8)];
        for (w, c) in words.iter_mut().zip(b.meta.bytes.chunks(8)) {
            let mut a = [0u8; 8];
            a[..c.len()].copy_from_slice(c);
            *w = u64::from_ne_bytes(a);
        }
        let meta = Tensor {
            address: words.as_ptr() as u64,
            inner: Mutex::new(Some(Payload::Bytes(words, len))),
            device_type: DEVICE_CPU,
            device_id: 0,
            buffer_id: -1,
        };
        let fields = b
            .meta
            .fields
            .iter()
            .map(|f| {
                let t = match f.elem {
                    Elem::F32 => "float32",
                    Elem::I64 => "int64",
                    Elem::Bool => "bool",
                };
                (f.name.to_string(), t.to_string(), f.shape.clone(), f.offset)
            })
            .collect();
        let failed = b
            .failed
            .into_iter()
            .map(|(p, off, why)| (p.display().to_string(), off, why))
            .collect();
        Ok(Some((b.epoch, b.index, images, meta, fields, failed)))
    }

    fn state(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let p = lock(&self.inner)?.state();
        let d = PyDict::new(py);
        d.set_item("epoch", p.epoch)?;
        d.set_item("batch", p.batch)?;
        d.set_item("seed", p.seed)?;
        d.set_item("rank", p.rank)?;
        d.set_item("world_size", p.world)?;
        d.set_item("records", p.records)?;
        d.set_item("batch_size", p.batch_size)?;
        Ok(d.unbind())
    }

    #[allow(clippy::too_many_arguments)]
    fn load_state(
        &self,
        epoch: u64,
        batch: u64,
        seed: u64,
        rank: u32,
        world_size: u32,
        records: u64,
        batch_size: usize,
    ) -> PyResult<()> {
        let p = Position {
            epoch,
            batch,
            seed,
            rank,
            world: world_size,
            records,
            batch_size,
        };
        lock(&self.inner)?
            .load_state(p)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let s = lock(&self.inner)?.stats();
        let d = PyDict::new(py);
        d.set_item("device", s.device)?;
        d.set_item("batches", s.batches)?;
        d.set_item("images", s.images)?;
        d.set_item("images_per_s", s.images_per_s)?;
        let dec = PyDict::new(py);
        dec.set_item("hardware", s.by_hardware)?;
        dec.set_item("cuda", s.by_cuda)?;
        dec.set_item("cpu", s.by_cpu)?;
        d.set_item("decoded_by", dec)?;
        d.set_item("skipped_records", s.skipped_records)?;
        d.set_item("dropped_boxes", s.dropped_boxes)?;
        d.set_item("padded_images", s.padded_images)?;
        d.set_item("device_bytes", s.device_bytes)?;
        d.set_item("device_allocations", s.device_allocations)?;
        d.set_item("ring_buffers", s.ring_buffers)?;
        d.set_item("warnings", s.warnings)?;
        Ok(d.unbind())
    }
}

#[pymodule]
fn _dsprep(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CoreLoader>()?;
    m.add_class::<Tensor>()?;
    m.add("DsprepError", m.py().get_type::<DsprepError>())?;
    // The hardware-queue rule (dsprep::gpu::connections): the package sets the variable at
    // import from these, so the rule and its value live in one place.
    m.add("CONNECTIONS_ENV", dsprep::gpu::connections::ENV)?;
    m.add("CONNECTIONS_NEEDED", dsprep::gpu::connections::NEEDED)?;
    Ok(())
}
