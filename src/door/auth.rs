//! Read-write users: a users file of `name:argon2-PHC-hash` lines, written by
//! `ringmover passwd`. Verification costs the same for unknown users (a dummy hash is checked),
//! and repeated failures from one address are delayed (see `guard`).

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use thiserror::Error;

/// Users-file failures.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("users file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("users file {path}, line {line}: {why}")]
    Format { path: String, line: usize, why: String },
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("{0}")]
    BadName(String),
}

/// The users allowed to log in with a password.
#[derive(Debug)]
pub struct Users {
    hashes: HashMap<String, String>,
    dummy: String,
}

/// Hashes a password in PHC format with Argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks that a user name can be stored and used in the users file.
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        && !["anonymous", "ftp"].contains(&name.to_ascii_lowercase().as_str());
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadName(format!(
            "invalid user name '{name}': use 1-64 of [A-Za-z0-9._-@], not anonymous/ftp"
        )))
    }
}

impl Users {
    /// No users: only anonymous logins (if enabled) succeed.
    pub fn empty() -> Users {
        Users::from_map(HashMap::new())
    }

    /// How many users may log in with a password.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn from_map(hashes: HashMap<String, String>) -> Users {
        // Verified for unknown names so that they cost as much as known ones.
        let dummy = hash_password("ringmover-dummy-password").unwrap_or_default();
        Users { hashes, dummy }
    }

    /// Loads a users file.
    pub fn load(path: &Path) -> Result<Users, AuthError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| AuthError::Format {
                path: shown.clone(),
                line: i + 1,
                why: why.into(),
            };
            let (name, hash) = line.split_once(':').ok_or_else(|| bad("expected name:hash"))?;
            PasswordHash::new(hash).map_err(|e| bad(&format!("bad hash: {e}")))?;
            hashes.insert(name.to_string(), hash.to_string());
        }
        Ok(Users::from_map(hashes))
    }

    /// Adds or replaces `name` in the users file at `path` (created with mode 0600).
    pub fn set_password(path: &Path, name: &str, password: &str) -> Result<(), AuthError> {
        check_name(name)?;
        let shown = path.display().to_string();
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(AuthError::Io { path: shown, source }),
        };
        let hash = hash_password(password)?;
        let mut out: Vec<String> = old
            .lines()
            .filter(|l| l.split_once(':').map(|(n, _)| n) != Some(name))
            .map(String::from)
            .collect();
        out.push(format!("{name}:{hash}"));
        crate::secrets::write_private(path, &(out.join("\n") + "\n"))
            .map_err(|source| AuthError::Io { path: shown, source })
    }

    /// Verifies a password. Takes the same time whether or not the user exists.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        let (hash, known) = match self.hashes.get(name) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let ok = PasswordHash::new(hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        ok && known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("users");
        Users::set_password(&p, "alice", "s3cret").unwrap();
        Users::set_password(&p, "bob", "pw").unwrap();
        Users::set_password(&p, "alice", "new").unwrap();
        let u = Users::load(&p).unwrap();
        assert!(u.verify("alice", "new"));
        assert!(!u.verify("alice", "s3cret"));
        assert!(u.verify("bob", "pw"));
        assert!(!u.verify("carol", "pw"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!text.contains("new") && text.contains("$argon2id$"));
    }

    #[test]
    fn bad_names_and_files_are_refused() {
        assert!(check_name("anonymous").is_err());
        assert!(check_name("a:b").is_err());
        assert!(check_name("").is_err());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("users");
        std::fs::write(&p, "alice:nothash\n").unwrap();
        assert!(matches!(Users::load(&p), Err(AuthError::Format { line: 1, .. })));
    }
}
