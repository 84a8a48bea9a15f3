//! Transfers: what the driver is asked to move (RETR, STOR, ERET, ESTO, listings, GET/PUT), restart markers, and the replies while it runs.

use core::net::SocketAddr;

use super::{Access, Action, DataState, PassiveStyle, Pending, Session, DEFAULT_MARKER_SECS};

use crate::block::layout::StripeLayout;
use crate::block::{Direction, Mode, RangeSet};
use crate::protocol::command::{GetPutParams, RestArg, TransferMode};
use crate::protocol::facts::ListFormat;
use crate::protocol::reply::{Code, Reply};
use crate::protocol::SessionError;

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
    /// Stream mode, MODE E, or MODE X (GFD.47: either side may connect in either direction;
    /// no connection reuse).
    pub mode: Mode,
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
    /// Data channel authentication (DCAU) for this transfer's connections.
    pub dcau: super::Dcau,
    /// Data channel protection (PROT): P/S put the data in TLS records.
    pub prot: super::Prot,
}

impl TransferKind {
    /// The server's direction: it sends for RETR, ERET and listings, receives for the rest.
    pub fn direction(&self) -> Direction {
        match self {
            TransferKind::Store { .. } => Direction::Receive,
            _ => Direction::Send,
        }
    }
}

impl TransferRequest {
    pub fn direction(&self) -> Direction {
        self.kind.direction()
    }

    /// True when the server sends (RETR, ERET, listings).
    pub fn sends(&self) -> bool {
        self.direction() == Direction::Send
    }
}

impl Session {
    /// REST, ALLO and GET/PUT mode apply to one transfer command only.
    pub(super) fn clear_transfer_options(&mut self) {
        self.rest = None;
        self.rest_ranges = None;
        self.allo = None;
        self.mode_override = None;
    }

    /// `GET SP param;[param;...]` / `PUT ...` (GFD.47 §GET/PUT): `path=` (or `file=`), `pasv` or
    /// `port=h,h,h,h,p,p`, `mode=S|E|X`; unknown `key=value` parameters are ignored.
    pub(super) fn cmd_get_put(&mut self, p: GetPutParams, get: bool) -> Result<(), SessionError> {
        if p.mode.is_some() {
            self.mode_override = p.mode;
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
            if self.client_is_ipv6() {
                return Err(SessionError::ProtocolNotSupported);
            }
            self.reset_data_cache();
            self.drop_passive();
            return self.transfer_announced(kind, PassiveStyle::GetPut);
        }
        if let Some(addr) = p.port {
            self.check_port_target(&[addr])?;
            self.drop_passive();
            self.reset_data_cache();
            self.data = DataState::Active(vec![addr]);
        }
        self.transfer(kind)
    }

    pub(super) fn cmd_rest(&mut self, arg: RestArg) -> Result<(), SessionError> {
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

    pub(super) fn listing(&mut self, arg: Option<String>, format: ListFormat) -> Result<(), SessionError> {
        let path = self.resolve(arg.as_deref().unwrap_or("."))?;
        self.transfer(TransferKind::Listing { path, format })
    }

    pub(super) fn transfer_announced(&mut self, kind: TransferKind, style: PassiveStyle) -> Result<(), SessionError> {
        self.check_pasv_reachable(style)?;
        self.transfer_to(kind, DataEndpoint::Announce)?;
        self.announcing = Some(style);
        Ok(())
    }

    pub(super) fn transfer(&mut self, kind: TransferKind) -> Result<(), SessionError> {
        let extended = self.mode_override.unwrap_or(self.mode) == TransferMode::Extended;
        let endpoint = match &self.data {
            DataState::None if self.may_reuse(extended, kind.direction()) && !kind.is_listing() => DataEndpoint::Reuse,
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

    /// MODE E connections kept from the last transfer serve the next one in the same
    /// direction.
    fn may_reuse(&self, extended: bool, direction: Direction) -> bool {
        extended && self.reusable == Some(direction)
    }

    pub(super) fn transfer_to(&mut self, kind: TransferKind, endpoint: DataEndpoint) -> Result<(), SessionError> {
        let sends = kind.direction() == Direction::Send;
        let mode = self.mode_override.take().unwrap_or(self.mode);
        let extended = mode == TransferMode::Extended;
        let data_mode = match mode {
            TransferMode::Extended => Mode::E,
            TransferMode::ExtendedX => Mode::X,
            _ => Mode::Stream,
        };
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
        let reuse = self.may_reuse(extended, kind.direction());
        let buffer_auto = match self.buffer_size {
            Some(_) => None,
            None => self.config.buffers.automatic_for(self.control_rtt_us, self.abuf_rate),
        };
        self.pending = Pending::Transfer;
        self.aborting = false;
        self.markers_due = self.marker_interval(kind.direction(), data_mode).is_some();
        self.actions.push_back(Action::Transfer(TransferRequest {
            kind,
            endpoint,
            buffer_size: self.buffer_size.or(buffer_auto),
            access,
            verify,
            mode: data_mode,
            parallelism: self.parallelism,
            reuse,
            skip: self.rest_ranges.clone().unwrap_or_default(),
            size_limit: self.allo,
            block_size: self.block_size,
            layout: self.layout,
            buffer_auto: buffer_auto.is_some(),
            dcau: self.dcau.clone(),
            prot: self.prot,
        }));
        Ok(())
    }

    /// Seconds between perf markers for a transfer in this direction, if any are due. While
    /// receiving they come every 5 s by default in MODE E/X; in stream mode only when asked
    /// for (TREV), as Globus does: plain FTP clients (curl) take a 112 for a failure.
    pub fn marker_interval(&self, direction: Direction, mode: Mode) -> Option<u64> {
        match direction {
            Direction::Send => self.markers_send,
            Direction::Receive => self
                .markers_receive
                .or((mode != Mode::Stream).then_some(DEFAULT_MARKER_SECS)),
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
    pub fn handle_progress(&mut self, now_tenths: u64, bytes: u64, ranges: Option<RangeSet>) {
        if !self.transferring() || !self.markers_due {
            return;
        }
        self.push(Reply::multi(
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
            self.reply(Code::RESTART_MARKER, format!("Range Marker {}", r.to_marker()));
        }
    }

    /// Records whether the MODE E connections of the transfer that just ended were kept, so a
    /// following transfer in the same direction without PASV/PORT reuses them. Call before
    /// [`Session::handle_transfer_done`].
    pub fn handle_connections_kept(&mut self, direction: Direction, kept: bool) {
        self.reusable = kept.then_some(direction);
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
}
