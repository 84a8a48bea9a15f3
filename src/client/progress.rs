//! Progress: a bar on a terminal (indicatif), plain lines with `-vb` elsewhere, else nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Nothing,
    /// A bar on stderr (a terminal).
    Bar,
    /// A line on stderr every second, like globus-url-copy `-vb` (logs, pipes).
    Lines,
}

impl Show {
    /// What globus-url-copy users expect: a bar on a terminal unless `quiet` or `json` (the
    /// record goes to stdout then); `-vb` shows progress anywhere, as lines off a terminal.
    pub fn choose(quiet: bool, vb: bool, terminal: bool, json: bool) -> Show {
        match (quiet, vb, terminal) {
            (true, _, _) => Show::Nothing,
            (false, true, true) => Show::Bar,
            (false, true, false) => Show::Lines,
            (false, false, true) if !json => Show::Bar,
            _ => Show::Nothing,
        }
    }
}

/// Plain-line state: bytes so far, when it started, when the last line was printed.
struct Lines {
    moved: AtomicU64,
    started: Instant,
    last: Mutex<Instant>,
}

/// The progress of a whole copy: total bytes of the files planned, bytes moved so far.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: Option<Arc<Lines>>,
}

impl Progress {
    pub fn new(show: Show) -> Progress {
        let bar = (show == Show::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let lines = (show == Show::Lines).then(|| {
            Arc::new(Lines {
                moved: AtomicU64::new(0),
                started: Instant::now(),
                last: Mutex::new(Instant::now()),
            })
        });
        Progress { bar, lines }
    }

    /// True when a total is worth computing (something shows it).
    pub fn shown(&self) -> bool {
        self.bar.is_some() || self.lines.is_some()
    }

    /// Adds a file's size to the total.
    pub fn add_total(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(bytes);
        }
    }

    /// Shows a line above the bar (or on its own line).
    pub fn message(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.println(text);
        } else if self.lines.is_some() {
            eprintln!("{text}");
        }
    }

    /// A tracker for one file: it turns that file's running byte counts into increments.
    pub fn file(&self) -> FileProgress {
        FileProgress {
            all: self.clone(),
            shown: 0,
        }
    }

    fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(l) = &self.lines {
            let moved = l.moved.fetch_add(n, Ordering::Relaxed) + n;
            let mut last = l.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(1) {
                *last = Instant::now();
                let secs = l.started.elapsed().as_secs_f64().max(1e-9);
                eprintln!("{moved:>15} bytes {:>10.2} MB/sec avg", moved as f64 / secs / 1e6);
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(l) = &self.lines {
            let moved = l.moved.load(Ordering::Relaxed);
            let secs = l.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{moved:>15} bytes {:>10.2} MB/sec avg (done)",
                moved as f64 / secs / 1e6
            );
        }
    }
}

/// One file's share of the progress.
pub struct FileProgress {
    all: Progress,
    shown: u64,
}

impl FileProgress {
    /// The file has `bytes` in place now (a count that only grows across retries).
    pub fn at(&mut self, bytes: u64) {
        if bytes > self.shown {
            self.all.inc(bytes - self.shown);
            self.shown = bytes;
        }
    }
}
