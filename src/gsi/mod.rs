//! GSI: TLS with X.509 proxy certificates, as Globus uses it on the GridFTP control channel
//! (RFC 2228 `AUTH GSSAPI` / `ADAT` / `ENC`) and on data channels (DCAU); and plain TLS on
//! the control channel for FTPS (RFC 4217 `AUTH TLS`, [`ftps`]).
//!
//! Sans-IO: [`accept::Acceptor`] takes ADAT tokens (raw TLS records) and gives back the tokens
//! to send and, at the end, who the peer is, the credential it delegated and the
//! [`channel::Channel`] that wraps and unwraps later command lines. No sockets here; the files
//! are read once, when [`ServerCredentials::load`] builds the TLS context.
//! The wire rules are in `docs/gsi.md`.

pub mod accept;
pub mod channel;
pub mod creds;
pub mod data;
pub mod ftps;
pub mod gridmap;
pub mod initiate;
pub mod keys;
mod mem;
pub mod names;
pub mod policy;
mod proxy;

pub use accept::{Acceptor, Established, Step};
pub use channel::Channel;
pub use creds::{ClientCredentials, Credential, ServerCredentials, TrustPaths};
pub use data::{DataAuth, Handshake, HandshakeStep, Role};
pub use ftps::{FtpsContext, TlsServer};
pub use gridmap::Gridmap;
pub use initiate::{Delegation, InitStep, Initiated, Initiator};
pub use mem::Transport;
pub use names::PeerIdentity;

/// What can go wrong in GSI.
#[derive(Debug, thiserror::Error)]
pub enum GsiError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Tls {
        what: &'static str,
        source: openssl::error::ErrorStack,
    },
    /// A credential that cannot be used (expired, no certificate in the file).
    #[error("{0}")]
    Credential(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    #[error("delegation: {0}")]
    Delegation(String),
    #[error("the peer sent no certificate chain")]
    NoPeer,
    #[error("token refused: {0}")]
    Token(String),
    #[error("grid-mapfile {path} line {line}: {why}")]
    Gridmap {
        path: String,
        line: usize,
        why: &'static str,
    },
}

impl GsiError {
    fn tls(what: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> GsiError {
        move |source| GsiError::Tls { what, source }
    }
}

#[cfg(test)]
mod tests;
