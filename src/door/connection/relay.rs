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
use crate::pool::tcp::Congestion;
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
    congestion: Congestion,
    /// Stream mode: the door's connection to the pool, waiting for the client's.
    pool_side: Option<TcpStream>,
    /// MODE E: where the pool listens, for one connection per client connection.
    pool_addr: Option<SocketAddr>,
    relaying: bool,
    relayed: usize,
    /// Stream mode: the one relay; its end is the transfer's.
    relay: Option<Relay>,
    /// DCAU (PROT C): the handshake the door runs on each client connection before relaying.
    auth: Option<DataAuthRef>,
    /// PROT S/P: the pool runs the handshake and the TLS records through the door.
    pass_through: bool,
}

/// One relayed connection: on the door's engine, in the data's direction; or, when the pool
/// secures the connection itself, two tasks passing its bytes both ways.
enum Relay {
    Engine(TransferHandle),
    Both {
        data: tokio::task::JoinHandle<std::io::Result<u64>>,
        back: tokio::task::AbortHandle,
    },
}

impl Relay {
    async fn finish(&mut self) -> Result<(), String> {
        match self {
            Relay::Engine(h) => h.finish().await.map(drop).map_err(|e| e.to_string()),
            Relay::Both { data, .. } => match data.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    fn stopper(&self) -> RelayStop {
        match self {
            Relay::Engine(h) => RelayStop::Engine(h.canceller()),
            Relay::Both { data, back } => RelayStop::Tasks(data.abort_handle(), back.clone()),
        }
    }
}

/// Stops a relayed connection that outlives its transfer (MODE E connections the client may
/// reuse) when the session ends or drops its data channel.
pub(super) enum RelayStop {
    Engine(Canceller),
    Tasks(tokio::task::AbortHandle, tokio::task::AbortHandle),
}

impl RelayStop {
    pub(super) fn cancel(&self) {
        match self {
            RelayStop::Engine(c) => c.cancel(),
            RelayStop::Tasks(a, b) => {
                a.abort();
                b.abort();
            }
        }
    }
}

impl Relays {
    pub(super) fn new(
        proxied: bool,
        req: &TransferRequest,
        listener: Option<Arc<TcpListener>>,
        peers: DataPeers,
        local: IpAddr,
        congestion: Congestion,
    ) -> Relays {
        Relays {
            proxied,
            extended: req.mode == crate::block::Mode::E,
            sends: req.sends(),
            buffer: req.buffer_size,
            listener,
            peers,
            local,
            congestion,
            pool_side: None,
            pool_addr: None,
            relaying: false,
            relayed: 0,
            relay: None,
            auth: None,
            pass_through: false,
        }
    }

    /// Authenticates each client connection (DCAU, PROT C) before it is relayed, or, with
    /// `pass_through`, leaves that to the pool.
    pub(super) fn secure_with(&mut self, auth: Option<DataAuthRef>, pass_through: bool) {
        self.auth = auth;
        self.pass_through = pass_through;
    }

    pub(super) fn proxied(&self) -> bool {
        self.proxied
    }

    /// The pool listens at `addr`: stream mode connects to it now.
    pub(super) async fn pool_listening(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        if self.extended {
            self.pool_addr = Some(addr);
        } else {
            self.pool_side = Some(connect_from(self.local, addr, &self.congestion).await?);
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
        let client = tokio::time::timeout(
            ACCEPT_TIMEOUT,
            accept_from(Some(&listener), &self.peers, &self.congestion),
        )
        .await
        .map_err(|_| SessionError::DataConnection(format!("no data connection within {ACCEPT_TIMEOUT:?}")))?
        .map_err(|e| SessionError::DataConnection(e.to_string()))?;
        let client = secure_client(client, self.auth.as_ref()).await?;
        let (from, to) = if self.sends {
            (pool_sock, client)
        } else {
            (client, pool_sock)
        };
        self.relay = Some(self.relay_sockets(engine, from, to)?);
        Ok(())
    }

    /// True while MODE E client connections are to be relayed.
    pub(super) fn accepting(&self) -> bool {
        self.relaying && self.pool_addr.is_some() && self.relayed < crate::pool::DEFAULT_MAX_DATA_CONNECTIONS
    }

    /// The client's next MODE E connection.
    pub(super) async fn accept_next(&self) -> std::io::Result<TcpStream> {
        accept_from(self.listener.as_deref(), &self.peers, &self.congestion).await
    }

    /// Relays one accepted MODE E connection to the pool; its canceller, which outlives the
    /// transfer (the client may reuse its connections, and the pool its ends of them).
    pub(super) async fn relay_block_stream(
        &mut self,
        accepted: std::io::Result<TcpStream>,
        engine: Option<&Arc<Engine>>,
    ) -> Option<RelayStop> {
        self.relayed += 1;
        let client = match accepted {
            Ok(c) => secure_client(c, self.auth.as_ref()).await,
            Err(e) => Err(SessionError::DataConnection(e.to_string())),
        };
        let relayed = match (client, self.pool_addr) {
            (Ok(client), Some(to)) => match connect_from(self.local, to, &self.congestion).await {
                Ok(pool_sock) => self.relay_sockets(engine, client, pool_sock),
                Err(e) => Err(SessionError::DataConnection(e.to_string())),
            },
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(SessionError::NoDataChannel),
        };
        match relayed {
            Ok(r) => Some(r.stopper()),
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
                Ok(()) => Ok(moved),
                Err(e) => lost(FailureKind::ConnectionLost, e, moved.bytes),
            },
            (r, Some(h)) => {
                h.stopper().cancel();
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
async fn connect_from(local: IpAddr, to: SocketAddr, congestion: &Congestion) -> std::io::Result<TcpStream> {
    let sock = crate::pool::tcp::new_socket(to)?;
    if local.is_ipv4() == to.is_ipv4() {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    congestion.prepare(&sock, crate::pool::tcp::same_host_ip(to.ip(), local));
    let s = sock.connect(to).await?;
    congestion.apply(&s);
    Ok(s)
}

/// The next connection from one of `peers` on `listener` (pending for ever without a
/// listener); strangers are dropped.
pub(super) async fn accept_from(
    listener: Option<&TcpListener>,
    peers: &DataPeers,
    congestion: &Congestion,
) -> std::io::Result<TcpStream> {
    let Some(l) = listener else {
        return std::future::pending().await;
    };
    loop {
        let (s, from) = l.accept().await?;
        if peers.allows(from.ip()) {
            congestion.apply(&s);
            return Ok(s);
        }
        tracing::warn!(%from, client = %peers.client, "relay: dropped data connection from a foreign address");
    }
}

/// Runs the DCAU or FTPS handshake (the door accepted, so it is the TLS server) on a client's
/// data connection the door serves itself: under PROT C the data then flows in clear; under
/// PROT S/P the door is the end of the TLS records and gets the plaintext end of a relay.
pub(super) async fn secure_client(
    mut client: TcpStream,
    auth: Option<&DataAuthRef>,
) -> Result<TcpStream, SessionError> {
    let failed = |e: crate::pool::PoolError| SessionError::DataConnection(e.to_string());
    if let Some(auth) = auth {
        let secured = crate::pool::dcau::secure(&mut client, &auth.0, crate::gsi::Role::Accepted).await;
        if let Some(channel) = secured.map_err(failed)? {
            return crate::pool::tls_relay::start(client, channel).await.map_err(failed);
        }
    }
    Ok(client)
}

impl Relays {
    /// Relays `from` → `to`: on the door's engine, or both ways untouched (`pass_through`).
    fn relay_sockets(
        &self,
        engine: Option<&Arc<Engine>>,
        from: TcpStream,
        to: TcpStream,
    ) -> Result<Relay, SessionError> {
        if self.pass_through {
            return Ok(pass_both_ways(from, to));
        }
        use crate::engine::{Sink, Source};
        let engine = engine.ok_or_else(|| SessionError::Internal("no relay engine".into()))?;
        let buffer = self.buffer;
        let std_socket = |s: TcpStream| -> Result<std::net::TcpStream, SessionError> {
            let s = s.into_std().map_err(|e| SessionError::DataConnection(e.to_string()))?;
            s.set_nonblocking(true)
                .map_err(|e| SessionError::DataConnection(e.to_string()))?;
            crate::pool::tcp::set_connection_buffers(&s, buffer);
            Ok(s)
        };
        let h = engine.submit(Source::Socket(std_socket(from)?), Sink::Socket(std_socket(to)?), None);
        Ok(Relay::Engine(h))
    }
}

/// Bytes read at a time by a pass-through relay (TLS records are at most 16 KiB).
const PASS_CHUNK: usize = 256 << 10;
/// How long the reverse direction of a pass-through relay may outlive the data's: the
/// peers' last TLS messages (close_notify) still cross; a peer that never closes does not
/// hold the door's sockets.
const PASS_LINGER: Duration = Duration::from_secs(30);

/// The data goes `from` → `to`; the other direction carries the TLS handshake and alerts.
/// The pool is the end of the TLS records and decides the transfer's outcome; the relay only
/// has to end each direction as its source did.
fn pass_both_ways(from: TcpStream, to: TcpStream) -> Relay {
    let (from_r, from_w) = from.into_split();
    let (to_r, to_w) = to.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::time::timeout(PASS_LINGER, pass(to_r, from_w, None)).await;
    });
    let data = tokio::spawn(pass(from_r, to_w, Some(back.abort_handle())));
    Relay::Both {
        data,
        back: back.abort_handle(),
    }
}

/// Copies until `r` ends, then ends `w`'s direction the same way: a FIN for a FIN, a reset
/// for a reset (a reset passed on as a FIN would make a cut-off upload look whole to the
/// pool). `back` is the other direction's task, which holds the rest of `w`'s socket.
async fn pass(
    r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    back: Option<tokio::task::AbortHandle>,
) -> std::io::Result<u64> {
    use tokio::io::AsyncWriteExt;
    let mut r = tokio::io::BufReader::with_capacity(PASS_CHUNK, r);
    match tokio::io::copy_buf(&mut r, &mut w).await {
        Ok(n) => {
            w.shutdown().await?;
            Ok(n)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            // What was passed on must reach the peer first: a reset drops the send queue.
            let _ = tokio::time::timeout(PASS_LINGER, sent_all(w.as_ref())).await;
            // Linger 0: the socket's close (once both halves are gone) sends a reset.
            let _ = rustix::net::sockopt::set_socket_linger(w.as_ref(), Some(Duration::ZERO));
            if let Some(b) = back {
                b.abort();
            }
            w.forget();
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// Returns once the kernel holds no unsent or unacknowledged bytes for `sock`.
async fn sent_all(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ on a socket fd we hold writes one c_int to the pointer we pass,
        // which lives across the call.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued as *mut libc::c_int) };
        if r != 0 || queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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
        let accept = accept_from(Some(&listener), &peers, &self.shared.config.congestion);
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
