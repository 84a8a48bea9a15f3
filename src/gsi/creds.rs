//! Credentials and trust: the host's certificate and key, the CA directory, delegated proxies.

use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslOptions, SslVerifyMode, SslVersion};
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509StoreContextRef, X509VerifyResult, X509};

use super::GsiError;

/// Where grid hosts keep their trusted CA certificates (Globus's default for X509_CERT_DIR).
pub const DEFAULT_CA_DIR: &str = "/etc/grid-security/certificates";

/// Where the trust roots are: a directory of CA certificates named by subject hash
/// (`<hash>.0`), with CRLs beside them (`<hash>.r0`), as `X509_CERT_DIR` holds them.
#[derive(Clone, Debug)]
pub struct TrustPaths {
    pub ca_dir: PathBuf,
}

/// A private key and its certificate chain, leaf first: a host credential or a delegated proxy.
pub struct Credential {
    pub key: PKey<Private>,
    pub chain: Vec<X509>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subject = self.chain.first().map(|c| super::names::dn(c.subject_name()));
        f.debug_struct("Credential")
            .field("subject", &subject)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Reads a PEM certificate file (leaf first, then its chain) and a PEM key file.
    pub fn load(cert: &Path, key: &Path) -> Result<Credential, GsiError> {
        let chain = X509::stack_from_pem(&read(cert)?).map_err(GsiError::tls("host certificate"))?;
        let key = PKey::private_key_from_pem(&read(key)?).map_err(GsiError::tls("host key"))?;
        if chain.is_empty() {
            return Err(GsiError::Credential(format!("{} holds no certificate", cert.display())));
        }
        Ok(Credential { key, chain })
    }

    /// A proxy file as grid-proxy-init writes it: certificate, key, then the chain.
    pub fn load_proxy(path: &Path) -> Result<Credential, GsiError> {
        let pem = read(path)?;
        let chain = X509::stack_from_pem(&pem).map_err(GsiError::tls("proxy certificates"))?;
        let key = PKey::private_key_from_pem(&pem).map_err(GsiError::tls("proxy key"))?;
        Ok(Credential { key, chain })
    }

    /// A proxy file's bytes (certificate, key, chain), as [`Credential::from_pem`] reads them:
    /// how a delegated credential travels, sealed, to a remote pool.
    pub fn to_pem(&self) -> Result<Vec<u8>, GsiError> {
        let (leaf, rest) = self.chain.split_first().ok_or(GsiError::NoPeer)?;
        let mut pem = leaf.to_pem().map_err(GsiError::tls("certificate"))?;
        pem.extend(self.key.private_key_to_pem_pkcs8().map_err(GsiError::tls("key"))?);
        for c in rest {
            pem.extend(c.to_pem().map_err(GsiError::tls("certificate chain"))?);
        }
        Ok(pem)
    }

    /// The credential in `pem` (certificate, key, chain).
    pub fn from_pem(pem: &[u8]) -> Result<Credential, GsiError> {
        let chain = X509::stack_from_pem(pem).map_err(GsiError::tls("credential certificates"))?;
        let key = PKey::private_key_from_pem(pem).map_err(GsiError::tls("credential key"))?;
        if chain.is_empty() {
            return Err(GsiError::Credential("no certificate in the credential".into()));
        }
        Ok(Credential { key, chain })
    }

    /// Puts this credential on a TLS context.
    pub(crate) fn install(&self, b: &mut SslContextBuilder) -> Result<(), GsiError> {
        let (leaf, rest) = self.chain.split_first().ok_or(GsiError::NoPeer)?;
        b.set_certificate(leaf).map_err(GsiError::tls("certificate"))?;
        b.set_private_key(&self.key).map_err(GsiError::tls("key"))?;
        b.check_private_key()
            .map_err(GsiError::tls("key does not match certificate"))?;
        for c in rest {
            b.add_extra_chain_cert(c.clone())
                .map_err(GsiError::tls("certificate chain"))?;
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, GsiError> {
    std::fs::read(path).map_err(|source| GsiError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A TLS context as GSI wants it: TLS 1.2 or later, strong ciphers in our order, no session
/// tickets (they break the token exchange), peers verified against the CA directory with proxy
/// certificates allowed and CRLs honoured where a CA publishes one.
pub(crate) fn gsi_context(
    own: &Credential,
    trust: &TrustPaths,
    max: Option<SslVersion>,
) -> Result<SslContext, GsiError> {
    let mut b = SslContext::builder(SslMethod::tls()).map_err(GsiError::tls("TLS context"))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(GsiError::tls("TLS version"))?;
    b.set_max_proto_version(max).map_err(GsiError::tls("TLS version"))?;
    b.set_cipher_list("HIGH:!aNULL:!eNULL")
        .map_err(GsiError::tls("ciphers"))?;
    // A peer that ends a protected data channel without close_notify (globus-url-copy does)
    // has sent all its data: stream mode ends with the connection, MODE E counts its EODs.
    b.set_options(SslOptions::NO_TICKET | SslOptions::CIPHER_SERVER_PREFERENCE | SslOptions::IGNORE_UNEXPECTED_EOF);
    // Data channels write records straight to a non-blocking socket (see `Channel::attach`).
    b.set_mode(openssl::ssl::SslMode::ENABLE_PARTIAL_WRITE | openssl::ssl::SslMode::ACCEPT_MOVING_WRITE_BUFFER);
    b.set_num_tickets(0).map_err(GsiError::tls("tickets"))?;
    own.install(&mut b)?;
    let dir = trust.ca_dir.to_str().ok_or_else(|| GsiError::Read {
        path: trust.ca_dir.display().to_string(),
        source: std::io::Error::other("not UTF-8"),
    })?;
    b.cert_store_mut()
        .add_lookup(X509Lookup::hash_dir())
        .and_then(|l| l.add_dir(dir, openssl::ssl::SslFiletype::PEM))
        .map_err(GsiError::tls("CA directory"))?;
    b.verify_param_mut()
        .set_flags(X509VerifyFlags::ALLOW_PROXY_CERTS | X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)
        .map_err(GsiError::tls("verify flags"))?;
    let ca_dir = trust.ca_dir.clone();
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        move |ok, ctx| {
            if ok {
                within_signing_policy(ctx, &ca_dir)
            } else {
                crl_optional(ok, ctx)
            }
        },
    );
    Ok(b.build())
}

/// A certificate a CA signed must have a subject that CA's `.signing_policy` allows, where it
/// has one (proxies and self-signed roots are not CA-signed names).
fn within_signing_policy(ctx: &mut X509StoreContextRef, ca_dir: &Path) -> bool {
    let Some(cert) = ctx.current_cert() else {
        return true;
    };
    let (issuer, subject) = (
        super::names::dn(cert.issuer_name()),
        super::names::dn(cert.subject_name()),
    );
    if issuer == subject || super::names::is_proxy(cert) {
        return true;
    }
    let allowed = match super::policy::SigningPolicy::load(ca_dir, cert.issuer_name_hash()) {
        None => return true,
        Some(Ok(policy)) => policy.allows(&issuer, &subject),
        Some(Err(e)) => {
            tracing::warn!(ca = %issuer, "signing policy unreadable: {e}");
            false
        }
    };
    if !allowed {
        tracing::warn!(%subject, ca = %issuer, "certificate refused: outside its CA's signing policy");
        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
    }
    allowed
}

/// A CA that publishes no CRL (and a proxy, whose issuer never does) is not an error; a
/// certificate listed in a CRL that is there still is.
fn crl_optional(ok: bool, ctx: &mut X509StoreContextRef) -> bool {
    const UNABLE_TO_GET_CRL: i32 = 3;
    ok || ctx.error().as_raw() == UNABLE_TO_GET_CRL && {
        ctx.set_error(X509VerifyResult::OK);
        true
    }
}

/// Most delegated keys are this size (grid proxies are RSA-2048); a few are kept ready.
const DELEGATION_KEY_BITS: u32 = 2048;
const DELEGATION_KEYS_READY: usize = 4;

/// The server's side: its own credential and the trust roots, loaded once.
#[derive(Clone)]
pub struct ServerCredentials {
    pub(crate) context: SslContext,
    pub subject: String,
    /// Delegation keys made ahead of time.
    pub(crate) keys: std::sync::Arc<super::keys::KeyPool>,
}

impl std::fmt::Debug for ServerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCredentials")
            .field("subject", &self.subject)
            .finish()
    }
}

impl ServerCredentials {
    /// Loads the host certificate and key and the CA directory. `max` caps the TLS version
    /// (tests run 1.2 and 1.3).
    pub fn load(cert: &Path, key: &Path, trust: &TrustPaths, max: Option<SslVersion>) -> Result<Self, GsiError> {
        let own = Credential::load(cert, key)?;
        if !trust.ca_dir.is_dir() {
            return Err(GsiError::Read {
                path: trust.ca_dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "CA directory not found"),
            });
        }
        let subject = super::names::dn(own.chain[0].subject_name());
        Ok(ServerCredentials {
            context: gsi_context(&own, trust, max)?,
            subject,
            keys: super::keys::KeyPool::new(DELEGATION_KEY_BITS, DELEGATION_KEYS_READY),
        })
    }
}

/// A user's side: the proxy (from `X509_USER_PROXY` or `/tmp/x509up_u<uid>`) and the trust
/// roots (`X509_CERT_DIR`, `~/.globus/certificates` or `/etc/grid-security/certificates`).
pub struct ClientCredentials {
    pub credential: std::sync::Arc<Credential>,
    pub trust: TrustPaths,
    pub(crate) context: SslContext,
    /// The end-entity subject the proxy speaks for.
    pub subject: String,
}

impl ClientCredentials {
    pub fn from_env() -> Result<ClientCredentials, GsiError> {
        let proxy = std::env::var_os("X509_USER_PROXY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/x509up_u{}", rustix::process::getuid().as_raw())));
        let ca_dir = std::env::var_os("X509_CERT_DIR").map(PathBuf::from).unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".globus/certificates"));
            home.filter(|h| h.is_dir())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CA_DIR))
        });
        ClientCredentials::load(&proxy, &TrustPaths { ca_dir })
    }

    pub fn load(proxy: &Path, trust: &TrustPaths) -> Result<ClientCredentials, GsiError> {
        let credential = Credential::load_proxy(proxy)?;
        let leaf = credential.chain.first().ok_or(GsiError::NoPeer)?;
        let now = openssl::asn1::Asn1Time::days_from_now(0).map_err(GsiError::tls("clock"))?;
        if leaf.not_after() < now {
            return Err(GsiError::Credential(format!(
                "the proxy {} expired at {}; make a new one (grid-proxy-init)",
                proxy.display(),
                leaf.not_after()
            )));
        }
        let subject = credential
            .chain
            .iter()
            .find(|c| !super::names::is_proxy(c))
            .map(|c| super::names::dn(c.subject_name()))
            .ok_or(GsiError::NoPeer)?;
        Ok(ClientCredentials {
            context: gsi_context(&credential, trust, None)?,
            credential: std::sync::Arc::new(credential),
            trust: trust.clone(),
            subject,
        })
    }

    /// Starts a control channel context with the server at `host` (its certificate must
    /// name it; None: the caller checks the subject itself), delegating a (limited) proxy.
    pub fn initiator(&self, host: Option<&str>, limited: bool) -> Result<(super::Initiator, Vec<u8>), GsiError> {
        let delegation = super::Delegation {
            credential: self.credential.clone(),
            limited,
        };
        super::Initiator::start(&self.context, host, Some(delegation), true)
    }
}
