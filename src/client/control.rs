//! The client's control connection: send a command, read a (multi-line) reply.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

mod security;

use super::url::FtpUrl;
use super::{ClientError, Reply};
pub use crate::protocol::client::fuzz_reply;
use crate::protocol::client::{
    command_line, features, pasv_address, Login, LoginNext, ReplyReader, Request, TransferReply,
};
use crate::storage::checksum::Algorithm;

/// A logged-in control connection to a server.
pub struct Control {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    replies: ReplyReader,
    pub local: IpAddr,
    pub peer: IpAddr,
    /// gsiftp://: commands go out wrapped (ENC), replies come in wrapped (632).
    security: Option<crate::gsi::Channel>,
    /// gsiftp://: our credential, for the data channels' DCAU.
    pub credentials: Option<std::sync::Arc<crate::gsi::ClientCredentials>>,
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
            replies: ReplyReader::default(),
            local,
            peer,
            security: None,
            credentials: None,
        };
        let password = || url.password.clone().unwrap_or_else(|| "ringmover@".into());
        let (user, pass) = match (&url.user, url.gsi) {
            (Some(u), _) => (u.clone(), password()),
            // The server maps the certificate to a local user.
            (None, true) => (":globus-mapping:".into(), "dummy".into()),
            (None, false) => ("anonymous".into(), password()),
        };
        let mut login = Login::new(user, pass);
        if url.gsi {
            let greeting = c.reply().await?;
            if greeting.code != 220 {
                return Err(ClientError::Refused(greeting));
            }
            c.gsi_authenticate(&url.host, url.subject.as_deref()).await?;
            let first = login.after_greeting();
            c.send(&first).await?;
        }
        loop {
            let reply = c.reply().await?;
            match login.on_reply(reply) {
                LoginNext::Send(line) => c.send(&line).await?,
                LoginNext::Wait => {}
                LoginNext::Done => return Ok(c),
                LoginNext::Refused(r) => return Err(ClientError::Refused(r)),
            }
        }
    }

    /// Reads one (multi-line) reply.
    pub async fn reply(&mut self) -> Result<Reply, ClientError> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                let why = if self.replies.mid_reply() {
                    "control connection closed mid-reply"
                } else {
                    "control connection closed"
                };
                return Err(ClientError::Lost(why.into()));
            }
            let plain = match &mut self.security {
                Some(channel) => security::unwrap_reply_line(channel, &line)?,
                None => std::mem::take(&mut line),
            };
            for l in plain.split_inclusive('\n') {
                if let Some(r) = self.replies.push_line(l)? {
                    return Ok(r);
                }
            }
        }
    }

    /// A command as it goes on the wire: checked, and wrapped on a GSI channel.
    fn wire(&mut self, line: &str) -> Result<String, ClientError> {
        let plain = command_line(line)?;
        match &mut self.security {
            Some(channel) => security::wrap_command(channel, &plain),
            None => Ok(plain),
        }
    }

    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        let wire = self.wire(line)?;
        self.writer.write_all(wire.as_bytes()).await?;
        Ok(())
    }

    /// Sends several commands in one write (pipelined).
    pub async fn send_all(&mut self, lines: &[String]) -> Result<(), ClientError> {
        let mut batch = String::new();
        for l in lines {
            batch.push_str(&self.wire(l)?);
        }
        self.writer.write_all(batch.as_bytes()).await?;
        Ok(())
    }

    pub async fn cmd(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Sends `line` (if any) and requires a 1xx-3xx reply.
    pub async fn expect_ok(&mut self, line: Option<&str>) -> Result<Reply, ClientError> {
        if let Some(l) = line {
            self.send(l).await?;
        }
        refused_is_error(self.reply().await?)
    }

    /// Reads replies until a final one; 4xx/5xx become errors.
    pub async fn until_final(&mut self) -> Result<Reply, ClientError> {
        loop {
            let r = refused_is_error(self.reply().await?)?;
            if !r.preliminary() {
                return Ok(r);
            }
        }
    }

    /// Reads preliminary replies until one that is final or a 127 (GET/PUT or delayed
    /// passive address).
    pub async fn until_address_or_final(&mut self) -> Result<SocketAddr, ClientError> {
        loop {
            let r = self.reply().await?;
            if (200..400).contains(&r.code) {
                return Err(ClientError::Protocol(format!(
                    "expected a 127 address, got: {}",
                    r.text
                )));
            }
            match TransferReply::of(r)? {
                TransferReply::Address(a) => return Ok(a),
                TransferReply::Refused(r) => return Err(ClientError::Refused(r)),
                _ => {}
            }
        }
    }

    /// Reads the reply to PASV: the server's data address (None: `200 Passive delayed.`).
    pub async fn pasv_reply(&mut self) -> Result<Option<SocketAddr>, ClientError> {
        let r = self.reply().await?;
        pasv_address(&r).map_err(|e| match e {
            Some(e) => e.into(),
            None => ClientError::Refused(r),
        })
    }

    /// PASV: the server's data address now (a delayed answer is refused here).
    pub async fn pasv(&mut self) -> Result<SocketAddr, ClientError> {
        self.send(&Request::Pasv.to_string()).await?;
        self.pasv_reply()
            .await?
            .ok_or_else(|| ClientError::Protocol("PASV was delayed".into()))
    }

    /// FEAT labels (each feature line, trimmed, upper case).
    pub async fn features(&mut self) -> Result<Vec<String>, ClientError> {
        Ok(features(&self.cmd(&Request::Feat.to_string()).await?))
    }

    pub async fn checksum(&mut self, alg: Algorithm, path: &str) -> Result<String, ClientError> {
        let r = self
            .expect_ok(Some(
                &Request::Cksm {
                    algorithm: alg.name(),
                    path,
                }
                .to_string(),
            ))
            .await?;
        Ok(r.body().to_ascii_lowercase())
    }

    /// SIZE of a remote file; None when the server says it has none (550).
    pub async fn size(&mut self, path: &str) -> Result<Option<u64>, ClientError> {
        let r = self.cmd(&Request::Size(path).to_string()).await?;
        Ok((r.code == 213).then(|| r.body().parse().ok()).flatten())
    }

    /// MDTM of a remote file as `YYYYMMDDHHMMSS` (UTC); None when there is none.
    pub async fn mdtm(&mut self, path: &str) -> Result<Option<String>, ClientError> {
        let r = self.cmd(&Request::Mdtm(path).to_string()).await?;
        Ok((r.code == 213).then(|| r.body().chars().take(14).collect()))
    }

    /// Ends the session politely; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = self.cmd(&Request::Quit.to_string()).await;
    }
}

/// A 4xx/5xx reply as the error it is.
fn refused_is_error(r: Reply) -> Result<Reply, ClientError> {
    if r.refused() {
        Err(ClientError::Refused(r))
    } else {
        Ok(r)
    }
}
