//! A pool as its own process: it connects to the door's pool port, says hello, and then runs
//! the namespace operations and movers the door sends, reporting mover events back. When the
//! link drops, its movers are cancelled and it reconnects.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::mover::{self, MoverChannel, MoverEvent, MoverSpec};
use super::{MoverRequest, Pool, PoolError};
use crate::engine::OpError;
use crate::link::auth;
use crate::link::{
    read_frame, read_frame_within, write_frame, DoorMsg, Failure, FailureKind, LinkError, Moved, NsOp, NsReply,
    PoolMsg, WireMover, HANDSHAKE_TIMEOUT, MAX_HANDSHAKE_FRAME, VERSION,
};
use crate::storage::checksum::Algorithm;
use crate::storage::{Root, StorageError};

/// How this pool reaches its door.
#[derive(Clone, Debug)]
pub struct PoolLinkConfig {
    pub door: SocketAddr,
    pub name: String,
    /// The address clients reach this pool's data ports on.
    pub data_address: IpAddr,
    /// Its passive port range, announced so the door connects nowhere else.
    pub port_range: Option<(u16, u16)>,
    /// This pool's link key (see [`crate::link::auth`]).
    pub key: crate::link::auth::Key,
}

/// MODE E connections kept per control session, for the next transfer in the same direction.
type Caches = Arc<Mutex<HashMap<u64, (bool, Vec<TcpStream>)>>>;

/// Serves the door until `shutdown` turns true, reconnecting after a lost link.
pub async fn serve(pool: Arc<Pool>, root: Arc<Root>, cfg: PoolLinkConfig, mut shutdown: watch::Receiver<bool>) {
    loop {
        match TcpStream::connect(cfg.door).await {
            Ok(s) => {
                tracing::info!(door = %cfg.door, name = %cfg.name, "pool linked to door");
                tokio::select! {
                    r = session(pool.clone(), root.clone(), &cfg, s) => match r {
                        Ok(()) => tracing::warn!("door closed the link"),
                        Err(e) => tracing::warn!("pool link failed: {e}"),
                    },
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
            Err(e) => tracing::warn!(door = %cfg.door, "cannot reach door: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

fn storage_failure(e: &StorageError) -> Failure {
    Failure {
        kind: FailureKind::Storage,
        errno: e.errno(),
        message: e.to_string(),
    }
}

/// A pool error as the door needs it.
pub fn pool_failure(e: &PoolError) -> Failure {
    let (kind, errno) = match e {
        PoolError::Storage(s) => (FailureKind::Storage, s.errno()),
        PoolError::NoPort | PoolError::Connect(_) | PoolError::ConnectTimeout(_) => (FailureKind::DataConnection, None),
        PoolError::Engine(OpError::Cancelled) => (FailureKind::Aborted, None),
        PoolError::Engine(OpError::Io { source, op }) if *op != "write" => {
            (FailureKind::ConnectionLost, source.raw_os_error())
        }
        PoolError::Engine(OpError::Framing(_)) | PoolError::Stalled(_) => (FailureKind::ConnectionLost, None),
        PoolError::Engine(OpError::Io { source, .. }) => (FailureKind::Local, source.raw_os_error()),
        PoolError::Engine(_) => (FailureKind::Local, None),
    };
    Failure {
        kind,
        errno,
        message: e.to_string(),
    }
}

fn run_ns(root: &Root, op: NsOp) -> Result<NsReply, Failure> {
    let f = |e: StorageError| storage_failure(&e);
    Ok(match op {
        NsOp::Stat(p) => NsReply::Info(root.stat(&p).map_err(f)?),
        NsOp::List(p) => NsReply::Entries(root.list_or_stat(&p).map_err(f)?),
        NsOp::CheckDir(p) => root.check_dir(&p).map(|_| NsReply::Done).map_err(f)?,
        NsOp::MakeDir(p) => root.mkdir(&p).map(|_| NsReply::Done).map_err(f)?,
        NsOp::RemoveDir(p) => root.rmdir(&p).map(|_| NsReply::Done).map_err(f)?,
        NsOp::Delete(p) => root.delete(&p).map(|_| NsReply::Done).map_err(f)?,
        NsOp::Rename { from, to } => root.rename(&from, &to).map(|_| NsReply::Done).map_err(f)?,
        NsOp::SetMode { path, mode } => root.set_mode(&path, mode).map(|_| NsReply::Done).map_err(f)?,
        NsOp::SetTime { path, mtime } => root.set_mtime(&path, mtime).map(|_| NsReply::Done).map_err(f)?,
        NsOp::SetGroup { path, group } => root.set_group(&path, &group).map(|_| NsReply::Done).map_err(f)?,
        NsOp::Checksum {
            algorithm,
            path,
            offset,
            length,
        } => {
            let alg = Algorithm::from_name(&algorithm).ok_or_else(|| Failure {
                kind: FailureKind::Local,
                errno: None,
                message: format!("unknown checksum algorithm {algorithm}"),
            })?;
            NsReply::Checksum(root.checksum(&path, alg, offset, length).map_err(f)?)
        }
    })
}

/// The pool's side of the handshake: the door must prove it holds this pool's key before the
/// pool proves it (so a fake door learns nothing it could replay).
async fn handshake(cfg: &PoolLinkConfig, rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf) -> Result<(), LinkError> {
    let own = auth::nonce();
    let hello = PoolMsg::Hello {
        version: VERSION,
        name: cfg.name.clone(),
        data_address: cfg.data_address,
        port_range: cfg.port_range,
        nonce: hex::encode(own),
    };
    write_frame(wr, &hello).await?;
    let door_nonce = match read_frame_within::<_, DoorMsg>(rd, MAX_HANDSHAKE_FRAME).await? {
        Some(DoorMsg::Challenge { nonce, proof }) => {
            let door_nonce = auth::parse_nonce(&nonce)?;
            if !auth::verify(&cfg.key, auth::DOOR, &door_nonce, &own, &cfg.name, &proof) {
                return Err(LinkError::BadProof("the door"));
            }
            door_nonce
        }
        Some(DoorMsg::Welcome { version }) if version != VERSION => return Err(LinkError::Version(version)),
        _ => return Err(LinkError::Handshake),
    };
    let proof = auth::prove(&cfg.key, auth::POOL, &own, &door_nonce, &cfg.name);
    write_frame(wr, &PoolMsg::Proof { proof }).await?;
    match read_frame_within::<_, DoorMsg>(rd, MAX_HANDSHAKE_FRAME).await? {
        Some(DoorMsg::Welcome { version }) if version == VERSION => Ok(()),
        Some(DoorMsg::Welcome { version }) => Err(LinkError::Version(version)),
        _ => Err(LinkError::Handshake),
    }
}

async fn session(pool: Arc<Pool>, root: Arc<Root>, cfg: &PoolLinkConfig, stream: TcpStream) -> Result<(), LinkError> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(cfg, &mut rd, &mut wr))
        .await
        .map_err(|_| LinkError::HandshakeTimeout)??;
    let (tx, mut rx) = mpsc::unbounded_channel::<PoolMsg>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if write_frame(&mut wr, &m).await.is_err() {
                break;
            }
        }
    });
    let movers: Arc<Mutex<HashMap<u64, watch::Sender<bool>>>> = Arc::default();
    let caches: Caches = Arc::default();
    let result = loop {
        let msg = match read_frame::<_, DoorMsg>(&mut rd).await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match msg {
            DoorMsg::Ns { req, op } => {
                let (root, tx) = (root.clone(), tx.clone());
                tokio::spawn(async move {
                    let result = tokio::task::spawn_blocking(move || run_ns(&root, op))
                        .await
                        .unwrap_or_else(|e| {
                            Err(Failure {
                                kind: FailureKind::Local,
                                errno: None,
                                message: e.to_string(),
                            })
                        });
                    let _ = tx.send(PoolMsg::Reply { req, result });
                });
            }
            DoorMsg::Start { id, mover } => {
                let (cancel_tx, cancel_rx) = watch::channel(false);
                movers.lock().unwrap_or_else(|e| e.into_inner()).insert(id, cancel_tx);
                let ctx = MoverCtx {
                    pool: pool.clone(),
                    tx: tx.clone(),
                    movers: movers.clone(),
                    caches: caches.clone(),
                };
                tokio::spawn(run_mover(ctx, id, mover, cfg.data_address, cancel_rx));
            }
            DoorMsg::Cancel { id } => {
                if let Some(c) = movers.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                    let _ = c.send(true);
                }
            }
            DoorMsg::Forget { session } => {
                caches.lock().unwrap_or_else(|e| e.into_inner()).remove(&session);
            }
            DoorMsg::Welcome { .. } | DoorMsg::Challenge { .. } => {}
        }
    };
    // Without a door nobody can report these transfers: stop them.
    for (_, c) in movers.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        let _ = c.send(true);
    }
    caches.lock().unwrap_or_else(|e| e.into_inner()).clear();
    writer.abort();
    result
}

struct MoverCtx {
    pool: Arc<Pool>,
    tx: mpsc::UnboundedSender<PoolMsg>,
    movers: Arc<Mutex<HashMap<u64, watch::Sender<bool>>>>,
    caches: Caches,
}

async fn run_mover(ctx: MoverCtx, id: u64, m: WireMover, local: IpAddr, cancel: watch::Receiver<bool>) {
    let sends = !matches!(m.request, MoverRequest::Receive { .. });
    let cached = if m.extended && m.reuse {
        match ctx.caches.lock().unwrap_or_else(|e| e.into_inner()).remove(&m.session) {
            Some((dir, socks)) if dir == sends => socks,
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let spec = MoverSpec {
        request: m.request,
        extended: m.extended,
        xmode: m.xmode,
        parallelism: m.parallelism,
        channel: if m.listen {
            MoverChannel::Listen
        } else {
            MoverChannel::Connect(m.connect)
        },
        peers: m.peers,
        local,
        buffer: m.buffer,
        skip: m.skip,
        size_limit: m.size_limit,
        block_size: m.block_size,
        layout: m.layout,
        relative: m.relative,
        markers: m.markers_secs.map(Duration::from_secs),
        cached,
    };
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let tx = ctx.tx.clone();
    let forward = tokio::spawn(async move {
        while let Some(ev) = ev_rx.recv().await {
            let msg = match ev {
                MoverEvent::Listening(addr) => PoolMsg::Listening { id, addr },
                MoverEvent::Started { reused } => PoolMsg::Started { id, reused },
                MoverEvent::Progress { bytes, ranges } => PoolMsg::Progress { id, bytes, ranges },
                MoverEvent::Moved(bytes) => PoolMsg::Moved { id, bytes },
            };
            let _ = tx.send(msg);
        }
    });
    let result = mover::run(&ctx.pool, spec, ev_tx, cancel).await;
    // Events first, then Done, so the door sees them in order.
    let _ = forward.await;
    ctx.movers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    let result = match result {
        Ok(done) => {
            let kept = !done.kept.is_empty();
            if m.extended {
                let mut caches = ctx.caches.lock().unwrap_or_else(|e| e.into_inner());
                if kept {
                    caches.insert(m.session, (sends, done.kept));
                } else {
                    caches.remove(&m.session);
                }
            }
            Ok(Moved {
                bytes: done.bytes,
                streams: done.streams,
                kept,
            })
        }
        Err(failed) => Err((pool_failure(&failed.error), failed.bytes)),
    };
    let _ = ctx.tx.send(PoolMsg::Done { id, result });
}
