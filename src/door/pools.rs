//! The door's pools: the embedded one ([`Service`] in this process) or those that connect to
//! the door's pool port, whom the door sends namespace requests and movers over the link. A
//! [`PoolHandle`] reaches either the same way. A remote pool whose link drops is taken out of
//! rotation at once; its pending requests and movers fail with a clear error.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::link::auth::{self, LinkKeys};
use crate::link::FileInfo;
use crate::link::{
    read_frame, read_frame_within, write_frame, DoorMsg, Failure, FailureKind, LinkError, MoverEvent, NsOp, NsReply,
    PoolMsg, Report, WireMover, HANDSHAKE_TIMEOUT, MAX_HANDSHAKE_FRAME, VERSION,
};
use crate::pool::Service;

/// The name the embedded pool goes by.
const EMBEDDED: &str = "embedded";

/// One pool as the door reaches it.
#[derive(Clone)]
pub enum PoolHandle {
    /// In this process (`ringmover serve`): calls, and the door's passive listener handed over.
    Local(Arc<Service>),
    /// In another process, over the pool link.
    Remote(RemoteRef),
}

/// A remote pool as one session sees it: the whole pool, or (`door --user-root`) a directory
/// beneath its root that the pool opens as that session's root.
#[derive(Clone)]
pub struct RemoteRef {
    pool: Arc<RemotePool>,
    root: Option<Arc<str>>,
}

impl std::ops::Deref for RemoteRef {
    type Target = RemotePool;

    fn deref(&self) -> &RemotePool {
        &self.pool
    }
}

/// A mover started on a pool: its reports, ending with [`Report::Done`].
pub struct MoverRun {
    pub reports: mpsc::UnboundedReceiver<Report>,
    stop: Stop,
}

enum Stop {
    Local(watch::Sender<bool>),
    Remote { pool: Arc<RemotePool>, id: u64 },
}

impl MoverRun {
    /// Asks the pool to stop the mover; its `Done` report still follows.
    pub fn cancel(&self) {
        match &self.stop {
            Stop::Local(tx) => {
                let _ = tx.send(true);
            }
            Stop::Remote { pool, id } => {
                let _ = pool.tx.send(DoorMsg::Cancel { id: *id });
            }
        }
    }
}

impl Drop for MoverRun {
    fn drop(&mut self) {
        if let Stop::Remote { pool, id } = &self.stop {
            pool.movers.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            pool.active.fetch_sub(1, Ordering::Relaxed);
            pool.load_gauge.dec();
        }
    }
}

impl PoolHandle {
    pub fn name(&self) -> &str {
        match self {
            PoolHandle::Local(_) => EMBEDDED,
            PoolHandle::Remote(p) => &p.name,
        }
    }

    /// True for the pool in the door's process: it takes the door's passive listener, so
    /// plain PASV needs no relay.
    pub fn is_local(&self) -> bool {
        matches!(self, PoolHandle::Local(_))
    }

    /// Movers running on this pool.
    pub fn load(&self) -> usize {
        match self {
            PoolHandle::Local(s) => s.load(),
            PoolHandle::Remote(p) => p.load(),
        }
    }

    /// Runs a namespace operation.
    pub async fn ns(&self, op: NsOp) -> Result<NsReply, Failure> {
        match self {
            PoolHandle::Local(s) => s.ns_blocking(op).await,
            PoolHandle::Remote(p) => p.pool.ns(op, p.root.as_deref()).await,
        }
    }

    /// Starts a mover. `listener`: the door's passive listener, for the local pool; `local`:
    /// the address the local pool connects from.
    pub fn start(
        &self,
        mover: WireMover,
        listener: Option<Arc<TcpListener>>,
        local: IpAddr,
    ) -> Result<MoverRun, Failure> {
        let (tx, reports) = mpsc::unbounded_channel();
        match self {
            PoolHandle::Local(s) => {
                let (stop, cancel) = watch::channel(false);
                s.spawn_mover(mover, listener, local, cancel, move |r| {
                    let _ = tx.send(r);
                });
                Ok(MoverRun {
                    reports,
                    stop: Stop::Local(stop),
                })
            }
            PoolHandle::Remote(p) => {
                let id = p.next_id.fetch_add(1, Ordering::Relaxed);
                p.movers.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
                p.active.fetch_add(1, Ordering::Relaxed);
                p.load_gauge.inc();
                let run = MoverRun {
                    reports,
                    stop: Stop::Remote {
                        pool: p.pool.clone(),
                        id,
                    },
                };
                let mover = WireMover {
                    root: p.root.as_deref().map(str::to_string),
                    ..mover
                };
                if !p.alive.load(Ordering::Relaxed)
                    || p.tx
                        .send(DoorMsg::Start {
                            id,
                            mover: Box::new(mover),
                        })
                        .is_err()
                {
                    return Err(p.lost());
                }
                Ok(run)
            }
        }
    }

    /// Drops the MODE E connections a control session kept on this pool.
    pub fn forget(&self, session: u64) {
        match self {
            PoolHandle::Local(s) => s.forget(session),
            PoolHandle::Remote(p) => {
                let _ = p.tx.send(DoorMsg::Forget { session });
            }
        }
    }
}

/// One connected pool.
pub struct RemotePool {
    pub name: String,
    pub data_address: IpAddr,
    /// The passive ports the pool announced (None: any unprivileged port).
    port_range: Option<(u16, u16)>,
    tx: mpsc::UnboundedSender<DoorMsg>,
    ns: Mutex<HashMap<u64, oneshot::Sender<Result<NsReply, Failure>>>>,
    movers: Mutex<HashMap<u64, mpsc::UnboundedSender<Report>>>,
    /// Ids of namespace requests and movers.
    next_id: AtomicU64,
    active: AtomicUsize,
    /// `active` in the metrics.
    load_gauge: prometheus_client::metrics::gauge::Gauge,
    alive: AtomicBool,
    /// Seals what only this pool may read (delegated credentials): see [`auth::seal_key`].
    seal_key: auth::Key,
}

impl RemotePool {
    /// `plain` sealed for this pool's eyes only.
    pub fn seal(&self, plain: &[u8]) -> Result<String, LinkError> {
        auth::seal(&self.seal_key, plain)
    }

    /// Movers running on this pool.
    pub fn load(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// True when `addr` is one the pool may ask the door (or its clients) to connect to: its
    /// data address and its port range. Anything else would make the door a relay to any
    /// service the pool names.
    pub fn serves(&self, addr: SocketAddr) -> bool {
        let port_ok = match self.port_range {
            Some((a, b)) => (a..=b).contains(&addr.port()),
            None => addr.port() >= 1024,
        };
        crate::peers::canonical(addr.ip()) == crate::peers::canonical(self.data_address) && port_ok
    }

    /// Runs a namespace operation on this pool (beneath `root` when given).
    async fn ns(&self, op: NsOp, root: Option<&str>) -> Result<NsReply, Failure> {
        let req = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.ns.lock().unwrap_or_else(|e| e.into_inner()).insert(req, tx);
        if !self.alive.load(Ordering::Relaxed)
            || self
                .tx
                .send(DoorMsg::Ns {
                    req,
                    op,
                    root: root.map(str::to_string),
                })
                .is_err()
        {
            self.ns.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
            return Err(self.lost());
        }
        rx.await.unwrap_or_else(|_| Err(self.lost()))
    }

    fn lost(&self) -> Failure {
        Failure {
            kind: FailureKind::ConnectionLost,
            errno: None,
            message: format!("pool {} is gone", self.name),
        }
    }
}

/// Pool links still in their handshake at once; more wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 16;

/// All pools of a door.
pub struct PoolManager {
    keys: LinkKeys,
    handshakes: Arc<tokio::sync::Semaphore>,
    /// Shared with the per-user views (`within`).
    pools: Arc<Mutex<Vec<PoolHandle>>>,
    /// A per-user view: every remote pool's handle carries this directory as the root.
    within: Option<Arc<str>>,
    /// Placement of new files: path prefix → pool name (longest prefix wins).
    placement: Vec<(String, String)>,
    /// The pool in the door's process, if that is where the files are.
    embedded: Option<Arc<Service>>,
    /// The door's engine, relaying plain-PASV transfers to remote pools.
    relay: Option<Arc<crate::engine::Engine>>,
}

/// What a pool said of itself in its handshake.
struct Hello {
    name: String,
    data_address: IpAddr,
    port_range: Option<(u16, u16)>,
    seal_key: auth::Key,
}

impl PoolManager {
    /// Accepts pool links for ever.
    pub async fn accept(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok(permit) = self.handshakes.clone().acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((s, from)) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.link(s, permit).await {
                            tracing::warn!(%from, "pool link refused: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("pool accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn link(
        self: Arc<Self>,
        stream: TcpStream,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(), LinkError> {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&mut rd, &mut wr))
            .await
            .map_err(|_| LinkError::HandshakeTimeout)??;
        drop(permit);
        let Hello {
            name,
            data_address,
            port_range,
            seal_key,
        } = hello;
        let (tx, mut rx) = mpsc::unbounded_channel::<DoorMsg>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if write_frame(&mut wr, &m).await.is_err() {
                    break;
                }
            }
        });
        let pool = Arc::new(RemotePool {
            name: name.clone(),
            data_address,
            port_range,
            tx,
            ns: Mutex::default(),
            movers: Mutex::default(),
            next_id: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            load_gauge: crate::metrics::get()
                .pool_load
                .get_or_create(&crate::metrics::label("pool", name.clone()))
                .clone(),
            alive: AtomicBool::new(true),
            seal_key,
        });
        let linked = crate::metrics::get()
            .pool_linked
            .get_or_create(&crate::metrics::label("pool", name.clone()))
            .clone();
        linked.set(1);
        {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.retain(|p| p.name() != name);
            pools.push(PoolHandle::Remote(RemoteRef {
                pool: pool.clone(),
                root: None,
            }));
        }
        tracing::info!(pool = %name, %data_address, "pool registered");
        let result = loop {
            match read_frame::<_, PoolMsg>(&mut rd).await {
                Ok(Some(m)) => dispatch(&pool, m),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Out of rotation; everything waiting on it fails now.
        pool.alive.store(false, Ordering::Relaxed);
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| !matches!(p, PoolHandle::Remote(r) if Arc::ptr_eq(&r.pool, &pool)));
        if !self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|p| p.name() == name)
        {
            linked.set(0);
        }
        tracing::warn!(pool = %name, "pool link lost; taken out of rotation");
        for (_, w) in pool.ns.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = w.send(Err(pool.lost()));
        }
        for (_, m) in pool.movers.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = m.send(Report::Done(Err((pool.lost(), 0))));
        }
        result
    }

    /// The door's side of the handshake: the pool must prove the key of the name it claims.
    async fn handshake(&self, rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf) -> Result<Hello, LinkError> {
        let (name, data_address, port_range, pool_nonce) =
            match read_frame_within::<_, PoolMsg>(rd, MAX_HANDSHAKE_FRAME).await? {
                Some(PoolMsg::Hello {
                    version,
                    name,
                    data_address,
                    port_range,
                    nonce,
                }) if version == VERSION => (name, data_address, port_range, auth::parse_nonce(&nonce)?),
                Some(PoolMsg::Hello { version, .. }) => return Err(LinkError::Version(version)),
                _ => return Err(LinkError::Handshake),
            };
        let key = *self
            .keys
            .get(&name)
            .ok_or_else(|| LinkError::UnknownPool(name.clone()))?;
        let door_nonce = auth::nonce();
        let challenge = DoorMsg::Challenge {
            nonce: hex::encode(door_nonce),
            proof: auth::prove(&key, auth::DOOR, &door_nonce, &pool_nonce, &name),
        };
        write_frame(wr, &challenge).await?;
        match read_frame_within::<_, PoolMsg>(rd, MAX_HANDSHAKE_FRAME).await? {
            Some(PoolMsg::Proof { proof })
                if auth::verify(&key, auth::POOL, &pool_nonce, &door_nonce, &name, &proof) => {}
            Some(PoolMsg::Proof { .. }) => return Err(LinkError::BadProof("the pool")),
            _ => return Err(LinkError::Handshake),
        }
        write_frame(wr, &DoorMsg::Welcome { version: VERSION }).await?;
        Ok(Hello {
            seal_key: auth::seal_key(&key, &door_nonce, &pool_nonce, &name),
            name,
            data_address,
            port_range,
        })
    }

    /// The pools in rotation, by name.
    pub fn alive(&self) -> Vec<PoolHandle> {
        let mut v: Vec<_> = self.pools.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        if let Some(root) = &self.within {
            for p in &mut v {
                if let PoolHandle::Remote(r) = p {
                    r.root = Some(root.clone());
                }
            }
        }
        v
    }

    /// The same pools as one user sees them (`door --user-root`): `dir`, beneath each remote
    /// pool's root, is their root there.
    pub fn within(&self, dir: &str) -> PoolManager {
        PoolManager {
            keys: LinkKeys::default(),
            handshakes: self.handshakes.clone(),
            pools: self.pools.clone(),
            within: Some(Arc::from(dir)),
            placement: self.placement.clone(),
            embedded: None,
            relay: self.relay.clone(),
        }
    }

    /// Runs a namespace operation on every pool.
    pub async fn ns_all(&self, op: NsOp) -> Vec<(PoolHandle, Result<NsReply, Failure>)> {
        let mut out = Vec::new();
        for p in self.alive() {
            let r = p.ns(op.clone()).await;
            out.push((p, r));
        }
        out
    }

    /// The pool holding `path`, with its facts.
    pub async fn locate(&self, path: &str) -> Result<(PoolHandle, FileInfo), Failure> {
        let mut first_err = None;
        for (p, r) in self.ns_all(NsOp::Stat(path.to_string())).await {
            match r {
                Ok(NsReply::Info(info)) => return Ok((p, info)),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(no_pool))
    }

    /// A registry admitting the pools in `keys`, placing new files under configured path
    /// prefixes on named pools.
    /// `relay`: the engine that relays plain-PASV transfers between clients and pools.
    pub fn new(keys: LinkKeys, placement: Vec<(String, String)>, relay: Arc<crate::engine::Engine>) -> PoolManager {
        PoolManager {
            keys,
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
            pools: Arc::default(),
            within: None,
            placement,
            embedded: None,
            relay: Some(relay),
        }
    }

    /// The one pool of `ringmover serve`, in the door's process.
    pub fn embedded(service: Arc<Service>) -> PoolManager {
        PoolManager {
            keys: LinkKeys::default(),
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
            pools: Arc::new(Mutex::new(vec![PoolHandle::Local(service.clone())])),
            within: None,
            placement: Vec::new(),
            embedded: Some(service),
            relay: None,
        }
    }

    /// The engine relaying plain-PASV transfers to remote pools.
    pub fn relay(&self) -> Option<&Arc<crate::engine::Engine>> {
        self.relay.as_ref()
    }

    /// The embedded pool's service, when the files are in this process.
    pub fn local(&self) -> Option<&Arc<Service>> {
        self.embedded.as_ref()
    }

    /// The pool with the fewest running movers.
    pub fn least_loaded(&self) -> Result<PoolHandle, Failure> {
        self.alive().into_iter().min_by_key(|p| p.load()).ok_or_else(no_pool)
    }

    /// Where a new file goes: the pool mapped to the longest matching path prefix when it is
    /// alive, otherwise the least loaded one.
    pub fn place(&self, path: &str) -> Result<PoolHandle, Failure> {
        let mapped = self
            .placement
            .iter()
            .filter(|(prefix, _)| path_under(path, prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .and_then(|(_, name)| self.alive().into_iter().find(|p| p.name() == name));
        match mapped {
            Some(p) => Ok(p),
            None => self.least_loaded(),
        }
    }

    /// Tells every pool to drop the cached connections of a session.
    pub fn forget(&self, session: u64) {
        for p in self.alive() {
            p.forget(session);
        }
    }
}

/// `/a/b` is under `/a` and `/a/`, not under `/ab`.
fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

fn no_pool() -> Failure {
    Failure {
        kind: FailureKind::Local,
        errno: None,
        message: "no pool available".into(),
    }
}

fn dispatch(pool: &RemotePool, m: PoolMsg) {
    match m {
        PoolMsg::Reply { req, result } => {
            if let Some(w) = pool.ns.lock().unwrap_or_else(|e| e.into_inner()).remove(&req) {
                let _ = w.send(result);
            }
        }
        PoolMsg::Listening { id, addr } if !pool.serves(addr) => {
            tracing::warn!(pool = %pool.name, %addr, "pool announced a data address outside its own; mover failed");
            if let Some(tx) = pool.movers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                let failure = Failure {
                    kind: FailureKind::DataConnection,
                    errno: None,
                    message: format!(
                        "pool {} announced {addr}, outside its data address and ports",
                        pool.name
                    ),
                };
                let _ = tx.send(Report::Done(Err((failure, 0))));
            }
        }
        PoolMsg::Listening { id, addr } => event(pool, id, MoverEvent::Listening(addr)),
        PoolMsg::Started { id, reused } => event(pool, id, MoverEvent::Started { reused }),
        PoolMsg::Progress { id, bytes, ranges } => {
            // A pool's ranges that do not parse are dropped, not passed on to the client.
            let ranges = ranges.as_deref().and_then(crate::protocol::client::parse_ranges);
            event(pool, id, MoverEvent::Progress { bytes, ranges })
        }
        PoolMsg::Moved { id, bytes } => event(pool, id, MoverEvent::Moved(bytes)),
        PoolMsg::Done { id, result } => {
            if let Some(tx) = pool.movers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                let _ = tx.send(Report::Done(result));
            }
        }
        PoolMsg::Hello { .. } | PoolMsg::Proof { .. } => {}
    }
}

fn event(pool: &RemotePool, id: u64, ev: MoverEvent) {
    if let Some(tx) = pool.movers.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        let _ = tx.send(Report::Event(ev));
    }
}

#[cfg(test)]
mod tests {
    use super::path_under;

    #[test]
    fn prefixes() {
        assert!(path_under("/a/b", "/a"));
        assert!(path_under("/a/b", "/a/"));
        assert!(path_under("/a", "/a"));
        assert!(!path_under("/ab", "/a"));
        assert!(path_under("/x", "/"));
    }
}
