//! PROT S/P data connections: the data itself travels in TLS records. The engine moves
//! plaintext as always, over a Unix socket pair; a task here carries it to and from the
//! peer through the connection's TLS record layer. (This kernel offers no kernel TLS; where
//! it does, the records could be left to the socket.)

use std::os::fd::AsFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UnixStream};

use super::PoolError;
use crate::gsi::Channel;

/// Bytes read at a time on either side (sixteen TLS records).
const CHUNK: usize = 256 << 10;

/// The engine's end of a private data connection: what it writes reaches the peer encrypted,
/// what the peer sends arrives decrypted. The two ends are a Unix socket pair: no TCP stack
/// between the engine and the relay (a loopback TCP connection cost a fifth more CPU).
pub(crate) async fn start(outer: TcpStream, channel: Channel) -> Result<TcpStream, PoolError> {
    let (engine_end, relay_end) = std::os::unix::net::UnixStream::pair().map_err(PoolError::Connect)?;
    for end in [&engine_end, &relay_end] {
        end.set_nonblocking(true).map_err(PoolError::Connect)?;
    }
    let relay_end = UnixStream::from_std(relay_end).map_err(PoolError::Connect)?;
    // The engine takes sockets as TcpStream; every call it makes on a stream socket (read,
    // write, splice, sendfile, SO_RCVLOWAT, buffer sizes) works on a Unix one, and the TCP-only
    // options it sets are best effort.
    let engine_end = std::net::TcpStream::from(std::os::fd::OwnedFd::from(engine_end));
    let engine_end = TcpStream::from_std(engine_end).map_err(PoolError::Connect)?;
    tokio::spawn(relay(outer, relay_end, channel));
    Ok(engine_end)
}

/// Carries bytes both ways until both directions ended (or one failed). The records go
/// between OpenSSL and the peer's socket directly; tokio only says when it is ready.
async fn relay(outer: TcpStream, mut inner: UnixStream, mut channel: Channel) {
    let Ok(fd) = outer.as_fd().try_clone_to_owned() else {
        return;
    };
    channel.attach(std::net::TcpStream::from(fd));
    let (mut from_peer, mut from_engine) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut peer_open, mut engine_open) = (true, true);
    while peer_open || engine_open {
        tokio::select! {
            ready = outer.readable(), if peer_open => {
                if ready.is_err() {
                    return;
                }
                // One record comes out per read: gather what is there, then pass it on.
                let mut filled = 0;
                let mut ended = false;
                while filled < from_peer.len() {
                    match outer.try_io(Interest::READABLE, || channel.read_plain(&mut from_peer[filled..])) {
                        Ok(0) => {
                            ended = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::warn!("data connection: {e}; closing it");
                            return;
                        }
                    }
                }
                if filled > 0 && inner.write_all(&from_peer[..filled]).await.is_err() {
                    return;
                }
                if ended {
                    peer_open = false;
                    let _ = inner.shutdown().await;
                }
            },
            n = inner.read(&mut from_engine), if engine_open => match n {
                Ok(0) | Err(_) => {
                    engine_open = false;
                    let _ = outer_shutdown(&outer, &mut channel).await;
                }
                Ok(n) => {
                    if send(&outer, &mut channel, &from_engine[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// Writes `plain` as records, waiting while the peer's socket is full.
async fn send(outer: &TcpStream, channel: &mut Channel, plain: &[u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < plain.len() {
        outer.writable().await?;
        match outer.try_io(Interest::WRITABLE, || channel.write_plain(&plain[at..])) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `close_notify`, then the end of our direction.
async fn outer_shutdown(outer: &TcpStream, channel: &mut Channel) -> std::io::Result<()> {
    let alert = channel.close_notify();
    let mut at = 0;
    while at < alert.len() {
        outer.writable().await?;
        match outer.try_write(&alert[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    rustix::net::shutdown(outer, rustix::net::Shutdown::Write).map_err(std::io::Error::from)
}
