//! One control connection: reads lines, feeds the session, carries out its actions (auth,
//! storage, passive listeners, transfers on the pool) and writes its replies in order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::convert::{facts, link_failure};
use super::DoorShared;
use crate::link::MoverRequest;
use crate::peers::DataPeers;
use crate::protocol::facts::{render_listing, ListFormat};
use crate::protocol::framer::{Frame, LineFramer};
use crate::protocol::session::{Access, StorageDone, StorageOp, TransferKind, TransferRequest};
use crate::protocol::{Action, Command, Session, SessionConfig, SessionError};

/// A finished transfer in the metrics: its result, bytes and socket-buffer choice.
fn count_transfer(direction: &'static str, req: &TransferRequest, outcome: &transfer::Outcome) {
    let metrics = crate::metrics::get();
    let result = match &outcome.result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code().0.to_string(),
    };
    let labels = vec![("direction", direction.to_string()), ("result", result)];
    metrics.transfers.get_or_create(&labels).inc();
    let direction = crate::metrics::label("direction", direction);
    metrics.transfer_bytes.get_or_create(&direction).inc_by(outcome.bytes);
    let buffers = match (req.buffer_auto, req.buffer_size) {
        (true, _) => "automatic",
        (false, Some(_)) => "client",
        (false, None) => "autotuning",
    };
    metrics
        .buffer_decisions
        .get_or_create(&crate::metrics::label("decision", buffers))
        .inc();
}

/// Command lines a connection may send before it has logged in.
const MAX_LINES_BEFORE_LOGIN: usize = 64;

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) struct Connection {
    shared: Arc<DoorShared>,
    /// Users and credentials as they were when the session began (a reload changes new ones).
    live: Arc<super::Live>,
    session: Session,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    framer: LineFramer,
    queued: VecDeque<Frame>,
    passive: Option<Arc<TcpListener>>,
    /// The pool holding this session's cached MODE E connections.
    cache_pool: Option<String>,
    /// MODE E relays to a remote pool for plain-PASV uploads; they live as long as the
    /// client's data connections may be reused.
    relays: Vec<relay::RelayStop>,
    /// Unique per control connection (the key of cached connections on remote pools).
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: watch::Receiver<bool>,
    closed: bool,
    /// A GSI context being set up (between ADAT rounds).
    gsi_acceptor: Option<crate::gsi::Acceptor>,
    /// Who authenticated with GSI.
    gsi_peer: Option<security::GsiPeer>,
    /// FTPS: the control connection's TLS, from the byte after `234` on.
    tls: Option<crate::gsi::TlsServer>,
    /// The logged-in user's own root (`--user-root`), in place of the door's pools.
    own_pools: Option<Arc<crate::door::pools::PoolManager>>,
}

mod listing;
mod namespace;
mod relay;
mod security;
mod transfer;

impl Connection {
    pub(crate) fn new(
        shared: Arc<DoorShared>,
        stream: TcpStream,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Connection> {
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        let live = shared.live();
        let config = SessionConfig {
            allow_anonymous: shared.config.anonymous,
            peer_ip: peer.ip(),
            banner: shared.config.banner.clone(),
            buffers: shared.config.buffers.clone(),
            trusted_networks: shared.config.trusted_networks.clone(),
            advertise_getput: shared.advertise_getput,
            gsi: live.gsi.is_some(),
            // With remote pools too: they get the delegated credential sealed (`Grant`).
            dcau: live.gsi.is_some(),
            tls: live.tls.is_some(),
            require_tls: shared.config.require_tls && !peer.ip().is_loopback(),
            timeouts: crate::protocol::session::Timeouts {
                login: shared.config.login_timeout,
                idle: shared.config.idle_timeout,
            },
        };
        let (reader, writer) = stream.into_split();
        Ok(Connection {
            shared,
            live,
            session: Session::new(config),
            reader,
            writer,
            framer: LineFramer::default(),
            queued: VecDeque::new(),
            passive: None,
            cache_pool: None,
            relays: Vec::new(),
            id: NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            peer,
            local,
            shutdown,
            closed: false,
            gsi_acceptor: None,
            gsi_peer: None,
            tls: None,
            own_pools: None,
        })
    }

    /// Where this session's files are: the user's own root, or the door's pools.
    fn pools(&self) -> &Arc<crate::door::pools::PoolManager> {
        self.own_pools.as_ref().unwrap_or(&self.shared.pools)
    }

    /// The pools of `user`'s own root; with remote pools the directory must be on every
    /// pool in rotation.
    async fn user_pools(
        &self,
        roots: &crate::door::UserRoots,
        user: &str,
    ) -> Result<Arc<crate::door::pools::PoolManager>, String> {
        let pools = roots.pools_for(user, &self.shared.pools)?;
        if pools.local().is_none() {
            let stat = crate::link::NsOp::Stat("/".into());
            if let Some((pool, Err(f))) = pools.ns_all(stat).await.into_iter().find(|(_, r)| r.is_err()) {
                return Err(format!("pool {}: {}", pool.name(), f.message));
            }
        }
        Ok(pools)
    }

    /// Logs `user` in, in their own root when `--user-root` is set (refused when there is
    /// none for them).
    async fn log_in(&mut self, user: String) {
        if let Some(roots) = self.shared.config.user_roots.clone() {
            match self.user_pools(&roots, &user).await {
                Ok(pools) => self.own_pools = Some(pools),
                Err(why) => {
                    tracing::warn!(peer = %self.peer, %user, "login refused: no root of their own: {why}");
                    self.session.handle_auth_refused(SessionError::NoUserRoot(user));
                    return;
                }
            }
        }
        self.session.handle_auth(Some(Access { user, writable: true }));
    }

    /// Who this session's data connections may come from or go to.
    fn data_peers(&self) -> DataPeers {
        DataPeers {
            client: self.peer.ip(),
            trusted: self.shared.config.trusted_networks.clone(),
        }
    }

    pub(crate) async fn run(mut self) {
        if let Err(e) = self.serve().await {
            tracing::debug!(peer = %self.peer, "control connection ended: {e}");
        }
        self.reset_data();
    }

    /// Drops the MODE E connections this session kept: the relays and the pool's ends.
    fn reset_data(&mut self) {
        self.relays.drain(..).for_each(|r| r.cancel());
        if self.cache_pool.take().is_some() {
            self.pools().forget(self.id);
        }
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        // The session's clock: time since the connection was accepted.
        let started = tokio::time::Instant::now();
        let mut lines_before_login = 0usize;
        loop {
            self.flush().await?;
            if self.closed {
                return Ok(());
            }
            if let Some(frame) = self.queued.pop_front() {
                if self.session.access().is_none() {
                    lines_before_login += 1;
                    if lines_before_login > MAX_LINES_BEFORE_LOGIN {
                        tracing::warn!(peer = %self.peer, "closing: too many commands before login");
                        return self
                            .close_with(SessionError::BadSequence("Too many commands before login."))
                            .await;
                    }
                }
                self.feed(frame).await?;
                // Only whole lines keep a session alive (a byte a second does not), and a
                // command that ran long (a transfer) counts as activity until it ended.
                self.session.handle_activity(started.elapsed());
                continue;
            }
            if *self.shutdown.borrow() {
                return self.close_with(SessionError::ShuttingDown).await;
            }
            let deadline = self.session.poll_timeout();
            let wake = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(started + at).await,
                    None => std::future::pending().await,
                }
            };
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                read = self.read_more() => match read {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(e) => return Err(e),
                },
                _ = wake => {
                    self.session.handle_timeout(started.elapsed());
                    if self.session.poll_timeout().is_none() {
                        tracing::info!(peer = %self.peer, logged_in = self.session.access().is_some(), "control connection timed out");
                    }
                    self.run_actions().await?;
                }
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn close_with(&mut self, err: SessionError) -> std::io::Result<()> {
        // Through the session, which wraps it on a protected channel.
        self.session.fail(err);
        self.flush().await
    }

    /// Reads more control bytes into the queue; false at end of stream.
    async fn read_more(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 4096];
        let n = self.reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        let plain = match &mut self.tls {
            Some(tls) => {
                let (records, plain) = tls.receive(&buf[..n]).map_err(std::io::Error::other)?;
                if !records.is_empty() {
                    self.writer.write_all(&records).await?;
                }
                plain
            }
            None => buf[..n].to_vec(),
        };
        self.framer.push(&plain);
        while let Some(f) = self.framer.next_frame() {
            self.queued.push_back(f);
        }
        Ok(true)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let mut out = String::new();
        while let Some(r) = self.session.poll_reply() {
            out.push_str(&r.to_wire());
        }
        if out.is_empty() {
            return Ok(());
        }
        match &mut self.tls {
            Some(tls) => {
                let records = tls.send(out.as_bytes()).map_err(std::io::Error::other)?;
                self.writer.write_all(&records).await
            }
            None => self.writer.write_all(out.as_bytes()).await,
        }
    }

    async fn feed(&mut self, frame: Frame) -> std::io::Result<()> {
        match frame {
            Frame::Line(line) => {
                let rtt = control_rtt_us(self.reader.as_ref());
                if let Some(us) = rtt {
                    self.session.set_control_rtt(us);
                }
                let abuf = match Command::parse(&line) {
                    Ok(cmd) => {
                        tracing::trace!(peer = %self.peer, verb = cmd.verb(), "command");
                        matches!(cmd, Command::Abuf(_))
                    }
                    Err(_) => false,
                };
                self.session.handle_line(&line);
                if abuf {
                    let decision = if self.session.fixed_buffer().is_some() {
                        "fixed"
                    } else {
                        "autotuning"
                    };
                    tracing::info!(peer = %self.peer, rtt_us = ?rtt, decision, "ABUF: buffers sized from the control RTT");
                    let label = crate::metrics::label("decision", decision);
                    crate::metrics::get().abuf_decisions.get_or_create(&label).inc();
                }
            }
            Frame::TooLong => self.session.handle_line_too_long(),
        }
        self.run_actions().await
    }

    /// Carries out the actions the session asked for, its replies sent first.
    async fn run_actions(&mut self) -> std::io::Result<()> {
        while let Some(action) = self.session.poll_action() {
            self.flush().await?;
            self.perform(action).await?;
        }
        Ok(())
    }

    async fn perform(&mut self, action: Action) -> std::io::Result<()> {
        match action {
            Action::Authenticate { user, .. } if self.gsi_peer.is_some() => self.authenticate_gsi(&user).await,
            Action::Authenticate { user, password } => self.authenticate(user, password).await?,
            Action::Adat(token) => self.adat(token).await,
            Action::StartTls => self.start_tls()?,
            Action::OpenPassive { .. } => {
                self.passive = None;
                let result = self.open_listener().and_then(|l| {
                    let port = l
                        .local_addr()
                        .map_err(|e| SessionError::DataConnection(e.to_string()))?
                        .port();
                    self.passive = Some(Arc::new(l));
                    Ok(SocketAddr::new(
                        self.shared.config.data_address.unwrap_or(self.local.ip()),
                        port,
                    ))
                });
                self.session.handle_passive(result);
            }
            Action::DropPassive => self.passive = None,
            Action::ResetData => self.reset_data(),
            Action::Storage(op) => {
                let result = self.storage(op).await;
                self.session.handle_storage(result);
            }
            Action::Transfer(req) => self.transfer(req).await?,
            Action::Abort => {}
            Action::Close => self.closed = true,
        }
        Ok(())
    }

    /// Checks a password: first the delay this address owes for earlier failures (met here
    /// even when the failing client hung up), then Argon2 on a bounded set of workers. A
    /// client that hangs up while it waits costs nothing more.
    async fn authenticate(&mut self, user: String, password: String) -> std::io::Result<()> {
        let ip = self.peer.ip();
        let gone = || std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "client left during login");
        while let Err(owed) = self.shared.guard.claim(ip) {
            if self.unless_gone(tokio::time::sleep(owed)).await.is_none() {
                return Err(gone());
            }
        }
        let shared = self.shared.clone();
        let Some(Ok(permit)) = self.unless_gone(shared.verifiers.acquire()).await else {
            return Err(gone());
        };
        let name = user.clone();
        let live = self.live.clone();
        let ok = tokio::task::spawn_blocking(move || live.users.verify(&name, &password))
            .await
            .unwrap_or(false);
        drop(permit);
        if ok {
            self.shared.guard.succeed(ip);
            tracing::info!(%user, peer = %self.peer, "login");
            self.log_in(user).await;
        } else {
            crate::metrics::get()
                .login_failures
                .get_or_create(&crate::metrics::label("method", "password"))
                .inc();
            let delay = self.shared.guard.fail(ip).max(self.session.auth_penalty());
            tracing::warn!(%user, peer = %self.peer, ?delay, "failed login");
            if self.unless_gone(tokio::time::sleep(delay)).await.is_none() {
                return Err(gone());
            }
            self.session.handle_auth(None);
        }
        Ok(())
    }

    /// Runs `fut` unless the client closes the control connection first (`None`).
    async fn unless_gone<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            out = fut => Some(out),
            _ = hung_up(self.reader.as_ref()) => None,
        }
    }

    /// A passive listener for v1 PASV: the embedded pool's, or the door's own for relaying to
    /// a remote pool.
    fn open_listener(&self) -> Result<TcpListener, SessionError> {
        match self.pools().local() {
            Some(service) => service
                .pool()
                .open_passive(self.local.ip(), None, self.peer.ip())
                .map_err(|e| link_failure(&crate::pool::pool_failure(&e))),
            None => std::net::TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
                .and_then(|l| {
                    let same_host = crate::pool::tcp::same_host_ip(self.peer.ip(), self.local.ip());
                    self.shared.config.congestion.prepare(&l, same_host);
                    l.set_nonblocking(true)?;
                    TcpListener::from_std(l)
                })
                .map_err(|e| SessionError::DataConnection(e.to_string())),
        }
    }

    /// What the mover moves; `spool`: a recursive listing may stay a spooled file (the pool
    /// is in this process).
    async fn mover_request(&self, req: &TransferRequest, spool: bool) -> Result<MoverRequest, SessionError> {
        Ok(match &req.kind {
            TransferKind::Retrieve { path, offset, length } => MoverRequest::Send {
                path: path.clone(),
                offset: *offset,
                length: *length,
            },
            TransferKind::Store {
                path,
                offset,
                append,
                truncate,
            } => MoverRequest::Receive {
                path: path.clone(),
                offset: *offset,
                append: *append,
                truncate: *truncate,
            },
            TransferKind::Listing {
                path,
                format: ListFormat::Mlsr,
            } => self.recursive_listing(path, req.access.writable, spool).await?,
            TransferKind::Listing { path, format } => {
                let entries = self.entries(path).await?;
                let (format, writable) = (*format, req.access.writable);
                let render = move || -> Result<Bytes, SessionError> {
                    let entries: Vec<_> = entries.into_iter().map(facts).collect();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0);
                    Ok(Bytes::from(render_listing(&entries, format, writable, now)))
                };
                let listing = tokio::task::spawn_blocking(render)
                    .await
                    .unwrap_or_else(|e| Err(SessionError::Internal(e.to_string())))?;
                MoverRequest::SendBytes(listing)
            }
        })
    }

    async fn transfer(&mut self, req: TransferRequest) -> std::io::Result<()> {
        let started = Instant::now();
        let metrics = crate::metrics::get();
        let direction = match req.kind {
            TransferKind::Store { .. } => "upload",
            TransferKind::Retrieve { .. } => "download",
            TransferKind::Listing { .. } => "listing",
        };
        let running = metrics
            .transfers_active
            .get_or_create(&crate::metrics::label("direction", direction))
            .clone();
        let running = crate::metrics::Active::new(running);
        let mut outcome = self.run_transfer(&req).await?;
        if let (Ok(_), Some((alg, want)), TransferKind::Store { path, .. }) = (&outcome.result, &req.verify, &req.kind)
        {
            if let Err(e) = self.verify_upload(path, alg, want).await {
                outcome.result = Err(e);
            }
        }
        drop(running);
        let secs = started.elapsed().as_secs_f64();
        let result = match &outcome.result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{} {e}", e.code().0),
        };
        count_transfer(direction, &req, &outcome);
        tracing::info!(
            target: "ringmover::transfer",
            user = %req.access.user,
            path = %req.kind.path(),
            direction,
            bytes = outcome.bytes,
            seconds = (secs * 1e3).round() / 1e3,
            rate_mb_s = (outcome.bytes as f64 / secs.max(1e-9) / 1e5).round() / 10.0,
            streams = outcome.streams,
            dcau = req.dcau.letter(),
            prot = req.prot.letter(),
            peer = %self.peer.ip(),
            result = %result,
            "transfer"
        );
        self.session.handle_transfer_done(outcome.result);
        Ok(())
    }

    /// A listing's bytes, for the door to send itself.
    async fn listing_bytes(&self, req: &TransferRequest) -> Result<bytes::Bytes, SessionError> {
        match self.mover_request(req, false).await? {
            MoverRequest::SendBytes(b) => Ok(b),
            _ => Err(SessionError::Internal("not a listing".into())),
        }
    }

    /// SCKS: the stored file must have the announced checksum.
    async fn verify_upload(&self, path: &str, alg: &str, want: &str) -> Result<(), SessionError> {
        let algorithm =
            crate::protocol::feat::checksum_name(alg).ok_or_else(|| SessionError::UnknownChecksum(alg.to_string()))?;
        let op = StorageOp::Checksum {
            algorithm: algorithm.to_string(),
            path: path.to_string(),
            offset: 0,
            length: None,
        };
        let got = match self.storage(op).await? {
            StorageDone::Checksum(hex) => hex,
            other => return Err(SessionError::Internal(format!("checksum returned {other:?}"))),
        };
        if got == want {
            Ok(())
        } else {
            Err(SessionError::ChecksumMismatch {
                expected: want.to_string(),
                got,
            })
        }
    }
}

/// Resolves when the peer has closed `stream` (or it failed); pending while it is open, also
/// when the client already sent more (pipelined) commands, which stay unread.
async fn hung_up(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    loop {
        match stream.peek(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

/// The smoothed RTT of a TCP connection in microseconds (TCP_INFO), if the kernel tells.
fn control_rtt_us(stream: &tokio::net::TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the fd is the live control socket borrowed from `stream`; the kernel writes at
    // most `len` bytes into `info`, which is that large.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0).then_some(u64::from(info.tcpi_rtt))
}
