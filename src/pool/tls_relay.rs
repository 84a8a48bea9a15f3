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
                let mut failed = None;
                while filled < from_peer.len() {
                    match outer.try_io(Interest::READABLE, || channel.read_plain(&mut from_peer[filled..])) {
                        Ok(0) => {
                            ended = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if filled > 0 && inner.write_all(&from_peer[..filled]).await.is_err() {
                    return;
                }
                if let Some(e) = failed {
                    // A record that does not decrypt: the data must not look complete, so
                    // the engine's end stays open (no end of data) until the transfer fails.
                    tracing::warn!("data connection: {e}; no more data taken from it");
                    hold_open(inner).await;
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
                    let _ = outer_shutdown(&outer, &mut channel);
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

/// Keeps the engine's end open until the engine gives up on it (its stall or abort), so that
/// a failed connection is never taken for a finished one.
async fn hold_open(mut inner: UnixStream) {
    let mut sink = [0u8; 4096];
    while matches!(inner.read(&mut sink).await, Ok(n) if n > 0) {}
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

/// `close_notify` (written by OpenSSL on the socket itself), then the end of our direction.
fn outer_shutdown(outer: &TcpStream, channel: &mut Channel) -> std::io::Result<()> {
    channel.close_notify();
    rustix::net::shutdown(outer, rustix::net::Shutdown::Write).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use openssl::x509::{X509Builder, X509NameBuilder};
    use tokio::io::AsyncReadExt;

    use crate::gsi::{DataAuth, FtpsContext, Role};

    /// A self-signed FTPS certificate and key in `dir`.
    fn ftps_context(dir: &std::path::Path) -> FtpsContext {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "localhost").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let (cert, key_path) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert, b.build().to_pem().unwrap()).unwrap();
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        FtpsContext::load(&cert, &key_path).unwrap()
    }

    /// A peer that sends its data in records and closes without close_notify (as
    /// globus-url-copy does) hands the engine every byte, then the end of the data.
    #[tokio::test]
    async fn every_byte_arrives_when_the_peer_closes_without_close_notify() {
        let dir = tempfile::tempdir().unwrap();
        let auth = DataAuth::ftps(&ftps_context(dir.path()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 12345).map(|i: u32| (i % 251) as u8).collect();
        let sent = data.clone();
        let client = std::thread::spawn(move || {
            let mut c = SslConnector::builder(SslMethod::tls_client()).unwrap();
            c.set_verify(SslVerifyMode::NONE);
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            let mut tls = c.build().connect("localhost", tcp).unwrap();
            tls.write_all(&sent).unwrap();
            // The end of our data as a bare FIN, no close_notify; then read what the server
            // sends (session tickets, its own close) until it closes.
            tls.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut tls, &mut rest);
        });
        let (mut sock, _) = listener.accept().await.unwrap();
        let channel = super::super::dcau::secure(&mut sock, &auth, Role::Accepted)
            .await
            .unwrap()
            .expect("PROT P gives a record layer");
        let mut engine_end = super::start(sock, channel).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(20), engine_end.read_to_end(&mut got));
        read.await.expect("the end of the data never came").unwrap();
        // The engine is done with it: the relay closes the peer's connection too.
        drop(engine_end);
        tokio::task::spawn_blocking(move || client.join().unwrap())
            .await
            .unwrap();
        assert!(got == data, "{} bytes of {}", got.len(), data.len());
    }
}
