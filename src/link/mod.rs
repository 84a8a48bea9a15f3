//! The door–pool link: one TCP connection per pool, opened by the pool, carrying length-prefixed
//! (u32, big-endian) JSON messages. It opens with a handshake ([`auth`]): the pool's `Hello`
//! (version, name, data address and ports, nonce), the door's `Challenge`, the pool's `Proof`,
//! the door's `Welcome`; handshake frames are small and the whole exchange is timed. Namespace
//! requests carry a request id; movers carry a mover id and report events until `Done`.

pub mod auth;
pub mod fuzzing;

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// File facts as pools report them.
pub use crate::storage::{FileInfo, Kind};

/// Protocol version spoken by this build.
pub const VERSION: u32 = 3;
/// Largest frame accepted (a big directory listing fits). Its memory is taken as the bytes
/// arrive, not when the length prefix does.
pub const MAX_FRAME: usize = 64 << 20;
/// Largest frame before the pool has proven its key.
pub const MAX_HANDSHAKE_FRAME: usize = 4096;
/// The whole handshake must be done within this.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Link failures.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error(
        "the peer answered like an FTP control port ('{0}...'), not a door's pool port: give the pool \
         the door's --pool-listen address (default port 2812)"
    )]
    NotALink(String),
    #[error("bad message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("peer speaks link version {0}, we speak {VERSION}")]
    Version(u32),
    #[error("unexpected handshake message")]
    Handshake,
    #[error("link keys: {0}")]
    Keys(String),
    #[error("no key for pool '{0}'")]
    UnknownPool(String),
    #[error("{0} did not prove the link key")]
    BadProof(&'static str),
    #[error("handshake not finished within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
}

/// A namespace operation the door asks a pool to run under its root: the session's own.
pub use crate::protocol::session::StorageOp as NsOp;

/// A namespace operation's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsReply {
    Info(FileInfo),
    Entries(Vec<FileInfo>),
    Checksum(String),
    Done,
}

/// Why something failed on the pool, in terms the door maps to replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// The OS error number for storage failures.
    pub errno: Option<i32>,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The file system refused (see `errno`).
    Storage,
    /// The client's argument was wrong (an unknown group name, checksum algorithm).
    Argument,
    DataConnection,
    ConnectionLost,
    Aborted,
    /// The disk or quota is full.
    NoSpace,
    Local,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            errno: None,
            message: message.into(),
        }
    }
}

/// What a mover moves and how: the same for a door's pool (in-process or over the link) and
/// for the client's own side of a copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoverPlan {
    pub request: MoverRequest,
    /// Stream mode, MODE E or MODE X (GridFTP v2 extended block mode).
    pub mode: crate::block::Mode,
    /// MODE E sending: connections per destination address.
    pub parallelism: u32,
    /// Who accepted data connections may come from (the client, trusted networks).
    pub peers: crate::peers::DataPeers,
    pub buffer: Option<u64>,
    /// MODE E restart ranges (relative to the transfer's start).
    pub skip: Vec<(u64, u64)>,
    /// MODE E receive: blocks past this size are refused.
    pub size_limit: Option<u64>,
    /// MODE E/X block size when sending (None: the pool's default).
    pub block_size: Option<u64>,
    /// How the stripes (connect addresses) of a MODE E send divide the file; None: every
    /// connection takes the next block, whichever stripe it goes to.
    pub layout: Option<crate::block::layout::StripeLayout>,
    /// ERET P: wire offsets are relative to the section's start.
    pub relative: bool,
    /// Between progress events (None: only the final one when receiving).
    pub markers: Option<std::time::Duration>,
    /// DCAU: authenticate every data connection. Never crosses the link as it is (it holds
    /// the user's delegated key): a remote pool gets a [`Grant`] and builds its own.
    #[serde(skip)]
    pub auth: Option<DataAuthRef>,
    /// DCAU on a remote pool: the delegated credential sealed with the link's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
}

/// What a remote pool needs to authenticate a transfer's data connections: the session's
/// delegated credential, sealed (AES-256-GCM) with a key only the door and that pool hold
/// for this link ([`auth::seal_key`]); whom the peers must be (DCAU S subject, or the
/// credential's own identity); and whether the data goes in TLS (PROT S/P). For FTPS PROT P
/// (`ftps`) the sealed credential is the door's own certificate and key instead: the pool is
/// the TLS server on the client's data connections, as the door would be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub sealed: String,
    pub subject: Option<String>,
    pub private: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ftps: bool,
}

/// A shared [`crate::gsi::DataAuth`]; plans compare equal when they share the same one.
#[derive(Clone, Debug)]
pub struct DataAuthRef(pub std::sync::Arc<crate::gsi::DataAuth>);

impl PartialEq for DataAuthRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DataAuthRef {}

/// A mover a door asks a pool for: the plan, and how the data connections are made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMover {
    pub plan: MoverPlan,
    /// Listen and report the address (true), or connect to `connect`.
    pub listen: bool,
    pub connect: Vec<SocketAddr>,
    /// The control session, for MODE E connection reuse on the pool.
    pub session: u64,
    pub reuse: bool,
    /// A directory beneath the pool's root that is this session's root (`door --user-root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// What a mover moves (also what the door sends a remote pool: paths are the door's resolved
/// virtual paths, opened under the pool's root).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoverRequest {
    /// Send `length` bytes (to the end when `None`) of `path` from `offset`.
    Send {
        path: String,
        offset: u64,
        length: Option<u64>,
    },
    /// Receive into `path`.
    Receive {
        path: String,
        offset: u64,
        append: bool,
        truncate: bool,
    },
    /// Send bytes the door produced (a listing).
    SendBytes(Bytes),
    /// Send a file the door spooled (a recursive listing); in-process pools only.
    #[serde(skip)]
    SendSpool(Spool),
}

impl MoverRequest {
    /// Which way the pool moves the bytes.
    pub fn direction(&self) -> crate::block::Direction {
        match self {
            MoverRequest::Receive { .. } => crate::block::Direction::Receive,
            _ => crate::block::Direction::Send,
        }
    }
}

/// A spooled, unlinked file the door hands the embedded pool.
#[derive(Clone, Debug)]
pub struct Spool(Arc<File>);

impl Spool {
    pub fn new(file: File) -> Spool {
        Spool(Arc::new(file))
    }

    pub fn file(&self) -> &File {
        &self.0
    }
}

impl PartialEq for Spool {
    fn eq(&self, other: &Spool) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Spool {}

/// Something a running mover reports to the door, which turns it into replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoverEvent {
    /// The pool listens here (for 127/227 replies).
    Listening(SocketAddr),
    /// The file is open; data connections are being made (`reused`: cached ones).
    Started { reused: bool },
    /// Bytes moved so far and, when receiving, the ranges stored (exclusive ends).
    Progress {
        bytes: u64,
        ranges: Option<crate::block::RangeSet>,
    },
    /// Bytes moved so far, once a second while they change: not a marker for the client, a
    /// count for the door's transfer log should the mover's process die.
    Moved(u64),
}

/// How a mover ended: what it moved, or why it failed and the bytes it had moved by then.
pub type MoverResult = Result<Moved, (Failure, u64)>;

/// What a running mover reports, in order: events, then its end.
#[derive(Debug)]
pub enum Report {
    Event(MoverEvent),
    Done(MoverResult),
}

/// The result of a successful mover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub bytes: u64,
    pub streams: usize,
    /// MODE E connections were kept for the next transfer of this session.
    pub kept: bool,
}

/// Door → pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DoorMsg {
    /// The door's nonce and its proof of the pool's key.
    Challenge {
        nonce: String,
        proof: String,
    },
    Welcome {
        version: u32,
    },
    Ns {
        req: u64,
        op: NsOp,
        /// A directory beneath the pool's root to run it in (a user's own root).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
    Start {
        id: u64,
        mover: Box<WireMover>,
    },
    Cancel {
        id: u64,
    },
    /// The session ended or reset its data channel: drop its cached connections.
    Forget {
        session: u64,
    },
}

/// Pool → door.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolMsg {
    Hello {
        version: u32,
        name: String,
        data_address: IpAddr,
        /// The passive ports this pool listens on (None: any unprivileged port).
        port_range: Option<(u16, u16)>,
        nonce: String,
    },
    /// The pool's proof of its key, answering `Challenge`.
    Proof {
        proof: String,
    },
    Reply {
        req: u64,
        result: Result<NsReply, Failure>,
    },
    Listening {
        id: u64,
        addr: SocketAddr,
    },
    Started {
        id: u64,
        reused: bool,
    },
    Progress {
        id: u64,
        bytes: u64,
        ranges: Option<String>,
    },
    /// Bytes moved so far (once a second while they change), for the door's log.
    Moved {
        id: u64,
        bytes: u64,
    },
    Done {
        id: u64,
        result: Result<Moved, (Failure, u64)>,
    },
}

/// An FTP reply's start ("220 ", "220-") where a length prefix should be: such a length
/// (0x32323020, 842 MB) is over every limit, so no real frame is mistaken for one.
fn is_ftp_reply(prefix: &[u8; 4]) -> bool {
    prefix[..3].iter().all(u8::is_ascii_digit) && matches!(prefix[3], b' ' | b'-')
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin, M: Serialize>(w: &mut W, msg: &M) -> Result<(), LinkError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(LinkError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame of at most [`MAX_FRAME`] bytes; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin, M: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<M>, LinkError> {
    read_frame_within(r, MAX_FRAME).await
}

/// Reads one frame of at most `limit` bytes. The body's buffer grows with the bytes that
/// arrive, so a large length prefix alone costs nothing.
pub async fn read_frame_within<R: AsyncReadExt + Unpin, M: for<'de> Deserialize<'de>>(
    r: &mut R,
    limit: usize,
) -> Result<Option<M>, LinkError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if is_ftp_reply(&len) {
        return Err(LinkError::NotALink(String::from_utf8_lossy(&len).into_owned()));
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(LinkError::TooLarge(len));
    }
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let got = r.take(len as u64).read_to_end(&mut body).await?;
    if got < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let msgs = vec![
            PoolMsg::Hello {
                version: VERSION,
                name: "p1".into(),
                data_address: "127.0.0.2".parse().unwrap(),
                port_range: Some((50000, 50100)),
                nonce: hex::encode(auth::nonce()),
            },
            PoolMsg::Reply {
                req: 7,
                result: Ok(NsReply::Checksum("abc".into())),
            },
            PoolMsg::Done {
                id: 3,
                result: Err((
                    Failure {
                        kind: FailureKind::Storage,
                        errno: Some(2),
                        message: "nope".into(),
                    },
                    10,
                )),
            },
        ];
        for m in &msgs {
            write_frame(&mut a, m).await.unwrap();
        }
        for m in &msgs {
            let got: PoolMsg = read_frame(&mut b).await.unwrap().unwrap();
            assert_eq!(&got, m);
        }
        drop(a);
        assert!(read_frame::<_, PoolMsg>(&mut b).await.unwrap().is_none());

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(u32::MAX).to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame::<_, DoorMsg>(&mut b).await,
            Err(LinkError::TooLarge(_))
        ));

        // Before the handshake only small frames; a short body is an error, not a hang.
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&5000u32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame_within::<_, PoolMsg>(&mut b, MAX_HANDSHAKE_FRAME).await,
            Err(LinkError::TooLarge(5000))
        ));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(60u32 << 20).to_be_bytes()).await.unwrap();
        a.write_all(b"{").await.unwrap();
        drop(a);
        assert!(matches!(read_frame::<_, PoolMsg>(&mut b).await, Err(LinkError::Io(_))));
    }
}
