//! The pool's service: the one place that runs, for one root, the namespace operations, the
//! checksums (also those computed while uploads arrived) and the movers a door asks for,
//! whether that door is in this process or at the other end of the pool link. Results come
//! back in the link's terms ([`NsReply`], [`Failure`], [`MoverResult`]) either way, so the door
//! has one way to read them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::checksums::ChecksumCache;
use super::mover::{self, MoverChannel, MoverEvent, MoverSpec};
use super::{MoverRequest, Pool, PoolError};
use crate::block::{Direction, Mode};
use crate::engine::OpError;
use crate::link::{Failure, FailureKind, Moved, MoverResult, NsOp, NsReply, Report, WireMover};
use crate::storage::checksum::Algorithm;
use crate::storage::StorageError;

/// MODE E connections kept per control session (their direction, sockets), for the next transfer in
/// the same direction.
type Caches = Mutex<HashMap<u64, (Direction, Vec<TcpStream>)>>;

/// A pool's files and movers, served to a door.
pub struct Service {
    pool: Arc<Pool>,
    checksums: ChecksumCache,
    caches: Caches,
    active: AtomicUsize,
}

impl Service {
    pub fn new(pool: Arc<Pool>) -> Service {
        Service {
            pool,
            checksums: ChecksumCache::default(),
            caches: Mutex::default(),
            active: AtomicUsize::new(0),
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Movers running now.
    pub fn load(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Runs a namespace operation; blocking (the file system), so async callers use
    /// [`Service::ns_blocking`].
    pub fn ns(&self, op: NsOp) -> Result<NsReply, Failure> {
        let root = self.pool.root();
        let f = |e: StorageError| storage_failure(&e);
        let done = |r: Result<(), StorageError>| r.map(|_| NsReply::Done).map_err(f);
        match op {
            NsOp::Stat(p) => root.stat(&p).map(NsReply::Info).map_err(f),
            NsOp::List(p) => root.list_or_stat(&p).map(NsReply::Entries).map_err(f),
            NsOp::ChangeDir(p) => done(root.check_dir(&p)),
            NsOp::MakeDir(p) => done(root.mkdir(&p)),
            NsOp::RemoveDir(p) => done(root.rmdir(&p)),
            NsOp::Delete(p) => done(root.delete(&p)),
            NsOp::Rename { from, to } => done(root.rename(&from, &to)),
            NsOp::SetMode { path, mode } => done(root.set_mode(&path, mode)),
            NsOp::SetTime { path, mtime } => done(root.set_mtime(&path, mtime)),
            NsOp::SetGroup { path, group } => done(root.set_group(&path, &group)),
            NsOp::Checksum {
                algorithm,
                path,
                offset,
                length,
            } => {
                let alg = Algorithm::from_name(&algorithm).ok_or_else(|| {
                    Failure::new(FailureKind::Argument, format!("unknown checksum algorithm {algorithm}"))
                })?;
                self.checksum(&path, alg, offset, length)
                    .map(NsReply::Checksum)
                    .map_err(f)
            }
        }
    }

    /// [`Service::ns`] on a blocking thread.
    pub async fn ns_blocking(self: &Arc<Self>, op: NsOp) -> Result<NsReply, Failure> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.ns(op))
            .await
            .unwrap_or_else(|e| Err(Failure::new(FailureKind::Local, e.to_string())))
    }

    /// A checksum, taken from the one computed during the upload when it covers the whole,
    /// unchanged file; otherwise read from disk.
    fn checksum(&self, path: &str, alg: Algorithm, offset: u64, length: Option<u64>) -> Result<String, StorageError> {
        let root = self.pool.root();
        if offset == 0 && length.is_none() {
            if let Some(v) = self.checksums.lookup(root, path, alg) {
                tracing::debug!(path, alg = alg.name(), "checksum computed during upload");
                return Ok(v);
            }
        }
        root.checksum(path, alg, offset, length)
    }

    /// Starts a mover on the control runtime; `report` gets its events, then its end.
    /// `listener`: the door's passive listener handed over (in-process doors only); `local`:
    /// the address to make data connections from.
    pub fn spawn_mover(
        self: &Arc<Self>,
        m: WireMover,
        listener: Option<Arc<TcpListener>>,
        local: IpAddr,
        cancel: watch::Receiver<bool>,
        report: impl Fn(Report) + Send + Sync + 'static,
    ) {
        let me = self.clone();
        me.active.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
            let report = Arc::new(report);
            let forward = {
                let report = report.clone();
                tokio::spawn(async move {
                    while let Some(ev) = ev_rx.recv().await {
                        report(Report::Event(ev));
                    }
                })
            };
            let result = me.run_mover(m, listener, local, ev_tx, cancel).await;
            // Events first, then the end, so the door sees them in order.
            let _ = forward.await;
            me.active.fetch_sub(1, Ordering::Relaxed);
            report(Report::Done(result));
        });
    }

    async fn run_mover(
        &self,
        m: WireMover,
        listener: Option<Arc<TcpListener>>,
        local: IpAddr,
        events: mpsc::UnboundedSender<MoverEvent>,
        cancel: watch::Receiver<bool>,
    ) -> MoverResult {
        let direction = m.plan.request.direction();
        let stored = match &m.plan.request {
            MoverRequest::Receive { path, .. } => Some(path.clone()),
            _ => None,
        };
        let extended = m.plan.mode == Mode::E;
        let cached = if extended && m.reuse {
            match self.caches().remove(&m.session) {
                Some((dir, socks)) if dir == direction => socks,
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let channel = match listener {
            Some(l) => MoverChannel::Listener(l),
            None if m.listen => MoverChannel::Listen,
            None => MoverChannel::Connect(m.connect),
        };
        let spec = MoverSpec {
            plan: m.plan,
            channel,
            local,
            cached,
        };
        match mover::run(&self.pool, spec, events, cancel).await {
            Ok(done) => {
                if let (Some(sums), Some(path)) = (done.digests, &stored) {
                    self.checksums.remember(self.pool.root(), path, sums);
                }
                let kept = !done.kept.is_empty();
                if extended {
                    let mut caches = self.caches();
                    if kept {
                        caches.insert(m.session, (direction, done.kept));
                    } else {
                        caches.remove(&m.session);
                    }
                }
                Ok(Moved {
                    bytes: done.bytes,
                    streams: done.streams,
                    kept,
                })
            }
            Err(failed) => Err((pool_failure(&failed.error), failed.bytes)),
        }
    }

    /// Drops the connections a control session kept (it ended, or reset its data channel).
    pub fn forget(&self, session: u64) {
        self.caches().remove(&session);
    }

    /// Drops every kept connection (the door is gone).
    pub fn forget_all(&self) {
        self.caches().clear();
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Direction, Vec<TcpStream>)>> {
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A storage failure as the door needs it.
pub fn storage_failure(e: &StorageError) -> Failure {
    if e.errno().is_none() && e.source.kind() == std::io::ErrorKind::InvalidInput {
        // Not the file system's answer but the client's argument (an unknown group name).
        return Failure::new(FailureKind::Argument, e.source.to_string());
    }
    Failure {
        kind: FailureKind::Storage,
        errno: e.errno(),
        message: e.to_string(),
    }
}

/// A pool error as the door needs it.
pub fn pool_failure(e: &PoolError) -> Failure {
    let errno = |op: &OpError| match op {
        OpError::Io { source, .. } => source.raw_os_error(),
        _ => None,
    };
    let kind = match e {
        PoolError::Storage(s) => return storage_failure(s),
        PoolError::NoPort | PoolError::Connect(_) | PoolError::ConnectTimeout(_) | PoolError::Dcau(_) => {
            FailureKind::DataConnection
        }
        PoolError::Stalled(_) => FailureKind::ConnectionLost,
        PoolError::Engine(op) => match op {
            OpError::Cancelled => FailureKind::Aborted,
            OpError::Io { source, .. } if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) => {
                FailureKind::NoSpace
            }
            OpError::Io { op: "write", .. } | OpError::ShortSource { .. } | OpError::Stopped => FailureKind::Local,
            OpError::Io { .. } | OpError::Framing(_) => FailureKind::ConnectionLost,
        },
    };
    Failure {
        kind,
        errno: match e {
            PoolError::Engine(op) => errno(op),
            _ => None,
        },
        message: e.to_string(),
    }
}
