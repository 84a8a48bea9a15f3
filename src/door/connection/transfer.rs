//! Running one transfer for a control connection, the same way on every pool: the pool's mover
//! moves the data and reports events; the door turns them into replies (150/125, 127, 112/111
//! markers) and serves ABOR. Plain PASV to a remote pool is relayed by the door (see
//! [`super::relay`]); the embedded pool takes the door's passive listener instead.

use std::net::SocketAddr;
use std::time::Duration;

use super::relay::Relays;
use super::Connection;
use crate::block::Mode;
use crate::door::convert::link_failure;
use crate::door::pools::{MoverRun, PoolHandle};
use crate::link::{Failure, FailureKind, MoverEvent, MoverPlan, MoverResult, Report, WireMover};
use crate::peers::DataPeers;
use crate::protocol::framer::Frame;
use crate::protocol::session::{DataEndpoint, TransferKind, TransferRequest};
use crate::protocol::{Action, Command, SessionError};

/// How long a cancelled mover may take to report its end (a pool that died cannot).
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// How a transfer ended, for the reply and the log line.
pub(super) struct Outcome {
    pub(super) bytes: u64,
    pub(super) result: Result<u64, SessionError>,
    pub(super) streams: usize,
}

impl Outcome {
    pub(super) fn failed(e: SessionError) -> Outcome {
        Outcome {
            bytes: 0,
            result: Err(e),
            streams: 0,
        }
    }
}

pub(super) fn now_tenths() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 / 100)
        .unwrap_or(0)
}

impl Connection {
    pub(super) async fn run_transfer(&mut self, req: &TransferRequest) -> std::io::Result<Outcome> {
        let pool = match self.pick_pool(req).await {
            Ok(p) => p,
            Err(e) => return Ok(Outcome::failed(e)),
        };
        // Plain PASV to a remote pool: the client connects to the door, which relays.
        let proxied = !pool.is_local() && matches!(req.endpoint, DataEndpoint::Passive);
        if proxied && matches!(req.kind, TransferKind::Listing { .. }) {
            return self.listing_from_door(req).await;
        }
        let handed = match (&req.endpoint, pool.is_local()) {
            (DataEndpoint::Passive, true) => match &self.passive {
                Some(l) => Some(l.clone()),
                None => return Ok(Outcome::failed(SessionError::NoDataChannel)),
            },
            _ => None,
        };
        let request = match self.mover_request(req, pool.is_local()).await {
            Ok(r) => r,
            Err(e) => return Ok(Outcome::failed(e)),
        };
        if req.buffer_auto {
            tracing::info!(peer = %self.peer, bytes = ?req.buffer_size, "no SBUF: socket buffers sized from the control RTT");
        }
        let (listen, connect) = match &req.endpoint {
            DataEndpoint::Announce | DataEndpoint::Passive => (true, Vec::new()),
            DataEndpoint::Reuse => (false, Vec::new()),
            DataEndpoint::Active(addrs) => (false, addrs.clone()),
        };
        let security = match self.data_security(req, &pool, proxied) {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::failed(e)),
        };
        let plan = MoverPlan {
            request,
            mode: req.mode,
            parallelism: req.parallelism,
            // A proxied transfer's pool accepts only the door's own relay connection.
            peers: if proxied {
                DataPeers::only(self.local.ip())
            } else {
                self.data_peers()
            },
            buffer: req.buffer_size,
            skip: req.skip.clone(),
            size_limit: req.size_limit,
            block_size: req.block_size,
            layout: req.layout,
            relative: matches!(req.kind, TransferKind::Retrieve { length: Some(_), .. }),
            markers: self
                .session
                .marker_interval(req.direction(), req.mode)
                .map(Duration::from_secs),
            auth: security.auth,
            grant: security.grant,
        };
        let wire = WireMover {
            plan,
            listen,
            connect,
            session: self.id,
            reuse: req.reuse,
            root: None,
        };
        let mut run = match pool.start(wire, handed, self.local.ip()) {
            Ok(r) => r,
            Err(f) => return Ok(Outcome::failed(link_failure(&f))),
        };
        let mut relays = Relays::new(
            proxied,
            req,
            self.passive.clone(),
            self.data_peers(),
            self.local.ip(),
            self.shared.config.congestion.clone(),
        );
        relays.secure_with(security.relay, security.pass_through);
        // What the pool last reported: the bytes logged if the pool dies mid-transfer.
        let mut last_bytes = 0u64;
        let done = loop {
            tokio::select! {
                report = run.reports.recv() => match report {
                    Some(Report::Event(ev)) => {
                        if let Some(b) = self.on_event(ev, &pool, &run, &mut relays).await? {
                            last_bytes = b;
                        }
                    }
                    Some(Report::Done(result)) => break result,
                    None => break Err((pool_gone(&pool), 0)),
                },
                accepted = relays.accept_next(), if relays.accepting() => {
                    if let Some(h) = relays.relay_block_stream(accepted, self.pools().relay()).await {
                        self.relays.push(h);
                    }
                }
                more = self.read_more(), if !self.closed => {
                    let stop = if !matches!(more, Ok(true)) {
                        // The control connection is gone: nobody is left to report to.
                        self.closed = true;
                        true
                    } else {
                        self.take_abort()
                    };
                    if stop {
                        break cancelled(run, &pool).await;
                    }
                }
            }
        };
        let done = relays.finish(done).await;
        Ok(self.outcome(done, req, &pool, last_bytes))
    }

    /// Acts on one mover event; returns the bytes moved when the event tells them.
    async fn on_event(
        &mut self,
        ev: MoverEvent,
        pool: &PoolHandle,
        run: &MoverRun,
        relays: &mut Relays,
    ) -> std::io::Result<Option<u64>> {
        match ev {
            MoverEvent::Listening(addr) if relays.proxied() => {
                if let Err(e) = relays.pool_listening(addr).await {
                    run.cancel();
                    tracing::warn!(%addr, "relay cannot reach pool: {e}");
                }
            }
            MoverEvent::Listening(addr) => {
                // The embedded pool listens on the door's host: announce the configured address.
                let ip = match self.shared.config.data_address {
                    Some(ip) if pool.is_local() => ip,
                    _ => addr.ip(),
                };
                self.session.handle_listening(SocketAddr::new(ip, addr.port()));
                self.flush().await?;
            }
            MoverEvent::Started { reused } => {
                self.session.handle_transfer_started(reused);
                self.flush().await?;
                let engine = self.pools().relay();
                if let Err(e) = relays.started(engine).await {
                    run.cancel();
                    tracing::warn!("relay: cannot accept the client's connection: {e}");
                }
            }
            MoverEvent::Moved(bytes) => return Ok(Some(bytes)),
            MoverEvent::Progress { bytes, ranges } => {
                self.session.handle_progress(now_tenths(), bytes, ranges);
                self.flush().await?;
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// The reply and log line of a finished mover; keeps MODE E connections for the next
    /// transfer in the same direction.
    fn outcome(&mut self, done: MoverResult, req: &TransferRequest, pool: &PoolHandle, last_bytes: u64) -> Outcome {
        match done {
            Ok(moved) => {
                if req.mode == Mode::E {
                    self.session.handle_connections_kept(req.direction(), moved.kept);
                    self.cache_pool = moved.kept.then(|| pool.name().to_string());
                }
                Outcome {
                    bytes: moved.bytes,
                    result: Ok(moved.bytes),
                    streams: moved.streams,
                }
            }
            Err((f, bytes)) => {
                self.session.handle_connections_kept(req.direction(), false);
                let e = if f.kind == FailureKind::ConnectionLost && f.message.starts_with("pool ") {
                    SessionError::Local(f.message.clone())
                } else {
                    link_failure(&f)
                };
                Outcome {
                    bytes: bytes.max(last_bytes),
                    result: Err(e),
                    streams: 0,
                }
            }
        }
    }

    /// Picks the pool for a transfer: where the file is; for a new file the pool whose
    /// connections a MODE E reuse will arrive on, else the placement rule.
    async fn pick_pool(&self, req: &TransferRequest) -> Result<PoolHandle, SessionError> {
        let m = &self.pools();
        let err = |f: Failure| link_failure(&f);
        match &req.kind {
            TransferKind::Retrieve { path, .. } => Ok(m.locate(path).await.map_err(err)?.0),
            TransferKind::Store { path, .. } => {
                if let Ok((p, _)) = m.locate(path).await {
                    return Ok(p);
                }
                let cached = self.cache_pool.as_ref().filter(|_| req.reuse && req.mode == Mode::E);
                if let Some(p) = cached.and_then(|name| m.alive().into_iter().find(|p| p.name() == name)) {
                    return Ok(p);
                }
                m.place(path).map_err(err)
            }
            TransferKind::Listing { .. } => m.least_loaded().map_err(err),
        }
    }

    /// During a transfer only ABOR is acted on at once; other lines wait their turn. True
    /// when an ABOR asked to stop the transfer.
    pub(super) fn take_abort(&mut self) -> bool {
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

/// Cancels a mover and waits for its end, for a while: a pool that died cannot answer.
async fn cancelled(mut run: MoverRun, pool: &PoolHandle) -> MoverResult {
    run.cancel();
    let end = async {
        loop {
            match run.reports.recv().await {
                Some(Report::Done(result)) => break result,
                Some(Report::Event(_)) => {}
                None => break Err((pool_gone(pool), 0)),
            }
        }
    };
    tokio::time::timeout(CANCEL_GRACE, end)
        .await
        .unwrap_or_else(|_| Err((pool_gone(pool), 0)))
}

fn pool_gone(pool: &PoolHandle) -> Failure {
    Failure::new(FailureKind::ConnectionLost, format!("pool {} is gone", pool.name()))
}
