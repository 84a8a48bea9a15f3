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

mod data;
mod login;
mod namespace;
mod options;
mod security;
mod timers;
mod transfer;

#[cfg(test)]
mod tests;

pub use data::PassiveStyle;
pub use login::MAX_LOGIN_FAILURES;
pub use namespace::{Scope, StorageDone, StorageOp};
pub use security::{AdatOutcome, Dcau, Prot, Protection};
pub use timers::Timeouts;
pub use transfer::{DataEndpoint, TransferKind, TransferRequest};

use login::allowed_before_login;

use core::net::{IpAddr, SocketAddr};
use std::collections::VecDeque;
use std::time::Duration;

use super::buffers::BufferPolicy;
use super::command::{Command, EretArg, EstoArg, ParseError, TransferMode, TransferType, MAX_FILE_OFFSET};
use super::facts::ListFormat;
use super::feat;
use super::reply::{Code, Reply};
use super::vpath::{self, PathError};
use super::SessionError;
use crate::block::layout::StripeLayout;
use crate::block::Direction;

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
    pub timeouts: Timeouts,
    /// AUTH GSSAPI is offered (the server has a host credential).
    pub gsi: bool,
    /// AUTH TLS is offered (FTPS: the server has a TLS certificate); FEAT lists it.
    pub tls: bool,
    /// USER is refused until the control channel is secured (`--require-tls`, clients not
    /// on loopback).
    pub require_tls: bool,
    /// DCAU A/S can be run on data connections (GSI on, and the pool in this process: the
    /// delegated key never crosses a pool link). FEAT lists DCAU then.
    pub dcau: bool,
}

/// Work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Verify a password; answer with [`Session::handle_auth`] after [`Session::auth_penalty`].
    Authenticate {
        user: String,
        password: String,
    },
    /// Run one ADAT token through the security mechanism; answer with `handle_adat`.
    Adat(Vec<u8>),
    /// FTPS: the `234` is queued; run TLS on the control connection from the next byte on,
    /// and drop any bytes that came in clear after `AUTH TLS`.
    StartTls,
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
    Adat,
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
    reusable: Option<Direction>,
    /// Seconds between perf markers when receiving / when sending (OPTS RETR markers, TREV).
    /// Set by TREV; None: the default for the transfer's mode.
    markers_receive: Option<u64>,
    /// The running transfer reports 112/111 markers.
    markers_due: bool,
    markers_send: Option<u64>,
    rename_from: Option<String>,
    data: DataState,
    epsv_all: bool,
    buffer_size: Option<u64>,
    expected_checksum: Option<(String, String)>,
    pending: Pending,
    aborting: bool,
    closed: bool,
    /// When the last command was handled (time since the session started).
    last_activity: Duration,
    security: security::Security,
    /// PBSZ as agreed (RFC 2228).
    pbsz: Option<u64>,
    dcau: Dcau,
    prot: Prot,
    /// The security exchange brought a delegated credential (DCAU A/S need it).
    delegated: bool,
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
            markers_receive: None,
            markers_due: false,
            markers_send: None,
            rename_from: None,
            data: DataState::None,
            epsv_all: false,
            buffer_size: None,
            expected_checksum: None,
            pending: Pending::None,
            aborting: false,
            closed: false,
            last_activity: Duration::ZERO,
            security: security::Security::Clear,
            pbsz: None,
            dcau: Dcau::None,
            prot: Prot::Clear,
            delegated: false,
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

    fn reply(&mut self, code: Code, text: impl Into<String>) {
        self.push(Reply::new(code, text));
    }

    fn error(&mut self, err: SessionError) {
        self.push(Reply::from(&err));
    }

    /// Queues a reply for an error the driver hit outside any command (shutting down).
    pub fn fail(&mut self, err: SessionError) {
        self.error(err);
    }

    /// Feeds one framed line (without its line end).
    pub fn handle_line(&mut self, line: &[u8]) {
        if self.protected() {
            return self.handle_wrapped_line(line);
        }
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

    /// An ERET/ESTO offset moved on by a pending REST, within the largest file offset.
    fn after_rest(&self, offset: u64) -> Result<u64, SessionError> {
        offset
            .checked_add(self.rest.unwrap_or(0))
            .filter(|&o| o <= MAX_FILE_OFFSET)
            .ok_or(SessionError::OffsetOverflow)
    }

    fn dispatch(&mut self, cmd: Command) -> Result<(), SessionError> {
        use Command as C;
        match cmd {
            C::User(name) => self.cmd_user(name),
            C::Pass(pw) => self.cmd_pass(pw),
            C::Acct(_) => Err(SessionError::Superfluous("ACCT not needed.")),
            C::Auth(mechanism) => self.cmd_auth(&mechanism),
            C::Adat(arg) => self.cmd_adat(&arg),
            C::Protected(..) => Err(SessionError::BadSequence("Wrapped commands need AUTH and ADAT first.")),
            C::Pbsz(arg) => self.cmd_pbsz(&arg),
            C::Prot(arg) => self.cmd_prot(&arg),
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
                self.push(Reply::multi(
                    Code::SYSTEM_STATUS,
                    feat::feat_lines(self.config.advertise_getput, self.config.dcau, self.config.tls),
                ));
                Ok(())
            }
            C::Help(_) => {
                self.push(Reply::multi(Code::HELP, feat::help_lines()));
                Ok(())
            }
            C::Lang(_) => Err(SessionError::NotImplemented("LANG is not supported.")),
            C::Opts(arg) => self.cmd_opts(arg),
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
            C::Abuf(rate) => self.cmd_abuf(rate),
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
                let offset = self.after_rest(offset)?;
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
                let offset = self.after_rest(offset)?;
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
                self.push(Reply::multi(
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
            C::Dcau(arg) => self.cmd_dcau(&arg),
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
            C::Get(p) => self.cmd_get_put(p, true),
            C::Put(p) => self.cmd_get_put(p, false),
            C::Trev(event) => self.cmd_trev(event),
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
}

impl From<PathError> for SessionError {
    fn from(e: PathError) -> Self {
        SessionError::Path(e)
    }
}
