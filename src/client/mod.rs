//! `ringmover copy`, first slice: one file between an `ftp://` server and a local path, in
//! stream mode, MODE E (parallel streams) or MODE X. The control dialogue runs here; the data
//! moves through the same pool movers the server uses, on this process's engine.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::pool::mover::{self, MoverChannel, MoverSpec};
use crate::pool::{MoverRequest, Pool};
use crate::protocol::command::parse_host_port;

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

/// Copies one file between a server and a local path.
pub async fn copy(
    pool: &Pool,
    src: &Endpoint,
    dst: &Endpoint,
    mode: Mode,
    parallelism: u32,
    server_active: bool,
) -> Result<CopyRecord, ClientError> {
    let (url, local, download) = match (src, dst) {
        (Endpoint::Ftp(u), Endpoint::Local(p)) => (u, p, true),
        (Endpoint::Local(p), Endpoint::Ftp(u)) => (u, p, false),
        _ => {
            return Err(ClientError::Url(
                "one side must be ftp:// and the other a local file".into(),
            ))
        }
    };
    let local = absolute(local)?;
    let started = Instant::now();
    let mut c = Control::connect(url).await?;
    match mode {
        Mode::Stream => {}
        Mode::E => drop(c.expect_ok(Some("MODE E")).await?),
        Mode::X => drop(c.expect_ok(Some("MODE X")).await?),
    }
    if mode != Mode::Stream && download {
        c.expect_ok(Some(&format!(
            "OPTS RETR Parallelism={parallelism},{parallelism},{parallelism};"
        )))
        .await?;
    }
    let request = if download {
        MoverRequest::Receive {
            path: local.clone(),
            offset: 0,
            append: false,
            truncate: true,
        }
    } else {
        MoverRequest::Send {
            path: local.clone(),
            offset: 0,
            length: None,
        }
    };
    // MODE E downloads need the client passive (the sender connects); MODE X lets either side
    // connect (`server_active` makes the client listen); everything else connects to the
    // server's PASV address.
    if mode == Mode::X && server_active && !download {
        c.expect_ok(Some(&format!(
            "OPTS RETR Parallelism={parallelism},{parallelism},{parallelism};"
        )))
        .await?;
    }
    let channel = if (mode == Mode::E && download) || (mode == Mode::X && server_active) {
        let l = pool
            .open_passive(c.local, None)
            .map_err(|e| ClientError::Data(e.to_string()))?;
        let addr = l.local_addr()?;
        let IpAddr::V4(ip) = addr.ip() else {
            return Err(ClientError::Url("MODE E over IPv6 needs EPRT".into()));
        };
        c.expect_ok(Some(&format!(
            "PORT {}",
            crate::protocol::reply::host_port(ip, addr.port())
        )))
        .await?;
        MoverChannel::Listener(Arc::new(l))
    } else {
        MoverChannel::Connect(vec![c.pasv().await?])
    };
    let spec = MoverSpec {
        request,
        extended: mode == Mode::E,
        xmode: mode == Mode::X,
        parallelism,
        channel,
        peer: Some(c.peer),
        local: c.local,
        buffer: None,
        skip: Vec::new(),
        size_limit: None,
        relative: false,
        markers: None,
        cached: Vec::new(),
    };
    let verb = if download { "RETR" } else { "STOR" };
    c.send(&format!("{verb} {}", url.path)).await?;
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
            _ = tokio::time::sleep(Duration::from_secs(3600)) => return Err(ClientError::Data("no progress for an hour".into())),
        }
    }
    let _ = c.cmd("QUIT").await;
    final_reply.unwrap_or(Ok(()))?;
    let done = match moved {
        Some(Ok(d)) => d,
        Some(Err(f)) => return Err(ClientError::Data(f.error.to_string())),
        None => return Err(ClientError::Data("mover did not run".into())),
    };
    let mode = match mode {
        Mode::Stream => "S",
        Mode::E => "E",
        Mode::X => "X",
    };
    Ok(CopyRecord {
        bytes: done.bytes,
        seconds: started.elapsed().as_secs_f64(),
        streams: done.streams,
        mode,
    })
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
