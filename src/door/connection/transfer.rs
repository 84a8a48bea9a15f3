//! Running one transfer for a control connection: stream mode (one connection) and MODE E
//! (parallel streams, connection reuse, EOD accounting), while serving ABOR and markers.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Connection, DataCache};
use crate::block::{Header, TransferReceiver};
use crate::door::convert::{engine_error, pool_error};
use crate::engine::{BlockPlan, Canceller, Finished, OpError, TransferHandle};
use crate::pool::{DataChannel, Pool, PreparedMover};
use crate::protocol::framer::Frame;
use crate::protocol::session::{DataEndpoint, TransferKind, TransferRequest};
use crate::protocol::{Action, Command, SessionError};

/// MODE E block size for sending: large blocks keep the header cost negligible.
const BLOCK_SIZE: u64 = 1 << 20;

/// How a transfer ended, for the reply and the log line.
pub(super) struct Outcome {
    pub(super) bytes: u64,
    pub(super) result: Result<u64, SessionError>,
    pub(super) streams: usize,
}

impl Outcome {
    fn failed(e: SessionError) -> Outcome {
        Outcome {
            bytes: 0,
            result: Err(e),
            streams: 0,
        }
    }
}

/// The engine streams of one transfer, their results funnelled into one channel.
struct Streams {
    tx: mpsc::UnboundedSender<Result<Finished, OpError>>,
    rx: mpsc::UnboundedReceiver<Result<Finished, OpError>>,
    cancel: Vec<Canceller>,
    running: usize,
    progress: Arc<AtomicU64>,
}

impl Streams {
    fn new() -> Streams {
        let (tx, rx) = mpsc::unbounded_channel();
        Streams {
            tx,
            rx,
            cancel: Vec::new(),
            running: 0,
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    fn add(&mut self, mut h: TransferHandle) {
        self.cancel.push(h.canceller());
        self.running += 1;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(h.finish().await);
        });
    }

    fn cancel_all(&self) {
        self.cancel.iter().for_each(Canceller::cancel);
    }
}

/// A MODE E receive in progress: where accepted connections write.
struct Receive {
    file: Arc<File>,
    receiver: Arc<Mutex<TransferReceiver>>,
    base: u64,
}

impl Receive {
    fn complete(&self) -> bool {
        self.receiver.lock().unwrap_or_else(|e| e.into_inner()).complete()
    }

    fn ranges(&self) -> String {
        self.receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ranges()
            .to_marker()
    }
}

fn now_tenths() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 / 100)
        .unwrap_or(0)
}

impl Connection {
    pub(super) async fn run_transfer(&mut self, req: &TransferRequest) -> std::io::Result<Outcome> {
        let request = self.mover_request(req).await;
        let prepared = match request.and_then(|m| self.shared.pool.prepare(m).map_err(|e| pool_error(&e))) {
            Ok(p) => p,
            Err(e) => return Ok(Outcome::failed(e)),
        };
        if req.extended {
            if req.sends() {
                self.send_mode_e(req, prepared).await
            } else {
                self.receive_mode_e(req, prepared).await
            }
        } else {
            self.run_stream(req, prepared).await
        }
    }

    async fn run_stream(&mut self, req: &TransferRequest, prepared: PreparedMover) -> std::io::Result<Outcome> {
        self.cache = None;
        self.session.handle_transfer_started(false);
        self.flush().await?;
        let channel = match &req.endpoint {
            DataEndpoint::Passive => match &self.passive {
                Some(listener) => DataChannel::Accept {
                    listener,
                    peer: self.peer.ip(),
                },
                None => return Ok(Outcome::failed(SessionError::NoDataChannel)),
            },
            DataEndpoint::Active(remotes) => match remotes.first() {
                Some(&remote) => DataChannel::Connect {
                    local: self.local.ip(),
                    remote,
                },
                None => return Ok(Outcome::failed(SessionError::NoDataChannel)),
            },
        };
        let stream = match self.shared.pool.connect(channel, req.buffer_size).await {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::failed(pool_error(&e))),
        };
        let digests = match &prepared {
            PreparedMover::Store { digests, .. } => digests.clone(),
            _ => None,
        };
        let mut streams = Streams::new();
        match self.shared.pool.start(prepared, stream) {
            Ok(h) => {
                streams.progress = h.progress_counter();
                streams.add(h);
            }
            Err(e) => return Ok(Outcome::failed(pool_error(&e))),
        }
        let start = match req.kind {
            TransferKind::Store { offset, .. } => offset,
            _ => 0,
        };
        let result = self.drive(req, &mut streams, None, start).await?;
        let bytes = streams.progress.load(Ordering::Relaxed);
        if let (Ok(_), Some(d)) = (&result, digests) {
            let sums = d.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(sums) = sums {
                self.shared.checksums.remember(&self.shared.root, req.kind.path(), sums);
            }
        }
        Ok(Outcome {
            bytes,
            result: result.map(|_| bytes),
            streams: 1,
        })
    }

    /// MODE E download: the server is the active side and opens `parallelism` connections to
    /// each address (or reuses the cached ones); the first connection of each stripe carries
    /// the EOF message with that stripe's connection count.
    async fn send_mode_e(&mut self, req: &TransferRequest, prepared: PreparedMover) -> std::io::Result<Outcome> {
        let (file, ranges, base) = match prepared {
            PreparedMover::File { file, offset, length } => {
                // ERET P sends offsets relative to its start; RETR sends file offsets.
                let base = if matches!(req.kind, TransferKind::Retrieve { length: Some(_), .. }) {
                    offset
                } else {
                    0
                };
                (file, skip_ranges(offset, offset + length, base, &req.skip), base)
            }
            PreparedMover::Bytes(b) => match Pool::memory_file(&b) {
                Ok(f) => (f, vec![(0, b.len() as u64)], 0),
                Err(e) => return Ok(Outcome::failed(pool_error(&e))),
            },
            PreparedMover::Store { .. } => return Ok(Outcome::failed(SessionError::Internal("store as send".into()))),
        };
        let reused = self.take_cache(req.reuse, true);
        self.session.handle_transfer_started(!reused.is_empty());
        self.flush().await?;
        // Stripes: groups of connections, one EOF each.
        let stripes: Vec<Vec<TcpStream>> = if !reused.is_empty() {
            vec![reused]
        } else {
            let DataEndpoint::Active(remotes) = &req.endpoint else {
                return Ok(Outcome::failed(SessionError::PassiveRetrieveInModeE));
            };
            let mut stripes = Vec::new();
            for &remote in remotes {
                let mut conns = Vec::new();
                for _ in 0..req.parallelism.max(1) {
                    let channel = DataChannel::Connect {
                        local: self.local.ip(),
                        remote,
                    };
                    match self.shared.pool.connect(channel, req.buffer_size).await {
                        Ok(s) => conns.push(s),
                        Err(e) => return Ok(Outcome::failed(pool_error(&e))),
                    }
                }
                stripes.push(conns);
            }
            stripes
        };
        let file = Arc::new(file);
        let plan = Arc::new(BlockPlan::new(ranges, BLOCK_SIZE, base));
        let mut streams = Streams::new();
        for conns in stripes {
            let count = conns.len() as u64;
            for (i, sock) in conns.into_iter().enumerate() {
                // Connections stay open after EOD so the next transfer can reuse them.
                let last = if i == 0 {
                    Header::eof(count, false)
                } else {
                    Header::eod(false)
                };
                match self.shared.pool.start_block_send(
                    file.clone(),
                    plan.clone(),
                    sock,
                    last,
                    streams.progress.clone(),
                ) {
                    Ok(h) => streams.add(h),
                    Err(e) => {
                        streams.cancel_all();
                        return Ok(Outcome::failed(pool_error(&e)));
                    }
                }
            }
        }
        let n = streams.cancel.len();
        let result = self.drive(req, &mut streams, None, 0).await?;
        Ok(self.finish_mode_e(true, n, &streams, result))
    }

    /// MODE E upload: the server is passive; it runs a receiving stream on each cached
    /// connection and each one the client opens, until the EOF count is reached.
    async fn receive_mode_e(&mut self, req: &TransferRequest, prepared: PreparedMover) -> std::io::Result<Outcome> {
        // Blocks arrive out of order: on-the-fly digests do not apply; CKSM reads the file.
        let PreparedMover::Store { file, offset, .. } = prepared else {
            return Ok(Outcome::failed(SessionError::Internal("send as store".into())));
        };
        let base = offset.unwrap_or(0);
        let mut receiver = TransferReceiver::new(req.size_limit);
        for &(s, e) in &req.skip {
            receiver.stored(s, e.saturating_sub(s));
        }
        let recv = Receive {
            file: Arc::new(file),
            receiver: Arc::new(Mutex::new(receiver)),
            base,
        };
        let reused = self.take_cache(req.reuse, false);
        self.session.handle_transfer_started(!reused.is_empty());
        self.flush().await?;
        let mut streams = Streams::new();
        for sock in reused {
            if let Err(e) = self.start_receiver(&recv, &mut streams, sock) {
                return Ok(Outcome::failed(e));
            }
        }
        let result = self.drive(req, &mut streams, Some(&recv), 0).await?;
        let n = streams.cancel.len();
        Ok(self.finish_mode_e(false, n, &streams, result))
    }

    fn start_receiver(&self, recv: &Receive, streams: &mut Streams, sock: TcpStream) -> Result<(), SessionError> {
        let h = self
            .shared
            .pool
            .start_block_recv(
                recv.file.clone(),
                recv.receiver.clone(),
                recv.base,
                sock,
                streams.progress.clone(),
            )
            .map_err(|e| pool_error(&e))?;
        streams.add(h);
        Ok(())
    }

    /// Keeps the connections for reuse when the transfer succeeded.
    fn finish_mode_e(
        &mut self,
        sends: bool,
        n: usize,
        streams: &Streams,
        result: Result<Vec<TcpStream>, SessionError>,
    ) -> Outcome {
        let bytes = streams.progress.load(Ordering::Relaxed);
        let result = result.map(|kept| {
            self.session.handle_connections_kept(sends, !kept.is_empty());
            self.cache = (!kept.is_empty()).then_some(DataCache { sends, sockets: kept });
            bytes
        });
        if result.is_err() {
            self.session.handle_connections_kept(sends, false);
        }
        Outcome {
            bytes,
            result,
            streams: n,
        }
    }

    /// The cached connections when the session allows reuse in this direction.
    fn take_cache(&mut self, reuse: bool, sends: bool) -> Vec<TcpStream> {
        match self.cache.take() {
            Some(c) if reuse && c.sends == sends => c.sockets,
            _ => Vec::new(),
        }
    }

    /// Waits for the streams while serving ABOR and markers. With `recv`, also accepts more
    /// connections on the passive listener until the MODE E EOF count is reached. Returns the
    /// sockets the streams handed back for reuse, or the first error.
    async fn drive(
        &mut self,
        req: &TransferRequest,
        streams: &mut Streams,
        recv: Option<&Receive>,
        start: u64,
    ) -> std::io::Result<Result<Vec<TcpStream>, SessionError>> {
        let receiving = !req.sends();
        let mut ticker = self
            .session
            .marker_interval(req.sends())
            .map(|s| tokio::time::interval(Duration::from_secs(s)));
        let listener = if recv.is_some() { self.passive.take() } else { None };
        let shared = self.shared.clone();
        let peer = self.peer.ip();
        let mut kept = Vec::new();
        let mut failure: Option<SessionError> = None;
        let mut winding_down = false;
        loop {
            let complete = recv.is_some_and(Receive::complete);
            if streams.running == 0 && (recv.is_none() || complete || failure.is_some()) {
                break;
            }
            if complete && streams.running > 0 && !winding_down {
                // EOF count reached: remaining connections carry nothing for this transfer.
                winding_down = true;
                streams.cancel_all();
            }
            let accepting = recv.is_some() && !complete && failure.is_none() && listener.is_some();
            let accept = async {
                match (&listener, accepting) {
                    (Some(l), true) => shared.pool.accept(l, peer, req.buffer_size).await,
                    _ => std::future::pending().await,
                }
            };
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(r) = streams.rx.recv() => {
                    streams.running -= 1;
                    match r {
                        Ok(f) => kept.extend(f.socket.and_then(|s| TcpStream::from_std(s).ok())),
                        Err(OpError::Cancelled) if winding_down => {}
                        Err(e) => {
                            if failure.is_none() {
                                failure = Some(engine_error(&e));
                                streams.cancel_all();
                            }
                        }
                    }
                }
                accepted = accept => match (accepted, recv) {
                    (Ok(sock), Some(r)) => {
                        if let Err(e) = self.start_receiver(r, streams, sock) {
                            failure = Some(e);
                            streams.cancel_all();
                        }
                    }
                    (Err(e), _) => {
                        failure = Some(pool_error(&e));
                        streams.cancel_all();
                    }
                    (Ok(_), None) => {}
                },
                more = self.read_more() => {
                    if !matches!(more, Ok(true)) {
                        // The control connection is gone: nobody is left to report to.
                        self.closed = true;
                        failure.get_or_insert(SessionError::Aborted);
                        streams.cancel_all();
                    } else if self.take_abort() {
                        failure.get_or_insert(SessionError::Aborted);
                        streams.cancel_all();
                    }
                }
                _ = tick => {
                    self.progress_marker(receiving, streams, recv, start);
                    self.flush().await?;
                }
            }
        }
        self.passive = self.passive.take().or(listener);
        if failure.is_none() && (receiving || ticker.is_some()) {
            self.progress_marker(receiving, streams, recv, start);
        }
        Ok(match failure {
            Some(e) => Err(e),
            None => Ok(kept),
        })
    }

    fn progress_marker(&mut self, receiving: bool, streams: &Streams, recv: Option<&Receive>, start: u64) {
        let bytes = streams.progress.load(Ordering::Relaxed);
        let ranges = match recv {
            Some(r) => Some(r.ranges()),
            None if receiving && bytes > 0 => Some(format!("{start}-{}", start + bytes)),
            None => None,
        };
        self.session.handle_progress(now_tenths(), bytes, ranges);
    }

    /// During a transfer only ABOR is acted on at once; other lines wait their turn. True
    /// when an ABOR asked to stop the transfer.
    fn take_abort(&mut self) -> bool {
        let mut abort = false;
        let mut rest = std::collections::VecDeque::new();
        while let Some(frame) = self.queued.pop_front() {
            match &frame {
                Frame::Line(l) if Command::parse(l) == Ok(Command::Abor) => {
                    self.session.handle_command(Command::Abor);
                    while let Some(a) = self.session.poll_action() {
                        abort |= a == Action::Abort;
                    }
                }
                _ => rest.push_back(frame),
            }
        }
        self.queued = rest;
        abort
    }
}

/// The file ranges to send for `[start, end)`, leaving out the REST ranges the receiver
/// already has (given relative to `base`).
fn skip_ranges(start: u64, end: u64, base: u64, skip: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut have = crate::block::RangeSet::new();
    for &(s, e) in skip {
        have.insert(s.saturating_add(base), e.saturating_add(base));
    }
    have.insert(0, start);
    have.gaps(end).ranges().to_vec()
}

#[cfg(test)]
mod tests {
    use super::skip_ranges;

    #[test]
    fn rest_ranges_are_skipped() {
        assert_eq!(skip_ranges(0, 100, 0, &[]), vec![(0, 100)]);
        assert_eq!(skip_ranges(0, 100, 0, &[(0, 40), (60, 70)]), vec![(40, 60), (70, 100)]);
        assert_eq!(skip_ranges(10, 50, 10, &[(0, 5)]), vec![(15, 50)]);
        assert_eq!(skip_ranges(0, 100, 0, &[(0, 100)]), Vec::<(u64, u64)>::new());
    }
}
