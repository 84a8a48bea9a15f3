//! A finished GSI context used as a record layer: each wrapped token is whole TLS records.

use openssl::ssl::SslStream;

use super::accept::{read_all, reason};
use super::mem::Pipe;

/// Wraps and unwraps protected control lines (`ENC`, `632`) with an established context.
pub struct Channel {
    tls: SslStream<Pipe>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gsi::Channel")
    }
}

impl Channel {
    pub(crate) fn new(tls: SslStream<Pipe>) -> Channel {
        Channel { tls }
    }

    /// The records that carry `plain`.
    pub fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut at = 0;
        while at < plain.len() {
            at += self.tls.ssl_write(&plain[at..]).map_err(|e| reason(&e))?;
        }
        Ok(self.tls.get_mut().take_output())
    }

    /// Reads and writes the records on `socket` itself from now on (a data channel with
    /// PROT S/P): [`Channel::read_plain`] and [`Channel::write_plain`], non-blocking.
    pub fn attach(&mut self, socket: impl super::mem::Transport + 'static) {
        self.tls.get_mut().attach(Box::new(socket));
    }

    /// Plaintext read from the attached socket: `Ok(0)` at the end, `WouldBlock` when no
    /// whole record is there yet.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use openssl::ssl::ErrorCode;
        match self.tls.ssl_read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => Ok(0),
            // The peer closed without close_notify (globus-url-copy does): the end of its data.
            Err(e) if e.code() == ErrorCode::SYSCALL && e.io_error().is_none() && e.ssl_error().is_none() => Ok(0),
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                Err(std::io::ErrorKind::WouldBlock.into())
            }
            Err(e) => match e.into_io_error() {
                Ok(io) if io.kind() == std::io::ErrorKind::WouldBlock => Err(io),
                Ok(io) => Err(io),
                Err(e) => Err(std::io::Error::other(reason(&e))),
            },
        }
    }

    /// Plaintext written to the attached socket as records; `WouldBlock` when the socket is
    /// full (call again with the same bytes).
    pub fn write_plain(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use openssl::ssl::ErrorCode;
        match self.tls.ssl_write(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.code() == ErrorCode::WANT_WRITE || e.code() == ErrorCode::WANT_READ => {
                Err(std::io::ErrorKind::WouldBlock.into())
            }
            Err(e) => match e.into_io_error() {
                Ok(io) => Err(io),
                Err(e) => Err(std::io::Error::other(reason(&e))),
            },
        }
    }

    /// Sends `close_notify` on the attached socket, which ends the stream cleanly (best
    /// effort: a full socket leaves it out, and the peer then sees a bare close).
    pub fn close_notify(&mut self) {
        let _ = self.tls.shutdown();
    }

    /// The plaintext of one token. A token that is not whole, authentic records is refused.
    pub fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, String> {
        self.tls.get_mut().feed(token);
        let plain = read_all(&mut self.tls)?;
        if self.tls.get_ref().unread() > 0 {
            return Err("the token ends inside a TLS record".into());
        }
        Ok(plain)
    }
}
