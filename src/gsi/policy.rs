//! Globus signing policies: `<hash>.signing_policy` beside a CA's `<hash>.0` says which subject
//! names that CA may sign (`cond_subjects`, shell-style `*` and `?` patterns). A CA whose
//! directory entry has such a file is held to it for every certificate it issued in a peer's
//! chain; a CA without one is trusted for any name, as OpenSSL alone would.
//!
//! The file is the EACL format grid CAs ship (IGTF bundles, grid-ca-create):
//!
//! ```text
//! access_id_CA   X509   '/C=XX/O=Grid/CN=Grid CA'
//! pos_rights     globus CA:sign
//! cond_subjects  globus '"/C=XX/O=Grid/*" "/C=XX/O=Other/*"'
//! ```

use std::path::Path;

/// One CA's entry: its subject and the subject patterns it may sign.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    ca: String,
    can_sign: bool,
    subjects: Vec<String>,
}

/// A parsed `.signing_policy` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigningPolicy {
    entries: Vec<Entry>,
}

/// The text between the first pair of `quote` characters after the keyword.
fn quoted(rest: &str, quote: char) -> Vec<&str> {
    rest.split(quote).skip(1).step_by(2).collect()
}

impl SigningPolicy {
    pub fn parse(text: &str) -> SigningPolicy {
        let mut entries: Vec<Entry> = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let Some((keyword, rest)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            match keyword {
                "access_id_CA" => {
                    if let Some(ca) = quoted(rest, '\'').first() {
                        entries.push(Entry {
                            ca: ca.trim().to_string(),
                            can_sign: false,
                            subjects: Vec::new(),
                        });
                    }
                }
                "pos_rights" => {
                    if let Some(e) = entries.last_mut() {
                        e.can_sign |= rest.split_whitespace().any(|w| w == "CA:sign");
                    }
                }
                "cond_subjects" => {
                    if let (Some(e), Some(list)) = (entries.last_mut(), quoted(rest, '\'').first()) {
                        e.subjects.extend(quoted(list, '"').into_iter().map(str::to_string));
                    }
                }
                _ => {}
            }
        }
        SigningPolicy { entries }
    }

    /// Reads `<ca_dir>/<hash>.signing_policy`; None when the CA has none.
    pub fn load(ca_dir: &Path, issuer_hash: u32) -> Option<std::io::Result<SigningPolicy>> {
        let path = ca_dir.join(format!("{issuer_hash:08x}.signing_policy"));
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(Ok(SigningPolicy::parse(&text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Whether the CA named `issuer` may have signed a certificate for `subject`.
    pub fn allows(&self, issuer: &str, subject: &str) -> bool {
        self.entries
            .iter()
            .filter(|e| e.ca == issuer && e.can_sign)
            .any(|e| e.subjects.iter().any(|p| glob(p.as_bytes(), subject.as_bytes())))
    }
}

/// Shell-style match: `*` any run of characters, `?` any one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "# a comment\n\
        access_id_CA   X509   '/O=Grid/CN=Test CA'\n\
        pos_rights     globus CA:sign\n\
        cond_subjects  globus '\"/O=Grid/OU=Site/*\" \"/O=Grid/CN=host?\"'\n\
        access_id_CA   X509   '/O=Other/CN=No Rights'\n\
        pos_rights     globus CA:none\n\
        cond_subjects  globus '\"*\"'\n";

    #[test]
    fn subjects_inside_the_policy_only() {
        let p = SigningPolicy::parse(POLICY);
        assert!(p.allows("/O=Grid/CN=Test CA", "/O=Grid/OU=Site/CN=alice"));
        assert!(p.allows("/O=Grid/CN=Test CA", "/O=Grid/CN=host1"));
        assert!(!p.allows("/O=Grid/CN=Test CA", "/O=Grid/CN=host12"));
        assert!(!p.allows("/O=Grid/CN=Test CA", "/O=Evil/OU=Site/CN=alice"));
        assert!(!p.allows("/O=Grid/CN=Another CA", "/O=Grid/OU=Site/CN=alice"));
        // Listed without CA:sign: signs nothing.
        assert!(!p.allows("/O=Other/CN=No Rights", "/O=Other/CN=x"));
        assert!(SigningPolicy::parse("garbage\n'\n").entries.is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob(b"/O=Grid/*", b"/O=Grid/CN=a*b"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        assert!(!glob(b"/O=Grid", b"/O=Grid/CN=x"));
    }
}
