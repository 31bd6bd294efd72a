//! `convert` arguments → [`ConvertPlan`]: splits discovered, sizes parsed, the output folder's
//! state checked. Everything that can be wrong with the invocation is found here, before any
//! image is read.

use super::{thread_count, PlanError};
use crate::cli::{self, ConvertArgs};
use crate::dataset;
use crate::jobs::convert::{ConvertSpec, ShardTarget};
use crate::jobs::outdir::{check_disjoint, output_mode, task_output_mode};
use crate::jobs::tasks::{parse_task_count, resolve};
use crate::shard::format::ShardFormat;
use crate::shard::manifest::{DealOptions, LabelMode};

/// A validated convert invocation: the job and how to show its result.
#[derive(Debug, Clone)]
pub struct ConvertPlan {
    pub spec: ConvertSpec,
    pub quiet: bool,
    pub json: bool,
}

/// The library's container for the CLI's `--format`.
pub fn shard_format(f: cli::ShardFormat) -> ShardFormat {
    match f {
        cli::ShardFormat::Tfrecord => ShardFormat::Tfrecord,
        cli::ShardFormat::Lmdb => ShardFormat::Lmdb,
    }
}

/// Parse `--shard-size`: a number with an optional unit (k/M/G decimal, KiB/MiB/GiB binary).
pub fn parse_size(text: &str) -> Result<u64, PlanError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| PlanError::BadSize(text.to_string()))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(PlanError::BadSize(text.to_string())),
    };
    let bytes = value * mult;
    if !(1.0..=1e15).contains(&bytes) {
        return Err(PlanError::BadSize(text.to_string()));
    }
    Ok(bytes as u64)
}

/// Validate once; workers trust the plan.
pub fn plan_convert(args: &ConvertArgs) -> Result<ConvertPlan, PlanError> {
    let (input, output) = match (args.paths.as_slice(), &args.annotations) {
        ([out], Some(_)) => (None, out.clone()),
        ([inp, out], _) => (Some(inp.clone()), out.clone()),
        ([_], None) => return Err(PlanError::NoInput),
        _ => return Err(PlanError::NoInput),
    };
    let splits = match (&args.annotations, &args.images, &input) {
        (Some(ann), Some(img), None) => {
            vec![dataset::discover::explicit_split(
                ann,
                img,
                args.split.as_deref(),
            )?]
        }
        (Some(_), _, Some(root)) => return Err(PlanError::InputAndAnnotations(root.clone())),
        (_, _, Some(root)) => {
            if !root.is_dir() {
                return Err(PlanError::NotADir(root.clone()));
            }
            let all = dataset::discover_splits(root)?;
            match &args.split {
                Some(name) => vec![dataset::discover::select_split(all, name, root)?],
                None => all,
            }
        }
        _ => return Err(PlanError::NoInput),
    };
    let shard_target = match args.shards {
        Some(0) => return Err(PlanError::ZeroShards),
        Some(n) => ShardTarget::Count(n),
        None => ShardTarget::Bytes(parse_size(&args.shard_size)?),
    };
    if args.presize == Some(0) {
        return Err(PlanError::ZeroPresize);
    }
    let threads = thread_count(args.run.threads)?;
    // OUT must not overlap what is read: the COCO folder, or each split's images folder.
    match &input {
        Some(root) => check_disjoint(root, &output)?,
        None => {
            for split in &splits {
                check_disjoint(&split.images_dir, &output)?;
            }
        }
    }
    if args.shard_multiple == Some(0) {
        return Err(PlanError::ZeroShardMultiple);
    }
    // Task mode only when asked: a plain convert inside an array job stays a whole run.
    let tasks = match &args.tasks {
        None => None,
        Some(m) => Some(resolve(parse_task_count(m)?, args.task, &|var| {
            std::env::var(var).ok()
        })?),
    };
    let output_mode = match tasks {
        None => output_mode(&output, args.existing.overwrite, args.existing.resume)?,
        Some(_) => {
            let names: Vec<String> = splits.iter().map(|s| s.name.clone()).collect();
            task_output_mode(&output, args.existing.overwrite, &names)?
        }
    };
    Ok(ConvertPlan {
        spec: ConvertSpec {
            splits,
            out_dir: output,
            format: shard_format(args.format),
            shard_target,
            labels: match args.labels {
                cli::LabelMode::Coco => LabelMode::Coco,
                cli::LabelMode::Contiguous => LabelMode::Contiguous,
            },
            decode_check: args.decode_check,
            strict: args.strict,
            presize: args.presize,
            durable: args.fsync,
            output_mode,
            threads,
            max_image_bytes: parse_size(&args.max_image_bytes)?,
            tasks,
            deal: DealOptions {
                shuffle_seed: args.shuffle,
                shard_multiple: args.shard_multiple,
            },
        },
        quiet: args.run.quiet,
        json: args.run.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1.5k").unwrap(), 1500);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }
}
