//! Security on a data connection before any data: the GSI handshake of DCAU, or FTPS's TLS
//! handshake, read one TLS record at a time so that no data byte after the last handshake
//! record is taken. With PROT S/P the data then goes through [`super::tls_relay`].

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PoolError;
use crate::gsi::{Channel, DataAuth, GsiError, HandshakeStep, Role};

/// A stranger that connects and says nothing is dropped after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest TLS record (2^14 plaintext plus the most any cipher adds).
const MAX_RECORD: usize = (1 << 14) + 2048;

/// Runs the handshake on a fresh data connection; the record layer when the data must go
/// through it (PROT S/P), None when the data then flows in clear (PROT C).
pub(crate) async fn secure(sock: &mut TcpStream, auth: &DataAuth, role: Role) -> Result<Option<Channel>, PoolError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(sock, auth, role)).await {
        Ok(r) => r,
        Err(_) => Err(PoolError::Dcau(format!("no handshake within {HANDSHAKE_TIMEOUT:?}"))),
    }
}

async fn handshake(sock: &mut TcpStream, auth: &DataAuth, role: Role) -> Result<Option<Channel>, PoolError> {
    let (mut hs, first) = auth.start(role).map_err(dcau)?;
    write(sock, &first).await?;
    loop {
        let record = read_record(sock).await?;
        match auth.step(hs, &record).map_err(dcau)? {
            HandshakeStep::Continue(next, out) => {
                write(sock, &out).await?;
                hs = next;
            }
            HandshakeStep::Done { token, channel } => {
                write(sock, &token).await?;
                tracing::debug!(?role, private = channel.is_some(), "data connection secured");
                return Ok(channel);
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
        return Err(PoolError::Dcau("the peer did not start a TLS handshake".into()));
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
