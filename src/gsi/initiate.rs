//! The initiating side of a GSI context, as Globus clients run it (and as both ends of a data
//! channel do with DCAU: the side that opened the TCP connection initiates).
//!
//! ```text
//!   Handshake --TLS 1.2 done--> send '0' --> Done
//!       |--TLS 1.3 done--> Sync (wait for the acceptor's next record, its `\0`) --> send '0' --> Done
//! ```
//! With TLS 1.3 the initiator speaks last in the handshake, so the acceptor sends one byte to
//! hand the turn back before the initiator sends its delegation flag. This side never
//! delegates (`0`); the control channel client that delegates comes with `ringmover copy`.

use openssl::ssl::{ErrorCode, Ssl, SslContext, SslStream, SslVersion};

use super::accept::{read_all, reason};
use super::channel::Channel;
use super::mem::Pipe;
use super::names::PeerIdentity;
use super::GsiError;

enum State {
    Handshake,
    Sync(PeerIdentity),
}

/// One GSI context being initiated.
pub struct Initiator {
    tls: SslStream<Pipe>,
    state: State,
}

/// What one token from the acceptor led to.
pub enum InitStep {
    /// Send this token and feed the acceptor's next one.
    Continue(Initiator, Vec<u8>),
    Established(Box<Initiated>),
}

/// A finished context: the last token to send, who the acceptor is, the record layer.
pub struct Initiated {
    pub token: Vec<u8>,
    pub peer: PeerIdentity,
    pub channel: Channel,
}

impl Initiator {
    /// Starts the handshake; the returned token (the ClientHello) goes first.
    pub(crate) fn start(context: &SslContext) -> Result<(Initiator, Vec<u8>), GsiError> {
        let ssl = Ssl::new(context).map_err(GsiError::tls("TLS session"))?;
        let tls = SslStream::new(ssl, Pipe::default()).map_err(GsiError::tls("TLS session"))?;
        let mut me = Initiator {
            tls,
            state: State::Handshake,
        };
        match me.tls.connect() {
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            Ok(()) => return Err(GsiError::Handshake("finished without the peer".into())),
            Err(e) => return Err(GsiError::Handshake(reason(&e))),
        }
        let first = me.tls.get_mut().take_output();
        Ok((me, first))
    }

    /// Feeds one token from the acceptor.
    pub fn step(mut self, token: &[u8]) -> Result<InitStep, GsiError> {
        self.tls.get_mut().feed(token);
        match std::mem::replace(&mut self.state, State::Handshake) {
            State::Handshake => match self.tls.connect() {
                Ok(()) => {
                    let peer = self
                        .tls
                        .ssl()
                        .verified_chain()
                        .and_then(PeerIdentity::from_chain)
                        .ok_or(GsiError::NoPeer)?;
                    let tls13 = self.tls.ssl().version2() == Some(SslVersion::TLS1_3);
                    if tls13 {
                        // Our Finished goes now; the flag after the acceptor's answer.
                        let out = self.tls.get_mut().take_output();
                        self.state = State::Sync(peer);
                        return Ok(InitStep::Continue(self, out));
                    }
                    self.finish(peer)
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    let out = self.tls.get_mut().take_output();
                    Ok(InitStep::Continue(self, out))
                }
                Err(e) => Err(GsiError::Handshake(self.refusal(&e))),
            },
            State::Sync(peer) => {
                // The acceptor's `\0` (a session ticket, if one came, carries no data).
                let got = read_all(&mut self.tls).map_err(GsiError::Handshake)?;
                if got.is_empty() {
                    self.state = State::Sync(peer);
                    return Ok(InitStep::Continue(self, Vec::new()));
                }
                self.finish(peer)
            }
        }
    }

    /// Sends the "no delegation" flag; the context is done.
    fn finish(mut self, peer: PeerIdentity) -> Result<InitStep, GsiError> {
        self.tls.ssl_write(b"0").map_err(|e| GsiError::Delegation(reason(&e)))?;
        let token = self.tls.get_mut().take_output();
        Ok(InitStep::Established(Box::new(Initiated {
            token,
            peer,
            channel: Channel::new(self.tls),
        })))
    }

    fn refusal(&self, e: &openssl::ssl::Error) -> String {
        let verdict = self.tls.ssl().verify_result();
        if verdict == openssl::x509::X509VerifyResult::OK {
            reason(e)
        } else {
            format!("{} ({})", reason(e), verdict.error_string())
        }
    }
}
