//! The server side of one control connection, sans-IO.
//!
//! A [`Session`] never touches sockets or files. The driver (the door) calls it like this:
//!
//! 1. `Session::new(config)`; drain [`Session::poll_reply`] (the 220 greeting).
//! 2. For every complete line: [`Session::handle_line`], then drain `poll_reply` and
//!    [`Session::poll_action`] and carry the actions out.
//! 3. Each action that needs work (authentication, a passive listener, a storage operation, a
//!    transfer) is answered with the matching `handle_*` call: [`Session::handle_auth`],
//!    [`Session::handle_passive`], [`Session::handle_storage`],
//!    [`Session::handle_transfer_started`] and [`Session::handle_transfer_done`]. Drain again.
//! 4. While a transfer runs the driver feeds only `ABOR` (and holds other lines back until the
//!    transfer is done, so replies stay in command order). [`Session::busy`] says when.
//! 5. After [`Action::Close`] the driver closes the connection.
//!
//! ```text
//!   Greeted --USER--> AwaitPass --PASS--> [Authenticate] --ok--> LoggedIn
//!                         ^                      |fail (penalty)
//!                         +----------------------+
//!   LoggedIn: PASV/EPSV -> [OpenPassive] -> Passive      PORT/EPRT -> Active
//!             RETR/STOR/APPE/ERET/ESTO/LIST/NLST/MLSD -> [Transfer] -> 150 -> 226 | 4xx
//!                                                         ABOR -> [Abort] -> 426, 226
//! ```

use core::net::{IpAddr, SocketAddr};
use std::collections::VecDeque;
use std::time::Duration;

use super::buffers::BufferPolicy;
use super::command::{
    CksmArg, Command, EpsvArg, EretArg, EstoArg, ParseError, RestArg, SiteCommand, TransferMode, TransferType,
    MAX_FILE_OFFSET,
};
use super::facts::{self, Facts, ListFormat};
use super::feat;
use super::reply::{host_port, Code, Reply};
use super::vpath::{self, PathError};
use super::SessionError;
use crate::block::layout::StripeLayout;
use crate::units::parse_rate;

/// Who is logged in and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub user: String,
    pub writable: bool,
}

/// Fixed facts of the connection and server policy.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Whether `USER anonymous`/`ftp` may log in (read-only).
    pub allow_anonymous: bool,
    /// The client's address on the control connection.
    pub peer_ip: IpAddr,
    /// Networks besides the client that PORT/EPRT/SPOR may name (third-party transfers).
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// FEAT lists GETPUT (clients such as globus-url-copy then send GET/PUT).
    pub advertise_getput: bool,
    /// Greeting text of the 220 reply.
    pub banner: String,
    /// Automatic socket-buffer sizing (ABUF, transfers without SBUF).
    pub buffers: BufferPolicy,
}

/// What a data transfer moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// Send `length` bytes (all when `None`) of `path` from `offset`.
    Retrieve {
        path: String,
        offset: u64,
        length: Option<u64>,
    },
    /// Receive into `path`: at `offset` (truncating first when `truncate`), or at the end
    /// when `append`.
    Store {
        path: String,
        offset: u64,
        append: bool,
        truncate: bool,
    },
    /// Send a directory listing of `path` (or the facts of the file `path`).
    Listing { path: String, format: ListFormat },
}

impl TransferKind {
    pub fn is_listing(&self) -> bool {
        matches!(self, TransferKind::Listing { .. })
    }

    /// The path the transfer concerns.
    pub fn path(&self) -> &str {
        match self {
            TransferKind::Retrieve { path, .. }
            | TransferKind::Store { path, .. }
            | TransferKind::Listing { path, .. } => path,
        }
    }
}

/// Where the data connection comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataEndpoint {
    /// Accept on the passive listener the driver opened for the last PASV/EPSV.
    Passive,
    /// Delayed passive or GET/PUT `pasv`: the mover opens a listener once it has the file and
    /// the driver reports it with [`Session::handle_listening`] (127/129 before 150).
    Announce,
    /// Connect to these addresses (PORT/EPRT: one; SPOR: one per stripe).
    Active(Vec<SocketAddr>),
    /// Only the MODE E connections kept from the last transfer in this direction (a bare
    /// GET/PUT after a GET/PUT, where no PASV/PORT state exists).
    Reuse,
}

/// A transfer the driver must run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    pub kind: TransferKind,
    pub endpoint: DataEndpoint,
    /// Socket buffer size from SBUF / SITE *BUFSIZE.
    pub buffer_size: Option<u64>,
    pub access: Access,
    /// For uploads after SCKS: (canonical algorithm, expected lower-case hex).
    pub verify: Option<(String, String)>,
    /// MODE E (extended block) rather than stream mode.
    pub extended: bool,
    /// MODE X (GFD.47): either side may connect in either direction; no connection reuse.
    pub xmode: bool,
    /// MODE E: connections to open per destination address when sending (OPTS RETR).
    pub parallelism: u32,
    /// MODE E: reuse the connections of the previous transfer in the same direction (no
    /// PASV/PORT came in between).
    pub reuse: bool,
    /// MODE E restart (REST ranges): ranges the receiver already holds / the sender may skip,
    /// relative to the transfer's start.
    pub skip: Vec<(u64, u64)>,
    /// Size announced by ALLO: MODE E blocks past it are refused.
    pub size_limit: Option<u64>,
    /// MODE E/X block size when sending (`OPTS RETR BlockSize=N;`); None: the pool's default.
    pub block_size: Option<u64>,
    /// How the stripes of a SPOR transfer divide the file (None: any connection sends any block).
    pub layout: Option<StripeLayout>,
    /// `buffer_size` was chosen automatically (no SBUF; autotuning would fall short).
    pub buffer_auto: bool,
}

impl TransferRequest {
    /// True when the server sends (RETR, ERET, listings).
    pub fn sends(&self) -> bool {
        !matches!(self.kind, TransferKind::Store { .. })
    }
}

/// A filesystem operation the driver must run, relative to the session root (also what a door
/// asks its pools to run: the pool link carries it as it is).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StorageOp {
    /// Facts of one path (SIZE, MDTM, MLST, RNFR).
    Stat(String),
    /// The entries of a directory, or the facts of a file (the door's listings).
    List(String),
    /// Check that `path` is a directory the user may enter (CWD, CDUP).
    ChangeDir(String),
    MakeDir(String),
    RemoveDir(String),
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    /// SITE CHMOD: permission bits of a file or directory (symlinks are not followed).
    SetMode {
        path: String,
        mode: u32,
    },
    /// SITE UTIME, MFMT: modification (and access) time, Unix seconds.
    SetTime {
        path: String,
        mtime: i64,
    },
    /// SITE CHGRP: the group, by name or number.
    SetGroup {
        path: String,
        group: String,
    },
    /// Checksum of a file range (CKSM); `algorithm` is a canonical name.
    Checksum {
        algorithm: String,
        path: String,
        offset: u64,
        length: Option<u64>,
    },
}

/// Result of a successful [`StorageOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageDone {
    Stat(Facts),
    /// Lower-case hex checksum.
    Checksum(String),
    Done,
}

/// Work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Verify a password; answer with [`Session::handle_auth`] after [`Session::auth_penalty`].
    Authenticate {
        user: String,
        password: String,
    },
    /// Open a fresh passive listener (dropping any earlier one); answer with `handle_passive`.
    OpenPassive {
        ipv6: bool,
    },
    /// Drop cached MODE E data connections (PASV/PORT/MODE changed).
    ResetData,
    /// Close the passive listener (a PORT/EPRT replaced it).
    DropPassive,
    Storage(StorageOp),
    Transfer(TransferRequest),
    /// Abort the running transfer; it then ends with [`SessionError::Aborted`].
    Abort,
    /// Close the control connection after the queued replies.
    Close,
}

/// Which command waits for the driver's answer.
#[derive(Debug)]
enum Pending {
    None,
    Auth,
    /// A passive listener is being opened (PASV/EPSV/SPAS).
    Passive {
        style: PassiveStyle,
    },
    Size,
    Mdtm,
    Mlst,
    Rnfr(String),
    Rnto,
    Cwd(String),
    Mkd(String),
    Done(&'static str),
    /// MFMT: the time and the path as given, for the 213 reply.
    Mfmt(String, String),
    Checksum,
    Transfer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveStyle {
    Pasv,
    Epsv,
    Spas,
    /// GET/PUT `pasv`: "127 PORT (...)".
    GetPut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DataState {
    None,
    Passive,
    /// PASV/EPSV/SPAS under `OPTS PASV AllowDelayed=1;`: the listener opens with the transfer.
    Delayed(PassiveStyle),
    Active(Vec<SocketAddr>),
}

/// Default seconds between markers on the receiving side.
pub const DEFAULT_MARKER_SECS: u64 = 5;
/// Most parallel streams a client may ask for.
pub const MAX_PARALLELISM: u32 = 64;
/// MODE E/X block sizes a client may ask for: a header per 4 KiB at least, 64 MiB at most.
pub const MIN_BLOCK_SIZE: u64 = 4096;
pub const MAX_BLOCK_SIZE: u64 = 64 << 20;
/// Stripe layout unit when `StripeLayout=Blocked` comes without a `BlockSize`.
pub const DEFAULT_STRIPE_UNIT: u64 = 1 << 20;

/// Failed logins allowed on one connection before it is closed.
pub const MAX_LOGIN_FAILURES: u32 = 5;
/// Names that log in anonymously. `:globus-mapping:` asks the server to map the user from the
/// security context; over plain `ftp://` there is none, so it is an anonymous login, as
/// globus-gridftp-server does it (and refused when anonymous access is off).
const ANONYMOUS_NAMES: &[&str] = &["anonymous", "ftp", ":globus-mapping:"];

/// Server state of one control connection. See the module doc for the call order.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    user: Option<String>,
    access: Option<Access>,
    login_failures: u32,
    cwd: String,
    ascii: bool,
    mode: TransferMode,
    rest: Option<u64>,
    rest_ranges: Option<Vec<(u64, u64)>>,
    /// GET/PUT `mode=` for one transfer.
    mode_override: Option<TransferMode>,
    /// `OPTS PASV AllowDelayed=1;` is in effect.
    delayed_passive: bool,
    /// The running transfer's listener is still to be announced (127/129).
    announcing: Option<PassiveStyle>,
    allo: Option<u64>,
    parallelism: u32,
    block_size: Option<u64>,
    /// OPTS RETR StripeLayout/BlockSize: how SPOR stripes divide the file.
    layout: Option<StripeLayout>,
    /// The control connection's smoothed RTT in microseconds, as the driver last measured it.
    control_rtt_us: u64,
    /// The rate the client gave with ABUF (later automatic sizing uses it too).
    abuf_rate: Option<f64>,
    /// Direction (sends?) of the last MODE E transfer whose connections may be reused.
    reusable: Option<bool>,
    /// Seconds between perf markers when receiving / when sending (OPTS RETR markers, TREV).
    markers_receive: u64,
    markers_send: Option<u64>,
    rename_from: Option<String>,
    data: DataState,
    epsv_all: bool,
    buffer_size: Option<u64>,
    expected_checksum: Option<(String, String)>,
    pending: Pending,
    aborting: bool,
    closed: bool,
    replies: VecDeque<Reply>,
    actions: VecDeque<Action>,
}

impl Session {
    /// A new session; queues the 220 greeting.
    pub fn new(config: SessionConfig) -> Session {
        let banner = config.banner.clone();
        let mut s = Session {
            config,
            user: None,
            access: None,
            login_failures: 0,
            cwd: "/".into(),
            ascii: false,
            mode: TransferMode::Stream,
            rest: None,
            rest_ranges: None,
            mode_override: None,
            delayed_passive: false,
            announcing: None,
            allo: None,
            parallelism: 1,
            block_size: None,
            layout: None,
            control_rtt_us: 0,
            abuf_rate: None,
            reusable: None,
            markers_receive: DEFAULT_MARKER_SECS,
            markers_send: None,
            rename_from: None,
            data: DataState::None,
            epsv_all: false,
            buffer_size: None,
            expected_checksum: None,
            pending: Pending::None,
            aborting: false,
            closed: false,
            replies: VecDeque::new(),
            actions: VecDeque::new(),
        };
        s.reply(Code::READY, banner);
        s
    }

    /// The next reply to send.
    pub fn poll_reply(&mut self) -> Option<Reply> {
        self.replies.pop_front()
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// True while a command waits for the driver: further lines (other than ABOR) must wait.
    pub fn busy(&self) -> bool {
        !matches!(self.pending, Pending::None)
    }

    /// True while a data transfer is in progress.
    pub fn transferring(&self) -> bool {
        matches!(self.pending, Pending::Transfer)
    }

    /// The logged-in user, if any.
    pub fn access(&self) -> Option<&Access> {
        self.access.as_ref()
    }

    /// How long the driver should wait before delivering a failed login: doubles with each
    /// failure on this connection (1, 2, 4, 8 s).
    pub fn auth_penalty(&self) -> Duration {
        let n = self.login_failures.clamp(1, 4) - 1;
        Duration::from_secs(1 << n)
    }

    fn reply(&mut self, code: Code, text: impl Into<String>) {
        self.replies.push_back(Reply::new(code, text));
    }

    fn error(&mut self, err: SessionError) {
        self.replies.push_back(Reply::from(&err));
    }

    /// Feeds one framed line (without its line end).
    pub fn handle_line(&mut self, line: &[u8]) {
        match Command::parse(line) {
            Ok(cmd) => self.handle_command(cmd),
            Err(ParseError::Empty) => {}
            Err(e) => self.error(SessionError::Parse(e)),
        }
    }

    /// Reports a command line longer than the framer's limit.
    pub fn handle_line_too_long(&mut self) {
        self.error(SessionError::LineTooLong);
    }

    /// Feeds one parsed command.
    pub fn handle_command(&mut self, cmd: Command) {
        if self.closed {
            return;
        }
        if self.transferring() {
            if cmd == Command::Abor {
                if !self.aborting {
                    self.aborting = true;
                    self.actions.push_back(Action::Abort);
                }
            } else {
                // The driver should hold lines back; answer in order anyway.
                self.error(SessionError::BadSequence("A transfer is in progress."));
            }
            return;
        }
        if self.busy() {
            self.error(SessionError::BadSequence("Previous command still in progress."));
            return;
        }
        // REST holds until the next transfer command consumes it (clients send it before or
        // after PASV), so only transfer commands clear it.
        let consumes_rest = matches!(
            cmd,
            Command::Retr(_)
                | Command::Stor(_)
                | Command::Appe(_)
                | Command::Eret(_)
                | Command::Esto(_)
                | Command::Get(_)
                | Command::Put(_)
        );
        let keeps_rnfr = matches!(cmd, Command::Rnto(_));
        let result = if self.access.is_none() && !allowed_before_login(&cmd) {
            Err(SessionError::NotLoggedIn)
        } else {
            self.dispatch(cmd)
        };
        if let Err(e) = result {
            self.error(e);
        }
        if consumes_rest && !self.busy() {
            self.clear_transfer_options();
        }
        if !keeps_rnfr && !matches!(self.pending, Pending::Rnfr(_)) {
            self.rename_from = None;
        }
    }

    fn dispatch(&mut self, cmd: Command) -> Result<(), SessionError> {
        use Command as C;
        match cmd {
            C::User(name) => self.cmd_user(name),
            C::Pass(pw) => self.cmd_pass(pw),
            C::Acct(_) => Err(SessionError::Superfluous("ACCT not needed.")),
            C::Auth(_) | C::Adat(_) | C::Protected(_) | C::Pbsz(_) | C::Prot(_) => Err(SessionError::NotImplemented(
                "GSI security (RFC 2228) is not supported yet; use ftp://.",
            )),
            C::Quit => {
                self.reply(Code::CLOSING, "Goodbye.");
                self.closed = true;
                self.actions.push_back(Action::Close);
                Ok(())
            }
            C::Rein => Err(SessionError::NotImplemented("REIN is not supported.")),
            C::Noop => {
                self.reply(Code::OK, "NOOP command successful.");
                Ok(())
            }
            C::Syst => {
                self.reply(Code::SYSTEM_TYPE, "UNIX Type: L8");
                Ok(())
            }
            C::Feat => {
                self.replies.push_back(Reply::multi(
                    Code::SYSTEM_STATUS,
                    feat::feat_lines(self.config.advertise_getput),
                ));
                Ok(())
            }
            C::Help(_) => {
                self.replies.push_back(Reply::multi(Code::HELP, feat::help_lines()));
                Ok(())
            }
            C::Lang(_) => Err(SessionError::NotImplemented("LANG is not supported.")),
            C::Opts(name, args) => self.cmd_opts(&name, &args),
            C::Site(site) => self.cmd_site(site),
            C::Type(t) => {
                self.ascii = t == TransferType::Ascii;
                let letter = if self.ascii { "A" } else { "I" };
                self.reply(Code::OK, format!("Type set to {letter}."));
                Ok(())
            }
            C::Stru('F') => {
                self.reply(Code::OK, "Structure set to F.");
                Ok(())
            }
            C::Stru(_) => Err(SessionError::ParamNotImplemented(
                "Only file structure (STRU F) is supported.".into(),
            )),
            C::Mode(m) => self.cmd_mode(m),
            C::Pwd => {
                let quoted = self.cwd.replace('"', "\"\"");
                self.reply(Code::PATH_CREATED, format!("\"{quoted}\" is current directory."));
                Ok(())
            }
            C::Cwd(p) => {
                let path = self.resolve(&p)?;
                self.storage(Pending::Cwd(path.clone()), StorageOp::ChangeDir(path));
                Ok(())
            }
            C::Cdup => {
                let path = vpath::parent(&self.cwd);
                self.storage(Pending::Cwd(path.clone()), StorageOp::ChangeDir(path));
                Ok(())
            }
            C::Pasv => self.cmd_passive(PassiveStyle::Pasv),
            C::Epsv(arg) => self.cmd_epsv(arg),
            C::Port(addr) | C::Eprt(addr) => self.cmd_active(vec![addr]),
            C::Spas => self.cmd_passive(PassiveStyle::Spas),
            C::Spor(addrs) => self.cmd_active(addrs),
            C::Allo(n) => {
                self.allo = Some(n);
                self.reply(Code::OK, "ALLO command successful.");
                Ok(())
            }
            C::Rest(arg) => self.cmd_rest(arg),
            C::Sbuf(n) => {
                self.set_buffer(n)?;
                self.reply(Code::OK, "SBUF Command Successful.");
                Ok(())
            }
            C::Abuf(rate) => self.cmd_abuf(rate.as_deref()),
            C::Retr(p) => {
                let path = self.resolve(&p)?;
                let offset = self.rest.unwrap_or(0);
                self.transfer(TransferKind::Retrieve {
                    path,
                    offset,
                    length: None,
                })
            }
            C::Eret(EretArg::Partial { offset, length, path }) => {
                let path = self.resolve(&path)?;
                let offset = offset
                    .checked_add(self.rest.unwrap_or(0))
                    .filter(|&o| o <= MAX_FILE_OFFSET)
                    .ok_or(SessionError::OffsetOverflow)?;
                self.transfer(TransferKind::Retrieve {
                    path,
                    offset,
                    length: Some(length),
                })
            }
            C::Eret(EretArg::Module(_)) | C::Esto(EstoArg::Module(_)) => Err(SessionError::ParamNotImplemented(
                "Only ERET P and ESTO A are supported.".into(),
            )),
            C::Stor(p) => {
                let path = self.writable_path(&p)?;
                let offset = self.rest.unwrap_or(0);
                self.transfer(TransferKind::Store {
                    path,
                    offset,
                    append: false,
                    truncate: self.rest.is_none() && self.rest_ranges.is_none(),
                })
            }
            C::Esto(EstoArg::Adjusted { offset, path }) => {
                let path = self.writable_path(&path)?;
                let offset = offset
                    .checked_add(self.rest.unwrap_or(0))
                    .filter(|&o| o <= MAX_FILE_OFFSET)
                    .ok_or(SessionError::OffsetOverflow)?;
                self.transfer(TransferKind::Store {
                    path,
                    offset,
                    append: false,
                    truncate: false,
                })
            }
            C::Appe(p) => {
                let path = self.writable_path(&p)?;
                self.transfer(TransferKind::Store {
                    path,
                    offset: 0,
                    append: true,
                    truncate: false,
                })
            }
            C::Stou => Err(SessionError::NotImplemented("STOU is not supported; use STOR.")),
            C::List(p) => self.listing(p, ListFormat::List),
            C::Nlst(p) => self.listing(p, ListFormat::Nlst),
            C::Mlsd(p) => self.listing(p, ListFormat::Mlsd),
            C::Mlsr(p) => self.listing(p, ListFormat::Mlsr),
            C::Mlst(p) => {
                let path = self.resolve(p.as_deref().unwrap_or("."))?;
                self.storage(Pending::Mlst, StorageOp::Stat(path));
                Ok(())
            }
            C::Size(p) => {
                let path = self.resolve(&p)?;
                self.storage(Pending::Size, StorageOp::Stat(path));
                Ok(())
            }
            C::Mdtm(p) => {
                let path = self.resolve(&p)?;
                self.storage(Pending::Mdtm, StorageOp::Stat(path));
                Ok(())
            }
            C::Stat(None) => {
                let who = self.access.as_ref().map(|a| a.user.clone()).unwrap_or_default();
                let mode = if self.mode == TransferMode::Stream {
                    "STREAM"
                } else {
                    "EXTENDED"
                };
                let type_ = if self.ascii { "ASCII" } else { "BINARY" };
                self.replies.push_back(Reply::multi(
                    Code::SYSTEM_STATUS,
                    vec![
                        "ringmover status:".into(),
                        format!("Logged in as {who}"),
                        format!("TYPE: {type_}; STRUcture: File; transfer MODE: {mode}"),
                        "End of status".into(),
                    ],
                ));
                Ok(())
            }
            C::Stat(Some(_)) => Err(SessionError::ParamNotImplemented(
                "STAT with a path is not supported; use MLST.".into(),
            )),
            C::Mkd(p) => {
                let path = self.writable_path(&p)?;
                self.storage(Pending::Mkd(path.clone()), StorageOp::MakeDir(path));
                Ok(())
            }
            C::Rmd(p) => {
                let path = self.writable_path(&p)?;
                self.storage(Pending::Done("Directory removed."), StorageOp::RemoveDir(path));
                Ok(())
            }
            C::Dele(p) => {
                let path = self.writable_path(&p)?;
                self.storage(Pending::Done("File deleted."), StorageOp::Delete(path));
                Ok(())
            }
            C::Rnfr(p) => {
                let path = self.writable_path(&p)?;
                self.storage(Pending::Rnfr(path.clone()), StorageOp::Stat(path));
                Ok(())
            }
            C::Rnto(p) => {
                let from = self
                    .rename_from
                    .take()
                    .ok_or(SessionError::BadSequence("RNFR required first."))?;
                let to = self.writable_path(&p)?;
                self.storage(Pending::Rnto, StorageOp::Rename { from, to });
                Ok(())
            }
            C::Abor => {
                self.reply(Code::TRANSFER_COMPLETE, "Abort successful; no transfer in progress.");
                Ok(())
            }
            C::Dcau(arg) if arg.trim().eq_ignore_ascii_case("N") => {
                self.reply(Code::OK, "DCAU N.");
                Ok(())
            }
            C::Dcau(_) => Err(SessionError::ParamNotImplemented("Only DCAU N is supported.".into())),
            C::Cksm(arg) => self.cmd_cksm(arg),
            C::Scks { algorithm, value } => {
                let name = feat::checksum_name(&algorithm).ok_or(SessionError::UnknownChecksum(algorithm))?;
                if value.is_empty() || !value.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(SessionError::BadArgument("Checksum value must be hexadecimal.".into()));
                }
                self.expected_checksum = Some((name.to_string(), value));
                self.reply(Code::OK, "OK.");
                Ok(())
            }
            C::Get(args) => self.cmd_get_put(&args, true),
            C::Put(args) => self.cmd_get_put(&args, false),
            C::Trev(arg) => self.cmd_trev(&arg),
            C::Mfmt(arg) => {
                let (time, path) = arg
                    .split_once(' ')
                    .ok_or_else(|| SessionError::BadArgument("Expected MFMT yyyymmddhhmmss path.".into()))?;
                let mtime = super::command::parse_timeval(time)
                    .ok_or_else(|| SessionError::BadArgument(format!("Invalid time '{time}'.")))?;
                let resolved = self.writable_path(path)?;
                self.storage(
                    Pending::Mfmt(time.to_string(), path.to_string()),
                    StorageOp::SetTime { path: resolved, mtime },
                );
                Ok(())
            }
        }
    }

    fn cmd_cksm(&mut self, arg: CksmArg) -> Result<(), SessionError> {
        let algorithm = feat::checksum_name(&arg.algorithm).ok_or(SessionError::UnknownChecksum(arg.algorithm))?;
        let path = self.resolve(&arg.path)?;
        self.storage(
            Pending::Checksum,
            StorageOp::Checksum {
                algorithm: algorithm.to_string(),
                path,
                offset: arg.offset,
                length: arg.length,
            },
        );
        Ok(())
    }

    fn cmd_user(&mut self, name: String) -> Result<(), SessionError> {
        if self.access.is_some() {
            return Err(SessionError::BadSequence("Already logged in."));
        }
        let anonymous = ANONYMOUS_NAMES.iter().any(|a| a.eq_ignore_ascii_case(&name));
        if anonymous && !self.config.allow_anonymous {
            return Err(SessionError::AnonymousDisabled);
        }
        self.reply(
            Code::NEED_PASSWORD,
            format!("Password required for {}.", display_name(&name)),
        );
        self.user = Some(name);
        Ok(())
    }

    fn cmd_pass(&mut self, password: String) -> Result<(), SessionError> {
        if self.access.is_some() {
            return Err(SessionError::BadSequence("Already logged in."));
        }
        let user = self
            .user
            .take()
            .ok_or(SessionError::BadSequence("Login with USER first."))?;
        if ANONYMOUS_NAMES.iter().any(|a| a.eq_ignore_ascii_case(&user)) {
            self.handle_login(Some(Access {
                user: "anonymous".into(),
                writable: false,
            }));
            return Ok(());
        }
        self.pending = Pending::Auth;
        self.actions.push_back(Action::Authenticate { user, password });
        Ok(())
    }

    /// Answers [`Action::Authenticate`]: `Some` when the password was right.
    pub fn handle_auth(&mut self, result: Option<Access>) {
        if !matches!(self.pending, Pending::Auth) {
            return;
        }
        self.pending = Pending::None;
        self.handle_login(result);
    }

    fn handle_login(&mut self, result: Option<Access>) {
        match result {
            Some(access) => {
                self.reply(
                    Code::LOGGED_IN,
                    format!("User {} logged in.", display_name(&access.user)),
                );
                self.access = Some(access);
            }
            None => {
                self.login_failures += 1;
                if self.login_failures >= MAX_LOGIN_FAILURES {
                    self.error(SessionError::TooManyFailures);
                    self.closed = true;
                    self.actions.push_back(Action::Close);
                } else {
                    self.error(SessionError::LoginIncorrect);
                }
            }
        }
    }

    fn cmd_opts(&mut self, name: &str, args: &str) -> Result<(), SessionError> {
        match name {
            "UTF8" | "UTF-8" => self.reply(Code::OK, "UTF8 mode is always on."),
            "RETR" => {
                let (mut unit, mut partitioned) = (None, None);
                for (key, value) in parse_opts_list(args)? {
                    match key.as_str() {
                        // parallelism=start,min,max: the start value is used.
                        "parallelism" => {
                            let n: u32 = value
                                .split(',')
                                .next()
                                .and_then(|v| v.trim().parse().ok())
                                .filter(|&n| n >= 1)
                                .ok_or_else(|| SessionError::BadArgument(format!("Bad parallelism '{value}'.")))?;
                            self.parallelism = n.min(MAX_PARALLELISM);
                        }
                        "markers" => {
                            let n = value
                                .parse()
                                .map_err(|_| SessionError::BadArgument(format!("Bad markers '{value}'.")))?;
                            self.markers_send = Some(n);
                        }
                        // BlockSize is the stripe layout's unit (any positive size). A unit that
                        // is also a valid MODE E block size sizes the blocks too, so that each
                        // block lies in one unit; others leave the block size at its default.
                        "blocksize" => {
                            let n: u64 = value
                                .trim()
                                .parse()
                                .ok()
                                .filter(|&n| n >= 1)
                                .ok_or_else(|| SessionError::BadArgument(format!("Bad block size '{value}'.")))?;
                            unit = Some(n);
                            self.block_size = (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&n).then_some(n);
                        }
                        "stripelayout" => match value.trim().to_ascii_lowercase().as_str() {
                            "blocked" => partitioned = Some(false),
                            "partitioned" => partitioned = Some(true),
                            _ => return Err(SessionError::BadArgument(format!("Bad stripe layout '{value}'."))),
                        },
                        _ => {}
                    }
                }
                match (partitioned, unit) {
                    (Some(true), _) => self.layout = Some(StripeLayout::Partitioned),
                    (Some(false), u) | (None, u @ Some(_)) => {
                        let unit = u.or(match self.layout {
                            Some(StripeLayout::Blocked(b)) => Some(b),
                            _ => None,
                        });
                        self.layout = Some(StripeLayout::Blocked(unit.unwrap_or(DEFAULT_STRIPE_UNIT)));
                    }
                    (None, None) => {}
                }
                self.reply(Code::OK, "OPTS Command Successful.");
            }
            "MLST" => self.reply(Code::OK, "MLST OPTS Type;Size;Modify;Perm;UNIX.mode;"),
            "PASV" => {
                for (key, value) in parse_opts_list(args)? {
                    if key == "allowdelayed" {
                        self.delayed_passive = value.trim() != "0";
                    }
                }
                self.reply(Code::OK, "OPTS Command Successful.");
            }
            _ => {
                return Err(SessionError::ParamNotImplemented(format!(
                    "OPTS {name} is not supported."
                )))
            }
        }
        Ok(())
    }

    fn cmd_site(&mut self, site: SiteCommand) -> Result<(), SessionError> {
        match site {
            SiteCommand::Help => self
                .replies
                .push_back(Reply::multi(Code::HELP, feat::site_help_lines())),
            SiteCommand::ClientInfo(_) => self.reply(Code::FILE_ACTION_OK, "OK."),
            SiteCommand::BufSize(n) => {
                self.set_buffer(n)?;
                self.reply(Code::OK, "Buffer size set.");
            }
            SiteCommand::Chmod { mode, path } => {
                let path = self.writable_path(&path)?;
                self.storage(
                    Pending::Done("SITE CHMOD command successful."),
                    StorageOp::SetMode { path, mode },
                );
            }
            SiteCommand::Utime { mtime, path } => {
                let path = self.writable_path(&path)?;
                self.storage(
                    Pending::Done("SITE UTIME command successful."),
                    StorageOp::SetTime { path, mtime },
                );
            }
            SiteCommand::Chgrp { group, path } => {
                let path = self.writable_path(&path)?;
                self.storage(
                    Pending::Done("SITE CHGRP command successful."),
                    StorageOp::SetGroup { path, group },
                );
            }
            SiteCommand::Other(name) => {
                return Err(SessionError::ParamNotImplemented(format!(
                    "SITE {name} is not supported."
                )))
            }
        }
        Ok(())
    }

    /// `ABUF [rate]`: twice the bandwidth-delay product of the control RTT, as SBUF would set it.
    fn cmd_abuf(&mut self, rate: Option<&str>) -> Result<(), SessionError> {
        let rate = match rate {
            Some(r) => Some(parse_rate(r).ok_or_else(|| SessionError::BadArgument(format!("Bad rate '{r}'.")))?),
            None => None,
        };
        let (want, fixed) = self.config.buffers.choose(self.control_rtt_us, rate);
        self.buffer_size = fixed;
        self.abuf_rate = rate;
        let shown = rate.unwrap_or(self.config.buffers.target_bps) / 1e6;
        let how = match fixed {
            Some(_) => "fixed".to_string(),
            None => format!("autotuning, up to {}", self.config.buffers.autotune_max),
        };
        self.reply(
            Code::OK,
            format!(
                "ABUF {want} {how} (RTT {:.2} ms, {shown:.0} Mbit/s)",
                self.control_rtt_us as f64 / 1e3
            ),
        );
        Ok(())
    }

    /// The driver's latest measurement of the control connection's RTT (TCP_INFO).
    pub fn set_control_rtt(&mut self, micros: u64) {
        self.control_rtt_us = micros;
    }

    fn set_buffer(&mut self, n: u64) -> Result<(), SessionError> {
        // 0 means "system default" (autotuning); anything else is clamped by the kernel.
        if n > 1 << 30 {
            return Err(SessionError::BadArgument("Buffer size must be at most 1 GiB.".into()));
        }
        self.buffer_size = (n > 0).then_some(n);
        Ok(())
    }

    fn cmd_mode(&mut self, mode: TransferMode) -> Result<(), SessionError> {
        let letter = match mode {
            TransferMode::Stream => "S",
            TransferMode::Extended => "E",
            TransferMode::ExtendedX => "X",
            _ => return Err(SessionError::ParamNotImplemented("Unsupported transfer mode.".into())),
        };
        if self.mode != mode {
            self.reset_data_cache();
        }
        self.mode = mode;
        self.reply(Code::OK, format!("Mode set to {letter}."));
        Ok(())
    }

    /// Forgets cached MODE E connections (RFC 959 data state changed).
    fn reset_data_cache(&mut self) {
        self.reusable = None;
        self.actions.push_back(Action::ResetData);
    }

    fn cmd_trev(&mut self, arg: &str) -> Result<(), SessionError> {
        let mut words = arg.split_whitespace();
        let (event, secs) = (
            words.next().unwrap_or("").to_ascii_uppercase(),
            words.next().and_then(|w| w.parse().ok()),
        );
        match (event.as_str(), secs) {
            ("PERF", Some(n)) => {
                self.markers_receive = n;
                self.markers_send = Some(n);
            }
            ("RESTART", Some(n)) => self.markers_receive = n,
            _ => return Err(SessionError::NotImplemented("Unsupported event.")),
        }
        self.reply(Code::OK, "Command Successful.");
        Ok(())
    }

    fn cmd_passive(&mut self, style: PassiveStyle) -> Result<(), SessionError> {
        if self.epsv_all && style != PassiveStyle::Epsv {
            return Err(SessionError::BadSequence("EPSV ALL in effect; only EPSV is allowed."));
        }
        if style == PassiveStyle::Pasv && self.config.peer_ip.is_ipv6() && !is_v4_mapped(self.config.peer_ip) {
            return Err(SessionError::ProtocolNotSupported);
        }
        self.reset_data_cache();
        if self.delayed_passive {
            //= docs/protocol-notes.md#delayed-passive
            //# PASV | EPSV | SPAS -> 200 Passive delayed.; the address comes as 127/129 with the
            //# transfer command.
            if self.data == DataState::Passive {
                self.actions.push_back(Action::DropPassive);
            }
            self.data = DataState::Delayed(style);
            self.reply(Code::OK, "Passive delayed.");
            return Ok(());
        }
        self.open_passive(style);
        Ok(())
    }

    fn open_passive(&mut self, style: PassiveStyle) {
        self.pending = Pending::Passive { style };
        self.actions.push_back(Action::OpenPassive {
            ipv6: self.config.peer_ip.is_ipv6(),
        });
    }

    fn cmd_epsv(&mut self, arg: EpsvArg) -> Result<(), SessionError> {
        let v6 = self.config.peer_ip.is_ipv6() && !is_v4_mapped(self.config.peer_ip);
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                self.reply(Code::OK, "EPSV ALL accepted.");
                Ok(())
            }
            EpsvArg::Any => self.cmd_passive(PassiveStyle::Epsv),
            EpsvArg::V4 if !v6 => self.cmd_passive(PassiveStyle::Epsv),
            EpsvArg::V6 if v6 => self.cmd_passive(PassiveStyle::Epsv),
            _ => Err(SessionError::ProtocolNotSupported),
        }
    }

    /// Answers [`Action::OpenPassive`] with the address to announce.
    pub fn handle_passive(&mut self, result: Result<SocketAddr, SessionError>) {
        let Pending::Passive { style } = std::mem::replace(&mut self.pending, Pending::None) else {
            return;
        };
        match result {
            Ok(addr) => match self.passive_reply(style, addr, false) {
                Ok(reply) => {
                    self.data = DataState::Passive;
                    self.replies.push_back(reply);
                }
                Err(e) => {
                    self.data = DataState::None;
                    self.error(e)
                }
            },
            Err(e) => {
                self.data = DataState::None;
                self.error(e)
            }
        }
    }

    /// The mover of a delayed-passive or GET/PUT `pasv` transfer listens at `addr`: sends the
    /// 127/129 reply that precedes 150.
    pub fn handle_listening(&mut self, addr: SocketAddr) {
        let Some(style) = self.announcing.take() else { return };
        match self.passive_reply(style, addr, true) {
            Ok(reply) => self.replies.push_back(reply),
            Err(e) => self.error(e),
        }
    }

    /// 227/229 (immediate) or 127/129 (delayed) passive replies; GET/PUT uses dCache's
    /// "127 PORT (...)".
    fn passive_reply(&self, style: PassiveStyle, addr: SocketAddr, delayed: bool) -> Result<Reply, SessionError> {
        let v4 = match addr.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        let (pasv_code, epsv_code) = if delayed {
            (Code::DELAYED_PASV, Code::EXT_DELAYED_PASV)
        } else {
            (Code::PASSIVE, Code::EXT_PASSIVE)
        };
        Ok(match (style, v4) {
            (PassiveStyle::GetPut, Some(ip)) => Reply::new(pasv_code, format!("PORT ({})", host_port(ip, addr.port()))),
            (PassiveStyle::Epsv, _) => Reply::new(
                epsv_code,
                format!("Entering Extended Passive Mode (|||{}|)", addr.port()),
            ),
            (PassiveStyle::Pasv, Some(ip)) => Reply::new(
                pasv_code,
                format!("Entering Passive Mode ({})", host_port(ip, addr.port())),
            ),
            // GFD.20 striped passive: one address line per stripe (we have one stripe).
            (PassiveStyle::Spas, v4) => {
                let line = match v4 {
                    Some(ip) => format!(" {}", host_port(ip, addr.port())),
                    None => format!(" |2|{}|{}|", addr.ip(), addr.port()),
                };
                Reply::multi(
                    epsv_code,
                    vec!["Entering Striped Passive Mode.".into(), line, "End".into()],
                )
            }
            (PassiveStyle::Pasv | PassiveStyle::GetPut, None) => return Err(SessionError::ProtocolNotSupported),
        })
    }

    /// REST, ALLO and GET/PUT mode apply to one transfer command only.
    fn clear_transfer_options(&mut self) {
        self.rest = None;
        self.rest_ranges = None;
        self.allo = None;
        self.mode_override = None;
    }

    /// `GET SP param;[param;...]` / `PUT ...` (GFD.47 §GET/PUT): `path=` (or `file=`), `pasv` or
    /// `port=h,h,h,h,p,p`, `mode=S|E|X`; unknown `key=value` parameters are ignored.
    fn cmd_get_put(&mut self, args: &str, get: bool) -> Result<(), SessionError> {
        let p = parse_get_put(args)?;
        if let Some(mode) = p.mode {
            match mode {
                'S' => self.mode_override = Some(TransferMode::Stream),
                'E' => self.mode_override = Some(TransferMode::Extended),
                _ => self.mode_override = Some(TransferMode::ExtendedX),
            }
        }
        let extended = self.mode_override.unwrap_or(self.mode) == TransferMode::Extended;
        // MODE E rules before any listener opens (the 127 would promise a transfer).
        if extended && get && p.pasv {
            self.mode_override = None;
            return Err(SessionError::PassiveRetrieveInModeE);
        }
        if extended && !get && p.port.is_some() {
            self.mode_override = None;
            return Err(SessionError::ParamNotImplemented(
                "Cannot store in active E mode.".into(),
            ));
        }
        let path = if get {
            self.resolve(&p.path)?
        } else {
            self.writable_path(&p.path)?
        };
        let offset = self.rest.unwrap_or(0);
        let kind = if get {
            TransferKind::Retrieve {
                path,
                offset,
                length: None,
            }
        } else {
            TransferKind::Store {
                path,
                offset,
                append: false,
                truncate: self.rest.is_none() && self.rest_ranges.is_none(),
            }
        };
        if p.pasv {
            if self.config.peer_ip.is_ipv6() && !is_v4_mapped(self.config.peer_ip) {
                return Err(SessionError::ProtocolNotSupported);
            }
            self.reset_data_cache();
            if self.data == DataState::Passive {
                self.actions.push_back(Action::DropPassive);
            }
            return self.transfer_announced(kind, PassiveStyle::GetPut);
        }
        if let Some(addr) = p.port {
            self.check_port_target(&[addr])?;
            if self.data == DataState::Passive {
                self.actions.push_back(Action::DropPassive);
            }
            self.reset_data_cache();
            self.data = DataState::Active(vec![addr]);
        }
        self.transfer(kind)
    }

    /// Bounce protection (`docs/protocol-notes.md#bounce`), for every session: data connections
    /// go back to the client or a trusted network, never to a privileged port.
    fn check_port_target(&self, addrs: &[SocketAddr]) -> Result<(), SessionError> {
        let peers = crate::peers::DataPeers {
            client: self.config.peer_ip,
            trusted: self.config.trusted_networks.clone(),
        };
        if addrs.iter().any(|a| !peers.allows(a.ip()) || a.port() < 1024) {
            return Err(SessionError::PortRefused);
        }
        Ok(())
    }

    fn cmd_active(&mut self, addrs: Vec<SocketAddr>) -> Result<(), SessionError> {
        if self.epsv_all {
            return Err(SessionError::BadSequence("EPSV ALL in effect; only EPSV is allowed."));
        }
        self.check_port_target(&addrs)?;
        if self.data == DataState::Passive {
            self.actions.push_back(Action::DropPassive);
        }
        self.reset_data_cache();
        self.data = DataState::Active(addrs);
        self.reply(Code::OK, "PORT Command successful.");
        Ok(())
    }

    fn cmd_rest(&mut self, arg: RestArg) -> Result<(), SessionError> {
        match arg {
            RestArg::Offset(n) => self.rest = Some(n),
            // In stream mode "0-n" means the first n bytes are done: a stream offset of n.
            RestArg::Ranges(r) if self.mode == TransferMode::Stream && r.len() == 1 && r[0].0 == 0 => {
                self.rest = Some(r[0].1)
            }
            RestArg::Ranges(_) if self.mode == TransferMode::Stream => {
                return Err(SessionError::ParamNotImplemented("Range restart needs MODE E.".into()))
            }
            RestArg::Ranges(r) => self.rest_ranges = Some(r),
        }
        self.reply(
            Code::PENDING_MORE_INFO,
            "Restart Marker OK. Send STORE or RETR to initiate transfer.",
        );
        Ok(())
    }

    fn resolve(&self, arg: &str) -> Result<String, SessionError> {
        vpath::resolve(&self.cwd, arg).map_err(SessionError::Path)
    }

    fn writable_path(&self, arg: &str) -> Result<String, SessionError> {
        if !self.access.as_ref().is_some_and(|a| a.writable) {
            return Err(SessionError::ReadOnly);
        }
        self.resolve(arg)
    }

    fn storage(&mut self, pending: Pending, op: StorageOp) {
        self.pending = pending;
        self.actions.push_back(Action::Storage(op));
    }

    fn listing(&mut self, arg: Option<String>, format: ListFormat) -> Result<(), SessionError> {
        let path = self.resolve(arg.as_deref().unwrap_or("."))?;
        self.transfer(TransferKind::Listing { path, format })
    }

    fn transfer_announced(&mut self, kind: TransferKind, style: PassiveStyle) -> Result<(), SessionError> {
        if style == PassiveStyle::Pasv && self.config.peer_ip.is_ipv6() && !is_v4_mapped(self.config.peer_ip) {
            return Err(SessionError::ProtocolNotSupported);
        }
        self.transfer_to(kind, DataEndpoint::Announce)?;
        self.announcing = Some(style);
        Ok(())
    }

    fn transfer(&mut self, kind: TransferKind) -> Result<(), SessionError> {
        let sends = !matches!(kind, TransferKind::Store { .. });
        let extended = self.mode_override.unwrap_or(self.mode) == TransferMode::Extended;
        let endpoint = match &self.data {
            DataState::None if extended && self.reusable == Some(sends) && !kind.is_listing() => DataEndpoint::Reuse,
            DataState::None => return Err(SessionError::NoDataChannel),
            DataState::Passive => DataEndpoint::Passive,
            DataState::Delayed(style) => {
                let style = *style;
                return self.transfer_announced(kind, style);
            }
            DataState::Active(a) => DataEndpoint::Active(a.clone()),
        };
        self.transfer_to(kind, endpoint)
    }

    fn transfer_to(&mut self, kind: TransferKind, endpoint: DataEndpoint) -> Result<(), SessionError> {
        let sends = !matches!(kind, TransferKind::Store { .. });
        let mode = self.mode_override.take().unwrap_or(self.mode);
        let extended = mode == TransferMode::Extended;
        let xmode = mode == TransferMode::ExtendedX;
        //= docs/protocol-notes.md#mode-e-direction
        //# In MODE E the sender of the data must be the side that opens the TCP connections.
        if extended {
            match (&endpoint, sends) {
                (DataEndpoint::Passive | DataEndpoint::Announce, true) => {
                    return Err(SessionError::PassiveRetrieveInModeE)
                }
                (DataEndpoint::Active(_), false) => {
                    return Err(SessionError::ParamNotImplemented(
                        "Cannot store in active E mode.".into(),
                    ))
                }
                _ => {}
            }
            if matches!(kind, TransferKind::Store { append: true, .. }) {
                return Err(SessionError::ParamNotImplemented(
                    "APPE is not supported in E mode.".into(),
                ));
            }
        }
        let access = self.access.clone().ok_or(SessionError::NotLoggedIn)?;
        let verify = if sends { None } else { self.expected_checksum.take() };
        let reuse = extended && self.reusable == Some(sends);
        let buffer_auto = match self.buffer_size {
            Some(_) => None,
            None => self.config.buffers.automatic_for(self.control_rtt_us, self.abuf_rate),
        };
        self.pending = Pending::Transfer;
        self.aborting = false;
        self.actions.push_back(Action::Transfer(TransferRequest {
            kind,
            endpoint,
            buffer_size: self.buffer_size.or(buffer_auto),
            access,
            verify,
            extended,
            xmode,
            parallelism: self.parallelism,
            reuse,
            skip: self.rest_ranges.clone().unwrap_or_default(),
            size_limit: self.allo,
            block_size: self.block_size,
            layout: self.layout,
            buffer_auto: buffer_auto.is_some(),
        }));
        Ok(())
    }

    /// Seconds between perf markers for a transfer in this direction, if any are due.
    pub fn marker_interval(&self, sends: bool) -> Option<u64> {
        if sends {
            self.markers_send
        } else {
            Some(self.markers_receive)
        }
        .filter(|&n| n > 0)
    }

    /// The data connection is about to be opened or was reused: 150, or 125 on reuse.
    pub fn handle_transfer_started(&mut self, reused: bool) {
        if self.transferring() {
            if reused {
                self.reply(
                    Code::DATA_CONN_REUSED,
                    "Beginning transfer; reusing existing data connection.",
                );
            } else {
                self.reply(Code::FILE_STATUS_OK, "Beginning transfer.");
            }
        }
    }

    /// Progress during a transfer: a 112 perf marker (`now` in tenths of a second since the
    /// Unix epoch, one fractional digit as the Globus client requires) and, when `ranges` is
    /// given and not empty, a 111 range marker (exclusive ends).
    pub fn handle_progress(&mut self, now_tenths: u64, bytes: u64, ranges: Option<String>) {
        if !self.transferring() {
            return;
        }
        self.replies.push_back(Reply::multi(
            Code::PERF_MARKER,
            vec![
                "Perf Marker".into(),
                format!(" Timestamp:  {}.{}", now_tenths / 10, now_tenths % 10),
                " Stripe Index: 0".into(),
                format!(" Stripe Bytes Transferred: {bytes}"),
                " Total Stripe Count: 1".into(),
                "End.".into(),
            ],
        ));
        if let Some(r) = ranges.filter(|r| !r.is_empty()) {
            self.reply(Code::RESTART_MARKER, format!("Range Marker {r}"));
        }
    }

    /// Records whether the MODE E connections of the transfer that just ended were kept, so a
    /// following transfer in the same direction without PASV/PORT reuses them. Call before
    /// [`Session::handle_transfer_done`].
    pub fn handle_connections_kept(&mut self, sends: bool, kept: bool) {
        self.reusable = kept.then_some(sends);
    }

    /// The transfer ended. With an error before [`Session::handle_transfer_started`] only the
    /// error reply goes out (e.g. 550 for a missing file).
    pub fn handle_transfer_done(&mut self, result: Result<u64, SessionError>) {
        if !self.transferring() {
            return;
        }
        self.pending = Pending::None;
        self.clear_transfer_options();
        let aborting = std::mem::take(&mut self.aborting);
        match result {
            Ok(_) => {
                self.reply(Code::TRANSFER_COMPLETE, "Transfer Complete.");
                if aborting {
                    // ABOR arrived after the last byte had gone: answer it too.
                    self.reply(Code::TRANSFER_COMPLETE, "Abort successful; transfer had completed.");
                }
            }
            Err(SessionError::Aborted) => {
                self.error(SessionError::Aborted);
                self.reply(Code::TRANSFER_COMPLETE, "Abort successful.");
            }
            Err(e) => self.error(e),
        }
    }

    /// Answers [`Action::Storage`].
    pub fn handle_storage(&mut self, result: Result<StorageDone, SessionError>) {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        let done = match result {
            Ok(done) => done,
            Err(e) => return self.error(e),
        };
        let writable = self.access.as_ref().is_some_and(|a| a.writable);
        match (pending, done) {
            (Pending::Size, StorageDone::Stat(f)) => {
                if f.kind == facts::EntryKind::Dir {
                    self.error(SessionError::NotAFile)
                } else {
                    self.reply(Code::FILE_STATUS, f.size.to_string())
                }
            }
            (Pending::Mdtm, StorageDone::Stat(f)) => self.reply(Code::FILE_STATUS, facts::timeval(f.mtime)),
            (Pending::Mlst, StorageDone::Stat(f)) => {
                let line = format!(" {}", facts::mlsx_line(&f, writable));
                self.replies.push_back(Reply::multi(
                    Code::FILE_ACTION_OK,
                    vec!["Listing follows:".into(), line, "End.".into()],
                ))
            }
            (Pending::Rnfr(path), StorageDone::Stat(_)) => {
                self.rename_from = Some(path);
                self.reply(Code::PENDING_MORE_INFO, "File exists, ready for destination name.")
            }
            (Pending::Rnto, _) => self.reply(Code::FILE_ACTION_OK, "Rename successful."),
            (Pending::Cwd(path), _) => {
                self.cwd = path;
                self.reply(Code::FILE_ACTION_OK, "CWD command successful.")
            }
            (Pending::Mkd(path), _) => {
                let quoted = path.replace('"', "\"\"");
                self.reply(Code::PATH_CREATED, format!("\"{quoted}\" created."))
            }
            (Pending::Done(text), _) => self.reply(Code::FILE_ACTION_OK, text),
            (Pending::Mfmt(time, path), _) => self.reply(Code::FILE_STATUS, format!("Modify={time}; {path}")),
            (Pending::Checksum, StorageDone::Checksum(hex)) => self.reply(Code::FILE_STATUS, hex),
            (other, done) => {
                // A driver bug: keep the session usable and say so.
                self.error(SessionError::Internal(format!(
                    "unexpected storage result {done:?} for {other:?}"
                )))
            }
        }
    }
}

fn allowed_before_login(cmd: &Command) -> bool {
    use Command as C;
    matches!(
        cmd,
        C::User(_)
            | C::Pass(_)
            | C::Quit
            | C::Feat
            | C::Help(_)
            | C::Syst
            | C::Noop
            | C::Auth(_)
            | C::Adat(_)
            | C::Protected(_)
            | C::Opts(..)
            | C::Abor
    )
}

fn display_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn is_v4_mapped(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

/// Parameters of a GET or PUT command.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GetPutParams {
    pub path: String,
    pub pasv: bool,
    pub port: Option<SocketAddr>,
    pub mode: Option<char>,
}

/// `GET/PUT SP param;[param;...]`, `param = keyword[=value]`, each terminated by `;`
/// (GFD.47 §GET/PUT as dCache and the Globus client use it). `file=` is accepted for `path=`;
/// unknown `key=value` parameters are ignored. A bare word other than `pasv` is refused: it is
/// what a path containing `;` turns into, and guessing would transfer the wrong file.
pub fn parse_get_put(args: &str) -> Result<GetPutParams, SessionError> {
    let args = args.trim();
    if !args.ends_with(';') {
        return Err(SessionError::BadArgument(format!(
            "Cannot parse '{args}': every parameter ends with ';'."
        )));
    }
    let mut p = GetPutParams::default();
    let mut path = None;
    for item in args[..args.len() - 1].split(';') {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (item.trim().to_ascii_lowercase(), None),
        };
        match (key.as_str(), value) {
            ("path" | "file", Some(v)) if !v.is_empty() => path = Some(v.to_string()),
            ("pasv", None) => p.pasv = true,
            ("port", Some(v)) => {
                p.port = Some(super::command::parse_host_port(v).map_err(|e| SessionError::BadArgument(e.to_string()))?)
            }
            ("mode", Some(v)) => {
                p.mode = Some(match v.trim().to_ascii_uppercase().as_str() {
                    "S" => 'S',
                    "E" => 'E',
                    "X" => 'X',
                    _ => return Err(SessionError::BadArgument(format!("Unknown mode '{v}'."))),
                })
            }
            (_, Some(_)) => {}
            (word, None) => {
                return Err(SessionError::BadArgument(format!(
                    "Unexpected '{word}' (paths cannot contain ';')."
                )))
            }
        }
    }
    p.path = path.ok_or_else(|| SessionError::BadArgument("Missing path.".into()))?;
    if p.pasv && p.port.is_some() {
        return Err(SessionError::BadArgument("Cannot use both 'pasv' and 'port'.".into()));
    }
    Ok(p)
}

/// `OPTS RETR` options: `key=value;` items, case-insensitive keys, lenient about a missing final
/// `;` (`docs/protocol-notes.md#opts-lists`). Returns the pairs; rejects items without `=`.
pub fn parse_opts_list(args: &str) -> Result<Vec<(String, String)>, SessionError> {
    let mut out = Vec::new();
    for item in args.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| SessionError::BadArgument(format!("Option '{item}' is not key=value.")))?;
        out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(out)
}

impl From<PathError> for SessionError {
    fn from(e: PathError) -> Self {
        SessionError::Path(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose third-party data connections may use `networks`.
    fn trusting(networks: &str) -> Session {
        let mut config = session().config;
        config.trusted_networks = crate::peers::parse_networks(networks).unwrap();
        Session::new(config)
    }

    fn session() -> Session {
        Session::new(SessionConfig {
            allow_anonymous: true,
            trusted_networks: Vec::new(),
            advertise_getput: true,
            peer_ip: "10.0.0.9".parse().unwrap(),
            banner: "hi".into(),
            buffers: BufferPolicy {
                target_bps: 1e9,
                host_max: 64 << 20,
                autotune_max: 4 << 20,
                automatic: true,
            },
        })
    }

    #[test]
    fn abuf_and_automatic_buffers() {
        let mut s = session();
        s.poll_reply();
        run(&mut s, &[b"USER alice", b"PASS pw"]);
        s.set_control_rtt(50_000);
        let got = run(&mut s, &[b"ABUF", b"ABUF 100mbit", b"ABUF fast"]);
        assert_eq!(got[0], "200 ABUF 12500000 fixed (RTT 50.00 ms, 1000 Mbit/s)\r\n");
        assert_eq!(
            got[1],
            "200 ABUF 1250000 autotuning, up to 4194304 (RTT 50.00 ms, 100 Mbit/s)\r\n"
        );
        assert!(got[2].starts_with("501 "), "{}", got[2]);
        run(&mut s, &[b"PORT 10,0,0,9,4,1"]);
        s.handle_line(b"RETR /f");
        let t = take_transfer(&mut s);
        assert_eq!(
            (t.buffer_size, t.buffer_auto),
            (None, false),
            "1.25 MB: autotuning reaches it"
        );
        s.handle_transfer_done(Ok(0));

        // No SBUF/ABUF: sized automatically only where autotuning (4 MiB) falls short.
        let mut s = session();
        s.poll_reply();
        run(&mut s, &[b"USER alice", b"PASS pw"]);
        for (rtt, want) in [(50_000, Some(12_500_000)), (1_000, None)] {
            s.set_control_rtt(rtt);
            run(&mut s, &[b"PORT 10,0,0,9,4,1"]);
            s.handle_line(b"RETR /f");
            let t = take_transfer(&mut s);
            assert_eq!((t.buffer_size, t.buffer_auto), (want, want.is_some()));
            s.handle_transfer_done(Ok(0));
        }
    }

    /// Feeds lines and returns the wire replies they produced, answering actions as a happy
    /// driver would.
    fn run(s: &mut Session, lines: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for line in lines {
            s.handle_line(line);
            while let Some(a) = s.poll_action() {
                match a {
                    Action::Authenticate { user, password } => {
                        s.handle_auth((password == "pw").then_some(Access { user, writable: true }))
                    }
                    Action::OpenPassive { .. } => s.handle_passive(Ok("192.0.2.1:5001".parse().unwrap())),
                    Action::Storage(_) => s.handle_storage(Ok(StorageDone::Done)),
                    Action::Transfer(t) => {
                        if t.endpoint == DataEndpoint::Announce {
                            s.handle_listening("192.0.2.1:5001".parse().unwrap());
                        }
                        s.handle_transfer_started(false);
                        s.handle_transfer_done(Ok(3));
                    }
                    _ => {}
                }
            }
            while let Some(r) = s.poll_reply() {
                out.push(r.to_wire());
            }
        }
        out
    }

    #[test]
    fn greeting_and_exact_replies_to_bad_input() {
        let mut s = session();
        assert_eq!(s.poll_reply().unwrap().to_wire(), "220 hi\r\n");
        let got = run(
            &mut s,
            &[b"FOO bar", b"RETR \xc3\x28", b"", b"PWD", b"USER", b"PASS x", b"TYPE X"],
        );
        assert_eq!(
            got,
            vec![
                "500 Unknown command 'FOO'.\r\n",
                "500 Command line is not valid UTF-8.\r\n",
                "530 Please login with USER and PASS.\r\n",
                "501 Command requires an argument.\r\n",
                "503 Login with USER first.\r\n",
                // Syntax is checked before the login state.
                "501 Unsupported type 'X'.\r\n",
            ]
        );
        s.handle_line_too_long();
        assert_eq!(s.poll_reply().unwrap().to_wire(), "500 Command line too long.\r\n");
    }

    #[test]
    fn login_passive_and_transfer() {
        let mut s = session();
        s.poll_reply();
        let got = run(
            &mut s,
            &[b"user alice", b"PASS pw", b"PASV", b"EPSV", b"RETR /f", b"QUIT"],
        );
        assert_eq!(
            got,
            vec![
                "331 Password required for alice.\r\n",
                "230 User alice logged in.\r\n",
                "227 Entering Passive Mode (192,0,2,1,19,137)\r\n",
                "229 Entering Extended Passive Mode (|||5001|)\r\n",
                "150 Beginning transfer.\r\n",
                "226 Transfer Complete.\r\n",
                "221 Goodbye.\r\n",
            ]
        );
        assert_eq!(s.poll_action(), None);
    }

    #[test]
    fn wrong_passwords_then_close() {
        let mut s = session();
        s.poll_reply();
        for i in 1..=MAX_LOGIN_FAILURES {
            let got = run(&mut s, &[b"USER bob", b"PASS no"]);
            let last = got.last().unwrap();
            if i < MAX_LOGIN_FAILURES {
                assert_eq!(last, "530 Login incorrect.\r\n");
            } else {
                assert_eq!(last, "421 Too many failed logins; closing connection.\r\n");
            }
        }
        assert_eq!(s.auth_penalty(), Duration::from_secs(8));
        assert!(run(&mut s, &[b"NOOP"]).is_empty(), "closed sessions stay silent");
    }

    #[test]
    fn abort_during_transfer_gives_426_then_226() {
        let mut s = session();
        run(&mut s, &[b"USER anonymous", b"PASS x", b"PASV"]);
        s.handle_line(b"RETR /f");
        assert!(matches!(s.poll_action(), Some(Action::Transfer(_))));
        s.handle_transfer_started(false);
        s.handle_line(b"ABOR");
        assert_eq!(s.poll_action(), Some(Action::Abort));
        s.handle_transfer_done(Err(SessionError::Aborted));
        let replies: Vec<String> = std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect();
        assert_eq!(
            replies,
            vec![
                "150 Beginning transfer.\r\n",
                "426 Transfer aborted.\r\n",
                "226 Abort successful.\r\n"
            ]
        );
    }

    #[test]
    fn anonymous_port_bounce_and_write_refused() {
        let mut s = session();
        s.poll_reply();
        let got = run(
            &mut s,
            &[
                b"USER ftp",
                b"PASS x",
                b"PORT 10,0,0,8,4,1",
                b"PORT 10,0,0,9,0,80",
                b"PORT 10,0,0,9,4,1",
                b"DELE f",
                b"CWD /../x",
            ],
        );
        assert_eq!(
            got[2],
            "501 PORT to a host other than the client, or to a port below 1024, is refused.\r\n"
        );
        assert_eq!(got[3], got[2]);
        assert_eq!(got[4], "200 PORT Command successful.\r\n");
        assert_eq!(got[5], "550 Permission denied: this account is read-only.\r\n");
        assert_eq!(got[6], "550 Path escapes the root directory.\r\n");
    }

    #[test]
    fn globus_mapping_without_a_security_context_is_anonymous() {
        let mut s = session();
        s.poll_reply();
        let got = run(&mut s, &[b"USER :globus-mapping:", b"PASS", b"STOR f"]);
        assert_eq!(got[1], "230 User anonymous logged in.\r\n", "{got:?}");
        assert!(
            got[2].starts_with("550 Permission denied: this account is read-only."),
            "{got:?}"
        );
        let mut config = session().config;
        config.allow_anonymous = false;
        let mut s = Session::new(config);
        let got = run(&mut s, &[b"USER :globus-mapping:"]);
        assert!(got[1].starts_with("530 "), "{got:?}");
    }

    #[test]
    fn port_rules_hold_for_logged_in_users_unless_trusted() {
        let mut s = session();
        s.poll_reply();
        let got = run(
            &mut s,
            &[
                b"USER alice",
                b"PASS pw",
                b"PORT 10,0,0,8,4,1",
                b"EPRT |1|10.0.0.9|25|",
                b"PORT 10,0,0,9,4,1",
            ],
        );
        let got = &got[1..];
        assert!(got[1].starts_with("501 PORT to a host other"), "{got:?}");
        assert!(got[2].starts_with("501 PORT to a host other"), "{got:?}");
        assert_eq!(got[3], "200 PORT Command successful.\r\n");

        let mut s = trusting("10.0.0.0/29");
        let got = run(
            &mut s,
            &[
                b"USER ftp",
                b"PASS x",
                b"PORT 10,0,0,7,4,1",
                b"PORT 10,0,0,8,4,1",
                b"PORT 10,0,0,7,0,80",
            ],
        );
        assert_eq!(got[3], "200 PORT Command successful.\r\n", "{got:?}");
        assert!(got[4].starts_with("501 "), "{got:?}");
        assert!(got[5].starts_with("501 "), "{got:?}");
    }

    #[test]
    fn offsets_past_off_t_are_refused() {
        let mut s = session();
        s.poll_reply();
        let got = run(
            &mut s,
            &[
                b"USER ftp",
                b"PASS x",
                b"REST 18446744073709551615",
                b"REST 9223372036854775808",
                b"REST 0-9223372036854775808",
                b"ALLO 18446744073709551615",
                b"REST 9223372036854775807",
                b"ERET P 1 1 f",
            ],
        );
        for g in &got[2..6] {
            assert!(g.starts_with("501 "), "{got:?}");
        }
        assert!(got[6].starts_with("350 "), "{got:?}");
        assert!(got[7].starts_with("501 Offset too large"), "{got:?}");
    }

    #[test]
    fn stripe_layout_block_size_is_apart_from_the_mode_e_block_size() {
        let mut s = trusting("10.0.0.0/24");
        let got = run(
            &mut s,
            &[
                b"USER alice",
                b"PASS pw",
                b"OPTS RETR StripeLayout=Blocked;BlockSize=15;Parallelism=2,2,2;",
                b"OPTS RETR BlockSize=0;",
                b"OPTS RETR StripeLayout=Diagonal;",
                b"MODE E",
                b"SPOR 10,0,0,1,4,1 10,0,0,2,4,1",
            ],
        );
        assert_eq!(got[3], "200 OPTS Command Successful.\r\n", "{got:?}");
        assert!(got[4].starts_with("501 "), "{got:?}");
        assert!(got[5].starts_with("501 "), "{got:?}");
        s.handle_line(b"RETR /f");
        let t = take_transfer(&mut s);
        assert_eq!(t.layout, Some(StripeLayout::Blocked(15)));
        assert_eq!(t.block_size, None, "a 15-byte unit does not size the MODE E blocks");
        assert_eq!(t.parallelism, 2);
        s.handle_transfer_done(Ok(0));
        run(&mut s, &[b"OPTS RETR BlockSize=65536;", b"SPOR 10,0,0,1,4,1"]);
        s.handle_line(b"RETR /f");
        let t = take_transfer(&mut s);
        assert_eq!(
            (t.layout, t.block_size),
            (Some(StripeLayout::Blocked(65536)), Some(65536))
        );
        s.handle_transfer_done(Ok(0));
        run(&mut s, &[b"OPTS RETR StripeLayout=Partitioned;", b"SPOR 10,0,0,1,4,1"]);
        s.handle_line(b"RETR /f");
        assert_eq!(take_transfer(&mut s).layout, Some(StripeLayout::Partitioned));
    }

    #[test]
    fn opts_retr_is_lenient() {
        assert_eq!(
            parse_opts_list("Parallelism=4,4,4;").unwrap(),
            vec![("parallelism".into(), "4,4,4".into())]
        );
        assert_eq!(
            parse_opts_list("StripeLayout=Blocked;BlockSize=1048576").unwrap().len(),
            2
        );
        assert!(parse_opts_list("garbage;").is_err());
    }

    fn take_transfer(s: &mut Session) -> TransferRequest {
        loop {
            match s.poll_action() {
                Some(Action::Transfer(t)) => return t,
                Some(_) => {}
                None => panic!("no transfer action"),
            }
        }
    }

    #[test]
    fn mode_e_direction_rules_and_reuse() {
        let mut s = session();
        s.poll_reply();
        let got = run(&mut s, &[b"USER alice", b"PASS pw", b"MODE E", b"PASV", b"RETR /f"]);
        assert_eq!(got[2], "200 Mode set to E.\r\n");
        assert_eq!(got[4], "500 Cannot do passive retrieve in E mode.\r\n");
        let got = run(&mut s, &[b"PORT 10,0,0,9,4,1", b"STOR /f", b"APPE /f"]);
        assert_eq!(got[1], "504 Cannot store in active E mode.\r\n");

        // A first RETR opens connections (150); the next one without PORT reuses them (125).
        s.handle_line(b"OPTS RETR Parallelism=4,4,4;");
        s.handle_line(b"RETR /f");
        let t = take_transfer(&mut s);
        assert!(t.extended && !t.reuse && t.parallelism == 4);
        s.handle_transfer_started(t.reuse);
        s.handle_connections_kept(true, true);
        s.handle_transfer_done(Ok(1));
        s.handle_line(b"RETR /g");
        let t = take_transfer(&mut s);
        assert!(t.reuse);
        s.handle_transfer_started(t.reuse);
        s.handle_connections_kept(true, true);
        s.handle_transfer_done(Ok(1));
        let replies: Vec<String> = std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect();
        assert!(replies.iter().any(|r| r == "150 Beginning transfer.\r\n"));
        assert!(replies
            .iter()
            .any(|r| r == "125 Beginning transfer; reusing existing data connection.\r\n"));
        // A new PORT drops the cache.
        run(&mut s, &[b"PORT 10,0,0,9,4,2"]);
        s.handle_line(b"RETR /h");
        assert!(!take_transfer(&mut s).reuse);
    }

    #[test]
    fn bare_put_reuses_the_connections_of_a_put() {
        let mut s = session();
        s.poll_reply();
        run(&mut s, &[b"USER alice", b"PASS pw", b"MODE E"]);
        // Without kept connections a bare PUT has no data channel.
        let got = run(&mut s, &[b"PUT path=/a;"]);
        assert_eq!(got[0], "425 Use PORT or PASV first.\r\n");
        s.handle_line(b"PUT path=/a;pasv;");
        let t = take_transfer(&mut s);
        assert_eq!(t.endpoint, DataEndpoint::Announce);
        s.handle_listening("127.0.0.1:5000".parse().unwrap());
        s.handle_transfer_started(false);
        s.handle_connections_kept(false, true);
        s.handle_transfer_done(Ok(1));
        s.handle_line(b"PUT path=/b;");
        let t = take_transfer(&mut s);
        assert!(t.reuse && t.endpoint == DataEndpoint::Reuse);
        s.handle_transfer_started(true);
        s.handle_connections_kept(false, true);
        s.handle_transfer_done(Ok(1));
        // The other direction has nothing to reuse.
        while s.poll_reply().is_some() {}
        let got = run(&mut s, &[b"GET path=/b;"]);
        assert_eq!(got[0], "425 Use PORT or PASV first.\r\n");
    }

    #[test]
    fn spas_reply_and_spor() {
        // Stripes on other hosts: allowed only from trusted networks.
        let mut s = trusting("10.0.0.0/24");
        s.poll_reply();
        let got = run(
            &mut s,
            &[b"USER alice", b"PASS pw", b"SPAS", b"SPOR 10,0,0,1,4,1 10,0,0,2,4,1"],
        );
        assert_eq!(
            got[2],
            "229-Entering Striped Passive Mode.\r\n 192,0,2,1,19,137\r\n229 End\r\n"
        );
        assert_eq!(got[3], "200 PORT Command successful.\r\n");
        s.handle_line(b"RETR /f");
        let t = take_transfer(&mut s);
        assert_eq!(
            t.endpoint,
            DataEndpoint::Active(vec!["10.0.0.1:1025".parse().unwrap(), "10.0.0.2:1025".parse().unwrap()])
        );
    }

    #[test]
    fn rest_ranges_allo_and_markers() {
        let mut s = session();
        s.poll_reply();
        let got = run(&mut s, &[b"USER alice", b"PASS pw", b"REST 0-10,20-30"]);
        assert_eq!(got[2], "504 Range restart needs MODE E.\r\n");
        run(&mut s, &[b"MODE E", b"PASV", b"REST 0-10,20-30", b"ALLO 100"]);
        s.handle_line(b"STOR /f");
        let t = take_transfer(&mut s);
        assert_eq!(t.skip, vec![(0, 10), (20, 30)]);
        // A range restart keeps what is in place.
        assert!(
            matches!(t.kind, TransferKind::Store { truncate: false, .. }),
            "{:?}",
            t.kind
        );
        assert_eq!(t.size_limit, Some(100));
        assert_eq!(s.marker_interval(false), Some(DEFAULT_MARKER_SECS));
        assert_eq!(s.marker_interval(true), None);
        s.handle_transfer_started(false);
        s.handle_progress(17_643_000_005, 12345, Some("0-12345".into()));
        s.handle_transfer_done(Ok(12345));
        let replies: Vec<String> = std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect();
        assert_eq!(
            replies[1],
            "112-Perf Marker\r\n Timestamp:  1764300000.5\r\n Stripe Index: 0\r\n Stripe Bytes Transferred: 12345\r\n Total Stripe Count: 1\r\n112 End.\r\n"
        );
        assert_eq!(replies[2], "111 Range Marker 0-12345\r\n");
        // The next transfer has no REST ranges left, and starts the file afresh.
        s.handle_line(b"STOR /g");
        let t = take_transfer(&mut s);
        assert!(t.skip.is_empty());
        assert!(
            matches!(t.kind, TransferKind::Store { truncate: true, .. }),
            "{:?}",
            t.kind
        );
    }

    #[test]
    fn trev_and_opts_markers() {
        let mut s = session();
        s.poll_reply();
        let got = run(
            &mut s,
            &[
                b"USER alice",
                b"PASS pw",
                b"TREV PERF 2",
                b"TREV BOGUS 1",
                b"OPTS RETR markers=7;",
            ],
        );
        assert_eq!(got[2], "200 Command Successful.\r\n");
        assert_eq!(got[3], "502 Unsupported event.\r\n");
        assert_eq!(got[4], "200 OPTS Command Successful.\r\n");
        assert_eq!(s.marker_interval(false), Some(2));
        assert_eq!(s.marker_interval(true), Some(7));
        let got = run(
            &mut s,
            &[b"OPTS RETR Parallelism=0,0,0;", b"OPTS RETR Parallelism=1000;"],
        );
        assert_eq!(got[0], "501 Bad parallelism '0,0,0'.\r\n");
        assert_eq!(got[1], "200 OPTS Command Successful.\r\n");
    }

    #[test]
    fn get_put_parameters() {
        let p = parse_get_put("path=/d/f;pasv;").unwrap();
        assert_eq!((p.path.as_str(), p.pasv, p.port, p.mode), ("/d/f", true, None, None));
        let p = parse_get_put("pasv;path=/a b;mode=e;tid=7;").unwrap();
        assert_eq!((p.path.as_str(), p.mode), ("/a b", Some('E')));
        let p = parse_get_put("file=/x;port=127,0,0,1,4,1;").unwrap();
        assert_eq!(p.port, Some("127.0.0.1:1025".parse().unwrap()));
        for bad in [
            "path=/x",
            "pasv;",
            "path=/x;pasv;port=1,2,3,4,5,6;",
            "path=/a;b;",
            "path=/x;mode=Q;",
            "path=;",
        ] {
            assert!(parse_get_put(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn delayed_passive_replies_with_127_before_the_transfer() {
        let mut s = session();
        s.poll_reply();
        let got = run(
            &mut s,
            &[
                b"USER alice",
                b"PASS pw",
                b"OPTS PASV AllowDelayed=1;",
                b"PASV",
                b"RETR /f",
            ],
        );
        assert_eq!(got[3], "200 Passive delayed.\r\n");
        assert_eq!(got[4], "127 Entering Passive Mode (192,0,2,1,19,137)\r\n");
        assert_eq!(got[5], "150 Beginning transfer.\r\n");
        let got = run(&mut s, &[b"GET path=/f;pasv;", b"PUT path=/g;pasv;"]);
        assert_eq!(got[0], "127 PORT (192,0,2,1,19,137)\r\n");
        assert_eq!(got[3], "127 PORT (192,0,2,1,19,137)\r\n");
    }
}
