//! DCAU on a data connection: the GSI handshake over the socket before any data, read one TLS
//! record at a time so that no data byte after the context's last record is taken.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PoolError;
use crate::gsi::{DataAuth, GsiError, InitStep, Step};

/// A stranger that connects and says nothing is dropped after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest TLS record (2^14 plaintext plus the most any cipher adds).
const MAX_RECORD: usize = (1 << 14) + 2048;

/// Which end of the data connection we are: who opened it initiates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    Accepted,
    Connected,
}

/// Authenticates a fresh data connection (DCAU A or S); the socket then carries clear data.
pub(crate) async fn secure(sock: &mut TcpStream, auth: &DataAuth, role: Role) -> Result<(), PoolError> {
    let run = async {
        match role {
            Role::Accepted => accept(sock, auth).await,
            Role::Connected => initiate(sock, auth).await,
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(PoolError::Dcau(format!(
            "no GSI handshake within {HANDSHAKE_TIMEOUT:?}"
        ))),
    }
}

async fn accept(sock: &mut TcpStream, auth: &DataAuth) -> Result<(), PoolError> {
    let mut acceptor = auth.acceptor().map_err(dcau)?;
    loop {
        let record = read_record(sock).await?;
        match acceptor.step(&record).map_err(dcau)? {
            Step::Continue(next, out) => {
                write(sock, &out).await?;
                acceptor = next;
            }
            Step::Established(done) => {
                if let Some(t) = &done.token {
                    write(sock, t).await?;
                }
                auth.check(&done.peer).map_err(dcau)?;
                tracing::debug!(peer = %done.peer.subject, "data connection authenticated (accepted)");
                return Ok(());
            }
        }
    }
}

async fn initiate(sock: &mut TcpStream, auth: &DataAuth) -> Result<(), PoolError> {
    let (mut initiator, first) = auth.initiator().map_err(dcau)?;
    write(sock, &first).await?;
    loop {
        let record = read_record(sock).await?;
        match initiator.step(&record).map_err(dcau)? {
            InitStep::Continue(next, out) => {
                write(sock, &out).await?;
                initiator = next;
            }
            InitStep::Established(done) => {
                write(sock, &done.token).await?;
                auth.check(&done.peer).map_err(dcau)?;
                tracing::debug!(peer = %done.peer.subject, "data connection authenticated (connected)");
                return Ok(());
            }
        }
    }
}

/// One whole TLS record: the 5-byte header, then as many bytes as it announces.
async fn read_record(sock: &mut TcpStream) -> Result<Vec<u8>, PoolError> {
    let mut header = [0u8; 5];
    sock.read_exact(&mut header).await.map_err(PoolError::Connect)?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_RECORD || !(20..=24).contains(&header[0]) {
        return Err(PoolError::Dcau("the peer did not start a GSI handshake".into()));
    }
    let mut record = vec![0u8; 5 + len];
    record[..5].copy_from_slice(&header);
    sock.read_exact(&mut record[5..]).await.map_err(PoolError::Connect)?;
    Ok(record)
}

async fn write(sock: &mut TcpStream, bytes: &[u8]) -> Result<(), PoolError> {
    if bytes.is_empty() {
        return Ok(());
    }
    sock.write_all(bytes).await.map_err(PoolError::Connect)
}

fn dcau(e: GsiError) -> PoolError {
    PoolError::Dcau(e.to_string())
}
