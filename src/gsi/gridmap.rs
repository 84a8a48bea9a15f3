//! The grid-mapfile: which local users a certificate subject may act as.
//!
//! One entry per line: the subject in double quotes (or without, when it has no spaces), then
//! a comma-separated list of local names; the first is the default for `:globus-mapping:`.
//! Blank lines and lines starting with `#` are ignored.

use std::collections::HashMap;
use std::path::Path;

use super::GsiError;

#[derive(Clone, Debug, Default)]
pub struct Gridmap {
    entries: HashMap<String, Vec<String>>,
}

impl Gridmap {
    pub fn load(path: &Path) -> Result<Gridmap, GsiError> {
        let text = std::fs::read_to_string(path).map_err(|source| GsiError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Gridmap::parse(&text).map_err(|(line, why)| GsiError::Gridmap {
            path: path.display().to_string(),
            line,
            why,
        })
    }

    /// Parses the file's text; an error names the line (from 1) and what is wrong with it.
    pub fn parse(text: &str) -> Result<Gridmap, (usize, &'static str)> {
        let mut entries: HashMap<String, Vec<String>> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (dn, rest) = split_subject(line).ok_or((i + 1, "the subject has no closing quote"))?;
            if !dn.starts_with('/') {
                return Err((i + 1, "the subject must start with '/'"));
            }
            let users: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
            if users.is_empty() {
                return Err((i + 1, "no local user after the subject"));
            }
            entries.entry(dn.to_string()).or_default().extend(users);
        }
        Ok(Gridmap { entries })
    }

    /// The local user `requested` (or the default one for `:globus-mapping:` or an empty
    /// name) if `subject` may act as it.
    pub fn map(&self, subject: &str, requested: &str) -> Option<&str> {
        let users = self.entries.get(subject)?;
        if requested.is_empty() || requested == ":globus-mapping:" {
            return users.first().map(String::as_str);
        }
        users.iter().find(|u| *u == requested).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn split_subject(line: &str) -> Option<(&str, &str)> {
    if let Some(rest) = line.strip_prefix('"') {
        let end = rest.find('"')?;
        Some((&rest[..end], &rest[end + 1..]))
    } else {
        Some(line.split_once(char::is_whitespace).unwrap_or((line, "")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_quoted_and_bare_subjects_and_checks_the_requested_user() {
        let g = Gridmap::parse("# sites\n\"/O=Grid/CN=Test User\" alice,bob\n/O=Grid/CN=robot svc\n\n").unwrap();
        assert_eq!(g.map("/O=Grid/CN=Test User", ":globus-mapping:"), Some("alice"));
        assert_eq!(g.map("/O=Grid/CN=Test User", "bob"), Some("bob"));
        assert_eq!(g.map("/O=Grid/CN=Test User", "root"), None);
        assert_eq!(g.map("/O=Grid/CN=robot", ""), Some("svc"));
        assert_eq!(g.map("/O=Grid/CN=Someone", ":globus-mapping:"), None);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            Gridmap::parse("\"/O=Grid/CN=x alice").unwrap_err(),
            (1, "the subject has no closing quote")
        );
        assert_eq!(
            Gridmap::parse("\n\"/O=Grid/CN=x\"").unwrap_err(),
            (2, "no local user after the subject")
        );
        assert_eq!(
            Gridmap::parse("O=Grid alice").unwrap_err(),
            (1, "the subject must start with '/'")
        );
    }
}
