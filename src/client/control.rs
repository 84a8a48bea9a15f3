//! The client's control connection: send a command, read a (multi-line) reply.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::url::FtpUrl;
use super::{ClientError, Reply};
use crate::protocol::command::parse_host_port;
use crate::storage::checksum::Algorithm;

/// A logged-in control connection to a server.
pub struct Control {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub local: IpAddr,
    pub peer: IpAddr,
}

impl Control {
    /// Connects, logs in (anonymous when the URL names no user) and sets TYPE I.
    pub async fn connect(url: &FtpUrl) -> Result<Control, ClientError> {
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
            return Err(ClientError::Refused(Reply::new(code, text)));
        }
        c.expect_ok(Some("TYPE I")).await?;
        Ok(c)
    }

    /// Reads one reply: (code, all text).
    pub async fn reply(&mut self) -> Result<(u16, String), ClientError> {
        let mut text = String::new();
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(ClientError::Lost("control connection closed".into()));
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| ClientError::Protocol(format!("not a reply: {}", line.trim_end())))?;
        text.push_str(line.trim_end());
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await? == 0 {
                    return Err(ClientError::Lost("control connection closed mid-reply".into()));
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

    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).await?;
        Ok(())
    }

    pub async fn cmd(&mut self, line: &str) -> Result<(u16, String), ClientError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Sends `line` (if any) and requires a 1xx-3xx reply.
    pub async fn expect_ok(&mut self, line: Option<&str>) -> Result<String, ClientError> {
        if let Some(l) = line {
            self.send(l).await?;
        }
        let (code, text) = self.reply().await?;
        if code >= 400 {
            return Err(ClientError::Refused(Reply::new(code, text)));
        }
        Ok(text)
    }

    /// Reads replies until a final one; 4xx/5xx become errors.
    pub async fn until_final(&mut self) -> Result<String, ClientError> {
        loop {
            let (code, text) = self.reply().await?;
            if code >= 400 {
                return Err(ClientError::Refused(Reply::new(code, text)));
            }
            if code >= 200 {
                return Ok(text);
            }
        }
    }

    /// Reads preliminary replies until one that is final or a 127 (GET/PUT or delayed
    /// passive address).
    pub async fn until_address_or_final(&mut self) -> Result<SocketAddr, ClientError> {
        loop {
            let (code, text) = self.reply().await?;
            if code == 127 {
                return parse_paren_address(&text);
            }
            if code >= 400 {
                return Err(ClientError::Refused(Reply::new(code, text)));
            }
            if code >= 200 {
                return Err(ClientError::Protocol(format!("expected a 127 address, got: {text}")));
            }
        }
    }

    /// Reads the reply to PASV: the server's data address (None: `200 Passive delayed.`).
    pub async fn pasv_reply(&mut self) -> Result<Option<SocketAddr>, ClientError> {
        let (code, text) = self.reply().await?;
        match code {
            227 => parse_paren_address(&text).map(Some),
            200 => Ok(None),
            _ => Err(ClientError::Refused(Reply::new(code, text))),
        }
    }

    /// PASV: the server's data address now (a delayed answer is refused here).
    pub async fn pasv(&mut self) -> Result<SocketAddr, ClientError> {
        self.send("PASV").await?;
        self.pasv_reply()
            .await?
            .ok_or_else(|| ClientError::Protocol("PASV was delayed".into()))
    }

    /// FEAT labels (each feature line, trimmed, upper case).
    pub async fn features(&mut self) -> Result<Vec<String>, ClientError> {
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

    pub async fn checksum(&mut self, alg: Algorithm, path: &str) -> Result<String, ClientError> {
        let text = self
            .expect_ok(Some(&format!("CKSM {} 0 -1 {path}", alg.name())))
            .await?;
        Ok(text.get(4..).unwrap_or_default().trim().to_ascii_lowercase())
    }

    /// SIZE of a remote file; None when the server says it has none (550).
    pub async fn size(&mut self, path: &str) -> Result<Option<u64>, ClientError> {
        let (code, text) = self.cmd(&format!("SIZE {path}")).await?;
        Ok((code == 213)
            .then(|| text.get(4..).and_then(|n| n.trim().parse().ok()))
            .flatten())
    }

    /// MDTM of a remote file as `YYYYMMDDHHMMSS` (UTC); None when there is none.
    pub async fn mdtm(&mut self, path: &str) -> Result<Option<String>, ClientError> {
        let (code, text) = self.cmd(&format!("MDTM {path}")).await?;
        Ok((code == 213)
            .then(|| text.get(4..).map(|t| t.trim().chars().take(14).collect()))
            .flatten())
    }

    /// Ends the session politely; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = self.cmd("QUIT").await;
    }
}

/// What a reply read while a transfer runs means to the client (refusals are errors).
#[derive(Debug, PartialEq, Eq)]
pub enum TransferReply {
    /// 127: the address to connect to (GET/PUT, delayed passive).
    Address(SocketAddr),
    /// 111: byte ranges the receiving side has stored.
    Ranges(Vec<(u64, u64)>),
    /// 112: bytes moved so far.
    Performance(u64),
    /// 125 or 150: the data transfer started.
    Started,
    /// 2xx: the transfer ended well.
    Done,
    /// Any other preliminary reply.
    Other,
}

impl TransferReply {
    pub fn of(code: u16, text: String) -> Result<TransferReply, ClientError> {
        Ok(match code {
            127 => TransferReply::Address(parse_paren_address(&text)?),
            111 => TransferReply::Ranges(parse_range_marker(&text).unwrap_or_default()),
            112 => TransferReply::Performance(parse_perf_marker(&text).unwrap_or(0)),
            125 | 150 => TransferReply::Started,
            c if c >= 400 => return Err(ClientError::Refused(Reply::new(c, text))),
            c if c >= 200 => TransferReply::Done,
            _ => TransferReply::Other,
        })
    }
}

/// The `(h1,h2,h3,h4,p1,p2)` address in a 227/127 reply.
pub fn parse_paren_address(text: &str) -> Result<SocketAddr, ClientError> {
    let inner = text
        .find('(')
        .and_then(|i| text[i + 1..].find(')').map(|j| &text[i + 1..i + 1 + j]))
        .ok_or_else(|| ClientError::Protocol(format!("no address in: {text}")))?;
    parse_host_port(inner).map_err(|e| ClientError::Protocol(format!("bad address in {text}: {e}")))
}

/// The ranges of a `111 Range Marker a-b,c-d` reply (exclusive ends), if it is one.
pub fn parse_range_marker(text: &str) -> Option<Vec<(u64, u64)>> {
    let rest = text.get(4..)?;
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    parse_ranges(rest[start..].trim())
}

/// `a-b,c-d` into pairs; None when any part is malformed or empty.
pub fn parse_ranges(s: &str) -> Option<Vec<(u64, u64)>> {
    s.split(',')
        .map(|r| {
            let (a, b) = r.trim().split_once('-')?;
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// Bytes moved so far from a 112 perf marker (`Stripe Bytes Transferred: N`).
pub fn parse_perf_marker(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Stripe Bytes Transferred:")
            .and_then(|n| n.trim().parse().ok())
    })
}

/// Fuzz body (`fuzz/fuzz_targets/client_reply.rs`, and a bounded run in the tests): the reply
/// parsers take any server text without panicking, and ranges they accept are well formed.
pub fn fuzz_reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_paren_address(&text);
    let _ = parse_perf_marker(&text);
    for ranges in [parse_range_marker(&text), parse_ranges(&text)].into_iter().flatten() {
        assert!(ranges.iter().all(|(a, b)| a <= b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_replies() {
        let of = |code, text: &str| TransferReply::of(code, text.to_string());
        assert_eq!(
            of(127, "127 PORT (10,0,0,2,200,7)").unwrap(),
            TransferReply::Address("10.0.0.2:51207".parse().unwrap())
        );
        assert_eq!(
            of(111, "111 Range Marker 0-10,20-30").unwrap(),
            TransferReply::Ranges(vec![(0, 10), (20, 30)])
        );
        assert_eq!(of(150, "150 Opening").unwrap(), TransferReply::Started);
        assert_eq!(of(226, "226 Done").unwrap(), TransferReply::Done);
        assert_eq!(of(110, "110 Restart").unwrap(), TransferReply::Other);
        match of(451, "451 local error") {
            Err(ClientError::Refused(r)) => assert!(r.code == 451 && r.transient()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(of(127, "127 nothing"), Err(ClientError::Protocol(_))));
    }

    #[test]
    fn reply_parsers_survive_mutated_replies() {
        let seeds: &[&[u8]] = &[
            b"111 Range Marker 0-1000,2000-3000",
            b"112-Perf Marker\n Stripe Bytes Transferred: 4096\n112 End.",
            b"227 Entering Passive Mode (127,0,0,1,4,1)",
            b"127 PORT (10,0,0,2,200,7)",
        ];
        crate::protocol::fuzzing::mutated(seeds, 20_000, fuzz_reply);
    }

    #[test]
    fn markers() {
        assert_eq!(
            parse_range_marker("111 Range Marker 0-1000,2000-3000"),
            Some(vec![(0, 1000), (2000, 3000)])
        );
        assert_eq!(parse_range_marker("111 Range Marker x"), None);
        assert_eq!(parse_ranges("5-1"), None);
        let perf = "112-Perf Marker\n Timestamp: 1.0\n Stripe Index: 0\n Stripe Bytes Transferred: 4096\n Total Stripe Count: 1\n112 End.";
        assert_eq!(parse_perf_marker(perf), Some(4096));
        assert!(parse_paren_address("227 Entering Passive Mode (127,0,0,1,4,1)").is_ok());
    }
}
