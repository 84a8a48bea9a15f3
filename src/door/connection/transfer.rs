//! Running one transfer for a control connection: the pool's mover moves the data and reports
//! events; the door turns them into replies (150/125, 112/111 markers) and serves ABOR.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::{Backend, Connection, DataCache};
use crate::door::convert::pool_error;
use crate::pool::mover::{self, MoverChannel, MoverEvent, MoverSpec};
use crate::protocol::framer::Frame;
use crate::protocol::session::{DataEndpoint, TransferKind, TransferRequest};
use crate::protocol::{Action, Command, SessionError};

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

pub(super) fn now_tenths() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 / 100)
        .unwrap_or(0)
}

impl Connection {
    pub(super) async fn run_transfer(&mut self, req: &TransferRequest) -> std::io::Result<Outcome> {
        let (root, pool) = match &self.shared.backend {
            Backend::Embedded { root, pool } => (root.clone(), pool.clone()),
            Backend::Pools { pools, engine } => {
                let (m, engine) = (pools.clone(), engine.clone());
                return self.run_remote_transfer(m, engine, req).await;
            }
        };

        let request = match self.mover_request(req).await {
            Ok(r) => r,
            Err(e) => return Ok(Outcome::failed(e)),
        };
        let channel = match &req.endpoint {
            DataEndpoint::Passive => match &self.passive {
                Some(l) => MoverChannel::Listener(l.clone()),
                None => return Ok(Outcome::failed(SessionError::NoDataChannel)),
            },
            DataEndpoint::Active(addrs) => MoverChannel::Connect(addrs.clone()),
            DataEndpoint::Announce => MoverChannel::Listen,
            DataEndpoint::Reuse => MoverChannel::Connect(Vec::new()),
        };
        let sends = req.sends();
        if req.buffer_auto {
            tracing::info!(peer = %self.peer, bytes = ?req.buffer_size, "no SBUF: socket buffers sized from the control RTT");
        }
        let cached = self.take_cache(req.extended && req.reuse, sends);
        let spec = MoverSpec {
            request,
            extended: req.extended,
            xmode: req.xmode,
            parallelism: req.parallelism,
            channel,
            peers: self.data_peers(),
            local: self.local.ip(),
            buffer: req.buffer_size,
            skip: req.skip.clone(),
            size_limit: req.size_limit,
            block_size: req.block_size,
            layout: req.layout,
            relative: matches!(req.kind, TransferKind::Retrieve { length: Some(_), .. }),
            markers: self.session.marker_interval(sends).map(Duration::from_secs),
            cached,
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let mut mover = tokio::spawn(async move { mover::run(&pool, spec, events_tx, cancel_rx).await });
        let finished = loop {
            tokio::select! {
                r = &mut mover => break r,
                Some(ev) = events.recv() => {
                    self.on_event(ev);
                    self.flush().await?;
                }
                more = self.read_more(), if !self.closed => {
                    if !matches!(more, Ok(true)) {
                        // The control connection is gone: nobody is left to report to.
                        self.closed = true;
                        let _ = cancel_tx.send(true);
                    } else if self.take_abort() {
                        let _ = cancel_tx.send(true);
                    }
                }
            }
        };
        while let Ok(ev) = events.try_recv() {
            self.on_event(ev);
        }
        let outcome = match finished {
            Ok(Ok(done)) => {
                if req.extended {
                    self.keep_connections(sends, done.kept);
                }
                if let Some(sums) = done.digests {
                    self.shared.checksums.remember(&root, req.kind.path(), sums);
                }
                Outcome {
                    bytes: done.bytes,
                    result: Ok(done.bytes),
                    streams: done.streams,
                }
            }
            Ok(Err(failed)) => {
                self.keep_connections(sends, Vec::new());
                Outcome {
                    bytes: failed.bytes,
                    result: Err(pool_error(&failed.error)),
                    streams: 0,
                }
            }
            Err(e) => Outcome::failed(SessionError::Internal(format!("mover task: {e}"))),
        };
        Ok(outcome)
    }

    fn on_event(&mut self, ev: MoverEvent) {
        match ev {
            MoverEvent::Started { reused } => self.session.handle_transfer_started(reused),
            MoverEvent::Progress { bytes, ranges } => self.session.handle_progress(now_tenths(), bytes, ranges),
            MoverEvent::Moved(_) => {}
            MoverEvent::Listening(addr) => {
                let ip = self.shared.config.data_address.unwrap_or(addr.ip());
                self.session
                    .handle_listening(std::net::SocketAddr::new(ip, addr.port()))
            }
        }
    }

    /// Keeps MODE E connections for the next transfer in the same direction.
    fn keep_connections(&mut self, sends: bool, kept: Vec<TcpStream>) {
        self.session.handle_connections_kept(sends, !kept.is_empty());
        self.cache = (!kept.is_empty()).then_some(DataCache { sends, sockets: kept });
    }

    /// The cached connections when the session allows reuse in this direction.
    fn take_cache(&mut self, reuse: bool, sends: bool) -> Vec<TcpStream> {
        match self.cache.take() {
            Some(c) if reuse && c.sends == sends => c.sockets,
            _ => Vec::new(),
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
