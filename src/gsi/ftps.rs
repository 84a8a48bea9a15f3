//! Plain TLS on an FTP control connection (FTPS, RFC 4217 `AUTH TLS`), without I/O: bytes from
//! the socket in, records for the socket and plaintext out. It shares the memory stream of the
//! GSI contexts; no client certificate is asked for (FTPS users log in with passwords).

use std::path::Path;

use openssl::ssl::{ErrorCode, Ssl, SslContext, SslMethod, SslStream, SslVersion};

use super::accept::{read_all, reason};
use super::creds::Credential;
use super::mem::Pipe;
use super::GsiError;

/// The server's certificate for FTPS.
#[derive(Clone)]
pub struct FtpsContext {
    context: SslContext,
    pub subject: String,
    /// Kept to hand on, sealed, to remote pools (PROT P on their data connections).
    own: std::sync::Arc<Credential>,
}

impl std::fmt::Debug for FtpsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpsContext").field("subject", &self.subject).finish()
    }
}

impl FtpsContext {
    pub fn load(cert: &Path, key: &Path) -> Result<FtpsContext, GsiError> {
        FtpsContext::with(Credential::load(cert, key)?)
    }

    /// A door's certificate as [`FtpsContext::pem`] gave it (a remote pool's copy).
    pub fn from_pem(pem: &[u8]) -> Result<FtpsContext, GsiError> {
        FtpsContext::with(Credential::from_pem(pem)?)
    }

    /// The certificate, its key and chain as PEM, for a remote pool.
    pub fn pem(&self) -> Result<Vec<u8>, GsiError> {
        self.own.to_pem()
    }

    fn with(own: Credential) -> Result<FtpsContext, GsiError> {
        let mut b = SslContext::builder(SslMethod::tls_server()).map_err(GsiError::tls("TLS context"))?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(GsiError::tls("TLS version"))?;
        // FTP clients end data connections with or without close_notify.
        b.set_options(openssl::ssl::SslOptions::IGNORE_UNEXPECTED_EOF);
        own.install(&mut b)?;
        b.set_mode(openssl::ssl::SslMode::ENABLE_PARTIAL_WRITE | openssl::ssl::SslMode::ACCEPT_MOVING_WRITE_BUFFER);
        let subject = super::names::dn(own.chain[0].subject_name());
        Ok(FtpsContext {
            context: b.build(),
            subject,
            own: std::sync::Arc::new(own),
        })
    }
}

/// The server end of one control connection's TLS.
pub struct TlsServer {
    tls: SslStream<Pipe>,
    established: bool,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("established", &self.established)
            .finish()
    }
}

impl TlsServer {
    pub fn new(context: &FtpsContext) -> Result<TlsServer, GsiError> {
        TlsServer::with(Ssl::new(&context.context).map_err(GsiError::tls("TLS session"))?)
    }

    /// The server end of a data connection. It sends no session tickets: a client resumes
    /// the control connection's session, never a data connection's, and a ticket it has not
    /// read when it closes (lftp reads one of two) turns its close into a reset that can
    /// drop its last records, close_notify among them.
    pub fn for_data(context: &FtpsContext) -> Result<TlsServer, GsiError> {
        let mut ssl = Ssl::new(&context.context).map_err(GsiError::tls("TLS session"))?;
        ssl.set_num_tickets(0).map_err(GsiError::tls("TLS session"))?;
        TlsServer::with(ssl)
    }

    fn with(ssl: Ssl) -> Result<TlsServer, GsiError> {
        let tls = SslStream::new(ssl, Pipe::default()).map_err(GsiError::tls("TLS session"))?;
        Ok(TlsServer {
            tls,
            established: false,
        })
    }

    /// Bytes read from the socket: the records to write back (handshake, alerts) and the
    /// plaintext they carried.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), GsiError> {
        self.tls.get_mut().feed(bytes);
        if !self.established {
            match self.tls.accept() {
                Ok(()) => self.established = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    return Ok((self.tls.get_mut().take_output(), Vec::new()));
                }
                Err(e) => return Err(GsiError::Handshake(reason(&e))),
            }
        }
        let plain = read_all(&mut self.tls).map_err(GsiError::Token)?;
        Ok((self.tls.get_mut().take_output(), plain))
    }

    /// True once the handshake is done.
    pub fn established(&self) -> bool {
        self.established
    }

    /// The record layer, once the handshake is done (FTPS data connections).
    pub fn into_channel(self) -> super::Channel {
        super::Channel::new(self.tls)
    }

    /// The records that carry `plain` (nothing before the handshake is done).
    pub fn send(&mut self, plain: &[u8]) -> Result<Vec<u8>, GsiError> {
        if !self.established {
            return Err(GsiError::Handshake("replies before the TLS handshake".into()));
        }
        let mut at = 0;
        while at < plain.len() {
            at += self
                .tls
                .ssl_write(&plain[at..])
                .map_err(|e| GsiError::Token(reason(&e)))?;
        }
        Ok(self.tls.get_mut().take_output())
    }
}
