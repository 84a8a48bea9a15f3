//! The GSI state machines against each other in memory: a test CA, a host, a user with a
//! proxy this module signs, the handshake, delegation and wrapping, TLS 1.2 and 1.3.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::SslVersion;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509ReqBuilder, X509};

use super::*;

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("O", "Grid").unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

/// A certificate for `cn` signed by `issuer` (self-signed CA when None).
fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, host: bool) -> X509 {
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(fastrand::u32(1..u32::MAX))
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
    match issuer {
        None => {
            b.set_issuer_name(&name(cn)).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
                .unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            b.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
            let usage = KeyUsage::new().digital_signature().key_encipherment().build().unwrap();
            b.append_extension(usage).unwrap();
            if host {
                let san = SubjectAlternativeName::new()
                    .dns("localhost")
                    .build(&b.x509v3_context(Some(ca), None))
                    .unwrap();
                b.append_extension(san).unwrap();
            }
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

/// A proxy of `user` as our own signer makes it (the same code that delegates).
fn proxy(user: &Credential, limited: bool) -> Credential {
    let k = key();
    let mut req = X509ReqBuilder::new().unwrap();
    req.set_pubkey(&k).unwrap();
    req.sign(&k, MessageDigest::sha256()).unwrap();
    let der = proxy::sign_request(&req.build().to_der().unwrap(), user, limited).unwrap();
    let mut chain = vec![X509::from_der(&der).unwrap()];
    chain.extend(user.chain.iter().cloned());
    Credential { key: k, chain }
}

struct Grid {
    dir: tempfile::TempDir,
    trust: TrustPaths,
    user: Credential,
}

fn grid() -> Grid {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = key();
    let ca = cert("Test CA", &ca_key, None, false);
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let hash = ca.subject_name_hash();
    std::fs::write(certs.join(format!("{hash:08x}.0")), ca.to_pem().unwrap()).unwrap();
    let host_key = key();
    let host = cert("localhost", &host_key, Some((&ca, &ca_key)), true);
    std::fs::write(dir.path().join("host.pem"), host.to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("host.key"),
        host_key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let user_key = key();
    let user = Credential {
        chain: vec![cert("Test User", &user_key, Some((&ca, &ca_key)), false)],
        key: user_key,
    };
    Grid {
        dir,
        trust: TrustPaths { ca_dir: certs },
        user,
    }
}

fn proxy_file(grid: &Grid, p: &Credential) -> std::path::PathBuf {
    let path = grid.dir.path().join("proxy");
    let mut pem = p.chain[0].to_pem().unwrap();
    pem.extend(p.key.private_key_to_pem_pkcs8().unwrap());
    for c in &p.chain[1..] {
        pem.extend(c.to_pem().unwrap());
    }
    std::fs::write(&path, pem).unwrap();
    path
}

fn server(grid: &Grid, max: Option<SslVersion>) -> ServerCredentials {
    let (cert, key) = (grid.dir.path().join("host.pem"), grid.dir.path().join("host.key"));
    ServerCredentials::load(&cert, &key, &grid.trust, max).unwrap()
}

/// Runs a whole control-channel exchange; what each side ended with, or the first failure.
fn exchange(
    server: &ServerCredentials,
    client: &ClientCredentials,
    limited: bool,
) -> Result<(Established, Initiated), GsiError> {
    let (mut init, mut token) = client.initiator(Some("localhost"), limited)?;
    let mut acceptor = Acceptor::new(server)?;
    for _ in 0..10 {
        let answer = match acceptor.step(&token)? {
            Step::Continue(a, out) => {
                acceptor = a;
                out
            }
            Step::Established(_) => panic!("the acceptor finished before the initiator"),
        };
        match init.step(&answer)? {
            InitStep::Continue(i, out) => (init, token) = (i, out),
            InitStep::Established(done) => {
                let Step::Established(accepted) = acceptor.step(&done.token)? else {
                    panic!("the acceptor wants more after the initiator's last token");
                };
                return Ok((*accepted, *done));
            }
        }
    }
    panic!("no end to the exchange");
}

#[test]
fn handshake_delegation_and_wrapping_with_tls_1_2_and_1_3() {
    let grid = grid();
    for max in [Some(SslVersion::TLS1_2), None] {
        let client = ClientCredentials::load(&proxy_file(&grid, &proxy(&grid.user, false)), &grid.trust).unwrap();
        let (mut server, mut client) = exchange(&server(&grid, max), &client, true).unwrap();
        assert_eq!(server.peer.subject, "/O=Grid/CN=Test User");
        assert!(!server.peer.limited, "the client's own proxy is a full one");
        assert_eq!(client.peer.presented, "/O=Grid/CN=localhost");
        // The delegated proxy: our key, issued by the client's proxy, limited as asked.
        let delegated = server.delegated.expect("a delegated credential");
        assert!(delegated.chain[0].public_key().unwrap().public_eq(&delegated.key));
        assert_eq!(
            delegated.chain[0].issuer_name().to_der().unwrap(),
            server.peer.chain[0].subject_name().to_der().unwrap()
        );
        let mut chain = openssl::stack::Stack::new().unwrap();
        delegated.chain.iter().for_each(|c| chain.push(c.clone()).unwrap());
        let id = names::PeerIdentity::from_chain(&chain).unwrap();
        assert!(id.limited && id.subject == "/O=Grid/CN=Test User");
        // Commands and replies through the record layer, and a tampered token refused.
        let token = client.channel.wrap(b"USER :globus-mapping:\r\n").unwrap();
        assert_eq!(server.channel.unwrap(&token).unwrap(), b"USER :globus-mapping:\r\n");
        let reply = server.channel.wrap(b"230 ok\r\n").unwrap();
        assert_eq!(client.channel.unwrap(&reply).unwrap(), b"230 ok\r\n");
        let mut bad = client.channel.wrap(b"DELE /x\r\n").unwrap();
        *bad.last_mut().unwrap() ^= 1;
        assert!(server.channel.unwrap(&bad).is_err());
    }
}

#[test]
fn an_untrusted_client_or_an_expired_proxy_is_refused() {
    let grid = grid();
    let other = super::tests::grid();
    let server = server(&grid, None);
    // A user of another CA: the server's handshake fails and says why.
    let stranger = proxy(&other.user, false);
    let client = ClientCredentials::load(&proxy_file(&other, &stranger), &grid.trust).unwrap();
    let e = exchange(&server, &client, false).err().expect("refused");
    assert!(e.to_string().contains("certificate"), "{e}");
    // An expired proxy file is refused before any connection.
    let k = key();
    let mut b = X509Builder::new().unwrap();
    b.set_subject_name(&name("old")).unwrap();
    b.set_issuer_name(&name("old")).unwrap();
    b.set_pubkey(&k).unwrap();
    b.set_not_before(&Asn1Time::from_unix(1_000_000).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::from_unix(2_000_000).unwrap()).unwrap();
    b.sign(&k, MessageDigest::sha256()).unwrap();
    let old = Credential {
        chain: vec![b.build()],
        key: k,
    };
    let e = ClientCredentials::load(&proxy_file(&grid, &old), &grid.trust)
        .err()
        .unwrap();
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn a_ca_signing_policy_limits_the_names_it_vouches_for() {
    let grid = grid();
    let server = server(&grid, None);
    let ca_hash = grid.user.chain[0].issuer_name_hash();
    let policy = grid.trust.ca_dir.join(format!("{ca_hash:08x}.signing_policy"));
    let write = |subjects: &str| {
        let text = format!(
            "access_id_CA X509 '/O=Grid/CN=Test CA'\npos_rights globus CA:sign\ncond_subjects globus '{subjects}'\n"
        );
        std::fs::write(&policy, text).unwrap();
    };
    let user = proxy(&grid.user, false);
    let client = ClientCredentials::load(&proxy_file(&grid, &user), &grid.trust).unwrap();
    // The CA may sign the host's name only: the user's certificate is refused.
    write("\"/O=Grid/CN=localhost\"");
    let e = exchange(&server, &client, false).err().expect("refused");
    assert!(e.to_string().contains("application verification"), "{e}");
    // Both names inside the policy: accepted.
    write("\"/O=Grid/CN=localhost\" \"/O=Grid/CN=Test *\"");
    exchange(&server, &client, false).unwrap();
    // A policy for another CA in this CA's file: nothing it signed is trusted.
    std::fs::write(
        &policy,
        "access_id_CA X509 '/O=Grid/CN=Other CA'\npos_rights globus CA:sign\ncond_subjects globus '\"*\"'\n",
    )
    .unwrap();
    assert!(exchange(&server, &client, false).is_err());
}
