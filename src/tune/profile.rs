//! Tuning profiles (tuning/*.conf, sysctl.conf syntax): what would change, applying it, and
//! a revert file holding the values from before.

use std::fmt::Write as _;
use std::path::Path;

use thiserror::Error;

use super::{sysctl_path, Host};

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("unknown profile '{0}': use 10g, 100g or 100g-long-rtt")]
    Unknown(String),
    #[error("{file}:{line}: expected 'name = value'")]
    Syntax { file: String, line: usize },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// The profiles shipped in tuning/.
pub const PROFILES: [(&str, &str); 3] = [
    ("10g", include_str!("../../tuning/10g.conf")),
    ("100g", include_str!("../../tuning/100g.conf")),
    ("100g-long-rtt", include_str!("../../tuning/100g-long-rtt.conf")),
];

/// `name = value` lines of a sysctl.conf text (comments and blank lines skipped).
pub fn parse(name: &str, text: &str) -> Result<Vec<(String, String)>, ProfileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| ProfileError::Syntax {
            file: name.into(),
            line: i + 1,
        })?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || k.contains('/') || k.contains("..") {
            return Err(ProfileError::Syntax {
                file: name.into(),
                line: i + 1,
            });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A shipped profile by name.
pub fn builtin(name: &str) -> Result<Vec<(String, String)>, ProfileError> {
    let (_, text) = PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ProfileError::Unknown(name.into()))?;
    parse(name, text)
}

/// One setting: its name, the value now (None: not present on this host) and the profile's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    pub from: Option<String>,
    pub to: String,
}

impl Change {
    /// The kernel prints vectors with tabs; compare word by word.
    pub fn needed(&self) -> bool {
        let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        self.from.as_deref().map(norm) != Some(norm(&self.to))
    }
}

/// What applying `settings` would change on `host`.
pub fn plan(host: &Host, settings: &[(String, String)]) -> Vec<Change> {
    settings
        .iter()
        .map(|(name, to)| Change {
            name: name.clone(),
            from: host.sysctl(name),
            to: to.clone(),
        })
        .collect()
}

/// Writes every needed change; returns the revert file's text (old values) first, so a
/// failure halfway still leaves a record of what to restore.
pub fn apply(host: &Host, changes: &[Change], revert_file: &Path) -> Result<(), ProfileError> {
    let mut revert = String::from("# ringmover tune revert file: the values before 'tune apply'\n");
    for c in changes.iter().filter(|c| c.needed()) {
        if let Some(old) = &c.from {
            let _ = writeln!(
                revert,
                "{} = {}",
                c.name,
                old.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
    std::fs::write(revert_file, &revert).map_err(|e| ProfileError::Io(revert_file.display().to_string(), e))?;
    for c in changes.iter().filter(|c| c.needed()) {
        write_sysctl(host, &c.name, &c.to)?;
    }
    Ok(())
}

/// Restores the values of a revert file.
pub fn revert(host: &Host, revert_file: &Path) -> Result<Vec<Change>, ProfileError> {
    let text =
        std::fs::read_to_string(revert_file).map_err(|e| ProfileError::Io(revert_file.display().to_string(), e))?;
    let settings = parse(&revert_file.display().to_string(), &text)?;
    let changes = plan(host, &settings);
    for c in changes.iter().filter(|c| c.needed()) {
        write_sysctl(host, &c.name, &c.to)?;
    }
    Ok(changes)
}

fn write_sysctl(host: &Host, name: &str, value: &str) -> Result<(), ProfileError> {
    let path = host.root.join(sysctl_path(name));
    std::fs::write(&path, format!("{value}\n"))
        .map_err(|e| ProfileError::Io(format!("sysctl {name} ({})", path.display()), e))
}

/// The dry-run listing.
pub fn describe(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        let from = c.from.as_deref().map_or("(absent)".to_string(), |f| {
            f.split_whitespace().collect::<Vec<_>>().join(" ")
        });
        let mark = if c.needed() { "change" } else { "same  " };
        let _ = writeln!(out, "{mark} {:<36} {from:<28} -> {}", c.name, c.to);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_apply_then_revert() {
        for (name, _) in PROFILES {
            assert!(builtin(name).unwrap().len() >= 8, "{name}");
        }
        assert!(matches!(builtin("1t"), Err(ProfileError::Unknown(_))));
        assert!(parse("x", "a.b\n").is_err());
        assert!(parse("x", "../../etc/passwd = 1\n").is_err());

        let d = tempfile::tempdir().unwrap();
        let host = Host::at(d.path());
        for (k, v) in [
            ("net/core/rmem_max", "212992"),
            ("net/ipv4/tcp_rmem", "4096\t131072\t6291456"),
            ("net/core/default_qdisc", "fq"),
        ] {
            let p = d.path().join("proc/sys").join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{v}\n")).unwrap();
        }
        let settings = parse(
            "t",
            "net.core.rmem_max = 67108864\nnet.ipv4.tcp_rmem = 4096 87380 33554432\nnet.core.default_qdisc = fq\n",
        )
        .unwrap();
        let changes = plan(&host, &settings);
        assert_eq!(changes.iter().filter(|c| c.needed()).count(), 2);
        assert!(describe(&changes).contains("same   net.core.default_qdisc"));
        let revert_file = d.path().join("revert.conf");
        apply(&host, &changes, &revert_file).unwrap();
        assert_eq!(host.sysctl("net.core.rmem_max").as_deref(), Some("67108864"));
        assert_eq!(host.sysctl("net.ipv4.tcp_rmem").as_deref(), Some("4096 87380 33554432"));
        let back = revert(&host, &revert_file).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(host.sysctl("net.core.rmem_max").as_deref(), Some("212992"));
        assert_eq!(host.sysctl("net.ipv4.tcp_rmem").as_deref(), Some("4096 131072 6291456"));
    }
}
