//! Plain PASV with a remote pool: the client connects to the door's listener, and the door
//! relays each of its data connections to the pool on the door's engine (the pool accepts only
//! the door's address for such a transfer). MODE E connections get a relay each, which lives
//! as long as the client may reuse the connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::transfer::Outcome;
use super::Connection;
use crate::engine::{Canceller, Engine, TransferHandle};
use crate::link::{DataAuthRef, Failure, FailureKind, MoverResult};
use crate::peers::DataPeers;
use crate::protocol::session::TransferRequest;
use crate::protocol::SessionError;

/// How long the client has to make its data connection.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The relays of one transfer.
pub(super) struct Relays {
    proxied: bool,
    extended: bool,
    sends: bool,
    buffer: Option<u64>,
    listener: Option<Arc<TcpListener>>,
    peers: DataPeers,
    local: IpAddr,
    /// Stream mode: the door's connection to the pool, waiting for the client's.
    pool_side: Option<TcpStream>,
    /// MODE E: where the pool listens, for one connection per client connection.
    pool_addr: Option<SocketAddr>,
    relaying: bool,
    relayed: usize,
    /// Stream mode: the one relay; its end is the transfer's.
    relay: Option<TransferHandle>,
    /// DCAU (PROT C): the handshake the door runs on each client connection before relaying.
    auth: Option<DataAuthRef>,
}

impl Relays {
    pub(super) fn new(
        proxied: bool,
        req: &TransferRequest,
        listener: Option<Arc<TcpListener>>,
        peers: DataPeers,
        local: IpAddr,
    ) -> Relays {
        Relays {
            proxied,
            extended: req.mode == crate::block::Mode::E,
            sends: req.sends(),
            buffer: req.buffer_size,
            listener,
            peers,
            local,
            pool_side: None,
            pool_addr: None,
            relaying: false,
            relayed: 0,
            relay: None,
            auth: None,
        }
    }

    /// Authenticates each client connection (DCAU, PROT C) before it is relayed.
    pub(super) fn secure_with(&mut self, auth: Option<DataAuthRef>) {
        self.auth = auth;
    }

    pub(super) fn proxied(&self) -> bool {
        self.proxied
    }

    /// The pool listens at `addr`: stream mode connects to it now.
    pub(super) async fn pool_listening(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        if self.extended {
            self.pool_addr = Some(addr);
        } else {
            self.pool_side = Some(connect_from(self.local, addr).await?);
        }
        Ok(())
    }

    /// The mover started: accept the client's stream-mode connection and relay it; MODE E
    /// connections are relayed as they arrive.
    pub(super) async fn started(&mut self, engine: Option<&Arc<Engine>>) -> Result<(), SessionError> {
        self.relaying = self.proxied && self.extended;
        let Some(pool_sock) = self.pool_side.take() else {
            return Ok(());
        };
        let listener = self.listener.clone().ok_or(SessionError::NoDataChannel)?;
        let client = tokio::time::timeout(ACCEPT_TIMEOUT, accept_from(Some(&listener), &self.peers))
            .await
            .map_err(|_| SessionError::DataConnection(format!("no data connection within {ACCEPT_TIMEOUT:?}")))?
            .map_err(|e| SessionError::DataConnection(e.to_string()))?;
        let client = secure_client(client, self.auth.as_ref()).await?;
        let (from, to) = if self.sends {
            (pool_sock, client)
        } else {
            (client, pool_sock)
        };
        self.relay = Some(relay_sockets(engine, from, to, self.buffer)?);
        Ok(())
    }

    /// True while MODE E client connections are to be relayed.
    pub(super) fn accepting(&self) -> bool {
        self.relaying && self.pool_addr.is_some() && self.relayed < crate::pool::DEFAULT_MAX_DATA_CONNECTIONS
    }

    /// The client's next MODE E connection.
    pub(super) async fn accept_next(&self) -> std::io::Result<TcpStream> {
        accept_from(self.listener.as_deref(), &self.peers).await
    }

    /// Relays one accepted MODE E connection to the pool; its canceller, which outlives the
    /// transfer (the client may reuse its connections, and the pool its ends of them).
    pub(super) async fn relay_block_stream(
        &mut self,
        accepted: std::io::Result<TcpStream>,
        engine: Option<&Arc<Engine>>,
    ) -> Option<Canceller> {
        self.relayed += 1;
        let client = match accepted {
            Ok(c) => secure_client(c, self.auth.as_ref()).await,
            Err(e) => Err(SessionError::DataConnection(e.to_string())),
        };
        let relayed = match (client, self.pool_addr) {
            (Ok(client), Some(to)) => match connect_from(self.local, to).await {
                Ok(pool_sock) => relay_sockets(engine, client, pool_sock, self.buffer),
                Err(e) => Err(SessionError::DataConnection(e.to_string())),
            },
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(SessionError::NoDataChannel),
        };
        match relayed {
            Ok(h) => Some(h.canceller()),
            Err(e) => {
                tracing::warn!("MODE E relay: {e}");
                self.relaying = false;
                None
            }
        }
    }

    /// The transfer's end with the stream relay's: the relay ends when its source closes, and
    /// its failure fails the transfer.
    pub(super) async fn finish(mut self, done: MoverResult) -> MoverResult {
        let lost = |kind, message: String, bytes| Err((Failure::new(kind, message), bytes));
        match (done, self.relay.as_mut()) {
            (Ok(moved), Some(h)) => match h.finish().await {
                Ok(_) => Ok(moved),
                Err(e) => lost(FailureKind::ConnectionLost, e.to_string(), moved.bytes),
            },
            (r, Some(h)) => {
                h.cancel();
                r
            }
            (Ok(_), None) if self.proxied && !self.extended => {
                lost(FailureKind::DataConnection, "no relay connection".into(), 0)
            }
            (r, None) => r,
        }
    }
}

/// Connects from the door's address, so the pool can tell the relay from a stranger.
async fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if local.is_ipv4() == to.is_ipv4() {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    sock.connect(to).await
}

/// The next connection from one of `peers` on `listener` (pending for ever without a
/// listener); strangers are dropped.
pub(super) async fn accept_from(listener: Option<&TcpListener>, peers: &DataPeers) -> std::io::Result<TcpStream> {
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
/// Runs the DCAU handshake (the door accepted, so it is the TLS server) on a client's data
/// connection; PROT C, so the data then flows in clear and is relayed as it is.
pub(super) async fn secure_client(
    mut client: TcpStream,
    auth: Option<&DataAuthRef>,
) -> Result<TcpStream, SessionError> {
    if let Some(auth) = auth {
        crate::pool::dcau::secure(&mut client, &auth.0, crate::gsi::Role::Accepted)
            .await
            .map_err(|e| SessionError::DataConnection(e.to_string()))?;
    }
    Ok(client)
}

fn relay_sockets(
    engine: Option<&Arc<Engine>>,
    from: TcpStream,
    to: TcpStream,
    buffer: Option<u64>,
) -> Result<TransferHandle, SessionError> {
    use crate::engine::{Sink, Source};
    let engine = engine.ok_or_else(|| SessionError::Internal("no relay engine".into()))?;
    let std_socket = |s: TcpStream| -> Result<std::net::TcpStream, SessionError> {
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

impl Connection {
    /// A listing over a plain PASV connection to the door of remote pools: the door built the
    /// listing, so it sends it itself (a few kilobytes of metadata, not file data).
    pub(super) async fn listing_from_door(&mut self, req: &TransferRequest) -> std::io::Result<Outcome> {
        use tokio::io::AsyncWriteExt;
        let bytes = match self.listing_bytes(req).await {
            Ok(b) => b,
            Err(e) => return Ok(Outcome::failed(e)),
        };
        let Some(listener) = self.passive.clone() else {
            return Ok(Outcome::failed(SessionError::NoDataChannel));
        };
        let auth = match self.door_side_auth(req) {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::failed(e)),
        };
        self.session.handle_transfer_started(false);
        self.flush().await?;
        let peers = self.data_peers();
        let accept = accept_from(Some(&listener), &peers);
        let data_error = |e: std::io::Error| SessionError::DataConnection(e.to_string());
        let sent = match tokio::time::timeout(ACCEPT_TIMEOUT, accept).await {
            Ok(Ok(s)) => match secure_client(s, auth.as_ref()).await {
                Ok(mut s) => s.write_all(&bytes).await.map_err(data_error),
                Err(e) => Err(e),
            },
            Ok(Err(e)) => Err(data_error(e)),
            Err(_) => Err(SessionError::DataConnection("no data connection".into())),
        };
        let n = bytes.len() as u64;
        Ok(match sent {
            Ok(()) => Outcome {
                bytes: n,
                result: Ok(n),
                streams: 1,
            },
            Err(e) => Outcome::failed(e),
        })
    }
}
