//! Checksums of a stream upload, computed while it arrives: either fed by the engine as it
//! copies the bytes (read/write paths), or by a follower thread that reads what the engine
//! spliced into the file back from the page cache, off the receiving core.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::engine::Observer;
use crate::storage::checksum::{Algorithm, Hasher};

/// `Follow::end` before the upload's length is known.
const OPEN: u64 = u64::MAX;
/// `Follow::end` when the upload failed: the follower stops.
const ABANDONED: u64 = u64::MAX - 1;
/// How long the follower waits when it has caught up with the engine.
const IDLE: Duration = Duration::from_millis(1);

type Hashers = Vec<(Algorithm, Hasher)>;

/// The digests of one upload.
pub struct UploadDigests {
    hashers: Hashers,
    complete: bool,
    follow: Option<Follow>,
}

/// A follower thread that owns the hashers until it has read `end` bytes.
struct Follow {
    end: Arc<AtomicU64>,
    done: oneshot::Receiver<Hashers>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Follow {
    /// Stops the follower of a failed upload and waits for it (at most the read it is in):
    /// its handle on the file must be gone once the failure is reported, or deleting the
    /// partial file would not give its space back (a full disk stayed full).
    fn drop(&mut self) {
        let _ = self
            .end
            .compare_exchange(OPEN, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for UploadDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<_> = self.hashers.iter().map(|(a, _)| a.name()).collect();
        f.debug_struct("UploadDigests")
            .field("algorithms", &algs)
            .field("complete", &self.complete)
            .field("followed", &self.follow.is_some())
            .finish()
    }
}

impl UploadDigests {
    pub(crate) fn new(algs: &[Algorithm]) -> UploadDigests {
        UploadDigests {
            hashers: algs.iter().map(|&a| (a, Hasher::new(a))).collect(),
            complete: false,
            follow: None,
        }
    }

    /// The results, if every byte of a successful upload was seen.
    pub fn take(&mut self) -> Option<Vec<(Algorithm, String)>> {
        if !self.complete {
            return None;
        }
        self.complete = false;
        Some(
            std::mem::take(&mut self.hashers)
                .into_iter()
                .map(|(a, h)| (a, h.finish()))
                .collect(),
        )
    }
}

/// The results once the upload ended with `bytes` bytes: waits for a follower to read them
/// all. `None` when the follower failed (CKSM then reads the file).
pub async fn settle(digests: &Mutex<UploadDigests>, bytes: u64) -> Option<Vec<(Algorithm, String)>> {
    let follow = digests.lock().unwrap_or_else(|e| e.into_inner()).follow.take();
    if let Some(mut f) = follow {
        f.end.store(bytes, Ordering::Release);
        let hashers = (&mut f.done).await.ok()?;
        let mut d = digests.lock().unwrap_or_else(|e| e.into_inner());
        d.hashers = hashers;
        d.complete = true;
    }
    digests.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The engine feeds the hashers as it copies the bytes.
pub(crate) fn observer(digests: Arc<Mutex<UploadDigests>>) -> Box<dyn Observer> {
    Box::new(DigestObserver(digests))
}

/// The upload file opened again for reading (uploads are opened write-only).
pub(crate) fn reader(file: &File) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Hashes the upload from the start of `file` as `written` grows, on a thread of its own.
pub(crate) fn follow(digests: &Mutex<UploadDigests>, file: File, written: Arc<AtomicU64>) {
    let mut d = digests.lock().unwrap_or_else(|e| e.into_inner());
    let hashers = std::mem::take(&mut d.hashers);
    let end = Arc::new(AtomicU64::new(OPEN));
    let (tx, done) = oneshot::channel();
    let thread_end = end.clone();
    let spawned = std::thread::Builder::new().name("rm-digest".into()).spawn(move || {
        if let Some(h) = read_along(&file, &written, &thread_end, hashers) {
            let _ = tx.send(h);
        }
    });
    let thread = match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            // Without the thread the digests are simply not known; CKSM reads the file.
            tracing::warn!(error = %e, "cannot start the upload digest thread");
            None
        }
    };
    d.follow = Some(Follow { end, done, thread });
}

/// Reads `file` up to what the engine wrote, then up to the final length once known.
fn read_along(file: &File, written: &AtomicU64, end: &AtomicU64, mut hashers: Hashers) -> Option<Hashers> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let last = end.load(Ordering::Acquire);
        if last == ABANDONED {
            return None;
        }
        let upto = if last == OPEN {
            written.load(Ordering::Acquire)
        } else {
            last
        };
        if at >= upto {
            if last != OPEN {
                return Some(hashers);
            }
            // Woken early when the upload is abandoned (see `Follow::drop`).
            std::thread::park_timeout(IDLE);
            continue;
        }
        let want = (upto - at).min(buf.len() as u64) as usize;
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => return None,
            Ok(n) => {
                hashers.iter_mut().for_each(|(_, h)| h.update(&buf[..n]));
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[derive(Debug)]
struct DigestObserver(Arc<Mutex<UploadDigests>>);

impl Observer for DigestObserver {
    fn observe(&mut self, data: &[u8]) {
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        d.hashers.iter_mut().for_each(|(_, h)| h.update(data));
    }

    fn complete(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).complete = true;
    }
}
