//! Shared helpers for end-to-end tests: start `ringmover serve`, a raw control client, peers.
#![allow(dead_code)]

pub mod grid;
pub mod site;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonder-land";

/// A running `ringmover serve` with its own root; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    pub stderr: PathBuf,
    extra: Vec<String>,
    state: tempfile::TempDir,
}

/// Runs `ringmover SUB ARGS...`: its exit status and stdout followed by stderr.
pub fn ringmover(sub: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .arg(sub)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// A scratch directory in tmpfs when there is one (big files move faster there).
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new().prefix("rm-test").tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let root = scratch();
        Server::start_in(root, extra)
    }

    pub fn start_in(root: tempfile::TempDir, extra: &[&str]) -> Server {
        let state = tempfile::tempdir().unwrap();
        let users = state.path().join("users");
        ringmover::door::auth::Users::set_password(&users, USER, PASSWORD).unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, stderr) = Server::spawn(root.path(), state.path(), "127.0.0.1:0", &extra);
        Server {
            child,
            addr,
            root,
            stderr,
            extra,
            state,
        }
    }

    /// Kills the server (SIGKILL) and starts a new one on the same address and root.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr, stderr) =
            Server::spawn(self.root.path(), self.state.path(), &self.addr.to_string(), &self.extra);
        self.child = child;
        self.addr = addr;
        self.stderr = stderr;
    }

    fn spawn(root: &Path, state: &Path, listen: &str, extra: &[String]) -> (Child, SocketAddr, PathBuf) {
        let users = state.join("users");
        let stderr = state.join(format!(
            "stderr-{}.log",
            std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos()
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringmover"))
            .arg("serve")
            .arg("--root")
            .arg(root)
            .args(["--listen", listen, "--users"])
            .arg(&users)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn ringmover");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; stderr: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .parse()
            .unwrap();
        (child, addr, stderr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ftp://{}{}", self.addr, path)
    }

    pub fn user_url(&self, path: &str) -> String {
        format!("ftp://{USER}:{PASSWORD}@{}{}", self.addr, path)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn control(&self) -> Control {
        Control::connect(self.addr)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw control connection that reads whole replies.
pub struct Control {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

/// One reply: its code and all its lines.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl Control {
    pub fn connect(addr: SocketAddr) -> Control {
        let mut c = Control::over(TcpStream::connect(addr).unwrap());
        assert_eq!(c.reply().code, 220);
        c
    }

    /// A control client on a connection already made (its greeting not read yet).
    pub fn over(s: TcpStream) -> Control {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Control {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    pub fn login(addr: SocketAddr, user: &str, pass: &str) -> Control {
        let mut c = Control::connect(addr);
        c.expect(&format!("USER {user}"), 331);
        c.expect(&format!("PASS {pass}"), 230);
        c
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    pub fn reply(&mut self) -> Reply {
        let mut lines = Vec::new();
        let mut first = String::new();
        self.reader.read_line(&mut first).unwrap();
        assert!(first.len() >= 4, "short reply line {first:?}");
        let code: u16 = first[..3].parse().unwrap_or_else(|_| panic!("bad reply {first:?}"));
        let multi = first.as_bytes()[3] == b'-';
        lines.push(first.trim_end().to_string());
        if multi {
            loop {
                let mut l = String::new();
                if self.reader.read_line(&mut l).unwrap() == 0 {
                    break;
                }
                lines.push(l.trim_end().to_string());
                if l.starts_with(&format!("{code} ")) {
                    break;
                }
            }
        }
        Reply { code, lines }
    }

    /// The next reply that is not a 111/112 marker.
    pub fn final_reply(&mut self) -> Reply {
        loop {
            let r = self.reply();
            if r.code != 111 && r.code != 112 {
                return r;
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.reply()
    }

    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line} -> {}", r.text());
        r
    }

    /// PASV, then connect to the announced port.
    pub fn pasv(&mut self) -> TcpStream {
        let r = self.expect("PASV", 227);
        let text = r.text();
        let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
        let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
        let addr = SocketAddr::from(([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8], n[4] * 256 + n[5]));
        TcpStream::connect(addr).unwrap()
    }

    /// Runs a download command over PASV and returns its bytes and final reply.
    pub fn download(&mut self, cmd: &str) -> (Vec<u8>, Reply) {
        let mut data = self.pasv();
        let r = self.cmd(cmd);
        if r.code >= 400 {
            return (Vec::new(), r);
        }
        assert!(r.code == 150 || r.code == 125, "{cmd} -> {}", r.text());
        let mut buf = Vec::new();
        data.read_to_end(&mut buf).unwrap();
        (buf, self.final_reply())
    }

    /// Runs an upload command over PASV.
    pub fn upload(&mut self, cmd: &str, bytes: &[u8]) -> Reply {
        let mut data = self.pasv();
        let r = self.cmd(cmd);
        if r.code >= 400 {
            return r;
        }
        assert_eq!(r.code, 150, "{cmd} -> {}", r.text());
        data.write_all(bytes).unwrap();
        drop(data);
        self.final_reply()
    }
}

/// Deterministic test content.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The path of a peer program, or a loud failure: interop tests never skip silently.
pub fn require_peer(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: interop tests need the real peer \
         (apt-get install globus-gass-copy-progs globus-gridftp-server-progs; .ci/run does this)"
    );
}

/// Runs a peer program with arguments and environment; (success, stdout then stderr).
pub fn run_peer(program: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (bool, String) {
    let out = Command::new(require_peer(program))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs globus-url-copy with arguments; returns (success, combined output).
pub fn guc(args: &[&str]) -> (bool, String) {
    let bin = require_peer("globus-url-copy");
    let out = Command::new(bin).args(args).output().expect("run globus-url-copy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts two files are byte-identical.
pub fn assert_same(a: &Path, b: &Path) {
    let x = std::fs::read(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    let y = std::fs::read(b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    assert_eq!(x.len(), y.len(), "{} vs {}", a.display(), b.display());
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

/// Writes a large test file fast: 1 MiB blocks of a fixed pattern, each stamped with its index
/// so that a block written at the wrong offset is caught.
pub fn write_big(path: &Path, size: u64, seed: u8) {
    use std::io::Write as _;
    let base = pattern(1 << 20, seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = size;
    let mut i: u64 = 0;
    while left > 0 {
        let mut block = base.clone();
        block[..8].copy_from_slice(&i.to_le_bytes());
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
        i += 1;
    }
    f.flush().unwrap();
}

/// An anonymous globus-gridftp-server on a free port, rooted at a scratch directory.
pub struct Globus {
    pub port: u16,
    pub root: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Globus {
    pub fn start() -> Globus {
        require_peer("globus-gridftp-server");
        let root = scratch();
        let state = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/globus.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", &port.to_string()])
            .arg(root.path())
            .env("GFTP_STATE_BASE", state.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "globus.sh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Globus { port, root, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}{}", self.port, path)
    }

    /// Kills the processes serving sessions (the daemon forks one per connection); the
    /// daemon goes on accepting.
    pub fn kill_sessions(&self) -> usize {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/globus.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["pid", &self.port.to_string()])
            .env("GFTP_STATE_BASE", self.state.path())
            .output()
            .unwrap();
        let daemon = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let kids = Command::new("ps")
            .args(["-o", "pid=", "--ppid", &daemon])
            .output()
            .unwrap();
        let pids: Vec<i32> = String::from_utf8_lossy(&kids.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        for &p in &pids {
            // SAFETY: kill(2) with a pid read from ps and a valid signal number.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        pids.len()
    }
}

impl Drop for Globus {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/globus.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .args(["stop", &self.port.to_string()])
            .env("GFTP_STATE_BASE", self.state.path())
            .output();
    }
}
