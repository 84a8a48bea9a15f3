//! PROT S/P data connections: the data itself travels in TLS records. The engine moves
//! plaintext as always, over a Unix socket pair; a task here carries it to and from the
//! peer through the connection's TLS record layer. (This kernel offers no kernel TLS; where
//! it does, the records could be left to the socket.)

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Carries bytes both ways until both directions ended (or one failed).
async fn relay(mut outer: TcpStream, mut inner: UnixStream, mut channel: Channel) {
    let (mut from_peer, mut from_engine) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    // Decrypted and encrypted bytes, their buffers used again and again.
    let (mut plain, mut records) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK + (CHUNK >> 6)));
    let (mut peer_open, mut engine_open) = (true, true);
    while peer_open || engine_open {
        tokio::select! {
            n = outer.read(&mut from_peer), if peer_open => match n {
                Ok(0) | Err(_) => {
                    peer_open = false;
                    let _ = inner.shutdown().await;
                }
                Ok(n) => {
                    if channel.unwrap_stream_into(&from_peer[..n], &mut plain).is_err() {
                        tracing::warn!("data connection: a TLS record did not decrypt; closing it");
                        return;
                    }
                    if inner.write_all(&plain).await.is_err() {
                        return;
                    }
                }
            },
            n = inner.read(&mut from_engine), if engine_open => match n {
                Ok(0) | Err(_) => {
                    engine_open = false;
                    let _ = outer.write_all(&channel.close_notify()).await;
                    let _ = outer.shutdown().await;
                }
                Ok(n) => {
                    if channel.wrap_into(&from_engine[..n], &mut records).is_err() {
                        return;
                    }
                    if outer.write_all(&records).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
