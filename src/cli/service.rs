//! What `serve`, `door` and `pool` share as long-running services: the log level and format,
//! the transfer log, and SIGHUP (re-read the config file's log level, reopen the transfer log,
//! and let the role reload what it can).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// The target of the one line each finished transfer logs.
pub const TRANSFER_TARGET: &str = "ringmover::transfer";

#[derive(Debug, Args, Default)]
pub struct ServiceArgs {
    /// Log filter: error, warn, info, debug or trace, or per module (info,ringmover::door=debug);
    /// re-read from --config on SIGHUP; -v and RUST_LOG win over it [default: info].
    #[arg(long, value_name = "FILTER", value_parser = log_filter)]
    pub log_level: Option<String>,
    /// Log format on stderr and in --transfer-log: text, or json (one object per line, the
    /// event's fields as keys) [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Also append each finished transfer's log line to FILE (reopened on SIGHUP, for logrotate).
    #[arg(long, value_name = "FILE")]
    pub transfer_log: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g. 127.0.0.1:9811
    /// [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A file holding a token scrapers must send (`Authorization: Bearer TOKEN`; Prometheus:
    /// authorization.credentials_file).
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
}

/// Where and for whom to serve metrics, checked.
pub struct MetricsPlan {
    addr: std::net::SocketAddr,
    access: crate::metrics::http::Access,
}

impl ServiceArgs {
    /// The metrics endpoint, its token file read; None when off.
    pub fn metrics(&self) -> Result<Option<MetricsPlan>> {
        let Some(addr) = self.metrics_listen else {
            if self.metrics_token_file.is_some() {
                anyhow::bail!("--metrics-token-file needs --metrics-listen");
            }
            return Ok(None);
        };
        let token = match &self.metrics_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--metrics-token-file {}", path.display()))?;
                let token = text.trim().to_string();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    anyhow::bail!(
                        "--metrics-token-file {}: expected one token on one line",
                        path.display()
                    );
                }
                Some(Arc::new(token))
            }
            None => None,
        };
        Ok(Some(MetricsPlan {
            addr,
            access: crate::metrics::http::Access { token },
        }))
    }
}

impl MetricsPlan {
    /// Binds and serves in the background (inside the runtime).
    pub async fn start(self, shutdown: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        let open = self.access.token.is_none() && !self.addr.ip().is_loopback();
        let bound = crate::metrics::http::start(self.addr, self.access, shutdown)
            .await
            .map_err(|e| super::bind_error("--metrics-listen", self.addr, e))?;
        tracing::info!(addr = %bound, "metrics listening (GET /metrics)");
        if open {
            tracing::warn!(
                addr = %bound,
                "metrics are open to anyone who reaches this address: give --metrics-token-file or a loopback address"
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn log_filter(s: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A file appended to, reopened on request (after logrotate moved it away).
struct Reopen {
    path: PathBuf,
    file: Mutex<File>,
}

impl Reopen {
    fn open(path: &Path) -> std::io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn reopen(&self) -> std::io::Result<()> {
        let fresh = Reopen::open(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

/// Writes each formatted event to the current file.
struct ReopenWriter(Arc<Reopen>);

impl Write for ReopenWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.file.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for ReopenWriterMaker {
    type Writer = ReopenWriter;

    fn make_writer(&'a self) -> ReopenWriter {
        ReopenWriter(self.0.clone())
    }
}

struct ReopenWriterMaker(Arc<Reopen>);

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// One formatting layer in the chosen format.
fn formatted<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    }
}

/// The installed logging, with what SIGHUP changes.
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    /// -v or RUST_LOG chose the level: the config file's does not replace it.
    fixed: bool,
    transfer: Option<Arc<Reopen>>,
}

impl Logging {
    /// Installs the subscriber for a service.
    pub fn init(verbose: u8, args: &ServiceArgs) -> Result<Logging> {
        let (filter, fixed) = match (EnvFilter::try_from_default_env(), verbose) {
            (Ok(f), _) => (f, true),
            (Err(_), 1) => (EnvFilter::new("debug"), true),
            (Err(_), v) if v > 1 => (EnvFilter::new("trace"), true),
            _ => (EnvFilter::new(args.log_level.as_deref().unwrap_or("info")), false),
        };
        let (filter, handle) = reload::Layer::new(filter);
        let format = args.log_format.unwrap_or_default();
        let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
        let mut layers = vec![formatted(format, std::io::stderr, ansi).with_filter(filter).boxed()];
        let transfer = match &args.transfer_log {
            Some(path) => {
                let file = Reopen::open(path).with_context(|| format!("--transfer-log {}", path.display()))?;
                let reopen = Arc::new(Reopen {
                    path: path.clone(),
                    file: Mutex::new(file),
                });
                let only_transfers = filter_fn(|m| m.target() == TRANSFER_TARGET);
                let layer = formatted(format, ReopenWriterMaker(reopen.clone()), false);
                layers.push(layer.with_filter(only_transfers).boxed());
                Some(reopen)
            }
            None => None,
        };
        let _ = tracing_subscriber::registry().with(layers).try_init();
        Ok(Logging {
            filter: handle,
            fixed,
            transfer,
        })
    }

    /// SIGHUP: the new log level (unless -v or RUST_LOG chose it) and a fresh transfer-log file.
    pub fn reload(&self, args: &ServiceArgs) {
        if !self.fixed {
            let level = args.log_level.as_deref().unwrap_or("info");
            if let Err(e) = self.filter.reload(EnvFilter::new(level)) {
                tracing::warn!("reload: log level not changed: {e}");
            }
        }
        if let Some(t) = &self.transfer {
            if let Err(e) = t.reopen() {
                tracing::error!(path = %t.path.display(), "reload: transfer log not reopened: {e}");
            }
        }
    }
}

/// Runs `reload` (off the control threads) on every SIGHUP; call inside the runtime.
pub fn on_hangup(reload: impl Fn() + Send + Sync + 'static) {
    use tokio::signal::unix::{signal, SignalKind};
    let reload = Arc::new(reload);
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("SIGHUP cannot be caught here: no reloads");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let reload = reload.clone();
            let _ = tokio::task::spawn_blocking(move || reload()).await;
        }
    });
}

/// This process's command line, re-read (with its config file) for a reload.
pub fn reread() -> Result<super::Cmd, String> {
    let argv = super::normalize_args(std::env::args_os());
    super::config::parse(argv)
        .map(|cli| cli.command)
        .map_err(|e| e.to_string().trim_end().to_string())
}

/// SIGHUP for a door (`serve` or `door`): the log level, the transfer log, the users file, the
/// grid-mapfile and the GSI and FTPS certificates, re-read; new sessions get them, running
/// sessions and transfers keep theirs. A file that fails to load leaves everything as it was.
pub fn reload_door(logging: &Logging, door: &crate::door::Reloader) {
    let (service, users, gsi) = match reread() {
        Ok(super::Cmd::Serve(a)) => (a.service, a.users, a.gsi),
        Ok(super::Cmd::Door(a)) => (a.service, a.users, a.gsi),
        Ok(_) => return,
        Err(e) => {
            tracing::error!("reload refused, running settings kept: {e}");
            return;
        }
    };
    logging.reload(&service);
    let live = (|| -> Result<crate::door::Live> {
        let users = match &users {
            Some(p) => crate::door::auth::Users::load(p)?,
            None => crate::door::auth::Users::empty(),
        };
        gsi.live(users)
    })();
    match live {
        Ok(live) => {
            let summary = format!(
                "users {}, GSI {}, FTPS {}",
                live.users.len(),
                if live.gsi.is_some() { "on" } else { "off" },
                if live.tls.is_some() { "on" } else { "off" }
            );
            door.replace(live);
            tracing::info!("reloaded on SIGHUP: {summary}; running sessions keep their settings");
        }
        Err(e) => tracing::error!("reload refused, running settings kept: {e:#}"),
    }
}

/// SIGHUP for a pool: the log level.
pub fn reload_pool(logging: &Logging) {
    match reread() {
        Ok(super::Cmd::Pool(a)) => {
            logging.reload(&a.service);
            tracing::info!("reloaded on SIGHUP: log level");
        }
        Ok(_) => {}
        Err(e) => tracing::error!("reload refused, running settings kept: {e}"),
    }
}
