//! Copy endpoints: `ftp://` URLs and local paths.

use std::path::{Path, PathBuf};

use super::ClientError;

/// An `ftp://` or `gsiftp://[user[:password]@]host[:port]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FtpUrl {
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// `gsiftp://`: GSI on the control channel (and DCAU on data channels).
    pub gsi: bool,
    /// gsiftp://: the certificate subject the server must present (`-ss`, `-ds`, `-s`), in
    /// place of the host name check.
    pub subject: Option<String>,
}

impl FtpUrl {
    /// The same server and login, another path.
    pub fn with_path(&self, path: String) -> FtpUrl {
        FtpUrl { path, ..self.clone() }
    }

    /// True when both name the same server and login (a control session serves both).
    pub fn same_login(&self, other: &FtpUrl) -> bool {
        self.host == other.host && self.port == other.port && self.user == other.user && self.gsi == other.gsi
    }
}

/// One end of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Ftp(FtpUrl),
    Local(PathBuf),
}

/// Parses `ftp://`, `gsiftp://`, `file://` or a plain local path.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, ClientError> {
    if let Some(rest) = s.strip_prefix("file://") {
        return Ok(Endpoint::Local(PathBuf::from(rest)));
    }
    let (gsi, rest) = match (s.strip_prefix("gsiftp://"), s.strip_prefix("ftp://")) {
        (Some(rest), _) => (true, Some(rest)),
        (None, rest) => (false, rest),
    };
    let Some(rest) = rest else {
        if s.contains("://") {
            return Err(ClientError::Url(format!("unsupported URL scheme in '{s}'")));
        }
        return Ok(Endpoint::Local(PathBuf::from(s)));
    };
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().map_err(|_| ClientError::Url(format!("bad port in '{s}'")))?,
        ),
        // GridFTP's port for both schemes, as globus-url-copy assumes for gsiftp://.
        None => (hostport.to_string(), if gsi { 2811 } else { 21 }),
    };
    if host.is_empty() {
        return Err(ClientError::Url(format!("no host in '{s}'")));
    }
    Ok(Endpoint::Ftp(FtpUrl {
        user,
        password,
        host,
        port,
        path,
        gsi,
        subject: None,
    }))
}

/// `p` made absolute (the movers open paths from /), as UTF-8.
pub fn absolute(p: &Path) -> Result<String, ClientError> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    abs.to_str()
        .map(String::from)
        .ok_or_else(|| ClientError::Url(format!("path {} is not UTF-8", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_endpoint("ftp://bob:pw@example.org:2811/a/b").unwrap(),
            Endpoint::Ftp(FtpUrl {
                user: Some("bob".into()),
                password: Some("pw".into()),
                host: "example.org".into(),
                port: 2811,
                path: "/a/b".into(),
                gsi: false,
                subject: None,
            })
        );
        assert_eq!(
            parse_endpoint("file:///tmp/x").unwrap(),
            Endpoint::Local("/tmp/x".into())
        );
        assert_eq!(parse_endpoint("rel/x").unwrap(), Endpoint::Local("rel/x".into()));
        match parse_endpoint("gsiftp://h/x").unwrap() {
            Endpoint::Ftp(u) => assert!(u.gsi && u.port == 2811 && u.path == "/x"),
            e => panic!("{e:?}"),
        }
        assert!(parse_endpoint("http://h/x").is_err());
        assert!(parse_endpoint("ftp://:21/x").is_err());
    }
}
