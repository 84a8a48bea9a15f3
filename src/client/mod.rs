//! `ringmover copy`, first slice: one file between an `ftp://` server and a local path, in
//! stream mode, MODE E (parallel streams) or MODE X. The control dialogue runs here; the data
//! moves through the same pool movers the server uses, on this process's engine.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::pool::mover::{self, MoverChannel, MoverSpec};
use crate::pool::{MoverRequest, Pool};
use crate::protocol::command::parse_host_port;
use crate::storage::checksum::Algorithm;

/// Client failures.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Url(String),
    #[error("GSI (gsiftp://) is not supported yet; use ftp://")]
    GsiNotSupported,
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("server said: {0}")]
    Refused(String),
    #[error("data transfer: {0}")]
    Data(String),
}

/// Transfer mode of a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Stream,
    E,
    X,
}

/// An `ftp://[user[:password]@]host[:port]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FtpUrl {
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// One end of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Ftp(FtpUrl),
    Local(PathBuf),
}

/// Parses `ftp://`, `file://` or a plain local path.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, ClientError> {
    if let Some(rest) = s.strip_prefix("file://") {
        return Ok(Endpoint::Local(PathBuf::from(rest)));
    }
    if s.starts_with("gsiftp://") {
        return Err(ClientError::GsiNotSupported);
    }
    let Some(rest) = s.strip_prefix("ftp://") else {
        if s.contains("://") {
            return Err(ClientError::Url(format!("unsupported URL scheme in '{s}'")));
        }
        return Ok(Endpoint::Local(PathBuf::from(s)));
    };
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().map_err(|_| ClientError::Url(format!("bad port in '{s}'")))?,
        ),
        None => (hostport.to_string(), 21),
    };
    if host.is_empty() {
        return Err(ClientError::Url(format!("no host in '{s}'")));
    }
    Ok(Endpoint::Ftp(FtpUrl {
        user,
        password,
        host,
        port,
        path,
    }))
}

/// What a finished copy reports (`--json`).
#[derive(Debug, serde::Serialize)]
pub struct CopyRecord {
    pub bytes: u64,
    pub seconds: f64,
    pub streams: usize,
    pub mode: &'static str,
}

/// A control connection to a server.
struct Control {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    local: IpAddr,
    peer: IpAddr,
}

impl Control {
    async fn connect(url: &FtpUrl) -> Result<Control, ClientError> {
        let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
        let (local, peer) = (stream.local_addr()?.ip(), stream.peer_addr()?.ip());
        let (r, w) = stream.into_split();
        let mut c = Control {
            reader: BufReader::new(r),
            writer: w,
            local,
            peer,
        };
        c.expect_ok(None).await?;
        let user = url.user.clone().unwrap_or_else(|| "anonymous".into());
        let (code, text) = c.cmd(&format!("USER {user}")).await?;
        if code == 331 {
            let pass = url.password.clone().unwrap_or_else(|| "ringmover@".into());
            c.expect_ok(Some(&format!("PASS {pass}"))).await?;
        } else if code >= 400 {
            return Err(ClientError::Refused(text));
        }
        c.expect_ok(Some("TYPE I")).await?;
        Ok(c)
    }

    /// Reads one reply: (code, all text).
    async fn reply(&mut self) -> Result<(u16, String), ClientError> {
        let mut text = String::new();
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(ClientError::Refused("control connection closed".into()));
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| ClientError::Refused(line.clone()))?;
        text.push_str(line.trim_end());
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await? == 0 {
                    break;
                }
                text.push('\n');
                text.push_str(line.trim_end());
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        Ok((code, text))
    }

    async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).await?;
        Ok(())
    }

    async fn cmd(&mut self, line: &str) -> Result<(u16, String), ClientError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Sends `line` (if any) and requires a 2xx/3xx reply.
    async fn expect_ok(&mut self, line: Option<&str>) -> Result<String, ClientError> {
        if let Some(l) = line {
            self.send(l).await?;
        }
        let (code, text) = self.reply().await?;
        if code >= 400 {
            return Err(ClientError::Refused(text));
        }
        Ok(text)
    }

    /// PASV: the server's data address.
    async fn pasv(&mut self) -> Result<SocketAddr, ClientError> {
        let text = self.expect_ok(Some("PASV")).await?;
        let inner = text
            .find('(')
            .and_then(|i| text[i + 1..].find(')').map(|j| &text[i + 1..i + 1 + j]))
            .ok_or_else(|| ClientError::Refused(text.clone()))?;
        parse_host_port(inner).map_err(|e| ClientError::Refused(e.to_string()))
    }
}

/// How to copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    pub mode: Mode,
    pub parallelism: u32,
    /// MODE X: let the server open the data connections.
    pub server_active: bool,
    /// Socket buffer size (`-tcp-bs`): SBUF to the servers and set on our sockets.
    pub tcp_bs: Option<u64>,
    /// Compare checksums of both ends after the copy (`-verify-checksum`).
    pub verify: Option<Algorithm>,
    /// Use GET/PUT when the server lists GETPUT (`-no-g2` turns it off).
    pub g2: bool,
    /// Copy a directory tree (`-r`): downloads only, for now.
    pub recursive: bool,
    /// Download only from this offset (`-off`), and only this many bytes (`-len`).
    pub offset: Option<u64>,
    pub length: Option<u64>,
}

/// Copies one file: server → local, local → server, or server → server (third-party).
pub async fn copy(pool: &Pool, src: &Endpoint, dst: &Endpoint, o: &CopyOptions) -> Result<CopyRecord, ClientError> {
    let started = Instant::now();
    let (bytes, streams) = match (src, dst) {
        (Endpoint::Ftp(u), Endpoint::Local(p)) if o.recursive => download_tree(pool, u, &absolute(p)?, o).await?,
        (Endpoint::Local(p), Endpoint::Ftp(u)) if o.recursive => upload_tree(pool, &absolute(p)?, u, o).await?,
        _ if o.recursive => {
            return Err(ClientError::Url(
                "-r copies between an ftp:// directory and a local one".into(),
            ))
        }
        (Endpoint::Ftp(_), Endpoint::Ftp(_)) if o.offset.is_some() || o.length.is_some() => {
            return Err(ClientError::Url(
                "-off/-len are not supported for third-party copies yet".into(),
            ))
        }
        (Endpoint::Ftp(a), Endpoint::Ftp(b)) => third_party(a, b, o).await?,
        (Endpoint::Ftp(u), Endpoint::Local(p)) => two_party(pool, u, &absolute(p)?, true, o).await?,
        (Endpoint::Local(p), Endpoint::Ftp(u)) => two_party(pool, u, &absolute(p)?, false, o).await?,
        _ => return Err(ClientError::Url("at least one side must be ftp://".into())),
    };
    let mode = match o.mode {
        Mode::Stream => "S",
        Mode::E => "E",
        Mode::X => "X",
    };
    Ok(CopyRecord {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        streams,
        mode,
    })
}

impl Control {
    /// FEAT labels (first word of each feature line, upper case).
    async fn features(&mut self) -> Result<Vec<String>, ClientError> {
        let (code, text) = self.cmd("FEAT").await?;
        if code != 211 {
            return Ok(Vec::new());
        }
        Ok(text
            .lines()
            .filter(|l| l.starts_with(' '))
            .map(|l| l.trim().to_ascii_uppercase())
            .collect())
    }

    /// MODE, buffer size and (when sending) parallelism for a transfer.
    async fn prepare(&mut self, o: &CopyOptions, sends: bool) -> Result<(), ClientError> {
        match o.mode {
            Mode::Stream => {}
            Mode::E => drop(self.expect_ok(Some("MODE E")).await?),
            Mode::X => drop(self.expect_ok(Some("MODE X")).await?),
        }
        if let Some(n) = o.tcp_bs {
            self.expect_ok(Some(&format!("SBUF {n}"))).await?;
        }
        let p = o.parallelism;
        if o.mode != Mode::Stream && (sends || o.mode == Mode::X) {
            self.expect_ok(Some(&format!("OPTS RETR Parallelism={p},{p},{p};")))
                .await?;
        }
        Ok(())
    }

    /// Reads preliminary replies until one that is final or a 127 (GET/PUT address).
    async fn until_address_or_final(&mut self) -> Result<Result<SocketAddr, (u16, String)>, ClientError> {
        loop {
            let (code, text) = self.reply().await?;
            if code == 127 {
                return Ok(Ok(parse_paren_address(&text)?));
            }
            if code >= 200 {
                return Ok(Err((code, text)));
            }
        }
    }

    async fn checksum(&mut self, alg: Algorithm, path: &str) -> Result<String, ClientError> {
        let text = self
            .expect_ok(Some(&format!("CKSM {} 0 -1 {path}", alg.name())))
            .await?;
        Ok(text.get(4..).unwrap_or_default().trim().to_ascii_lowercase())
    }
}

fn parse_paren_address(text: &str) -> Result<SocketAddr, ClientError> {
    let inner = text
        .find('(')
        .and_then(|i| text[i + 1..].find(')').map(|j| &text[i + 1..i + 1 + j]))
        .ok_or_else(|| ClientError::Refused(text.to_string()))?;
    parse_host_port(inner).map_err(|e| ClientError::Refused(e.to_string()))
}

/// The entries of a remote directory (MLSD over a PASV connection): (name, is_dir).
async fn list_dir(url: &FtpUrl) -> Result<Vec<(String, bool)>, ClientError> {
    use tokio::io::AsyncReadExt;
    let mut c = Control::connect(url).await?;
    let addr = c.pasv().await?;
    let mut data = TcpStream::connect(addr).await?;
    c.send(&format!("MLSD {}", url.path)).await?;
    let mut listing = Vec::new();
    // A listing is a few kilobytes of metadata: read it directly, not on the engine.
    let (read, reply) = tokio::join!(data.read_to_end(&mut listing), async {
        loop {
            let (code, text) = c.reply().await?;
            if code >= 400 {
                return Err(ClientError::Refused(text));
            }
            if code >= 200 {
                return Ok(());
            }
        }
    });
    read?;
    reply?;
    let _ = c.cmd("QUIT").await;
    let text = String::from_utf8_lossy(&listing);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (facts, name) = l.split_once(' ')?;
            let kind = facts
                .split(';')
                .find_map(|f| f.strip_prefix("Type=").or_else(|| f.strip_prefix("type=")))?;
            let kind = kind.to_ascii_lowercase();
            let is_dir = kind == "dir";
            (is_dir || kind == "file").then(|| (name.to_string(), is_dir))
        })
        .filter(|(n, _)| n != "." && n != "..")
        .collect())
}

/// `-r`: every file under a remote directory into a local one, directories created as needed.
async fn download_tree(pool: &Pool, url: &FtpUrl, local: &str, o: &CopyOptions) -> Result<(u64, usize), ClientError> {
    let mut todo = vec![(
        url.path.trim_end_matches('/').to_string(),
        local.trim_end_matches('/').to_string(),
    )];
    let (mut bytes, mut streams) = (0, 0);
    while let Some((remote, here)) = todo.pop() {
        std::fs::create_dir_all(&here)?;
        let dir = FtpUrl {
            path: format!("{remote}/"),
            ..url.clone()
        };
        for (name, is_dir) in list_dir(&dir).await? {
            if name.contains('/') {
                continue; // not a plain entry name
            }
            let (r, l) = (format!("{remote}/{name}"), format!("{here}/{name}"));
            if is_dir {
                todo.push((r, l));
            } else {
                let file = FtpUrl { path: r, ..url.clone() };
                let (b, s) = two_party(pool, &file, &l, true, o).await?;
                bytes += b;
                streams = streams.max(s);
            }
        }
    }
    Ok((bytes, streams))
}

/// `-r` upwards: every file under a local directory, remote directories made with MKD.
async fn upload_tree(pool: &Pool, local: &str, url: &FtpUrl, o: &CopyOptions) -> Result<(u64, usize), ClientError> {
    let base = url.path.trim_end_matches('/').to_string();
    let mut todo = vec![(local.trim_end_matches('/').to_string(), base)];
    let (mut bytes, mut streams) = (0, 0);
    let mut c = Control::connect(url).await?;
    while let Some((here, remote)) = todo.pop() {
        // An existing directory answers 550; a real failure shows on the uploads below.
        if !remote.is_empty() {
            let _ = c.cmd(&format!("MKD {remote}")).await?;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&here)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            let (l, r) = (format!("{here}/{name}"), format!("{remote}/{name}"));
            let kind = e.file_type()?;
            if kind.is_dir() {
                todo.push((l, r));
            } else if kind.is_file() {
                let file = FtpUrl { path: r, ..url.clone() };
                let (b, s) = two_party(pool, &file, &l, false, o).await?;
                bytes += b;
                streams = streams.max(s);
            }
        }
    }
    let _ = c.cmd("QUIT").await;
    Ok((bytes, streams))
}

/// Server ↔ local file.
async fn two_party(
    pool: &Pool,
    url: &FtpUrl,
    local: &str,
    download: bool,
    o: &CopyOptions,
) -> Result<(u64, usize), ClientError> {
    let mut c = Control::connect(url).await?;
    if (o.offset.is_some() || o.length.is_some()) && !download {
        return Err(ClientError::Url("-off/-len apply to downloads".into()));
    }
    let partial = o.offset.is_some() || o.length.is_some();
    // GET/PUT carry no offsets: partial transfers use ERET P / REST.
    let getput = !partial && o.g2 && c.features().await?.iter().any(|f| f == "GETPUT");
    let off = o.offset.unwrap_or(0);
    // The command that starts the transfer, and where the local file is written from: ERET P
    // sends offsets relative to `off`; REST in stream mode starts the data at `off`; MODE E/X
    // restart ranges keep absolute offsets.
    let (verb_line, local_offset) = match (download, o.length, o.mode) {
        (true, Some(len), _) => (format!("ERET P {off} {len} {}", url.path), off),
        (true, None, Mode::Stream) if off > 0 => (format!("RETR {}", url.path), off),
        (true, None, _) => (format!("RETR {}", url.path), 0),
        (false, _, _) => (format!("STOR {}", url.path), 0),
    };
    let rest = match (o.length, o.mode) {
        (None, Mode::Stream) if off > 0 => Some(format!("REST {off}")),
        (None, _) if off > 0 => Some(format!("REST 0-{off}")),
        _ => None,
    };
    c.prepare(o, download).await?;
    let request = if download {
        MoverRequest::Receive {
            path: local.to_string(),
            offset: local_offset,
            append: false,
            truncate: !partial,
        }
    } else {
        MoverRequest::Send {
            path: local.to_string(),
            offset: 0,
            length: None,
        }
    };
    let g2_verb = if download { "GET" } else { "PUT" };
    // MODE E downloads need the client passive (the sender connects), and so does MODE X when
    // the server is to connect; everything else connects to the server's address.
    let client_listens = (o.mode == Mode::E && download) || (o.mode == Mode::X && o.server_active);
    let channel = if client_listens {
        let l = pool
            .open_passive(c.local, o.tcp_bs)
            .map_err(|e| ClientError::Data(e.to_string()))?;
        let addr = l.local_addr()?;
        let IpAddr::V4(ip) = addr.ip() else {
            return Err(ClientError::Url("IPv6 data channels need EPRT".into()));
        };
        let hp = crate::protocol::reply::host_port(ip, addr.port());
        if getput {
            c.send(&format!("{g2_verb} path={};port={hp};", url.path)).await?;
        } else {
            c.expect_ok(Some(&format!("PORT {hp}"))).await?;
            if let Some(r) = &rest {
                c.expect_ok(Some(r)).await?;
            }
            c.send(&verb_line).await?;
        }
        MoverChannel::Listener(Arc::new(l))
    } else if getput {
        c.send(&format!("{g2_verb} path={};pasv;", url.path)).await?;
        match c.until_address_or_final().await? {
            Ok(addr) => MoverChannel::Connect(vec![addr]),
            Err((_, text)) => return Err(ClientError::Refused(text)),
        }
    } else {
        let addr = c.pasv().await?;
        if let Some(r) = &rest {
            c.expect_ok(Some(r)).await?;
        }
        c.send(&verb_line).await?;
        MoverChannel::Connect(vec![addr])
    };
    let spec = MoverSpec {
        request,
        extended: o.mode == Mode::E,
        xmode: o.mode == Mode::X,
        parallelism: o.parallelism,
        channel,
        peer: Some(c.peer),
        local: c.local,
        buffer: o.tcp_bs,
        skip: Vec::new(),
        size_limit: None,
        relative: false,
        markers: None,
        cached: Vec::new(),
    };
    let (events_tx, _events) = mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mover = mover::run(pool, spec, events_tx, cancel_rx);
    tokio::pin!(mover);
    let mut moved = None;
    let mut final_reply = None;
    while moved.is_none() || final_reply.is_none() {
        tokio::select! {
            r = &mut mover, if moved.is_none() => moved = Some(r),
            r = c.reply(), if final_reply.is_none() => {
                let (code, text) = r?;
                if code >= 400 {
                    let _ = cancel_tx.send(true);
                    final_reply = Some(Err(ClientError::Refused(text)));
                } else if code >= 200 {
                    final_reply = Some(Ok(()));
                }
            }
        }
    }
    final_reply.unwrap_or(Ok(()))?;
    let done = match moved {
        Some(Ok(d)) => d,
        Some(Err(f)) => return Err(ClientError::Data(f.error.to_string())),
        None => return Err(ClientError::Data("mover did not run".into())),
    };
    if let Some(alg) = o.verify {
        let remote = c.checksum(alg, &url.path).await?;
        let path = local.to_string();
        let local_sum = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path).and_then(|f| crate::storage::checksum::file_checksum(&f, alg, 0, None))
        })
        .await
        .map_err(|e| ClientError::Data(e.to_string()))??;
        if remote != local_sum {
            return Err(ClientError::Data(format!(
                "checksum mismatch: {} here, {remote} there",
                local_sum
            )));
        }
    }
    let _ = c.cmd("QUIT").await;
    Ok((done.bytes, done.streams))
}

/// Server → server. The destination listens (PASV/STOR) and the source connects (PORT/RETR),
/// as MODE E requires; the data never passes through this client.
async fn third_party(src: &FtpUrl, dst: &FtpUrl, o: &CopyOptions) -> Result<(u64, usize), ClientError> {
    let (mut a, mut b) = (Control::connect(src).await?, Control::connect(dst).await?);
    a.prepare(o, true).await?;
    b.prepare(o, false).await?;
    let addr = b.pasv().await?;
    let IpAddr::V4(ip) = addr.ip() else {
        return Err(ClientError::Url("IPv6 third-party needs EPRT".into()));
    };
    b.send(&format!("STOR {}", dst.path)).await?;
    a.expect_ok(Some(&format!(
        "PORT {}",
        crate::protocol::reply::host_port(ip, addr.port())
    )))
    .await?;
    a.send(&format!("RETR {}", src.path)).await?;
    let finals = async |c: &mut Control| -> Result<(), ClientError> {
        loop {
            let (code, text) = c.reply().await?;
            if code >= 400 {
                return Err(ClientError::Refused(text));
            }
            if code >= 200 {
                return Ok(());
            }
        }
    };
    let (ra, rb) = tokio::join!(finals(&mut a), finals(&mut b));
    ra?;
    rb?;
    let bytes = match a.expect_ok(Some(&format!("SIZE {}", src.path))).await {
        Ok(t) => t.get(4..).and_then(|n| n.trim().parse().ok()).unwrap_or(0),
        Err(_) => 0,
    };
    if let Some(alg) = o.verify {
        let (x, y) = (a.checksum(alg, &src.path).await?, b.checksum(alg, &dst.path).await?);
        if x != y {
            return Err(ClientError::Data(format!(
                "checksum mismatch: source {x}, destination {y}"
            )));
        }
    }
    let _ = a.cmd("QUIT").await;
    let _ = b.cmd("QUIT").await;
    Ok((bytes, o.parallelism as usize))
}

fn absolute(p: &Path) -> Result<String, ClientError> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    abs.to_str()
        .map(String::from)
        .ok_or_else(|| ClientError::Url(format!("path {} is not UTF-8", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_endpoint("ftp://bob:pw@example.org:2811/a/b").unwrap(),
            Endpoint::Ftp(FtpUrl {
                user: Some("bob".into()),
                password: Some("pw".into()),
                host: "example.org".into(),
                port: 2811,
                path: "/a/b".into()
            })
        );
        assert_eq!(
            parse_endpoint("file:///tmp/x").unwrap(),
            Endpoint::Local("/tmp/x".into())
        );
        assert_eq!(parse_endpoint("rel/x").unwrap(), Endpoint::Local("rel/x".into()));
        assert!(matches!(
            parse_endpoint("gsiftp://h/x"),
            Err(ClientError::GsiNotSupported)
        ));
        assert!(parse_endpoint("http://h/x").is_err());
        assert!(parse_endpoint("ftp://:21/x").is_err());
    }
}
