//! A progress bar on a terminal (indicatif), nothing otherwise.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar of a whole copy: total bytes of the files planned, bytes moved so far.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar on stderr when `show` (the caller checks for a terminal), else nothing.
    pub fn new(show: bool) -> Progress {
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress { bar }
    }

    /// Adds a file's size to the total.
    pub fn add_total(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(bytes);
        }
    }

    /// Shows a line above the bar (or nothing without one).
    pub fn message(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.println(text);
        }
    }

    /// A tracker for one file: it turns that file's running byte counts into increments.
    pub fn file(&self) -> FileProgress {
        FileProgress {
            bar: self.bar.clone(),
            shown: 0,
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// One file's share of the bar.
pub struct FileProgress {
    bar: Option<ProgressBar>,
    shown: u64,
}

impl FileProgress {
    /// The file has `bytes` in place now (a count that only grows across retries).
    pub fn at(&mut self, bytes: u64) {
        if bytes > self.shown {
            if let Some(b) = &self.bar {
                b.inc(bytes - self.shown);
            }
            self.shown = bytes;
        }
    }
}
