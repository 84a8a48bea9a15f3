//! A throwaway GSI grid (scripts/gsi-testgrid.sh) and globus-url-copy run against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::require_peer;

/// Certificates, proxies and a grid-mapfile in a temporary directory.
pub struct Grid {
    pub dir: tempfile::TempDir,
}

impl Grid {
    /// Makes the grid; fails loudly without openssl or grid-proxy-init.
    pub fn new() -> Grid {
        require_peer("openssl");
        require_peer("grid-proxy-init");
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gsi-testgrid.sh");
        let out = Command::new("bash").arg(script).arg(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "gsi-testgrid.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Grid { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `serve` flags for a GSI server trusting `certdir` (the grid's own CA directory, or
    /// `rogue-certdir`).
    pub fn server_args(&self, certdir: &str) -> Vec<String> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![
            "--cert".into(),
            p("host.pem"),
            "--key".into(),
            p("host.key"),
            "--ca-dir".into(),
            p(certdir),
            "--gridmap".into(),
            p("gridmap"),
        ]
    }

    /// globus-url-copy with one of the grid's proxies; (success, output).
    pub fn guc(&self, proxy: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
        let out = Command::new(require_peer("globus-url-copy"))
            .args(args)
            .env("X509_CERT_DIR", self.path("certdir"))
            .env("X509_USER_PROXY", self.path(proxy))
            .env_remove("X509_USER_CERT")
            .env_remove("X509_USER_KEY")
            .envs(env.iter().copied())
            .output()
            .expect("run globus-url-copy");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}
