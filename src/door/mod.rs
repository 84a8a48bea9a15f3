//! The door: accepts control connections (tokio), runs one sans-IO session per connection and
//! hands data movement to the pool. `serve` runs a door with an embedded pool.

pub mod auth;
mod connection;
mod convert;
pub mod guard;
pub mod pools;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::protocol::Reply;
use pools::PoolManager;

/// Door policy.
#[derive(Clone, Debug)]
pub struct DoorConfig {
    /// Whether anonymous (read-only) logins are allowed.
    pub anonymous: bool,
    /// Address announced in 227 replies instead of the control connection's local address.
    pub data_address: Option<IpAddr>,
    pub max_sessions: usize,
    /// Most control sessions one client address may hold.
    pub max_sessions_per_address: usize,
    /// Close connections that have not logged in after this long.
    pub login_timeout: Duration,
    /// Close connections idle (no complete command line) for this long.
    pub idle_timeout: Duration,
    /// How long transfers in flight may run after SIGTERM.
    pub shutdown_grace: Duration,
    pub banner: String,
    /// Automatic socket-buffer sizing (ABUF; transfers without SBUF).
    pub buffers: crate::protocol::buffers::BufferPolicy,
    /// Networks besides each session's client that data connections may come from or go to
    /// (third-party transfers).
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Whether FEAT lists GETPUT.
    pub getput: GetPut,
    /// GSI logins (`AUTH GSSAPI`), when a host credential is configured.
    pub gsi: Option<Arc<GsiConfig>>,
    /// FTPS (`AUTH TLS`), when a TLS certificate is configured.
    pub tls: Option<Arc<crate::gsi::FtpsContext>>,
    /// Refuse USER before AUTH TLS or GSI on connections not from loopback.
    pub require_tls: bool,
    /// Each logged-in user's own root (`--user-root`); anonymous users keep the served root.
    pub user_roots: Option<Arc<UserRoots>>,
    /// Congestion control of the data connections the door relays (plain PASV/PORT with
    /// remote pools).
    pub congestion: crate::pool::tcp::Congestion,
}

/// Per-user roots: a directory template with `{user}`.
pub struct UserRoots {
    pub template: String,
    pub base: UserRootBase,
}

/// Where the users' directories are.
pub enum UserRootBase {
    /// `serve`: absolute directories, served with the embedded pool's engine.
    Embedded(Arc<crate::pool::Pool>),
    /// `door`: a directory beneath each remote pool's root, which the pool opens as the
    /// session's root.
    Pools,
}

impl std::fmt::Debug for UserRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRoots").field("template", &self.template).finish()
    }
}

impl UserRoots {
    /// The pools of `user`'s own root (`pools`: the door's); an error when the name cannot
    /// be a directory name or (embedded) the directory cannot be opened: the login is then
    /// refused. For remote pools the session checks the directory on every pool.
    pub(crate) fn pools_for(&self, user: &str, pools: &PoolManager) -> Result<Arc<PoolManager>, String> {
        let plain = !user.is_empty()
            && user != "."
            && user != ".."
            && !user.contains(['/', '\0'])
            && !user.chars().any(char::is_control);
        if !plain {
            return Err(format!("the user name {user:?} cannot name a directory"));
        }
        let dir = self.template.replace("{user}", user);
        match &self.base {
            UserRootBase::Embedded(base) => {
                let path = std::path::PathBuf::from(&dir);
                let pool = base.with_root(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let service = crate::pool::Service::new(Arc::new(pool));
                Ok(Arc::new(PoolManager::embedded(Arc::new(service))))
            }
            UserRootBase::Pools => Ok(Arc::new(pools.within(&dir))),
        }
    }
}

/// What GSI logins need: the host credential with the trust roots, and the grid-mapfile.
#[derive(Debug)]
pub struct GsiConfig {
    pub credentials: crate::gsi::ServerCredentials,
    /// The CA directory, for data channel authentication too.
    pub trust: crate::gsi::TrustPaths,
    /// Refuse logins whose proxy chain holds a limited proxy.
    pub refuse_limited: bool,
    pub gridmap: crate::gsi::Gridmap,
}

/// Whether FEAT advertises GETPUT. globus-url-copy then uses GET/PUT for every transfer, and
/// its GET/PUT branch for pipelined third-party copies (`-pp`) is broken in the client (see the
/// README). GET/PUT lets a client reach a remote pool directly; with the pool in the door's own
/// process it gains nothing over PASV/PORT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GetPut {
    /// Advertise with remote pools (`door`), not with the embedded pool (`serve`).
    #[default]
    Auto,
    Always,
    Never,
}

impl GetPut {
    fn advertised(self, pools: &PoolManager) -> bool {
        match self {
            GetPut::Always => true,
            GetPut::Never => false,
            GetPut::Auto => pools.local().is_none(),
        }
    }
}

impl Default for DoorConfig {
    fn default() -> Self {
        DoorConfig {
            anonymous: true,
            data_address: None,
            max_sessions: 256,
            max_sessions_per_address: 32,
            login_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            banner: format!("ringmover {} GridFTP server ready.", env!("CARGO_PKG_VERSION")),
            buffers: Default::default(),
            trusted_networks: Vec::new(),
            getput: GetPut::Auto,
            gsi: None,
            tls: None,
            require_tls: false,
            user_roots: None,
            congestion: Default::default(),
        }
    }
}

/// What a reload (SIGHUP) may replace: each session keeps the one it started with.
pub struct Live {
    pub users: auth::Users,
    pub gsi: Option<Arc<GsiConfig>>,
    pub tls: Option<Arc<crate::gsi::FtpsContext>>,
}

/// Replaces a running door's [`Live`] settings; sessions already open are untouched.
#[derive(Clone)]
pub struct Reloader(Arc<DoorShared>);

impl Reloader {
    pub fn replace(&self, live: Live) {
        *self.0.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }

    pub fn current(&self) -> Arc<Live> {
        self.0.live()
    }
}

/// What every connection of a door shares.
pub(crate) struct DoorShared {
    pub(crate) config: DoorConfig,
    /// Where the files and movers are: the embedded pool or remote ones.
    pub(crate) pools: Arc<PoolManager>,
    live: std::sync::RwLock<Arc<Live>>,
    /// FEAT lists GETPUT (the configured [`GetPut`] applied to this backend).
    pub(crate) advertise_getput: bool,
    pub(crate) guard: Arc<guard::AddressGuard>,
    /// Password checks (Argon2, ~19 MiB and tens of ms each) running at once.
    pub(crate) verifiers: Semaphore,
}

impl DoorShared {
    /// The settings a new session starts with.
    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A door bound to its control port.
pub struct Door {
    listener: TcpListener,
    shared: Arc<DoorShared>,
}

impl Door {
    /// Binds the control port.
    pub async fn bind(
        listen: SocketAddr,
        config: DoorConfig,
        pools: Arc<PoolManager>,
        users: auth::Users,
    ) -> std::io::Result<Door> {
        let listener = TcpListener::bind(listen).await?;
        let advertise_getput = config.getput.advertised(&pools);
        let live = Live {
            users,
            gsi: config.gsi.clone(),
            tls: config.tls.clone(),
        };
        let shared = Arc::new(DoorShared {
            config: config.clone(),
            pools,
            live: std::sync::RwLock::new(Arc::new(live)),
            guard: Arc::new(guard::AddressGuard::new(config.max_sessions_per_address)),
            verifiers: Semaphore::new(verifier_count()),
            advertise_getput,
        });
        Ok(Door { listener, shared })
    }

    /// A handle that replaces the users, GSI and TLS settings while the door runs.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.shared.clone())
    }

    /// The bound control address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true; then stops accepting, lets sessions finish their
    /// transfers for the grace period and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.shared.config.max_sessions));
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "refused: max-sessions reached");
                        refuse(stream, "Too many sessions; try again later.");
                        continue;
                    };
                    let Some(slot) = self.shared.guard.admit(peer.ip()) else {
                        tracing::warn!(%peer, "refused: max-sessions-per-address reached");
                        refuse(stream, "Too many sessions from your address; try again later.");
                        continue;
                    };
                    let shared = self.shared.clone();
                    let rx = shutdown.clone();
                    sessions.spawn(async move {
                        let _open = crate::metrics::Active::new(crate::metrics::get().sessions_active.clone());
                        match connection::Connection::new(shared, stream, rx) {
                            Ok(c) => c.run().await,
                            Err(e) => tracing::debug!(%peer, "connection setup failed: {e}"),
                        }
                        drop((permit, slot));
                    });
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(self.listener);
        let grace = self.shared.config.shutdown_grace;
        tracing::info!(sessions = sessions.len(), ?grace, "shutting down: no new sessions");
        let drain = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(left = sessions.len(), "grace period over; closing remaining sessions");
            sessions.abort_all();
        }
    }
}

/// Answers 421 and closes, off the accept loop.
fn refuse(stream: tokio::net::TcpStream, text: &'static str) {
    let reply = Reply::new(crate::protocol::Code::NOT_AVAILABLE, text);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.to_wire().as_bytes())).await;
    });
}

/// Password checks allowed at once: one per CPU, at most four (each holds ~19 MiB).
fn verifier_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}
