//! Signing a proxy certificate for a delegation request (RFC 3820), as the delegating side.

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::x509::extension::KeyUsage;
use openssl::x509::{X509Builder, X509Extension, X509NameBuilder, X509Req, X509};

use super::creds::Credential;
use super::names::{LIMITED_POLICY, PROXY_CERT_INFO};
use super::GsiError;

/// RFC 3820 "inherit all" policy language (an impersonation proxy).
const INHERIT_ALL_POLICY: &str = "1.3.6.1.5.5.7.21.1";
/// Longest a delegated proxy lives (it never outlives the one that signs it).
const MAX_LIFETIME_SECS: i64 = 12 * 3600;

/// The DER proxy certificate for the public key in `request` (DER), issued by `issuer`.
pub(crate) fn sign_request(request: &[u8], issuer: &Credential, limited: bool) -> Result<Vec<u8>, GsiError> {
    let tls = |what| GsiError::tls(what);
    let req = X509Req::from_der(request).map_err(|e| GsiError::Delegation(format!("bad certificate request: {e}")))?;
    let key = req.public_key().map_err(tls("certificate request"))?;
    if !req.verify(&key).map_err(tls("certificate request"))? {
        return Err(GsiError::Delegation(
            "the certificate request is not self-signed".into(),
        ));
    }
    let leaf = issuer.chain.first().ok_or(GsiError::NoPeer)?;

    // Serial: random 63 bits; the subject is the issuer's plus CN=<serial> (RFC 3820 3.4).
    let mut serial = BigNum::new().map_err(tls("serial"))?;
    serial.rand(63, MsbOption::MAYBE_ZERO, false).map_err(tls("serial"))?;
    let serial_text = serial.to_dec_str().map_err(tls("serial"))?.to_string();
    let mut name = X509NameBuilder::new().map_err(tls("proxy name"))?;
    for e in leaf.subject_name().entries() {
        let value = e.data().to_string().map_err(tls("proxy name"))?;
        name.append_entry_by_nid(e.object().nid(), &value)
            .map_err(tls("proxy name"))?;
    }
    name.append_entry_by_text("CN", &serial_text)
        .map_err(tls("proxy name"))?;

    let mut b = X509Builder::new().map_err(tls("proxy"))?;
    b.set_version(2).map_err(tls("proxy"))?;
    let serial = Asn1Integer::from_bn(&serial).map_err(tls("serial"))?;
    b.set_serial_number(&serial).map_err(tls("proxy"))?;
    b.set_subject_name(&name.build()).map_err(tls("proxy"))?;
    b.set_issuer_name(leaf.subject_name()).map_err(tls("proxy"))?;
    b.set_pubkey(&key).map_err(tls("proxy"))?;
    // A little in the past for clocks that run behind; never past the issuer's end.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let start = Asn1Time::from_unix(now - 300).map_err(tls("validity"))?;
    let issuer_left = Asn1Time::from_unix(now)
        .and_then(|t| t.diff(leaf.not_after()))
        .map(|d| i64::from(d.days) * 86400 + i64::from(d.secs))
        .map_err(tls("validity"))?;
    if issuer_left <= 0 {
        return Err(GsiError::Delegation("the credential to delegate has expired".into()));
    }
    let end = Asn1Time::from_unix(now + issuer_left.min(MAX_LIFETIME_SECS)).map_err(tls("validity"))?;
    b.set_not_before(&start).map_err(tls("validity"))?;
    b.set_not_after(&end).map_err(tls("validity"))?;
    let usage = KeyUsage::new()
        .critical()
        .digital_signature()
        .key_encipherment()
        .data_encipherment()
        .build()
        .map_err(tls("key usage"))?;
    b.append_extension(usage).map_err(tls("key usage"))?;
    b.append_extension(proxy_cert_info(limited)?)
        .map_err(tls("proxyCertInfo"))?;
    b.sign(&issuer.key, MessageDigest::sha256())
        .map_err(tls("proxy signature"))?;
    let cert: X509 = b.build();
    cert.to_der().map_err(tls("proxy"))
}

/// The critical proxyCertInfo extension: `SEQUENCE { SEQUENCE { policyLanguage } }` with no
/// path length limit and no policy. OpenSSL builds this extension only from a configuration
/// database, so its two SEQUENCE headers are written here around OpenSSL's own OID encoding.
fn proxy_cert_info(limited: bool) -> Result<X509Extension, GsiError> {
    let tls = |what| GsiError::tls(what);
    let policy = if limited { LIMITED_POLICY } else { INHERIT_ALL_POLICY };
    let oid = Asn1Object::from_str(policy).map_err(tls("policy language"))?;
    let oid = oid.as_slice();
    let oid_tlv = der(0x06, oid)?;
    let policy_seq = der(0x30, &oid_tlv)?;
    let info = der(0x30, &policy_seq)?;
    let value = Asn1OctetString::new_from_bytes(&info).map_err(tls("proxyCertInfo"))?;
    let ext = Asn1Object::from_str(PROXY_CERT_INFO).map_err(tls("proxyCertInfo"))?;
    X509Extension::new_from_der(&ext, true, &value).map_err(tls("proxyCertInfo"))
}

/// A short DER TLV: the one-byte length form, for content under 128 bytes (a policy OID and
/// the two sequences around it always are).
fn der(tag: u8, content: &[u8]) -> Result<Vec<u8>, GsiError> {
    let len = u8::try_from(content.len())
        .ok()
        .filter(|&n| n < 0x80)
        .ok_or_else(|| GsiError::Delegation("policy language OID too long".into()))?;
    let mut out = Vec::with_capacity(content.len() + 2);
    out.push(tag);
    out.push(len);
    out.extend_from_slice(content);
    Ok(out)
}
