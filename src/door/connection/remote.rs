//! A control connection whose pools run in other processes: namespace operations go to the
//! pool holding the path (or to every pool, for directories and listings), and transfers run
//! as movers on one pool while the door relays their events.

use std::sync::Arc;
use std::time::Duration;

use super::transfer::Outcome;
use super::Connection;
use crate::door::convert::{facts, link_failure};
use crate::door::pools::{PoolManager, RemotePool};
use crate::engine::Engine;
use crate::link::{FailureKind, NsOp, NsReply, PoolMsg, WireMover};
use crate::peers::DataPeers;
use crate::pool::MoverRequest;
use crate::protocol::session::{DataEndpoint, StorageDone, StorageOp, TransferKind, TransferRequest};
use crate::protocol::SessionError;
use crate::storage::FileInfo;

impl Connection {
    pub(super) async fn remote_storage(&self, m: Arc<PoolManager>, op: StorageOp) -> Result<StorageDone, SessionError> {
        let err = |f: crate::link::Failure| link_failure(&f);
        match op {
            StorageOp::Stat(p) => Ok(StorageDone::Stat(facts(m.locate(&p).await.map_err(err)?.1))),
            StorageOp::ChangeDir(p) => first_ok(m.ns_all(NsOp::CheckDir(p)).await).map(|_| StorageDone::Done),
            // Directories exist on every pool, so new files can go anywhere.
            StorageOp::MakeDir(p) => first_ok(m.ns_all(NsOp::MakeDir(p)).await).map(|_| StorageDone::Done),
            StorageOp::RemoveDir(p) => first_ok(m.ns_all(NsOp::RemoveDir(p)).await).map(|_| StorageDone::Done),
            // On every pool that holds the path (directories exist on all of them).
            StorageOp::SetMode { path, mode } => {
                first_ok(m.ns_all(NsOp::SetMode { path, mode }).await).map(|_| StorageDone::Done)
            }
            StorageOp::SetTime { path, mtime } => {
                first_ok(m.ns_all(NsOp::SetTime { path, mtime }).await).map(|_| StorageDone::Done)
            }
            StorageOp::SetGroup { path, group } => {
                first_ok(m.ns_all(NsOp::SetGroup { path, group }).await).map(|_| StorageDone::Done)
            }
            StorageOp::Delete(p) => {
                let (pool, _) = m.locate(&p).await.map_err(err)?;
                m.ns(&pool, NsOp::Delete(p))
                    .await
                    .map_err(err)
                    .map(|_| StorageDone::Done)
            }
            StorageOp::Rename { from, to } => {
                let (pool, _) = m.locate(&from).await.map_err(err)?;
                m.ns(&pool, NsOp::Rename { from, to })
                    .await
                    .map_err(err)
                    .map(|_| StorageDone::Done)
            }
            StorageOp::Checksum {
                algorithm,
                path,
                offset,
                length,
            } => {
                let (pool, _) = m.locate(&path).await.map_err(err)?;
                let op = NsOp::Checksum {
                    algorithm: algorithm.to_string(),
                    path,
                    offset,
                    length,
                };
                match m.ns(&pool, op).await.map_err(err)? {
                    NsReply::Checksum(hex) => Ok(StorageDone::Checksum(hex)),
                    other => Err(SessionError::Internal(format!("pool answered {other:?}"))),
                }
            }
        }
    }

    /// A listing merged from every pool (a name present on several pools appears once).
    pub(super) async fn remote_listing(&self, m: &PoolManager, path: &str) -> Result<Vec<FileInfo>, SessionError> {
        let mut merged: Vec<FileInfo> = Vec::new();
        let mut first_err = None;
        let mut any_ok = false;
        for (_, r) in m.ns_all(NsOp::List(path.to_string())).await {
            match r {
                Ok(NsReply::Entries(entries)) => {
                    any_ok = true;
                    for e in entries {
                        if !merged.iter().any(|x| x.name == e.name) {
                            merged.push(e);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if !any_ok {
            return Err(first_err.map(|f| link_failure(&f)).unwrap_or(SessionError::NotFound));
        }
        merged.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(merged)
    }

    /// Picks the pool for a transfer: where the file is; for a new file the pool whose
    /// connections a MODE E reuse will arrive on, else the least loaded.
    async fn pick_pool(&self, m: &PoolManager, req: &TransferRequest) -> Result<Arc<RemotePool>, SessionError> {
        let err = |f: crate::link::Failure| link_failure(&f);
        match &req.kind {
            TransferKind::Retrieve { path, .. } => Ok(m.locate(path).await.map_err(err)?.0),
            TransferKind::Store { path, .. } => {
                if let Ok((p, _)) = m.locate(path).await {
                    return Ok(p);
                }
                let cached = self.remote_cache_pool.as_ref().filter(|_| req.reuse && req.extended);
                if let Some(p) = cached.and_then(|name| m.alive().into_iter().find(|p| &p.name == name)) {
                    return Ok(p);
                }
                m.place(path).map_err(err)
            }
            TransferKind::Listing { .. } => m.least_loaded().map_err(err),
        }
    }

    pub(super) async fn run_remote_transfer(
        &mut self,
        m: Arc<PoolManager>,
        engine: Arc<Engine>,
        req: &TransferRequest,
    ) -> std::io::Result<Outcome> {
        let failed = |e| {
            Ok(Outcome {
                bytes: 0,
                result: Err(e),
                streams: 0,
            })
        };
        // Plain PASV: the client connects to the door, which relays to the pool (proxy).
        let mut proxied = false;
        let (listen, connect) = match &req.endpoint {
            DataEndpoint::Announce => (true, Vec::new()),
            DataEndpoint::Reuse => (false, Vec::new()),
            DataEndpoint::Active(addrs) => (false, addrs.clone()),
            DataEndpoint::Passive if matches!(req.kind, TransferKind::Listing { .. }) => {
                return self.listing_from_door(req).await;
            }
            DataEndpoint::Passive => {
                proxied = true;
                (true, Vec::new())
            }
        };
        let pool = match self.pick_pool(&m, req).await {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        let request = match self.mover_request(req).await {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let sends = req.sends();
        let wire = WireMover {
            request,
            extended: req.extended,
            xmode: req.xmode,
            parallelism: req.parallelism,
            listen,
            connect,
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
            markers_secs: self.session.marker_interval(sends),
            session: self.id,
            reuse: req.reuse,
        };
        let mut mover = match m.start(pool.clone(), wire) {
            Ok(mv) => mv,
            Err(f) => return failed(link_failure(&f)),
        };
        let mut pool_side: Option<tokio::net::TcpStream> = None;
        let mut pool_addr: Option<std::net::SocketAddr> = None;
        let mut relaying = false;
        let listener = self.passive.clone();
        let data_peers = self.data_peers();
        let mut relay: Option<crate::engine::TransferHandle> = None;
        let mut relayed = 0usize;
        // What the pool last reported: the bytes logged if the pool dies mid-transfer.
        let mut last_bytes = 0u64;
        let done = loop {
            tokio::select! {
                msg = mover.events.recv() => match msg {
                    // MODE E: each client connection gets its own relayed connection to the pool.
                    Some(PoolMsg::Listening { addr, .. }) if proxied && req.extended => pool_addr = Some(addr),
                    Some(PoolMsg::Listening { addr, .. }) if proxied => match connect_from(self.local.ip(), addr).await {
                        Ok(s) => pool_side = Some(s),
                        Err(e) => {
                            m.cancel(&mover);
                            tracing::warn!(%addr, "relay cannot reach pool: {e}");
                        }
                    },
                    Some(PoolMsg::Listening { addr, .. }) => {
                        self.session.handle_listening(addr);
                        self.flush().await?;
                    }
                    Some(PoolMsg::Started { reused, .. }) => {
                        self.session.handle_transfer_started(reused);
                        self.flush().await?;
                        relaying = proxied && req.extended;
                        if let Some(pool_sock) = pool_side.take() {
                            match self.start_relay(&engine, pool_sock, sends, req.buffer_size).await {
                                Ok(h) => relay = Some(h),
                                Err(e) => {
                                    m.cancel(&mover);
                                    tracing::warn!("relay: cannot accept the client's connection: {e}");
                                }
                            }
                        }
                    }
                    Some(PoolMsg::Moved { bytes, .. }) => last_bytes = bytes,
                    Some(PoolMsg::Progress { bytes, ranges, .. }) => {
                        last_bytes = bytes;
                        self.session.handle_progress(super::transfer::now_tenths(), bytes, ranges);
                        self.flush().await?;
                    }
                    Some(PoolMsg::Done { result, .. }) => break result,
                    Some(_) => {}
                    None => break Err((pool_gone(&pool), 0)),
                },
                accepted = accept_from(listener.as_deref(), &data_peers), if relaying && pool_addr.is_some() && relayed < crate::pool::DEFAULT_MAX_DATA_CONNECTIONS => {
                    relayed += 1;
                    let relayed = match (accepted, pool_addr) {
                        (Ok(client), Some(to)) => match connect_from(self.local.ip(), to).await {
                            Ok(pool_sock) => relay_sockets(&engine, client, pool_sock, req.buffer_size),
                            Err(e) => Err(SessionError::DataConnection(e.to_string())),
                        },
                        (Err(e), _) => Err(SessionError::DataConnection(e.to_string())),
                        (Ok(_), None) => Err(SessionError::NoDataChannel),
                    };
                    match relayed {
                        // Relays outlive the transfer: the client may reuse its MODE E
                        // connections (and the pool its ends of them) for the next one.
                        Ok(h) => self.relays.push(h.canceller()),
                        Err(e) => {
                            tracing::warn!("MODE E relay: {e}");
                            relaying = false;
                        }
                    }
                }
                more = self.read_more(), if !self.closed => {
                    let stop = if !matches!(more, Ok(true)) {
                        self.closed = true;
                        true
                    } else {
                        self.take_abort()
                    };
                    if stop {
                        m.cancel(&mover);
                        // A pool that died cannot answer; do not wait for it for ever.
                        let pool = pool.clone();
                        let grace = tokio::time::sleep(Duration::from_secs(30));
                        tokio::pin!(grace);
                        let r = tokio::select! {
                            msg = async { loop { match mover.events.recv().await {
                                Some(PoolMsg::Done { result, .. }) => break result,
                                Some(_) => {}
                                None => break Err((pool_gone(&pool), 0)),
                            } } } => msg,
                            _ = &mut grace => Err((pool_gone(&pool), 0)),
                        };
                        break r;
                    }
                }
            }
        };
        // The relay ends when its source closes; its failure fails the transfer.
        let done = match (done, relay.as_mut()) {
            (Ok(moved), Some(h)) => match h.finish().await {
                Ok(_) => Ok(moved),
                Err(e) => Err((
                    crate::link::Failure {
                        kind: FailureKind::ConnectionLost,
                        errno: None,
                        message: e.to_string(),
                    },
                    moved.bytes,
                )),
            },
            (r, Some(h)) => {
                h.cancel();
                r
            }
            (r, None) if proxied && !req.extended && r.is_ok() => Err((
                crate::link::Failure {
                    kind: FailureKind::DataConnection,
                    errno: None,
                    message: "no relay connection".into(),
                },
                0,
            )),
            (r, None) => r,
        };
        Ok(match done {
            Ok(moved) => {
                if req.extended {
                    self.session.handle_connections_kept(sends, moved.kept);
                    self.remote_cache_pool = moved.kept.then(|| pool.name.clone());
                }
                Outcome {
                    bytes: moved.bytes,
                    result: Ok(moved.bytes),
                    streams: moved.streams,
                }
            }
            Err((f, bytes)) => {
                self.session.handle_connections_kept(sends, false);
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
        })
    }
}

/// Connects from the door's address, so the pool can tell the relay from a stranger.
async fn connect_from(local: std::net::IpAddr, to: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let sock = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if local.is_ipv4() == to.is_ipv4() {
        sock.bind(std::net::SocketAddr::new(local, 0))?;
    }
    sock.connect(to).await
}

impl Connection {
    /// Accepts the client's connection on the PASV listener and relays between it and the
    /// pool on the door's engine: pool→client when sending, client→pool when receiving.
    async fn start_relay(
        &mut self,
        engine: &Engine,
        pool_sock: tokio::net::TcpStream,
        sends: bool,
        buffer: Option<u64>,
    ) -> Result<crate::engine::TransferHandle, SessionError> {
        let listener = self.passive.clone().ok_or(SessionError::NoDataChannel)?;
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            accept_from(Some(&listener), &self.data_peers()),
        )
        .await
        .map_err(|_| SessionError::DataConnection("no data connection within 30 s".into()))?
        .map_err(|e| SessionError::DataConnection(e.to_string()))?;
        if sends {
            relay_sockets(engine, pool_sock, client, buffer)
        } else {
            relay_sockets(engine, client, pool_sock, buffer)
        }
    }
}

/// The next connection from one of `peers` on `listener` (pending for ever without a
/// listener); strangers are dropped.
async fn accept_from(
    listener: Option<&tokio::net::TcpListener>,
    peers: &DataPeers,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(l) = listener else {
        return std::future::pending().await;
    };
    loop {
        let (s, from) = l.accept().await?;
        if peers.allows(from.ip()) {
            return Ok(s);
        }
        tracing::warn!(%from, client = %peers.client, "relay: dropped data connection from a foreign address");
    }
}

/// Relays `from` → `to` on the door's engine.
fn relay_sockets(
    engine: &Engine,
    from: tokio::net::TcpStream,
    to: tokio::net::TcpStream,
    buffer: Option<u64>,
) -> Result<crate::engine::TransferHandle, SessionError> {
    use crate::engine::{Sink, Source};
    let std_socket = |s: tokio::net::TcpStream| -> Result<std::net::TcpStream, SessionError> {
        let s = s.into_std().map_err(|e| SessionError::DataConnection(e.to_string()))?;
        s.set_nonblocking(true)
            .map_err(|e| SessionError::DataConnection(e.to_string()))?;
        if let Some(n) = buffer {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(&s, n as usize);
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&s, n as usize);
        }
        Ok(s)
    };
    Ok(engine.submit(Source::Socket(std_socket(from)?), Sink::Socket(std_socket(to)?), None))
}

fn pool_gone(pool: &RemotePool) -> crate::link::Failure {
    crate::link::Failure {
        kind: FailureKind::ConnectionLost,
        errno: None,
        message: format!("pool {} is gone", pool.name),
    }
}

impl Connection {
    /// A listing over a plain PASV connection: the door built the listing, so it sends it
    /// itself (a few kilobytes of metadata, not file data).
    async fn listing_from_door(&mut self, req: &TransferRequest) -> std::io::Result<Outcome> {
        use tokio::io::AsyncWriteExt;
        let bytes = match self.mover_request(req).await {
            Ok(MoverRequest::SendBytes(b)) => b,
            Ok(_) => {
                return Ok(Outcome {
                    bytes: 0,
                    result: Err(SessionError::Internal("not a listing".into())),
                    streams: 0,
                })
            }
            Err(e) => {
                return Ok(Outcome {
                    bytes: 0,
                    result: Err(e),
                    streams: 0,
                })
            }
        };
        let Some(listener) = self.passive.clone() else {
            return Ok(Outcome {
                bytes: 0,
                result: Err(SessionError::NoDataChannel),
                streams: 0,
            });
        };
        self.session.handle_transfer_started(false);
        self.flush().await?;
        let peers = self.data_peers();
        let accept = accept_from(Some(&listener), &peers);
        let result = match tokio::time::timeout(Duration::from_secs(30), accept).await {
            Ok(Ok(mut s)) => s.write_all(&bytes).await.map(|_| bytes.len() as u64),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no data connection")),
        };
        let n = bytes.len() as u64;
        Ok(match result {
            Ok(_) => Outcome {
                bytes: n,
                result: Ok(n),
                streams: 1,
            },
            Err(e) => Outcome {
                bytes: 0,
                result: Err(SessionError::DataConnection(e.to_string())),
                streams: 0,
            },
        })
    }
}

/// Ok if any pool succeeded; otherwise the first failure (or "not found" without pools).
fn first_ok(results: Vec<(Arc<RemotePool>, Result<NsReply, crate::link::Failure>)>) -> Result<(), SessionError> {
    let mut first_err = None;
    for (_, r) in results {
        match r {
            Ok(_) => return Ok(()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.map(|f| link_failure(&f)).unwrap_or(SessionError::NotFound))
}
