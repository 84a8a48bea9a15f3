//! The pool: the data mover. It opens passive listeners (within the configured port range),
//! accepts or makes data connections, opens files under its root and runs the bytes on the
//! engine. The door asks it for movers; in `ringmover serve` the pool is embedded in the same
//! process. Uses engine and storage; knows nothing of the control protocol.

mod checksums;
pub(crate) mod dcau;
mod digests;
pub mod mover;
pub mod remote;
mod service;
pub mod tcp;
pub(crate) mod tls_relay;

pub use crate::link::Report;
pub use crate::link::{MoverRequest, Spool};
pub use digests::UploadDigests;
pub use service::{pool_failure, storage_failure, Service};

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};

use std::fs::File;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use crate::block::Header;
use crate::engine::{BlockPlan, DataPath, Engine, OpError, Receiving, Sink, Source, TransferHandle};
use crate::peers::DataPeers;
use crate::storage::checksum::Algorithm;
use crate::storage::{Root, StorageError, WriteMode};

/// Pool failures.
#[derive(Debug, Error)]
pub enum PoolError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no free port in the passive port range")]
    NoPort,
    #[error("data connection: {0}")]
    Connect(io::Error),
    #[error("no data connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no data moved for {0:?}")]
    Stalled(Duration),
    #[error(transparent)]
    Engine(#[from] OpError),
    /// Data channel authentication (DCAU) failed.
    #[error("data channel authentication: {0}")]
    Dcau(String),
}

/// Data connections one transfer may accept by default: the most parallel streams a client
/// may ask for.
pub const DEFAULT_MAX_DATA_CONNECTIONS: usize = 64;

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Passive ports to use; any free port when `None`.
    pub port_range: Option<RangeInclusive<u16>>,
    /// How long to wait for a data connection (also: for the next one, when a block-mode
    /// receive has none left and its EOF count is not reached).
    pub connect_timeout: Duration,
    /// A transfer that moves no byte for this long fails.
    pub stall_timeout: Duration,
    /// Most data connections one transfer may accept (MODE E/X receive).
    pub max_data_connections: usize,
    /// Receive into a partial file renamed into place on success (see
    /// [`Root::open_upload`]); otherwise write the file in place.
    pub partial_uploads: bool,
    /// Data path for file transfers (None: the engine's default).
    pub data_path: Option<DataPath>,
    /// Send files with a copy (read/write path) to a peer on this host: the client sets it
    /// for its uploads, whose receiver always copies the bytes into a file (see
    /// `docs/engine-paths.md`, fragment size). A server cannot know where its client puts a
    /// download, and sendfile costs least in all.
    pub copy_to_local_peer: bool,
    /// Open files for direct I/O (`O_DIRECT`, through the engine's aligned registered
    /// buffers) where the filesystem allows it.
    pub direct_io: bool,
    /// Checksums computed on the fly for whole-file stream uploads.
    pub upload_digests: Vec<Algorithm>,
    /// Address the pool listens on for passive transfers it opens itself (default: the
    /// address the request came in on).
    pub data_address: Option<IpAddr>,
    /// Congestion control of data connections (see [`tcp::Congestion`]).
    pub congestion: tcp::Congestion,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            port_range: None,
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(300),
            max_data_connections: DEFAULT_MAX_DATA_CONNECTIONS,
            partial_uploads: true,
            data_path: None,
            copy_to_local_peer: false,
            direct_io: false,
            congestion: tcp::Congestion::Auto,
            upload_digests: vec![Algorithm::Adler32],
            data_address: None,
        }
    }
}

/// A mover whose file is open, waiting for its data connection.
#[derive(Debug)]
pub enum PreparedMover {
    /// Send `length` bytes of `file` from `offset`.
    File { file: File, offset: u64, length: u64 },
    /// Receive into `file` at `offset`, or appending when `None`; `digests` are computed on
    /// the fly when the upload writes the whole file in order.
    Store {
        file: File,
        offset: Option<u64>,
        digests: Option<Arc<Mutex<UploadDigests>>>,
        /// `(partial, final)`: renamed into place when the upload succeeds.
        commit: Option<(String, String)>,
    },
    /// Send these bytes.
    Bytes(Bytes),
}

/// How the data connection is made.
pub enum DataChannel<'a> {
    /// Accept on this listener a connection from one of `peers` (others are dropped).
    Accept {
        listener: &'a TcpListener,
        peers: &'a DataPeers,
    },
    /// Connect from `local` to `remote`.
    Connect { local: IpAddr, remote: SocketAddr },
}

/// The embedded pool.
pub struct Pool {
    root: Arc<Root>,
    engine: Arc<Engine>,
    config: PoolConfig,
}

impl Pool {
    pub fn new(root: Arc<Root>, engine: Arc<Engine>, config: PoolConfig) -> Pool {
        Pool { root, engine, config }
    }

    /// The directory this pool serves.
    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    /// The same engine and settings over a directory beneath this pool's root (a user's
    /// part of it, `door --user-root`): it cannot resolve outside this root.
    pub fn within(&self, dir: &str) -> Result<Pool, PoolError> {
        let root = self.root.subroot(dir)?;
        Ok(Pool::new(Arc::new(root), self.engine.clone(), self.config.clone()))
    }

    /// The same engine and settings over another directory (a user's own root).
    pub fn with_root(&self, path: &std::path::Path) -> Result<Pool, PoolError> {
        let root = Root::open(path)?;
        Ok(Pool::new(Arc::new(root), self.engine.clone(), self.config.clone()))
    }

    /// Opens a passive listener on `ip`, within the port range when one is set, for data
    /// connections from `peer`.
    pub fn open_passive(&self, ip: IpAddr, buffer: Option<u64>, peer: IpAddr) -> Result<TcpListener, PoolError> {
        let bind = |addr: SocketAddr| {
            let sock = tcp::new_socket(addr)?;
            tcp::set_buffers(&sock, buffer);
            self.config.congestion.prepare(&sock, tcp::same_host_ip(peer, ip));
            sock.bind(addr)?;
            sock.listen(64)
        };
        let Some(range) = self.config.port_range.clone() else {
            return bind(SocketAddr::new(ip, 0)).map_err(PoolError::Connect);
        };
        // Start at a varying port so consecutive sessions do not race for the same one.
        let span = u32::from(range.end() - range.start()) + 1;
        let start = (std::process::id() ^ rand_seed()) % span;
        for i in 0..span {
            let port = range.start() + ((start + i) % span) as u16;
            if let Ok(l) = bind(SocketAddr::new(ip, port)) {
                return Ok(l);
            }
        }
        Err(PoolError::NoPort)
    }

    /// Opens the file for a mover (before the 150 reply, so a missing file is a plain 550).
    pub fn prepare(&self, req: MoverRequest) -> Result<PreparedMover, PoolError> {
        Ok(match req {
            MoverRequest::Send { path, offset, length } => {
                let (file, info) = self.root.open_read(&path)?;
                self.direct(&file);
                let available = info.size.saturating_sub(offset);
                let length = length.map_or(available, |l| l.min(available));
                PreparedMover::File { file, offset, length }
            }
            MoverRequest::Receive {
                path,
                offset,
                append,
                truncate,
            } => {
                let how = WriteMode { truncate, append };
                let upload = if self.config.partial_uploads {
                    self.root.open_upload(&path, how)?
                } else {
                    crate::storage::Upload {
                        file: self.root.open_write(&path, how)?,
                        commit: None,
                    }
                };
                self.direct(&upload.file);
                let whole = offset == 0 && truncate && !append && !self.config.upload_digests.is_empty();
                let digests = whole.then(|| Arc::new(Mutex::new(UploadDigests::new(&self.config.upload_digests))));
                PreparedMover::Store {
                    file: upload.file,
                    offset: (!append).then_some(offset),
                    digests,
                    commit: upload.commit,
                }
            }
            MoverRequest::SendBytes(b) => PreparedMover::Bytes(b),
            MoverRequest::SendSpool(spool) => {
                let file = spool.file().try_clone().map_err(PoolError::Connect)?;
                let length = file.metadata().map_err(PoolError::Connect)?.len();
                PreparedMover::File {
                    file,
                    offset: 0,
                    length,
                }
            }
        })
    }

    /// Sets `O_DIRECT` on a file when direct I/O is configured (a filesystem that refuses it
    /// keeps the file buffered; the first refusal is logged).
    fn direct(&self, file: &File) {
        static REFUSED: std::sync::Once = std::sync::Once::new();
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        if self.config.direct_io && regular && !crate::engine::direct::enable(file) {
            REFUSED.call_once(|| tracing::info!("direct I/O refused by the filesystem; such files stay buffered"));
        }
    }

    /// The data path for a file: direct files go through the registered buffers.
    fn path_for(&self, file: &File) -> Option<DataPath> {
        if self.config.direct_io && crate::engine::direct::is_direct(file) {
            Some(DataPath::ReadWrite)
        } else {
            self.config.data_path
        }
    }

    /// The data path for sending a file to `sock`'s peer.
    fn send_path(&self, file: &File, sock: &std::net::TcpStream) -> Option<DataPath> {
        let auto = matches!(
            self.config.data_path.unwrap_or_else(|| self.engine.path()),
            DataPath::Auto
        );
        if auto && self.config.copy_to_local_peer && tcp::same_host(sock) {
            Some(DataPath::ReadWrite)
        } else {
            self.path_for(file)
        }
    }

    /// Puts a finished upload in place (see [`Root::open_upload`]).
    pub fn commit_upload(&self, (partial, final_path): &(String, String)) -> Result<(), PoolError> {
        Ok(self.root.commit_upload(partial, final_path)?)
    }

    /// Bytes as an anonymous in-memory file, so MODE E can send them like a file.
    pub fn memory_file(bytes: &[u8]) -> Result<File, PoolError> {
        use std::io::Write;
        let fd = rustix::fs::memfd_create("ringmover-listing", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| PoolError::Connect(e.into()))?;
        let mut f = File::from(fd);
        f.write_all(bytes).map_err(PoolError::Connect)?;
        Ok(f)
    }

    /// A data connection after its handshake: itself (PROT C), or the engine's end of a TLS relay
    /// to it (PROT S/P).
    async fn secured(
        mut sock: TcpStream,
        auth: &crate::gsi::DataAuth,
        role: crate::gsi::Role,
    ) -> Result<TcpStream, PoolError> {
        match dcau::secure(&mut sock, auth, role).await? {
            Some(channel) => tls_relay::start(sock, channel).await,
            None => Ok(sock),
        }
    }

    /// Accepts the next data connection from one of `peers` (connections from other addresses
    /// are dropped: a stranger on the passive port must not hijack or kill the transfer).
    pub async fn accept(
        &self,
        listener: &TcpListener,
        peers: &DataPeers,
        buffer: Option<u64>,
    ) -> Result<TcpStream, PoolError> {
        loop {
            let (s, from) = listener.accept().await.map_err(PoolError::Connect)?;
            if peers.allows(from.ip()) {
                tcp::tune(&s, buffer, &self.config.congestion);
                return Ok(s);
            }
            tracing::warn!(%from, client = %peers.client, "dropped data connection from a foreign address");
        }
    }

    /// Authenticates an accepted data connection when DCAU asks for it. A connection that
    /// fails is dropped (a stranger on the passive port must not end the transfer): `None`.
    pub async fn admit(&self, sock: TcpStream, auth: Option<&crate::gsi::DataAuth>) -> Option<TcpStream> {
        let Some(auth) = auth else {
            return Some(sock);
        };
        let from = sock.peer_addr().ok();
        match Self::secured(sock, auth, crate::gsi::Role::Accepted).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(?from, "dropped data connection: {e}");
                None
            }
        }
    }

    /// Makes the data connection (authenticated when `auth` is given).
    pub async fn connect(
        &self,
        channel: DataChannel<'_>,
        buffer: Option<u64>,
        auth: Option<&crate::gsi::DataAuth>,
    ) -> Result<TcpStream, PoolError> {
        let timeout = self.config.connect_timeout;
        let fut = async {
            match channel {
                DataChannel::Accept { listener, peers } => loop {
                    let sock = self.accept(listener, peers, buffer).await?;
                    if let Some(s) = self.admit(sock, auth).await {
                        return Ok(s);
                    }
                },
                DataChannel::Connect { local, remote } => {
                    let sock = tcp::new_socket(remote).map_err(PoolError::Connect)?;
                    if local.is_ipv4() == remote.is_ipv4() {
                        let _ = sock.bind(SocketAddr::new(local, 0));
                    }
                    tcp::set_buffers(&sock, buffer);
                    let from = sock.local_addr().map_or(local, |a| a.ip());
                    self.config
                        .congestion
                        .prepare(&sock, tcp::same_host_ip(remote.ip(), from));
                    let s = sock.connect(remote).await.map_err(PoolError::Connect)?;
                    tcp::tune(&s, buffer, &self.config.congestion);
                    match auth {
                        Some(auth) => Self::secured(s, auth, crate::gsi::Role::Connected).await,
                        None => Ok(s),
                    }
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| PoolError::ConnectTimeout(timeout))?
    }

    /// Runs a stream-mode mover on the engine.
    pub fn start(&self, mover: PreparedMover, stream: TcpStream) -> Result<TransferHandle, PoolError> {
        let sock = engine_socket(stream)?;
        let (source, sink) = match mover {
            PreparedMover::File { file, offset, length } => {
                let path = self.send_path(&file, &sock);
                let source = Source::File {
                    file,
                    offset,
                    length: Some(length),
                };
                return Ok(self.engine.submit(source, Sink::Socket(sock), path));
            }
            PreparedMover::Store {
                file, offset, digests, ..
            } => {
                // With a CPU to spare for it besides the receiving core, the Auto path splices
                // the bytes into the file and a follower thread hashes them. Without one, the
                // follower's extra read from the page cache lost to hashing on the receiving
                // core (one CPU: 0.85-0.92 vs 0.76-0.81 s/GiB; two, with a local client on the
                // other: 1.2 vs 1.0 s).
                let chosen = self.path_for(&file);
                let path = chosen.unwrap_or_else(|| self.engine.path());
                let (follow, observe) = match digests {
                    Some(d) if path == DataPath::Auto && offset.is_some() && self.engine.idle_cpus() >= 2 => {
                        (Some((d, digests::reader(&file).map_err(PoolError::Connect)?)), None)
                    }
                    d => (None, d),
                };
                let observer = observe.map(digests::observer);
                let h = self
                    .engine
                    .submit(Source::Socket(sock), Sink::File { file, offset, observer }, chosen);
                if let Some((d, file)) = follow {
                    digests::follow(&d, file, h.progress_counter());
                }
                return Ok(h);
            }
            PreparedMover::Bytes(b) => (Source::Memory(b), Sink::Socket(sock)),
        };
        Ok(self.engine.submit(source, sink, self.config.data_path))
    }

    /// Runs one MODE E sending stream; `last` is its closing header (EOD, or EOF|EOD).
    pub fn start_block_send(
        &self,
        file: Arc<File>,
        plan: Arc<BlockPlan>,
        stream: TcpStream,
        last: Header,
        xmode: Option<u64>,
        progress: Arc<AtomicU64>,
    ) -> Result<TransferHandle, PoolError> {
        let sock = engine_socket(stream)?;
        let path = self.send_path(&file, &sock);
        let source = Source::Blocks {
            file,
            plan,
            last,
            xmode,
        };
        Ok(self.engine.submit_counted(source, Sink::Socket(sock), path, progress))
    }

    /// Runs one MODE E receiving stream writing at `base + wire offset`.
    pub fn start_block_recv(
        &self,
        file: Arc<File>,
        receiver: Receiving,
        base: u64,
        stream: TcpStream,
        progress: Arc<AtomicU64>,
    ) -> Result<TransferHandle, PoolError> {
        let sock = engine_socket(stream)?;
        let path = self.path_for(&file);
        let sink = Sink::Blocks { file, receiver, base };
        Ok(self.engine.submit_counted(Source::Socket(sock), sink, path, progress))
    }
}

fn engine_socket(stream: TcpStream) -> Result<std::net::TcpStream, PoolError> {
    let s = stream.into_std().map_err(PoolError::Connect)?;
    s.set_nonblocking(true).map_err(PoolError::Connect)?;
    Ok(s)
}

fn rand_seed() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
