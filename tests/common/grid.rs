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

/// A GSI globus-gridftp-server on a free port (absolute paths, mapped by globus-gridmap),
/// serving a world-writable scratch directory; killed on drop.
pub struct GlobusGsi {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl GlobusGsi {
    pub fn start(grid: &Grid) -> GlobusGsi {
        use std::os::unix::fs::PermissionsExt;
        let bin = require_peer("globus-gridftp-server");
        let dir = tempfile::tempdir().unwrap();
        // The server runs the session as the mapped account (nobody under root).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = grid.path(&format!("globus-{port}.log"));
        let child = Command::new(bin)
            .args(["-c", "/dev/null", "-p", &port.to_string()])
            .args(["-control-interface", "127.0.0.1", "-data-interface", "127.0.0.1"])
            .args(["-no-detach", "-d", "error,warn,info", "-l"])
            .arg(&log)
            .env("X509_USER_CERT", grid.path("host.pem"))
            .env("X509_USER_KEY", grid.path("host.key"))
            .env("X509_CERT_DIR", grid.path("certdir"))
            .env("GRIDMAP", grid.path("globus-gridmap"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start globus-gridftp-server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "globus-gridftp-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        GlobusGsi { port, dir, child }
    }

    /// A world-readable file in the served directory; its gsiftp:// URL.
    pub fn file(&self, name: &str, bytes_from: &Path) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(name);
        std::fs::copy(bytes_from, &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("gsiftp://localhost:{}{}/{name}", self.port, self.dir.path().display())
    }
}

impl Drop for GlobusGsi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ringmover copy` with one of the grid's proxies; (success, output).
pub fn copy(grid: &Grid, proxy: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .arg("copy")
        .arg("-q")
        .args(args)
        .env("X509_CERT_DIR", grid.path("certdir"))
        .env("X509_USER_PROXY", grid.path(proxy))
        .env("RUST_LOG", "info")
        .output()
        .expect("run ringmover copy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
