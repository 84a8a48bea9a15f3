//! One control session moving files between a server and local paths, one after another.
//! A transfer's commands are written together and their replies read in order; MODE, SBUF
//! and OPTS go out only when they change; with `-fast` MODE E connections stay open for the
//! next file; with `-pp` the next file's commands go out before this file's 226 is read.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::control::Control;
use super::progress::FileProgress;
use super::url::FtpUrl;
use super::{ClientError, CopyOptions, Mode};
use crate::block::RangeSet;
use crate::link::DataAuthRef;
use crate::pool::mover::{self, MoverChannel, MoverEvent, MoverPlan, MoverSpec};
use crate::pool::{MoverRequest, Pool};
use crate::protocol::client::{G2Channel, Request, Restart, TransferReply};

/// Seconds between progress events from our own movers (the bar and restart ranges).
const PROGRESS_TICK: Duration = Duration::from_millis(500);

/// One file between a server and a local path.
#[derive(Clone, Debug)]
pub struct FileJob {
    pub remote: FtpUrl,
    pub local: String,
    pub download: bool,
}

/// What is known to be in place at the destination: the ranges a restart may skip.
#[derive(Default, Debug)]
pub struct Resume {
    pub done: RangeSet,
    /// The server accepted the transfer (150/125/127): a partial destination is ours.
    pub started: bool,
}

impl Resume {
    /// The bytes from 0 that are in place (what stream mode can resume after).
    pub fn prefix(&self) -> u64 {
        match self.done.ranges().first() {
            Some(&(0, end)) => end,
            _ => 0,
        }
    }
}

/// A finished transfer.
#[derive(Debug)]
pub struct Moved {
    pub bytes: u64,
    pub streams: usize,
    /// It ran on the MODE E connections of the previous one (`-fast`).
    pub reused: bool,
}

/// MODE E connections kept after a transfer (`-fast`), with how they were made.
struct Kept {
    download: bool,
    /// Made by GET/PUT: the next transfer uses their bare form (no PASV/PORT state exists).
    g2: bool,
    conns: Vec<TcpStream>,
    channel: MoverChannel,
}

/// How the data connections of an issued transfer will be made.
enum Channel {
    /// We listen; the server connects (PORT or GET/PUT `port=`).
    Listen(Arc<TcpListener>),
    /// The address comes in the 227 reply to PASV (or a 127 if the server delays it).
    Pasv,
    /// The address comes in a 127 reply (GET/PUT `pasv`, delayed passive).
    Await127,
    /// The connections of the previous transfer (no PASV/PORT sent).
    Reuse(MoverChannel, Vec<TcpStream>),
}

/// A reply expected before the transfer's own ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// To a setting, PORT or REST; `must`: a 4xx/5xx fails the transfer.
    Ok { must: bool },
    /// To PASV: the data address (or `200 Passive delayed.`).
    Pasv,
}

/// A transfer whose commands are written and whose replies are still to be read.
pub struct Issued {
    job: FileJob,
    g2: bool,
    expect: Vec<Expect>,
    channel: Channel,
    request: MoverRequest,
    skip: Vec<(u64, u64)>,
}

impl Issued {
    pub fn job(&self) -> &FileJob {
        &self.job
    }
}

/// A logged-in session and what it has told the server so far.
pub struct Session {
    pub control: Control,
    getput: bool,
    mode: Mode,
    sbuf: Option<u64>,
    opts: Option<String>,
    delayed: bool,
    trev: bool,
    kept: Option<Kept>,
    /// The socket-buffer size the server chose for ABUF (used on our sockets too).
    abuf: Option<u64>,
    /// gsiftp:// with DCAU: how our data connections authenticate.
    data_auth: Option<DataAuthRef>,
}

impl Session {
    pub async fn open(url: &FtpUrl, o: &CopyOptions) -> Result<Session, ClientError> {
        let mut control = Control::connect(url).await?;
        let features = control.features().await?;
        let getput = features.iter().any(|f| f == "GETPUT");
        // Without -tcp-bs, let a server that offers ABUF size the buffers from the RTT.
        let abuf = if o.abuf && o.tcp_bs.is_none() && features.iter().any(|f| f == "ABUF") {
            let text = control.expect_ok(Some(&Request::Abuf.to_string())).await?.text;
            // "200 ABUF <bytes> fixed ..." fixes our buffers too; "autotuning" leaves them.
            let words: Vec<&str> = text.split_whitespace().collect();
            let size = match words.as_slice() {
                [_, _, n, "fixed", ..] => n.parse::<u64>().ok(),
                _ => None,
            };
            tracing::info!(reply = %text, "ABUF");
            size
        } else {
            None
        };
        let data_auth = data_channel_auth(&mut control, &features, o).await?;
        Ok(Session {
            data_auth,
            control,
            getput,
            mode: Mode::Stream,
            sbuf: None,
            opts: None,
            delayed: false,
            trev: false,
            kept: None,
            abuf,
        })
    }

    /// Writes the commands of one transfer (nothing is read).
    pub async fn issue(
        &mut self,
        pool: &Pool,
        job: FileJob,
        o: &CopyOptions,
        resume: &Resume,
    ) -> Result<Issued, ClientError> {
        let mut lines = Vec::new();
        let mut expect = Vec::new();
        self.settings(o, job.download, &mut lines, &mut expect);
        let partial = o.offset.is_some() || o.length.is_some();
        let resuming = !partial && !resume.done.is_empty();
        let path = &job.remote.path;
        let off = o.offset.unwrap_or(0);
        // Where the local file is written from, and what the sender may skip: ERET P sends
        // offsets relative to `off`; REST in stream mode starts the data at `off`; MODE E/X
        // restart ranges keep absolute offsets.
        let first = |end| {
            let mut r = RangeSet::new();
            r.insert(0, end);
            Restart::Ranges(r)
        };
        let (rest, local_offset) = match (job.download, o.length, o.mode) {
            (true, Some(_), _) => (None, off),
            (true, None, Mode::Stream) if off > 0 => (Some(Restart::Offset(off)), off),
            (true, None, _) if off > 0 => (Some(first(off)), 0),
            (_, _, Mode::Stream) if resuming => (Some(Restart::Offset(resume.prefix())), resume.prefix()),
            (_, _, _) if resuming => (Some(Restart::Ranges(resume.done.clone())), 0),
            _ => (None, 0),
        };
        let verb = match (job.download, o.length) {
            (true, Some(length)) => Request::EretPartial {
                offset: off,
                length,
                path,
            },
            (true, None) => Request::Retr(path),
            (false, _) => Request::Stor(path),
        };
        let getput = self.getput && o.g2 && rest.is_none() && !partial && !o.delayed_passive;
        let g2 = |channel| Request::GetPut {
            get: job.download,
            path,
            channel,
        };
        let reuse = self
            .kept
            .take()
            .filter(|k| k.download == job.download && lines.is_empty());
        let client_listens = (o.mode == Mode::E && job.download) || (o.mode == Mode::X && o.server_active);
        let reuse_g2 = reuse.as_ref().is_some_and(|k| k.g2);
        let channel = if let Some(k) = reuse {
            Channel::Reuse(k.channel, k.conns)
        } else if client_listens {
            let l = pool
                .open_passive(self.control.local, o.tcp_bs.or(self.abuf), self.control.peer)
                .map_err(|e| ClientError::Data(e.to_string()))?;
            if !getput {
                lines.push(Request::Port(v4_address(&l)?).to_string());
                expect.push(Expect::Ok { must: true });
            }
            Channel::Listen(Arc::new(l))
        } else if getput {
            Channel::Await127
        } else {
            lines.push(Request::Pasv.to_string());
            expect.push(Expect::Pasv);
            Channel::Pasv
        };
        if let Some(r) = &rest {
            lines.push(Request::Rest(r).to_string());
            expect.push(Expect::Ok { must: true });
        }
        let transfer_line = match (&channel, getput) {
            (Channel::Listen(l), true) => g2(G2Channel::Port(v4_address(l)?)),
            (Channel::Await127, _) => g2(G2Channel::Pasv),
            (Channel::Reuse(..), _) if reuse_g2 => g2(G2Channel::Reuse),
            _ => verb,
        }
        .to_string();
        let used_g2 = getput || reuse_g2;
        lines.push(transfer_line);
        self.control.send_all(&lines).await?;
        let request = if job.download {
            MoverRequest::Receive {
                path: job.local.clone(),
                offset: local_offset,
                append: false,
                truncate: !partial && !resuming,
            }
        } else {
            MoverRequest::Send {
                path: job.local.clone(),
                offset: if o.mode == Mode::Stream { local_offset } else { 0 },
                length: None,
            }
        };
        let skip = if !job.download && o.mode != Mode::Stream && resuming {
            resume.done.ranges().to_vec()
        } else {
            Vec::new()
        };
        Ok(Issued {
            job,
            g2: used_g2,
            expect,
            channel,
            request,
            skip,
        })
    }

    /// MODE, SBUF, OPTS RETR, OPTS PASV and TREV lines, for what changed since the last transfer.
    fn settings(&mut self, o: &CopyOptions, download: bool, lines: &mut Vec<String>, expect: &mut Vec<Expect>) {
        if self.mode != o.mode {
            lines.push(Request::Mode(o.mode).to_string());
            expect.push(Expect::Ok { must: true });
            self.mode = o.mode;
        }
        if o.tcp_bs.is_some() && self.sbuf != o.tcp_bs {
            lines.push(Request::Sbuf(o.tcp_bs.unwrap_or_default()).to_string());
            expect.push(Expect::Ok { must: true });
            self.sbuf = o.tcp_bs;
        }
        if o.mode != Mode::Stream && (download || o.mode == Mode::X) {
            let opts = Request::OptsRetr {
                parallelism: o.parallelism,
                block_size: o.block_size,
            }
            .to_string();
            if self.opts.as_ref() != Some(&opts) {
                lines.push(opts.clone());
                expect.push(Expect::Ok { must: true });
                self.opts = Some(opts);
            }
        }
        if o.delayed_passive && !self.delayed {
            lines.push(Request::AllowDelayedPassive.to_string());
            expect.push(Expect::Ok { must: true });
            self.delayed = true;
        }
        if o.restart.is_some() && !self.trev {
            // Restart markers every second; a server without TREV keeps its own period.
            lines.push(Request::RestartMarkers(1).to_string());
            expect.push(Expect::Ok { must: false });
            self.trev = true;
        }
    }

    /// Reads the replies of an issued transfer and moves the data. With `next`, that file's
    /// commands are written once this file's data has moved (pipelining).
    pub async fn complete(
        &mut self,
        pool: &Pool,
        issued: Issued,
        o: &CopyOptions,
        progress: &mut FileProgress,
        resume: &mut Resume,
        mut next: Option<FileJob>,
    ) -> (Result<Moved, ClientError>, Option<Issued>) {
        let mut ahead = None;
        let result = self.run(pool, issued, o, progress, resume, &mut next, &mut ahead).await;
        (result, ahead)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        pool: &Pool,
        issued: Issued,
        o: &CopyOptions,
        progress: &mut FileProgress,
        resume: &mut Resume,
        next: &mut Option<FileJob>,
        ahead: &mut Option<Issued>,
    ) -> Result<Moved, ClientError> {
        let Issued {
            job,
            g2,
            expect,
            channel,
            request,
            skip,
        } = issued;
        let mut pasv = None;
        for e in expect {
            match e {
                Expect::Pasv => pasv = self.control.pasv_reply().await?,
                Expect::Ok { must } => {
                    let r = self.control.reply().await?;
                    if must && r.refused() {
                        return Err(ClientError::Refused(r));
                    }
                }
            }
        }
        let reused = matches!(channel, Channel::Reuse(..));
        let (mut channel, cached) = match channel {
            Channel::Listen(l) => (Some(MoverChannel::Listener(l)), Vec::new()),
            Channel::Reuse(ch, conns) => (Some(ch), conns),
            Channel::Pasv => (pasv.map(|a| MoverChannel::Connect(vec![a])), Vec::new()),
            Channel::Await127 => (None, Vec::new()),
        };
        let (peer, local, buffer) = (self.control.peer, self.control.local, o.tcp_bs.or(self.abuf));
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let plan = MoverPlan {
            request: request.clone(),
            mode: o.mode,
            parallelism: o.parallelism,
            peers: crate::peers::DataPeers::only(peer),
            buffer,
            skip: skip.clone(),
            size_limit: None,
            block_size: o.block_size,
            layout: None,
            relative: false,
            markers: Some(PROGRESS_TICK),
            auth: self.data_auth.clone(),
            grant: None,
        };
        let spec = |channel: MoverChannel, cached: Vec<TcpStream>| MoverSpec {
            plan: plan.clone(),
            channel,
            local,
            cached,
        };
        let mut mover = channel
            .clone()
            .map(|ch| Box::pin(mover::run(pool, spec(ch, cached), events_tx.clone(), cancel_rx.clone())));
        let mut moved = None;
        let mut final_reply: Option<Result<(), ClientError>> = None;
        loop {
            let mover_running = mover.is_some() && moved.is_none();
            if final_reply.is_some() && !mover_running {
                break;
            }
            let run_mover = async {
                match mover.as_mut() {
                    Some(m) => m.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = run_mover, if mover_running => {
                    let mut r = r;
                    // Kept connections are known before the next file is issued (pipelining).
                    if let (Ok(done), Some(ch)) = (&mut r, &channel) {
                        if o.fast && o.mode == Mode::E && !done.kept.is_empty() {
                            self.kept = Some(Kept {
                                download: job.download,
                                g2,
                                conns: std::mem::take(&mut done.kept),
                                channel: ch.clone(),
                            });
                        }
                    }
                    moved = Some(r);
                    if let Some(n) = next.take() {
                        // This file's data has moved: the next file's commands can go now.
                        let path = n.remote.path.clone();
                        *ahead = self.issue(pool, n, o, &Resume::default()).await.ok();
                        if ahead.is_some() {
                            tracing::debug!(next = %path, "pipelined: next file's commands sent before this one's final reply");
                        }
                    }
                }
                Some(ev) = events.recv() => note_progress(ev, job.download, resume, progress),
                r = self.control.reply(), if final_reply.is_none() => {
                    match r.and_then(|r| Ok(TransferReply::of(r)?)) {
                        Ok(TransferReply::Address(addr)) if mover.is_none() => {
                            resume.started = true;
                            channel = Some(MoverChannel::Connect(vec![addr]));
                            let ch = MoverChannel::Connect(vec![addr]);
                            mover = Some(Box::pin(mover::run(pool, spec(ch, Vec::new()), events_tx.clone(), cancel_rx.clone())));
                        }
                        Ok(TransferReply::Ranges(ranges)) if !job.download => {
                            for &(a, b) in ranges.ranges() {
                                resume.done.insert(a, b);
                            }
                        }
                        Ok(TransferReply::Started) => resume.started = true,
                        Ok(TransferReply::Done) => final_reply = Some(Ok(())),
                        Ok(TransferReply::Refused(r)) => {
                            let _ = cancel_tx.send(true);
                            final_reply = Some(Err(ClientError::Refused(r)));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = cancel_tx.send(true);
                            final_reply = Some(Err(e));
                        }
                    }
                }
            }
        }
        // The mover's last report (what a failed receive stored) may still be queued.
        while let Ok(ev) = events.try_recv() {
            note_progress(ev, job.download, resume, progress);
        }
        if let Some(Err(_)) = &final_reply {
            self.kept = None;
        }
        final_reply.unwrap_or(Ok(()))?;
        let done = match moved {
            Some(Ok(d)) => d,
            Some(Err(f)) => return Err(ClientError::Data(f.error.to_string())),
            None => {
                return Err(ClientError::Data(
                    "the server ended the transfer before any data connection".into(),
                ))
            }
        };
        Ok(Moved {
            bytes: done.bytes,
            streams: done.streams,
            reused,
        })
    }
}

/// A mover's progress report: the bar, and (when receiving) the ranges a restart may skip.
fn note_progress(ev: MoverEvent, download: bool, resume: &mut Resume, progress: &mut FileProgress) {
    let MoverEvent::Progress { bytes, ranges } = ev else {
        return;
    };
    if download {
        for &(a, b) in ranges.unwrap_or_default().ranges() {
            resume.done.insert(a, b);
        }
        progress.at(resume.done.len());
    } else {
        progress.at(bytes + resume.done.len());
    }
}

/// Our listener's address for PORT or `port=` (IPv6 would need EPRT).
/// DCAU on a gsiftp:// session: A (our proxy on every data connection) when the server lists
/// DCAU, unless `-nodcau` asked for N; nothing for ftp:// or a server without DCAU.
async fn data_channel_auth(
    control: &mut Control,
    features: &[String],
    o: &CopyOptions,
) -> Result<Option<DataAuthRef>, ClientError> {
    let Some(creds) = control.credentials.clone() else {
        return Ok(None);
    };
    if !features.iter().any(|f| f == "DCAU") {
        if o.data_protection.is_some() {
            // globus-url-copy goes on unencrypted here; asked for privacy, we do not.
            return Err(ClientError::Gsi(
                "the server offers no data channel authentication (no DCAU in FEAT), so no -dcsafe/-dcpriv".into(),
            ));
        }
        return Ok(None);
    }
    if o.no_dcau {
        if o.data_protection.is_some() {
            return Err(ClientError::Url(
                "-dcsafe/-dcpriv need data channel authentication (no -nodcau)".into(),
            ));
        }
        control.expect_ok(Some("DCAU N")).await?;
        return Ok(None);
    }
    if let Some(level) = o.data_protection {
        // As globus-url-copy: PBSZ first, then the level.
        control.expect_ok(Some("PBSZ 1048576")).await?;
        control.expect_ok(Some(&format!("PROT {level}"))).await?;
    }
    let private = o.data_protection.is_some();
    let auth = crate::gsi::DataAuth::new(&creds.credential, &creds.trust, None, private)
        .map_err(|e| ClientError::Gsi(e.to_string()))?;
    Ok(Some(DataAuthRef(std::sync::Arc::new(auth))))
}

fn v4_address(l: &tokio::net::TcpListener) -> Result<std::net::SocketAddrV4, ClientError> {
    match l.local_addr()? {
        std::net::SocketAddr::V4(a) => Ok(a),
        std::net::SocketAddr::V6(_) => Err(ClientError::Url("IPv6 data channels need EPRT".into())),
    }
}
