//! The accepting side of a GSI context: the TLS handshake carried in ADAT tokens, then the
//! delegation step, as globus-gridftp-server runs it.
//!
//! ```text
//!   Handshake --TLS done--> Flags --'0'--> Done
//!                             |--'D'--> (key + request sent) Cert --proxy certificate--> Done
//! ```
//! After the handshake the server sends one `\0` byte when it has nothing else to send (TLS
//! 1.3, where the client speaks last), so that the client has a token to answer. The client
//! then sends `D` (delegate) or `0`. On `D` the server makes a key pair the size of the
//! client's, sends a DER certificate request, and gets back the proxy certificate the client
//! signed with its own credential.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslStream};
use openssl::x509::{X509NameBuilder, X509ReqBuilder, X509};

use super::channel::Channel;
use super::creds::{Credential, ServerCredentials};
use super::mem::Pipe;
use super::names::PeerIdentity;
use super::GsiError;

/// Largest delegated-key size we generate, whatever the client's key is.
const MAX_KEY_BITS: u32 = 4096;
const MIN_KEY_BITS: u32 = 2048;

enum State {
    Handshake,
    Flags(PeerIdentity),
    Cert(PeerIdentity, PKey<Private>),
}

/// One GSI context being accepted.
pub struct Acceptor {
    tls: SslStream<Pipe>,
    state: State,
    /// Where delegation keys come from: the control channel takes a delegated credential;
    /// data channels (None) never ask for one.
    delegation: Option<std::sync::Arc<super::keys::KeyPool>>,
    /// Run the delegation flag step after the handshake (not on PROT S/P data channels,
    /// where TLS records with data follow the handshake at once).
    flags: bool,
}

/// What one token led to.
pub enum Step {
    /// Send this token back (`335 ADAT=`) and feed the client's next one to this acceptor.
    Continue(Acceptor, Vec<u8>),
    Established(Box<Established>),
}

/// A finished context.
pub struct Established {
    /// A last token for the client (`235 ADAT=`), if any.
    pub token: Option<Vec<u8>>,
    pub peer: PeerIdentity,
    /// The proxy the client delegated (for DCAU and third-party transfers).
    pub delegated: Option<Credential>,
    /// Wraps and unwraps the protected commands that follow.
    pub channel: Channel,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

impl Acceptor {
    /// The control channel's acceptor: the host credential, delegation accepted.
    pub fn new(creds: &ServerCredentials) -> Result<Acceptor, GsiError> {
        Acceptor::with_context(&creds.context, Some(creds.keys.clone()), true)
    }

    pub(crate) fn with_context(
        context: &SslContext,
        delegation: Option<std::sync::Arc<super::keys::KeyPool>>,
        flags: bool,
    ) -> Result<Acceptor, GsiError> {
        let ssl = Ssl::new(context).map_err(GsiError::tls("TLS session"))?;
        let tls = SslStream::new(ssl, Pipe::default()).map_err(GsiError::tls("TLS session"))?;
        Ok(Acceptor {
            tls,
            state: State::Handshake,
            delegation,
            flags,
        })
    }

    /// Feeds one token from the client. May generate a key (tens of milliseconds): run it
    /// off the control threads.
    pub fn step(mut self, token: &[u8]) -> Result<Step, GsiError> {
        self.tls.get_mut().feed(token);
        loop {
            self.state = match std::mem::replace(&mut self.state, State::Handshake) {
                State::Handshake => match self.tls.accept() {
                    Ok(()) => {
                        let peer = verified_peer(&self.tls)?;
                        if !self.flags {
                            return Ok(self.done(peer, None));
                        }
                        if !self.tls.get_ref().has_output() {
                            self.write(b"\0")?;
                        }
                        State::Flags(peer)
                    }
                    Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(self.more(State::Handshake)),
                    Err(e) => return Err(GsiError::Handshake(refusal(&self.tls, &e))),
                },
                State::Flags(peer) => {
                    let mut flag = [0u8; 1];
                    match self.tls.ssl_read(&mut flag) {
                        Ok(1) if flag[0] == b'D' => {
                            let Some(keys) = &self.delegation else {
                                return Err(GsiError::Delegation("not accepted on this channel".into()));
                            };
                            let key = keys.take(delegation_bits(&peer))?;
                            let request = certificate_request(&key)?;
                            self.write(&request)?;
                            State::Cert(peer, key)
                        }
                        Ok(1) if flag[0] == b'0' => return Ok(self.done(peer, None)),
                        Ok(_) => return Err(GsiError::Delegation("unknown delegation flag".into())),
                        Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(self.more(State::Flags(peer))),
                        Err(e) => return Err(GsiError::Delegation(reason(&e))),
                    }
                }
                State::Cert(peer, key) => {
                    let der = self.read_available()?;
                    if der.is_empty() {
                        return Ok(self.more(State::Cert(peer, key)));
                    }
                    let cert =
                        X509::from_der(&der).map_err(|e| GsiError::Delegation(format!("bad certificate: {e}")))?;
                    let delegated = assemble(cert, key, &peer)?;
                    return Ok(self.done(peer, Some(delegated)));
                }
            }
        }
    }

    fn more(mut self, state: State) -> Step {
        self.state = state;
        let out = self.tls.get_mut().take_output();
        Step::Continue(self, out)
    }

    fn done(mut self, peer: PeerIdentity, delegated: Option<Credential>) -> Step {
        let out = self.tls.get_mut().take_output();
        Step::Established(Box::new(Established {
            token: (!out.is_empty()).then_some(out),
            peer,
            delegated,
            channel: Channel::new(self.tls),
        }))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), GsiError> {
        write_step(&mut self.tls, bytes)
    }

    fn read_available(&mut self) -> Result<Vec<u8>, GsiError> {
        read_all(&mut self.tls).map_err(GsiError::Delegation)
    }
}

/// Writes one delegation step's bytes (a flag, a request, a certificate) into records.
pub(crate) fn write_step(tls: &mut SslStream<Pipe>, bytes: &[u8]) -> Result<(), GsiError> {
    tls.ssl_write(bytes)
        .map(|_| ())
        .map_err(|e| GsiError::Delegation(reason(&e)))
}

/// Every plaintext byte the fed records hold.
pub(crate) fn read_all(tls: &mut SslStream<Pipe>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tls.ssl_read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::ZERO_RETURN => return Ok(out),
            Err(e) => return Err(reason(&e)),
        }
    }
}

/// Who the peer of a finished handshake is, from the chain OpenSSL verified.
pub(crate) fn verified_peer(tls: &SslStream<Pipe>) -> Result<PeerIdentity, GsiError> {
    tls.ssl()
        .verified_chain()
        .and_then(PeerIdentity::from_chain)
        .ok_or(GsiError::NoPeer)
}

/// Why a handshake failed: the certificate check's verdict when there is one ("certificate
/// revoked", "unable to get local issuer certificate", ...).
pub(crate) fn refusal(tls: &SslStream<Pipe>, e: &openssl::ssl::Error) -> String {
    let verdict = tls.ssl().verify_result();
    if verdict == openssl::x509::X509VerifyResult::OK {
        reason(e)
    } else {
        format!("{} ({})", reason(e), verdict.error_string())
    }
}

/// The most useful words of an OpenSSL error: the verify result when a certificate was refused.
pub(crate) fn reason(e: &openssl::ssl::Error) -> String {
    match e.ssl_error() {
        Some(stack) => stack
            .errors()
            .iter()
            .map(|x| x.reason().unwrap_or("unknown").to_string())
            .collect::<Vec<_>>()
            .join("; "),
        None => e.to_string(),
    }
}

/// The size of the delegated proxy's key: as strong as the client's own key.
fn delegation_bits(peer: &PeerIdentity) -> u32 {
    peer.chain
        .first()
        .and_then(|c| c.public_key().ok())
        .map(|k| k.bits())
        .unwrap_or(MIN_KEY_BITS)
        .clamp(MIN_KEY_BITS, MAX_KEY_BITS)
}

/// The DER certificate request the client signs: our public key and a placeholder subject.
/// The signer names the proxy after itself and gives it the type of its own proxy (limited
/// when it was asked to delegate a limited one).
fn certificate_request(key: &PKey<Private>) -> Result<Vec<u8>, GsiError> {
    let mut name = X509NameBuilder::new().map_err(GsiError::tls("certificate request"))?;
    name.append_entry_by_text("CN", "proxy request")
        .map_err(GsiError::tls("certificate request"))?;
    let mut req = X509ReqBuilder::new().map_err(GsiError::tls("certificate request"))?;
    req.set_version(0).map_err(GsiError::tls("certificate request"))?;
    req.set_subject_name(&name.build())
        .map_err(GsiError::tls("certificate request"))?;
    req.set_pubkey(key).map_err(GsiError::tls("certificate request"))?;
    req.sign(key, MessageDigest::sha256())
        .map_err(GsiError::tls("certificate request"))?;
    req.build().to_der().map_err(GsiError::tls("certificate request"))
}

/// The delegated credential: the certificate the client signed (it must carry our public key
/// and be issued by the client's leaf), our key, and the client's chain behind it.
fn assemble(cert: X509, key: PKey<Private>, peer: &PeerIdentity) -> Result<Credential, GsiError> {
    let leaf = peer.chain.first().ok_or(GsiError::NoPeer)?;
    let ours = cert
        .public_key()
        .map(|k| k.public_eq(&key))
        .map_err(GsiError::tls("delegated certificate"))?;
    if !ours {
        return Err(GsiError::Delegation("the certificate is not for our key".into()));
    }
    let issuer_key = leaf.public_key().map_err(GsiError::tls("client certificate"))?;
    let signed = cert
        .verify(&issuer_key)
        .map_err(GsiError::tls("delegated certificate"))?;
    if !signed || leaf.issued(&cert) != openssl::x509::X509VerifyResult::OK {
        return Err(GsiError::Delegation(
            "the certificate is not issued by the client".into(),
        ));
    }
    let mut chain = vec![cert];
    chain.extend(peer.chain_to_send());
    Ok(Credential { key, chain })
}
