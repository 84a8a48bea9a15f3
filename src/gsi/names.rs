//! Distinguished names as Globus writes them (`/O=Grid/OU=Site/CN=Name`) and who a verified
//! chain belongs to once its proxies are set aside.

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::asn1::Asn1Object;
use openssl::stack::StackRef;
use openssl::x509::{X509NameRef, X509Ref, X509};

/// The OpenSSL one-line form grid-mapfiles use: each entry as `/SN=value`, in order.
pub fn dn(name: &X509NameRef) -> String {
    let mut out = String::new();
    for e in name.entries() {
        let key = e.object().nid().short_name().unwrap_or("UNKNOWN");
        let value = e.data().to_string().unwrap_or_default();
        out.push('/');
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
    }
    out
}

/// Who authenticated: the end-entity certificate's subject, with the chain it came with.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    /// The subject of the first certificate in the chain that is not a proxy.
    pub subject: String,
    /// The presented certificate's own subject (a proxy's, with its extra CN).
    pub presented: String,
    /// A limited proxy somewhere in the chain.
    pub limited: bool,
    /// The verified chain, leaf first, trust root last.
    pub chain: Vec<X509>,
}

impl PeerIdentity {
    pub(crate) fn from_chain(chain: &StackRef<X509>) -> Option<PeerIdentity> {
        let certs: Vec<X509> = chain.iter().map(|c| c.to_owned()).collect();
        let leaf = certs.first()?;
        let eec = certs.iter().find(|c| !is_proxy(c))?;
        Some(PeerIdentity {
            subject: dn(eec.subject_name()),
            presented: dn(leaf.subject_name()),
            limited: certs.iter().take_while(|c| is_proxy(c)).any(|c| is_limited(c)),
            chain: certs,
        })
    }

    /// The chain without the trust root, as a delegated credential carries it.
    pub(crate) fn chain_to_send(&self) -> Vec<X509> {
        let n = self.chain.len().saturating_sub(1).max(1);
        self.chain.iter().take(n).cloned().collect()
    }
}

/// Proxy certificates (RFC 3820 and the older Globus forms) as OpenSSL recognised them.
pub(crate) fn is_proxy(cert: &X509Ref) -> bool {
    // SAFETY: `cert` is a valid X509 for the call; X509_get_extension_flags only reads it (it
    // caches the parsed extensions inside the object, which OpenSSL guards itself).
    let flags = unsafe { openssl_sys::X509_get_extension_flags(cert.as_ptr()) };
    flags & openssl_sys::EXFLAG_PROXY != 0
}

/// The policy languages of a limited proxy: RFC 3820 with the Globus "limited" OID, or a
/// legacy proxy whose last CN is `limited proxy`.
fn is_limited(cert: &X509Ref) -> bool {
    let legacy = cert
        .subject_name()
        .entries()
        .last()
        .is_some_and(|e| e.data().to_string().is_ok_and(|v| v == "limited proxy"));
    legacy || has_policy(cert, LIMITED_POLICY)
}

/// The Globus limited-proxy policy language.
pub(crate) const LIMITED_POLICY: &str = "1.3.6.1.4.1.3536.1.1.1.9";
/// RFC 3820 proxyCertInfo.
pub(crate) const PROXY_CERT_INFO: &str = "1.3.6.1.5.5.7.1.14";

/// Whether the certificate's proxyCertInfo names `policy` as its policy language.
fn has_policy(cert: &X509Ref, policy: &str) -> bool {
    let (Ok(ext), Ok(lang)) = (Asn1Object::from_str(PROXY_CERT_INFO), Asn1Object::from_str(policy)) else {
        return false;
    };
    // SAFETY: both pointers are valid for the calls; X509_get_ext returns a pointer into
    // `cert` (not owned, not freed here) and X509_EXTENSION_get_data one into that extension;
    // the bytes are copied out before `cert` can go away.
    let value: Vec<u8> = unsafe {
        let at = openssl_sys::X509_get_ext_by_OBJ(cert.as_ptr(), ext.as_ptr(), -1);
        if at < 0 {
            return false;
        }
        let e = openssl_sys::X509_get_ext(cert.as_ptr(), at);
        if e.is_null() {
            return false;
        }
        let data = openssl_sys::X509_EXTENSION_get_data(e);
        if data.is_null() {
            return false;
        }
        let p = openssl_sys::ASN1_STRING_get0_data(data as *const _);
        let n = openssl_sys::ASN1_STRING_length(data as *const _);
        if p.is_null() || n <= 0 {
            return false;
        }
        std::slice::from_raw_parts(p, n as usize).to_vec()
    };
    // The policy language is the one OID inside ProxyCertInfo's ProxyPolicy.
    let id = lang.as_slice();
    value.windows(id.len()).any(|w| w == id)
}
