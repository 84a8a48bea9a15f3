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

use super::mover::MoverEvent;
use super::{Report, Service};
use crate::link::auth;
use crate::link::{
    read_frame, read_frame_within, write_frame, DoorMsg, Failure, FailureKind, LinkError, PoolMsg, HANDSHAKE_TIMEOUT,
    MAX_HANDSHAKE_FRAME, VERSION,
};

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
    /// The CA directory that DCAU peers are checked against (None: DCAU refused here).
    pub trust: Option<crate::gsi::TrustPaths>,
}

/// Serves the door until `shutdown` turns true, reconnecting after a lost link; returns an
/// error only for a mistake retrying cannot mend (the address is not a door's pool port).
pub async fn serve(
    service: Arc<Service>,
    cfg: PoolLinkConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    loop {
        match TcpStream::connect(cfg.door).await {
            Ok(s) => {
                tokio::select! {
                    r = session(service.clone(), &cfg, s) => match r {
                        Ok(()) => tracing::warn!("door closed the link"),
                        Err(e @ LinkError::NotALink(_)) => return Err(e),
                        Err(e) => tracing::warn!("pool link failed: {e}"),
                    },
                    _ = shutdown.wait_for(|s| *s) => return Ok(()),
                }
            }
            Err(e) => tracing::warn!(door = %cfg.door, "cannot reach door: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// The pool's side of the handshake: the door must prove it holds this pool's key before the
/// pool proves it (so a fake door learns nothing it could replay). Returns the key that seals
/// credentials on this link.
async fn handshake(
    cfg: &PoolLinkConfig,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
) -> Result<auth::Key, LinkError> {
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
        Some(DoorMsg::Welcome { version }) if version == VERSION => {
            Ok(auth::seal_key(&cfg.key, &door_nonce, &own, &cfg.name))
        }
        Some(DoorMsg::Welcome { version }) => Err(LinkError::Version(version)),
        _ => Err(LinkError::Handshake),
    }
}

async fn session(service: Arc<Service>, cfg: &PoolLinkConfig, stream: TcpStream) -> Result<(), LinkError> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let seal_key = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(cfg, &mut rd, &mut wr))
        .await
        .map_err(|_| LinkError::HandshakeTimeout)??;
    tracing::info!(door = %cfg.door, name = %cfg.name, "pool linked to door");
    let (tx, mut rx) = mpsc::unbounded_channel::<PoolMsg>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if write_frame(&mut wr, &m).await.is_err() {
                break;
            }
        }
    });
    let movers: Arc<Mutex<HashMap<u64, watch::Sender<bool>>>> = Arc::default();
    let roots = Roots {
        base: service,
        within: Mutex::default(),
    };
    let result = loop {
        let msg = match read_frame::<_, DoorMsg>(&mut rd).await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match msg {
            DoorMsg::Ns { req, op, root } => {
                let tx = tx.clone();
                match roots.service(root.as_deref()) {
                    Ok(service) => {
                        tokio::spawn(async move {
                            let result = service.ns_blocking(op).await;
                            let _ = tx.send(PoolMsg::Reply { req, result });
                        });
                    }
                    Err(f) => {
                        let _ = tx.send(PoolMsg::Reply { req, result: Err(f) });
                    }
                }
            }
            DoorMsg::Start { id, mut mover } => {
                let service = match roots.service(mover.root.as_deref()) {
                    Ok(s) => s,
                    Err(f) => {
                        let _ = tx.send(PoolMsg::Done {
                            id,
                            result: Err((f, 0)),
                        });
                        continue;
                    }
                };
                if let Some(grant) = mover.plan.grant.take() {
                    match open_grant(&grant, &seal_key, cfg.trust.as_ref()) {
                        Ok(a) => mover.plan.auth = Some(a),
                        Err(f) => {
                            tracing::warn!(id, "data channel security refused: {}", f.message);
                            let _ = tx.send(PoolMsg::Done {
                                id,
                                result: Err((f, 0)),
                            });
                            continue;
                        }
                    }
                }
                let (cancel_tx, cancel_rx) = watch::channel(false);
                movers.lock().unwrap_or_else(|e| e.into_inner()).insert(id, cancel_tx);
                let (tx, movers) = (tx.clone(), movers.clone());
                service.spawn_mover(*mover, None, cfg.data_address, cancel_rx, move |r| {
                    if matches!(r, Report::Done(_)) {
                        movers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    }
                    let _ = tx.send(link_message(id, r));
                });
            }
            DoorMsg::Cancel { id } => {
                if let Some(c) = movers.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                    let _ = c.send(true);
                }
            }
            DoorMsg::Forget { session } => roots.forget(session),
            DoorMsg::Welcome { .. } | DoorMsg::Challenge { .. } => {}
        }
    };
    // Without a door nobody can report these transfers: stop them.
    for (_, c) in movers.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        let _ = c.send(true);
    }
    roots.forget_all();
    writer.abort();
    result
}

/// This pool's service, and those of users' directories beneath its root (`door
/// --user-root`), opened when first named and kept for the link's life.
struct Roots {
    base: Arc<Service>,
    within: Mutex<HashMap<String, Arc<Service>>>,
}

impl Roots {
    fn service(&self, dir: Option<&str>) -> Result<Arc<Service>, Failure> {
        let Some(dir) = dir else {
            return Ok(self.base.clone());
        };
        let mut within = self.within.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = within.get(dir) {
            return Ok(s.clone());
        }
        let pool = self.base.pool().within(dir).map_err(|e| {
            let mut f = super::service::pool_failure(&e);
            f.message = format!("no root {dir} on this pool: {}", f.message);
            f
        })?;
        let service = Arc::new(Service::new(Arc::new(pool)));
        within.insert(dir.to_string(), service.clone());
        Ok(service)
    }

    fn forget(&self, session: u64) {
        self.base.forget(session);
        for s in self.within.lock().unwrap_or_else(|e| e.into_inner()).values() {
            s.forget(session);
        }
    }

    fn forget_all(&self) {
        self.base.forget_all();
        for s in self.within.lock().unwrap_or_else(|e| e.into_inner()).values() {
            s.forget_all();
        }
    }
}

/// A grant from the door as this pool's own [`crate::gsi::DataAuth`]: DCAU with the delegated
/// credential, checked against this pool's CA directory, or FTPS PROT P with the door's
/// certificate.
fn open_grant(
    grant: &crate::link::Grant,
    seal_key: &auth::Key,
    trust: Option<&crate::gsi::TrustPaths>,
) -> Result<crate::link::DataAuthRef, Failure> {
    let what = if grant.ftps { "PROT P" } else { "DCAU" };
    let refuse = |why: String| Failure::new(FailureKind::DataConnection, format!("{what} on this pool: {why}"));
    // DCAU checks its peers against the CA directory; FTPS asks for no client certificate.
    let dcau_trust = match (grant.ftps, trust) {
        (true, _) => None,
        (false, Some(trust)) => Some(trust),
        (false, None) => {
            return Err(refuse(
                "no CA directory (pool --ca-dir); the client may send DCAU N".into(),
            ))
        }
    };
    let pem = auth::unseal(seal_key, &grant.sealed).map_err(|e| refuse(e.to_string()))?;
    let auth = match dcau_trust {
        Some(trust) => crate::gsi::Credential::from_pem(&pem)
            .and_then(|c| crate::gsi::DataAuth::new(&c, trust, grant.subject.as_deref(), grant.private)),
        None => crate::gsi::FtpsContext::from_pem(&pem).map(|c| crate::gsi::DataAuth::ftps(&c)),
    }
    .map_err(|e| refuse(e.to_string()))?;
    Ok(crate::link::DataAuthRef(Arc::new(auth)))
}

/// A mover's report as the message the door reads.
fn link_message(id: u64, r: Report) -> PoolMsg {
    match r {
        Report::Event(MoverEvent::Listening(addr)) => PoolMsg::Listening { id, addr },
        Report::Event(MoverEvent::Started { reused }) => PoolMsg::Started { id, reused },
        Report::Event(MoverEvent::Progress { bytes, ranges }) => PoolMsg::Progress {
            id,
            bytes,
            ranges: ranges.map(|r| r.to_marker()),
        },
        Report::Event(MoverEvent::Moved(bytes)) => PoolMsg::Moved { id, bytes },
        Report::Done(result) => PoolMsg::Done { id, result },
    }
}
