//! Times `dsprep::dataset::load_coco` on one annotation file (see bench/gen_big_coco.py).
//!
//! `cargo run --release --example parse_coco -- FILE.json`; for peak RSS wrap it in
//! `/usr/bin/time -v`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: parse_coco FILE.json");
        return ExitCode::from(2);
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    match dsprep::dataset::load_coco(&path) {
        Ok(ds) => {
            let s = t.elapsed().as_secs_f64();
            println!(
                "{}: {:.1} MB parsed in {:.3} s ({:.0} MB/s): {} images, {} annotations, {} categories, stats {:?}",
                path.display(),
                size as f64 / 1e6,
                s,
                size as f64 / 1e6 / s,
                ds.len(),
                ds.annotations.len(),
                ds.categories.len(),
                ds.stats
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
