//! Who may join a door as a pool: each pool name has its own 256-bit key, shared by the door
//! (a keys file of `name:hex` lines) and that pool. The link opens with a mutual challenge:
//! both sides send a fresh nonce and prove with HMAC-SHA256 over both nonces and the name that
//! they hold the key. The key never crosses the network; a recorded handshake does not replay
//! (the other side's nonce is new), and a name can be taken over only with its own key.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::LinkError;

/// A pool's key.
pub type Key = [u8; 32];
/// A handshake nonce.
pub type Nonce = [u8; 32];

/// The door's side of a handshake proves with this label, the pool's with [`POOL`].
pub const DOOR: &str = "ringmover-link door";
pub const POOL: &str = "ringmover-link pool";

/// Pool keys by name.
#[derive(Clone, Default)]
pub struct LinkKeys {
    keys: HashMap<String, Key>,
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.keys.keys().collect();
        f.debug_struct("LinkKeys").field("names", &names).finish()
    }
}

impl LinkKeys {
    /// Reads a keys file: `name:64-hex-digit-key` lines, `#` comments.
    pub fn load(path: &Path) -> Result<LinkKeys, LinkError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LinkError::Keys(format!("{shown}: {e}")))?;
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| LinkError::Keys(format!("{shown}, line {}: {why}", i + 1));
            let (name, hex_key) = line.rsplit_once(':').ok_or_else(|| bad("expected name:key"))?;
            let mut key = [0u8; 32];
            hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| bad("the key must be 64 hex digits"))?;
            keys.insert(name.trim().to_string(), key);
        }
        Ok(LinkKeys { keys })
    }

    /// The key of pool `name`.
    pub fn get(&self, name: &str) -> Option<&Key> {
        self.keys.get(name)
    }

    /// Pools with a key.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Gives pool `name` a fresh random key in the keys file at `path` (created with mode
    /// 0600; an existing key of that name is replaced).
    pub fn add(path: &Path, name: &str) -> Result<(), LinkError> {
        if name.is_empty() || name.contains(':') || name.contains('\n') || name.starts_with('#') {
            return Err(LinkError::Keys(format!("invalid pool name '{name}'")));
        }
        let shown = path.display().to_string();
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(LinkError::Keys(format!("{shown}: {e}"))),
        };
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let mut lines: Vec<String> = old
            .lines()
            .filter(|l| l.rsplit_once(':').map(|(n, _)| n.trim()) != Some(name))
            .map(String::from)
            .collect();
        lines.push(format!("{name}:{}", hex::encode(key)));
        crate::secrets::write_private(path, &(lines.join("\n") + "\n"))
            .map_err(|e| LinkError::Keys(format!("{shown}: {e}")))
    }
}

/// A fresh random nonce.
pub fn nonce() -> Nonce {
    let mut n = [0u8; 32];
    OsRng.fill_bytes(&mut n);
    n
}

fn mac(key: &Key, role: &str, own: &Nonce, other: &Nonce, name: &str) -> Hmac<Sha256> {
    // A 32-byte key is always a valid HMAC key.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    for part in [role.as_bytes(), own, other, name.as_bytes()] {
        m.update(&(part.len() as u32).to_be_bytes());
        m.update(part);
    }
    m
}

/// The proof of `role` that it holds `key`: over its own nonce, the other side's and the name.
pub fn prove(key: &Key, role: &str, own: &Nonce, other: &Nonce, name: &str) -> String {
    hex::encode(mac(key, role, own, other, name).finalize().into_bytes())
}

/// Checks a proof in constant time.
pub fn verify(key: &Key, role: &str, own: &Nonce, other: &Nonce, name: &str, proof: &str) -> bool {
    let Ok(bytes) = hex::decode(proof) else {
        return false;
    };
    mac(key, role, own, other, name).verify_slice(&bytes).is_ok()
}

/// The key that seals what only the door and this pool may read on this link (delegated
/// credentials): derived from the link key and both nonces, so it is new for every link and
/// never crosses the network.
pub fn seal_key(key: &Key, door: &Nonce, pool: &Nonce, name: &str) -> Key {
    mac(key, SEAL, door, pool, name).finalize().into_bytes().into()
}

const SEAL: &str = "seal";
const SEAL_IV: usize = 12;
const SEAL_TAG: usize = 16;

/// AES-256-GCM: a random IV, the tag and the ciphertext, base64.
pub fn seal(key: &Key, plain: &[u8]) -> Result<String, LinkError> {
    use base64::Engine as _;
    let mut iv = [0u8; SEAL_IV];
    OsRng.fill_bytes(&mut iv);
    let mut tag = [0u8; SEAL_TAG];
    let cipher = openssl::symm::Cipher::aes_256_gcm();
    let body = openssl::symm::encrypt_aead(cipher, key, Some(&iv), &[], plain, &mut tag)
        .map_err(|e| LinkError::Keys(format!("sealing: {e}")))?;
    let mut out = Vec::with_capacity(SEAL_IV + SEAL_TAG + body.len());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Opens what [`seal`] sealed with the same key; any change to it fails.
pub fn unseal(key: &Key, sealed: &str) -> Result<Vec<u8>, LinkError> {
    use base64::Engine as _;
    let bad = || LinkError::Keys("a sealed message that does not open with this link's key".into());
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| bad())?;
    if raw.len() < SEAL_IV + SEAL_TAG {
        return Err(bad());
    }
    let (iv, rest) = raw.split_at(SEAL_IV);
    let (tag, body) = rest.split_at(SEAL_TAG);
    let cipher = openssl::symm::Cipher::aes_256_gcm();
    openssl::symm::decrypt_aead(cipher, key, Some(iv), &[], body, tag).map_err(|_| bad())
}

/// A nonce from its hex form.
pub fn parse_nonce(s: &str) -> Result<Nonce, LinkError> {
    let mut n = [0u8; 32];
    hex::decode_to_slice(s, &mut n).map_err(|_| LinkError::Handshake)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_round_trip_and_proofs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        LinkKeys::add(&p, "pool-a").unwrap();
        LinkKeys::add(&p, "pool-b").unwrap();
        let first = LinkKeys::load(&p).unwrap();
        LinkKeys::add(&p, "pool-a").unwrap();
        let keys = LinkKeys::load(&p).unwrap();
        assert_eq!(keys.len(), 2);
        assert_ne!(first.get("pool-a"), keys.get("pool-a"));
        assert_eq!(first.get("pool-b"), keys.get("pool-b"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);

        let (a, b) = (keys.get("pool-a").unwrap(), keys.get("pool-b").unwrap());
        let (n1, n2) = (nonce(), nonce());
        let proof = prove(a, POOL, &n1, &n2, "pool-a");
        assert!(verify(a, POOL, &n1, &n2, "pool-a", &proof));
        assert!(!verify(b, POOL, &n1, &n2, "pool-a", &proof), "another pool's key");
        assert!(!verify(a, POOL, &n1, &n2, "pool-b", &proof), "another name");
        assert!(!verify(a, DOOR, &n1, &n2, "pool-a", &proof), "the other role");
        assert!(!verify(a, POOL, &n2, &n1, "pool-a", &proof), "nonces swapped");
        assert!(!verify(a, POOL, &n1, &nonce(), "pool-a", &proof), "replayed");
        assert!(!verify(a, POOL, &n1, &n2, "pool-a", "zz"));
    }

    #[test]
    fn bad_keys_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        std::fs::write(&p, "a:1234\n").unwrap();
        assert!(matches!(LinkKeys::load(&p), Err(LinkError::Keys(m)) if m.contains("line 1")));
        assert!(LinkKeys::add(&p, "a:b").is_err());
    }

    #[test]
    fn sealed_messages_open_only_with_the_same_link_key() {
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let (door, pool) = (nonce(), nonce());
        let k = seal_key(&key, &door, &pool, "p1");
        assert_ne!(k, seal_key(&key, &door, &nonce(), "p1"), "a new link, a new key");
        assert_ne!(k, seal_key(&other, &door, &pool, "p1"));
        let sealed = seal(&k, b"proxy key").unwrap();
        assert!(!sealed.contains("proxy"));
        assert_eq!(unseal(&k, &sealed).unwrap(), b"proxy key");
        assert!(unseal(&seal_key(&other, &door, &pool, "p1"), &sealed).is_err());
        let mut raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
        assert!(unseal(&k, &tampered).is_err());
        assert!(unseal(&k, "").is_err() && unseal(&k, "!!").is_err());
    }
}
