//! indicatif progress on stderr for the jobs: images/s, MB/s and ETA; hidden with --quiet or
//! when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A job's progress bar (implements [`crate::jobs::Progress`]).
pub struct Bar {
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    started: Instant,
}

impl Bar {
    /// A bar counting images, its length set when the job knows it.
    pub fn images(total: u64, quiet: bool, what: &str) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} images  {per_sec}  {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            bar
        });
        Bar {
            bar,
            bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl crate::jobs::Progress for Bar {
    fn total(&self, images: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(images);
        }
    }

    fn add(&self, n: u64, bytes: u64) {
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{:.1} MB/s", total as f64 / 1e6 / secs));
        }
    }
}
