//! A mover: one transfer executed by the pool, from opening the file to the last byte. It makes
//! or accepts the data connections (stream mode: one; MODE E: parallel streams, reusing cached
//! connections, counting EODs), runs them on the engine and reports events to whoever drives it
//! (the door, in-process or over the pool link): listening address, start, progress markers.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{DataChannel, MoverRequest, Pool, PoolError, PreparedMover};
use crate::block::layout::stripe_ranges;
use crate::block::xmode::XReceiver;
use crate::block::{DecodeError, Direction, Header, Mode, RangeSet, TransferReceiver};
use crate::engine::{BlockPlan, Canceller, Finished, OpError, Receiving, TransferHandle};
pub use crate::link::{MoverEvent, MoverPlan};
use crate::storage::checksum::Algorithm;

/// A sending block transfer's file, the file ranges to send and the wire offset base.
type SendSource = (File, Vec<(u64, u64)>, u64);

/// MODE E block size for sending: large blocks keep the header cost negligible.
const BLOCK_SIZE: u64 = 1 << 20;

/// Where the data connections come from.
#[derive(Debug, Clone)]
pub enum MoverChannel {
    /// Accept on a listener that already exists (the door's PASV listener, embedded pool).
    Listener(Arc<TcpListener>),
    /// Open a fresh listener on the pool's data address and report it ([`MoverEvent::Listening`]).
    Listen,
    /// Connect to these addresses (one per stripe).
    Connect(Vec<SocketAddr>),
}

/// Everything a mover needs to run one transfer.
#[derive(Debug)]
pub struct MoverSpec {
    pub plan: MoverPlan,
    pub channel: MoverChannel,
    /// Address to connect from.
    pub local: IpAddr,
    /// MODE E connections kept from the previous transfer in this direction.
    pub cached: Vec<TcpStream>,
}

/// A finished mover.
#[derive(Debug)]
pub struct MoverDone {
    pub bytes: u64,
    pub streams: usize,
    /// MODE E connections to keep for the next transfer in the same direction.
    pub kept: Vec<TcpStream>,
    /// Checksums computed while a stream upload arrived.
    pub digests: Option<Vec<(Algorithm, String)>>,
}

/// Why a mover failed, with the bytes it had moved.
#[derive(Debug)]
pub struct MoverFailed {
    pub error: PoolError,
    pub bytes: u64,
}

impl From<PoolError> for MoverFailed {
    fn from(error: PoolError) -> Self {
        MoverFailed { error, bytes: 0 }
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

    fn bytes(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

/// What further connections of a block-mode transfer join, and when it is complete.
enum Joiner {
    /// MODE E receive: complete when the EOD count is reached.
    ModeE {
        file: Arc<File>,
        receiver: Arc<Mutex<TransferReceiver>>,
        base: u64,
    },
    /// MODE X receive: complete when an EOF was seen and every connection ended.
    XReceive {
        file: Arc<File>,
        receiver: Arc<Mutex<XReceiver>>,
        base: u64,
    },
    /// MODE X send: complete when the plan is sent and every connection ended.
    XSend { file: Arc<File>, plan: Arc<BlockPlan> },
}

impl Joiner {
    fn complete(&self, streams: &Streams) -> bool {
        let started = !streams.cancel.is_empty();
        match self {
            Joiner::ModeE { receiver, .. } => receiver.lock().unwrap_or_else(|e| e.into_inner()).complete(),
            Joiner::XReceive { receiver, .. } => {
                started && streams.running == 0 && receiver.lock().unwrap_or_else(|e| e.into_inner()).eof_seen()
            }
            Joiner::XSend { plan, .. } => started && streams.running == 0 && plan.is_empty(),
        }
    }

    /// Most connections this transfer may have: the EOF count once MODE E announced it,
    /// otherwise `cap`.
    fn connection_limit(&self, cap: usize) -> usize {
        let announced = match self {
            Joiner::ModeE { receiver, .. } => receiver.lock().unwrap_or_else(|e| e.into_inner()).expected_eods(),
            _ => None,
        };
        announced.map_or(cap, |n| (n as usize).min(cap))
    }

    /// MODE X receive: EOF seen and only connections that never carried a block are open.
    fn only_idle_left(&self) -> bool {
        match self {
            Joiner::XReceive { receiver, .. } => receiver.lock().unwrap_or_else(|e| e.into_inner()).only_idle_left(),
            _ => false,
        }
    }

    fn ranges(&self) -> Option<RangeSet> {
        match self {
            Joiner::ModeE { receiver, .. } => Some(receiver.lock().unwrap_or_else(|e| e.into_inner()).ranges().clone()),
            Joiner::XReceive { receiver, .. } => {
                Some(receiver.lock().unwrap_or_else(|e| e.into_inner()).ranges().clone())
            }
            Joiner::XSend { .. } => None,
        }
    }
}

/// How long a MODE X receive waits, once only connections that never carried a block are left
/// after EOF, before it ends them: a block already on its way arrives well within it.
const X_IDLE_GRACE: Duration = Duration::from_secs(1);

/// How often the watchdog looks at a running transfer.
const WATCHDOG_TICK: Duration = Duration::from_secs(1);

/// Ends transfers that stopped: no connection left (and none coming) for `connect_timeout`, or
/// no byte moved for `stall_timeout`.
struct Watchdog {
    connect_timeout: Duration,
    stall_timeout: Duration,
    idle_since: Option<tokio::time::Instant>,
    bytes: u64,
    bytes_since: tokio::time::Instant,
}

impl Watchdog {
    fn new(connect_timeout: Duration, stall_timeout: Duration) -> Watchdog {
        let now = tokio::time::Instant::now();
        Watchdog {
            connect_timeout,
            stall_timeout,
            idle_since: Some(now),
            bytes: 0,
            bytes_since: now,
        }
    }

    fn check(&mut self, streams: &Streams) -> Option<PoolError> {
        let now = tokio::time::Instant::now();
        let bytes = streams.bytes();
        if bytes != self.bytes {
            (self.bytes, self.bytes_since) = (bytes, now);
        }
        if streams.running > 0 {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        match self.idle_since {
            Some(t) if now.duration_since(t) >= self.connect_timeout && streams.cancel.is_empty() => {
                Some(PoolError::ConnectTimeout(self.connect_timeout))
            }
            Some(t) if now.duration_since(t) >= self.connect_timeout => {
                Some(PoolError::Engine(OpError::Framing(DecodeError::ClosedBeforeEod)))
            }
            _ if now.duration_since(self.bytes_since) >= self.stall_timeout => {
                Some(PoolError::Stalled(self.stall_timeout))
            }
            _ => None,
        }
    }
}

/// The listener a mover accepts on, and whether it was opened for this mover.
struct Accepting {
    listener: Arc<TcpListener>,
}

/// Runs one mover to its end. `cancel` turning true aborts it (ABOR, client gone).
pub async fn run(
    pool: &Pool,
    mut spec: MoverSpec,
    events: mpsc::UnboundedSender<MoverEvent>,
    cancel: watch::Receiver<bool>,
) -> Result<MoverDone, MoverFailed> {
    let sends = spec.plan.request.direction() == Direction::Send;
    let start = match spec.plan.request {
        MoverRequest::Receive { offset, .. } => offset,
        _ => 0,
    };
    let prepared = pool.prepare(std::mem::replace(
        &mut spec.plan.request,
        MoverRequest::SendBytes(Default::default()),
    ))?;
    let commit = match &prepared {
        PreparedMover::Store { commit, .. } => commit.clone(),
        _ => None,
    };
    let accepting = match &spec.channel {
        MoverChannel::Listener(l) => Some(Accepting { listener: l.clone() }),
        MoverChannel::Listen => {
            let ip = pool.config.data_address.unwrap_or(spec.local);
            let l = pool.open_passive(ip, spec.plan.buffer, spec.plan.peers.client)?;
            let addr = l.local_addr().map_err(PoolError::Connect)?;
            let _ = events.send(MoverEvent::Listening(addr));
            Some(Accepting { listener: Arc::new(l) })
        }
        MoverChannel::Connect(_) => None,
    };
    let cached = std::mem::take(&mut spec.cached);
    let cancel_seen = cancel.clone();
    let mut run = Run {
        pool,
        spec: &spec,
        events: &events,
        cancel,
        accepting,
        sends,
        start,
        cached,
    };
    let done = if spec.plan.mode == Mode::X {
        run.mode_x(prepared).await
    } else if spec.plan.mode == Mode::E {
        if sends {
            run.send_mode_e(prepared).await
        } else {
            run.receive_mode_e(prepared).await
        }
    } else {
        run.stream(prepared).await
    }?;
    // Only a complete upload takes its final name; a failed one stays partial for a restart.
    // A client that left (cancel) as its last bytes came does not get its file committed.
    if commit.is_some() && *cancel_seen.borrow() {
        return Err(MoverFailed {
            error: PoolError::Engine(OpError::Cancelled),
            bytes: done.bytes,
        });
    }
    if let Some(c) = &commit {
        pool.commit_upload(c).map_err(|error| MoverFailed {
            error,
            bytes: done.bytes,
        })?;
    }
    Ok(done)
}

struct Run<'a> {
    pool: &'a Pool,
    spec: &'a MoverSpec,
    events: &'a mpsc::UnboundedSender<MoverEvent>,
    cancel: watch::Receiver<bool>,
    accepting: Option<Accepting>,
    sends: bool,
    start: u64,
    cached: Vec<TcpStream>,
}

impl Run<'_> {
    fn started(&self, reused: bool) {
        let _ = self.events.send(MoverEvent::Started { reused });
    }

    async fn stream(&mut self, prepared: PreparedMover) -> Result<MoverDone, MoverFailed> {
        let digests = match &prepared {
            PreparedMover::Store { digests, .. } => digests.clone(),
            _ => None,
        };
        self.started(false);
        let channel = match (&self.accepting, &self.spec.channel) {
            (Some(a), _) => DataChannel::Accept {
                listener: &a.listener,
                peers: &self.spec.plan.peers,
            },
            (None, MoverChannel::Connect(remotes)) => match remotes.first() {
                Some(&remote) => DataChannel::Connect {
                    local: self.spec.local,
                    remote,
                },
                None => return Err(PoolError::NoPort.into()),
            },
            (None, _) => return Err(PoolError::NoPort.into()),
        };
        let auth = self.auth();
        let stream = tokio::select! {
            s = self.pool.connect(channel, self.spec.plan.buffer, auth.as_deref()) => s?,
            _ = self.cancel.wait_for(|c| *c) => return Err(PoolError::Engine(OpError::Cancelled).into()),
        };
        let mut streams = Streams::new();
        let h = self.pool.start(prepared, stream)?;
        streams.progress = h.progress_counter();
        streams.add(h);
        self.drive(&mut streams, None).await?;
        let digests = match digests {
            Some(d) => super::digests::settle(&d, streams.bytes()).await,
            None => None,
        };
        Ok(MoverDone {
            bytes: streams.bytes(),
            streams: 1,
            kept: Vec::new(),
            digests,
        })
    }

    /// MODE E download: the pool is the active side and opens `parallelism` connections to
    /// each address (or reuses the cached ones); the first connection of each stripe carries
    /// the EOF message with that stripe's connection count.
    async fn send_mode_e(&mut self, prepared: PreparedMover) -> Result<MoverDone, MoverFailed> {
        let (file, ranges, base) = self.send_source(prepared)?;
        let cached = std::mem::take(&mut self.cached);
        self.started(!cached.is_empty());
        let stripes: Vec<Vec<TcpStream>> = if !cached.is_empty() {
            vec![cached]
        } else {
            let MoverChannel::Connect(remotes) = &self.spec.channel else {
                return Err(PoolError::NoPort.into());
            };
            let mut stripes = Vec::new();
            for &remote in remotes {
                let mut conns = Vec::new();
                for _ in 0..self.spec.plan.parallelism.max(1) {
                    let channel = DataChannel::Connect {
                        local: self.spec.local,
                        remote,
                    };
                    conns.push(
                        self.pool
                            .connect(channel, self.spec.plan.buffer, self.auth().as_deref())
                            .await?,
                    );
                }
                stripes.push(conns);
            }
            stripes
        };
        let file = Arc::new(file);
        let block = self.spec.plan.block_size.unwrap_or(BLOCK_SIZE);
        // One plan that every connection draws from, or, with a layout, one per stripe.
        let plans: Vec<Arc<BlockPlan>> = match self.spec.plan.layout {
            Some(layout) if stripes.len() > 1 => stripe_ranges(&ranges, stripes.len(), layout)
                .into_iter()
                .map(|r| Arc::new(BlockPlan::new(r, block, base)))
                .collect(),
            _ => vec![Arc::new(BlockPlan::new(ranges, block, base))],
        };
        let mut streams = Streams::new();
        for (index, conns) in stripes.into_iter().enumerate() {
            let plan = plans[index.min(plans.len() - 1)].clone();
            let count = conns.len() as u64;
            for (i, sock) in conns.into_iter().enumerate() {
                // Connections stay open after EOD so the next transfer can reuse them.
                let last = if i == 0 {
                    Header::eof(count, false)
                } else {
                    Header::eod(false)
                };
                match self
                    .pool
                    .start_block_send(file.clone(), plan.clone(), sock, last, None, streams.progress.clone())
                {
                    Ok(h) => streams.add(h),
                    Err(e) => {
                        streams.cancel_all();
                        return Err(e.into());
                    }
                }
            }
        }
        let kept = self.drive(&mut streams, None).await?;
        Ok(MoverDone {
            bytes: streams.bytes(),
            streams: streams.cancel.len(),
            kept,
            digests: None,
        })
    }

    /// MODE E upload: the pool is passive; it runs a receiving stream on each cached
    /// connection and each one the client opens, until the EOF count is reached.
    async fn receive_mode_e(&mut self, prepared: PreparedMover) -> Result<MoverDone, MoverFailed> {
        // Blocks arrive out of order: on-the-fly digests do not apply; CKSM reads the file.
        let PreparedMover::Store { file, offset, .. } = prepared else {
            return Err(PoolError::NoPort.into());
        };
        let base = offset.unwrap_or(0);
        let mut receiver = TransferReceiver::new(Some(self.wire_limit(base)));
        for &(s, e) in &self.spec.plan.skip {
            receiver.stored(s, e.saturating_sub(s));
        }
        let recv = Joiner::ModeE {
            file: Arc::new(file),
            receiver: Arc::new(Mutex::new(receiver)),
            base,
        };
        let cached = std::mem::take(&mut self.cached);
        self.started(!cached.is_empty());
        let mut streams = Streams::new();
        for sock in cached {
            self.join(&recv, &mut streams, sock)?;
        }
        let kept = self.drive(&mut streams, Some(&recv)).await?;
        Ok(MoverDone {
            bytes: streams.bytes(),
            streams: streams.cancel.len(),
            kept,
            digests: None,
        })
    }

    /// Starts a stream of a block-mode transfer on a new connection.
    fn join(&self, joiner: &Joiner, streams: &mut Streams, sock: TcpStream) -> Result<(), PoolError> {
        let progress = streams.progress.clone();
        let h = match joiner {
            Joiner::ModeE { file, receiver, base } => {
                self.pool
                    .start_block_recv(file.clone(), Receiving::E(receiver.clone()), *base, sock, progress)?
            }
            Joiner::XReceive { file, receiver, base } => {
                self.pool
                    .start_block_recv(file.clone(), Receiving::X(receiver.clone()), *base, sock, progress)?
            }
            Joiner::XSend { file, plan } => {
                // MODE X ends every connection with EOF|EOD|CLOSE; transaction id 0 as dCache.
                self.pool
                    .start_block_send(file.clone(), plan.clone(), sock, Header::eod(true), Some(0), progress)?
            }
        };
        streams.add(h);
        Ok(())
    }

    /// The data connections a MODE X transfer opens itself (when the client is passive).
    async fn connect_all(&self, joiner: &Joiner, streams: &mut Streams) -> Result<(), PoolError> {
        if let MoverChannel::Connect(remotes) = &self.spec.channel {
            for &remote in remotes {
                for _ in 0..self.spec.plan.parallelism.max(1) {
                    let channel = DataChannel::Connect {
                        local: self.spec.local,
                        remote,
                    };
                    match self
                        .pool
                        .connect(channel, self.spec.plan.buffer, self.auth().as_deref())
                        .await
                    {
                        Ok(sock) => self.join(joiner, streams, sock)?,
                        // A passive MODE X sender that sent everything over the connections
                        // it already accepted closes its listener: the rest are not needed
                        // (refused, or reset when the close caught them in its backlog).
                        Err(PoolError::Connect(e))
                            if !self.sends
                                && !streams.cancel.is_empty()
                                && matches!(
                                    e.kind(),
                                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                                ) =>
                        {
                            tracing::debug!(%remote, "MODE X sender stopped listening; receiving on the connections made");
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// MODE X (GFD.47): either side may connect, in either direction; READY/BYE handshakes per
    /// connection; done when the data is sent (or an EOF arrived) and every connection ended.
    async fn mode_x(&mut self, prepared: PreparedMover) -> Result<MoverDone, MoverFailed> {
        let joiner = if self.sends {
            let (file, ranges, base) = self.send_source(prepared)?;
            Joiner::XSend {
                file: Arc::new(file),
                plan: Arc::new(BlockPlan::new(
                    ranges,
                    self.spec.plan.block_size.unwrap_or(BLOCK_SIZE),
                    base,
                )),
            }
        } else {
            let PreparedMover::Store { file, offset, .. } = prepared else {
                return Err(PoolError::NoPort.into());
            };
            let mut receiver = XReceiver::new(Some(self.wire_limit(offset.unwrap_or(0))));
            for &(s, e) in &self.spec.plan.skip {
                receiver.stored(s, e.saturating_sub(s));
            }
            Joiner::XReceive {
                file: Arc::new(file),
                receiver: Arc::new(Mutex::new(receiver)),
                base: offset.unwrap_or(0),
            }
        };
        self.started(false);
        let mut streams = Streams::new();
        self.connect_all(&joiner, &mut streams).await?;
        self.drive(&mut streams, Some(&joiner)).await?;
        if !joiner.complete(&streams) {
            let e = PoolError::Engine(OpError::Framing(DecodeError::ClosedBeforeEod));
            return Err(MoverFailed {
                error: e,
                bytes: streams.bytes(),
            });
        }
        Ok(MoverDone {
            bytes: streams.bytes(),
            streams: streams.cancel.len(),
            kept: Vec::new(),
            digests: None,
        })
    }

    /// The largest wire offset a receive at `base` may write to: the announced size, and never
    /// past the largest file offset (a huge block offset must not wrap onto the file's start).
    fn wire_limit(&self, base: u64) -> u64 {
        let ceiling = crate::block::MAX_FILE_OFFSET.saturating_sub(base);
        self.spec.plan.size_limit.map_or(ceiling, |s| s.min(ceiling))
    }

    /// The file, the ranges to send and the wire offset base of a sending block transfer.
    fn send_source(&self, prepared: PreparedMover) -> Result<SendSource, PoolError> {
        match prepared {
            PreparedMover::File { file, offset, length } => {
                // ERET P sends offsets relative to its start; RETR sends file offsets.
                let base = if self.spec.plan.relative { offset } else { 0 };
                Ok((
                    file,
                    skip_ranges(offset, offset + length, base, &self.spec.plan.skip),
                    base,
                ))
            }
            PreparedMover::Bytes(b) => Ok((Pool::memory_file(&b)?, vec![(0, b.len() as u64)], 0)),
            PreparedMover::Store { .. } => Err(PoolError::NoPort),
        }
    }

    /// Waits for the streams while reporting progress. With `recv`, also accepts more
    /// connections until the MODE E EOF count is reached. Returns the sockets the streams
    /// handed back for reuse, or the first error.
    ///
    /// Bounded for a peer that never finishes: no more connections than the EOF count (or the
    /// pool's cap), a receive with no connection left fails after the connect timeout, and a
    /// transfer whose byte count stands still for the stall timeout fails.
    async fn drive(&mut self, streams: &mut Streams, recv: Option<&Joiner>) -> Result<Vec<TcpStream>, MoverFailed> {
        let mut ticker = self.spec.plan.markers.map(tokio::time::interval);
        let listener = if recv.is_some() {
            self.accepting.as_ref().map(|a| a.listener.clone())
        } else {
            None
        };
        let mut watchdog = Watchdog::new(self.pool.config.connect_timeout, self.pool.config.stall_timeout);
        let mut check = tokio::time::interval(WATCHDOG_TICK);
        let mut kept = Vec::new();
        let mut failure: Option<PoolError> = None;
        let mut winding_down = false;
        let mut idle_since = None;
        loop {
            if !winding_down && streams.running > 0 && recv.is_some_and(Joiner::only_idle_left) {
                // A MODE X sender may finish before it accepted every connection we opened.
                let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= X_IDLE_GRACE {
                    winding_down = true;
                    streams.cancel_all();
                }
            }
            let complete = recv.is_some_and(|j| j.complete(streams));
            if let (Some(r), Some(l), true, None) = (recv, &listener, complete && streams.running == 0, &failure) {
                // MODE X has no EOD count: a connection the sender opened before it sent EOF
                // elsewhere may still wait in the backlog. Take it before calling it done.
                if let Some(sock) = self.waiting_connection(l, r, streams).await {
                    if let Err(e) = self.join(r, streams, sock) {
                        failure = Some(e);
                    }
                    continue;
                }
            }
            // Without a listener no further connection can come: done when the streams are.
            if streams.running == 0 && (recv.is_none() || complete || failure.is_some() || listener.is_none()) {
                break;
            }
            if complete && streams.running > 0 && !winding_down {
                // EOF count reached: remaining connections carry nothing for this transfer.
                winding_down = true;
                streams.cancel_all();
            }
            let room =
                recv.is_some_and(|j| streams.cancel.len() < j.connection_limit(self.pool.config.max_data_connections));
            let accepting = room && !complete && failure.is_none();
            let accept = async {
                match (&listener, accepting) {
                    (Some(l), true) => self.pool.accept(l, &self.spec.plan.peers, self.spec.plan.buffer).await,
                    _ => std::future::pending().await,
                }
            };
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            let mut cancel = self.cancel.clone();
            let mut to_admit = None;
            tokio::select! {
                Some(r) = streams.rx.recv() => {
                    streams.running -= 1;
                    match r {
                        Ok(f) => kept.extend(f.socket.and_then(|s| TcpStream::from_std(s).ok())),
                        Err(OpError::Cancelled) if winding_down => {}
                        Err(e) => {
                            if failure.is_none() {
                                failure = Some(PoolError::Engine(e));
                                streams.cancel_all();
                            }
                        }
                    }
                }
                accepted = accept => match (accepted, recv) {
                    // Authenticated after the select: a handshake is not cancel-safe.
                    (Ok(sock), Some(_)) => to_admit = Some(sock),
                    (Err(e), _) => {
                        failure = Some(e);
                        streams.cancel_all();
                    }
                    (Ok(_), None) => {}
                },
                _ = cancel.wait_for(|c| *c), if failure.is_none() => {
                    failure = Some(PoolError::Engine(OpError::Cancelled));
                    streams.cancel_all();
                }
                _ = tick => self.progress(streams, recv),
                _ = check.tick(), if failure.is_none() && !winding_down => {
                    if streams.bytes() != watchdog.bytes {
                        let _ = self.events.send(MoverEvent::Moved(streams.bytes()));
                    }
                    if let Some(e) = watchdog.check(streams) {
                        tracing::warn!("data transfer stopped: {e}");
                        failure = Some(e);
                        streams.cancel_all();
                    }
                }
            }
            if let (Some(sock), Some(r)) = (to_admit, recv) {
                if let Some(sock) = self.pool.admit(sock, self.auth().as_deref()).await {
                    if let Err(e) = self.join(r, streams, sock) {
                        failure = Some(e);
                        streams.cancel_all();
                    }
                }
            }
        }
        // A failed receive still reports what it stored: the ranges a restart can skip.
        if !self.sends || (failure.is_none() && ticker.is_some()) {
            self.progress(streams, recv);
        }
        match failure {
            Some(error) => Err(MoverFailed {
                error,
                bytes: streams.bytes(),
            }),
            None => Ok(kept),
        }
    }

    /// A MODE X receive's connection already waiting on the listener, if any (no waiting).
    async fn waiting_connection(&self, l: &TcpListener, recv: &Joiner, streams: &Streams) -> Option<TcpStream> {
        let room = streams.cancel.len() < recv.connection_limit(self.pool.config.max_data_connections);
        if !room || !matches!(recv, Joiner::XReceive { .. }) {
            return None;
        }
        // A zero timeout polls the accept once.
        let accept = self.pool.accept(l, &self.spec.plan.peers, self.spec.plan.buffer);
        let sock = tokio::time::timeout(Duration::ZERO, accept).await.ok()?.ok()?;
        self.pool.admit(sock, self.auth().as_deref()).await
    }

    /// DCAU for this transfer's data connections, if asked for.
    fn auth(&self) -> Option<std::sync::Arc<crate::gsi::DataAuth>> {
        self.spec.plan.auth.as_ref().map(|a| a.0.clone())
    }

    fn progress(&self, streams: &Streams, recv: Option<&Joiner>) {
        let bytes = streams.bytes();
        let ranges = match recv {
            Some(r) => r.ranges(),
            None if !self.sends && bytes > 0 => {
                let mut stored = RangeSet::new();
                stored.insert(self.start, self.start.saturating_add(bytes));
                Some(stored)
            }
            None => None,
        };
        let _ = self.events.send(MoverEvent::Progress { bytes, ranges });
    }
}

/// The file ranges to send for `[start, end)`, leaving out the REST ranges the receiver
/// already has (given relative to `base`).
fn skip_ranges(start: u64, end: u64, base: u64, skip: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut have = RangeSet::new();
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
