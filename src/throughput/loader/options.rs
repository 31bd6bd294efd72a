//! The loader's arguments, as the Python signature gives them (strings for choices, `None` for
//! "pick for me"), checked once into typed [`Options`]. Every refusal is an [`ArgError`] naming
//! the argument, which Python raises as `ValueError`.

use crate::throughput::config::{DType, DecoderSet, ResizeMode};
use std::path::PathBuf;

/// A bad argument: which one and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {why}")]
pub struct ArgError {
    pub name: &'static str,
    pub why: String,
}

fn bad(name: &'static str, why: impl Into<String>) -> ArgError {
    ArgError {
        name,
        why: why.into(),
    }
}

/// Where the loader runs, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// `cuda:LOCAL_RANK` when the GPU path can run, else the CPU (with a warning).
    Auto,
    Cuda(Option<u32>),
    Cpu,
}

/// The raw arguments (Python's keyword arguments, unchecked).
#[derive(Debug, Clone)]
pub struct RawOptions {
    pub path: PathBuf,
    pub split: Option<String>,
    pub batch_size: i64,
    pub size: i64,
    pub resize: String,
    pub flip: f64,
    pub hsv: Option<Vec<f64>>,
    pub dtype: String,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub bgr: bool,
    pub max_boxes: Option<i64>,
    pub shuffle: bool,
    pub seed: i64,
    pub drop_last: bool,
    pub device: String,
    pub decoders: String,
    pub threads: Option<i64>,
    pub rank: Option<i64>,
    pub world_size: Option<i64>,
}

impl RawOptions {
    /// The Python signature's defaults for `path`.
    pub fn defaults(path: impl Into<PathBuf>) -> Self {
        RawOptions {
            path: path.into(),
            split: None,
            batch_size: 256,
            size: 640,
            resize: "letterbox".into(),
            flip: 0.0,
            hsv: None,
            dtype: "float16".into(),
            mean: vec![0.0; 3],
            std: vec![255.0; 3],
            bgr: false,
            max_boxes: None,
            shuffle: true,
            seed: 0,
            drop_last: true,
            device: "auto".into(),
            decoders: "both".into(),
            threads: None,
            rank: None,
            world_size: None,
        }
    }
}

/// Checked arguments (the distributed rank is resolved separately: [`resolve_rank`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub path: PathBuf,
    pub split: Option<String>,
    pub batch: usize,
    pub side: u32,
    pub resize: ResizeMode,
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// YOLO's HSV gains (hue, saturation, value), when jitter is on.
    pub hsv: Option<[f32; 3]>,
    pub dtype: DType,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub bgr: bool,
    pub max_boxes: Option<usize>,
    pub shuffle: bool,
    pub seed: u64,
    pub drop_last: bool,
    pub device: DeviceRequest,
    pub decoders: DecoderSet,
    pub threads: Option<usize>,
}

fn triple(name: &'static str, v: &[f64]) -> Result<[f32; 3], ArgError> {
    match v {
        [a, b, c] if v.iter().all(|x| x.is_finite()) => Ok([*a as f32, *b as f32, *c as f32]),
        [_, _, _] => Err(bad(name, "values must be finite numbers")),
        _ => Err(bad(
            name,
            format!("needs 3 values (one per channel), got {}", v.len()),
        )),
    }
}

/// Parses `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`.
pub fn parse_device(s: &str) -> Result<DeviceRequest, ArgError> {
    match s {
        "auto" => Ok(DeviceRequest::Auto),
        "cpu" => Ok(DeviceRequest::Cpu),
        "cuda" | "gpu" => Ok(DeviceRequest::Cuda(None)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<u32>) {
            Some(Ok(n)) => Ok(DeviceRequest::Cuda(Some(n))),
            _ => Err(bad(
                "device",
                format!("{s:?}: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""),
            )),
        },
    }
}

impl RawOptions {
    /// Checks every argument.
    pub fn check(&self) -> Result<Options, ArgError> {
        if !(1..=65536).contains(&self.batch_size) {
            return Err(bad(
                "batch_size",
                format!("must be 1..65536, got {}", self.batch_size),
            ));
        }
        if !(8..=8192).contains(&self.size) {
            return Err(bad(
                "size",
                format!("must be 8..8192 pixels, got {}", self.size),
            ));
        }
        let resize = match self.resize.as_str() {
            "letterbox" => ResizeMode::Letterbox,
            "stretch" => ResizeMode::Stretch,
            other => {
                return Err(bad(
                    "resize",
                    format!("{other:?}: expected \"letterbox\" or \"stretch\""),
                ))
            }
        };
        if !(0.0..=1.0).contains(&self.flip) {
            return Err(bad(
                "flip",
                format!("a probability in [0, 1], got {}", self.flip),
            ));
        }
        let hsv = match &self.hsv {
            None => None,
            Some(v) => {
                let t = triple("hsv", v)?;
                if t.iter().any(|g| !(0.0..=1.0).contains(g)) {
                    return Err(bad(
                        "hsv",
                        "gains must be in [0, 1] (YOLO's hsv_h, hsv_s, hsv_v)",
                    ));
                }
                Some(t)
            }
        };
        let dtype = match self.dtype.as_str() {
            "float16" | "fp16" | "half" => DType::Fp16,
            "float32" | "fp32" | "float" => DType::Fp32,
            other => {
                return Err(bad(
                    "dtype",
                    format!("{other:?}: expected \"float16\" or \"float32\""),
                ))
            }
        };
        let mean = triple("mean", &self.mean)?;
        let std = triple("std", &self.std)?;
        if std.contains(&0.0) {
            return Err(bad("std", "must not contain 0"));
        }
        let max_boxes = match self.max_boxes {
            None => None,
            Some(n) if n >= 1 => Some(n as usize),
            Some(n) => return Err(bad("max_boxes", format!("must be at least 1, got {n}"))),
        };
        if self.seed < 0 {
            return Err(bad("seed", format!("must be >= 0, got {}", self.seed)));
        }
        let decoders = match self.decoders.as_str() {
            "both" => DecoderSet::Both,
            "hw" => DecoderSet::HardwareOnly,
            "cuda" => DecoderSet::CudaOnly,
            other => {
                return Err(bad(
                    "decoders",
                    format!("{other:?}: expected \"both\", \"hw\" or \"cuda\""),
                ))
            }
        };
        let threads = match self.threads {
            None => None,
            Some(n) if (1..=1024).contains(&n) => Some(n as usize),
            Some(n) => return Err(bad("threads", format!("must be 1..1024, got {n}"))),
        };
        Ok(Options {
            path: self.path.clone(),
            split: self.split.clone(),
            batch: self.batch_size as usize,
            side: self.size as u32,
            resize,
            flip: self.flip,
            hsv,
            dtype,
            mean,
            std,
            bgr: self.bgr,
            max_boxes,
            shuffle: self.shuffle,
            seed: self.seed as u64,
            drop_last: self.drop_last,
            device: parse_device(&self.device)?,
            decoders,
            threads,
        })
    }
}

/// This process's place in a distributed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    pub rank: u32,
    pub world: u32,
    /// The GPU of this process on its machine (the default device is `cuda:local`).
    pub local: u32,
}

/// Rank and world size from the arguments, else torchrun's `RANK`/`WORLD_SIZE`/`LOCAL_RANK`,
/// else Slurm's `SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID`, else a single process. `env`
/// reads a variable (the caller passes the process environment).
pub fn resolve_rank(
    rank: Option<i64>,
    world: Option<i64>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Rank, ArgError> {
    let num = |var: &str| -> Result<Option<i64>, ArgError> {
        match env(var) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                bad(
                    if var.contains("RANK") || var.contains("PROCID") {
                        "rank"
                    } else {
                        "world_size"
                    },
                    format!("environment variable {var}={v:?} is not a number"),
                )
            }),
        }
    };
    let (env_rank, env_world, env_local) = if env("WORLD_SIZE").is_some() {
        (num("RANK")?, num("WORLD_SIZE")?, num("LOCAL_RANK")?)
    } else if env("SLURM_NTASKS").is_some() {
        (
            num("SLURM_PROCID")?,
            num("SLURM_NTASKS")?,
            num("SLURM_LOCALID")?,
        )
    } else {
        (None, None, None)
    };
    let world = world.or(env_world).unwrap_or(1);
    let rank = rank.or(env_rank).unwrap_or(0);
    if !(1..=1 << 20).contains(&world) {
        return Err(bad(
            "world_size",
            format!("must be at least 1, got {world}"),
        ));
    }
    if !(0..world).contains(&rank) {
        return Err(bad(
            "rank",
            format!("must be in 0..{world} (world_size), got {rank}"),
        ));
    }
    let local = env_local.filter(|l| *l >= 0).unwrap_or(0);
    Ok(Rank {
        rank: rank as u32,
        world: world as u32,
        local: local as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_every_refusal_names_its_argument() {
        let o = RawOptions::defaults("d").check().unwrap();
        assert_eq!(
            (o.batch, o.side, o.resize, o.dtype),
            (256, 640, ResizeMode::Letterbox, DType::Fp16)
        );
        assert_eq!((o.mean, o.std), ([0.0; 3], [255.0; 3]));
        type Edit = Box<dyn Fn(&mut RawOptions)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("batch_size", Box::new(|r| r.batch_size = 0)),
            ("size", Box::new(|r| r.size = 4)),
            ("resize", Box::new(|r| r.resize = "crop".into())),
            ("flip", Box::new(|r| r.flip = 1.5)),
            ("hsv", Box::new(|r| r.hsv = Some(vec![0.1, 0.2]))),
            ("hsv", Box::new(|r| r.hsv = Some(vec![0.1, 2.0, 0.1]))),
            ("dtype", Box::new(|r| r.dtype = "int8".into())),
            ("mean", Box::new(|r| r.mean = vec![1.0])),
            ("std", Box::new(|r| r.std = vec![1.0, 0.0, 1.0])),
            ("max_boxes", Box::new(|r| r.max_boxes = Some(0))),
            ("seed", Box::new(|r| r.seed = -1)),
            ("device", Box::new(|r| r.device = "tpu".into())),
            ("device", Box::new(|r| r.device = "cuda:x".into())),
            ("decoders", Box::new(|r| r.decoders = "gpu".into())),
            ("threads", Box::new(|r| r.threads = Some(0))),
        ];
        for (name, f) in cases {
            let mut r = RawOptions::defaults("d");
            f(&mut r);
            let e = r.check().unwrap_err();
            assert_eq!(e.name, name, "{e}");
            assert!(e.to_string().starts_with(&format!("{name}: ")));
        }
        assert_eq!(parse_device("cuda:3"), Ok(DeviceRequest::Cuda(Some(3))));
    }

    #[test]
    fn rank_from_arguments_then_torchrun_then_slurm() {
        let none = |_: &str| None;
        assert_eq!(
            resolve_rank(None, None, &none).unwrap(),
            Rank {
                rank: 0,
                world: 1,
                local: 0
            }
        );
        let torchrun = |v: &str| match v {
            "RANK" => Some("3".to_string()),
            "WORLD_SIZE" => Some("4".to_string()),
            "LOCAL_RANK" => Some("1".to_string()),
            "SLURM_NTASKS" => Some("8".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve_rank(None, None, &torchrun).unwrap(),
            Rank {
                rank: 3,
                world: 4,
                local: 1
            }
        );
        assert_eq!(resolve_rank(Some(0), Some(2), &torchrun).unwrap().rank, 0);
        let slurm = |v: &str| match v {
            "SLURM_PROCID" => Some("5".to_string()),
            "SLURM_NTASKS" => Some("8".to_string()),
            "SLURM_LOCALID" => Some("2".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve_rank(None, None, &slurm).unwrap(),
            Rank {
                rank: 5,
                world: 8,
                local: 2
            }
        );
        assert_eq!(
            resolve_rank(Some(2), Some(2), &none).unwrap_err().name,
            "rank"
        );
        assert_eq!(
            resolve_rank(None, Some(0), &none).unwrap_err().name,
            "world_size"
        );
        let junk = |v: &str| (v == "WORLD_SIZE").then(|| "many".to_string());
        assert_eq!(
            resolve_rank(None, None, &junk).unwrap_err().name,
            "world_size"
        );
    }
}
