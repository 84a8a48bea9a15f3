//! A door with pools in separate processes on distinct loopback addresses.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{scratch, PASSWORD, USER};

pub fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A door and its pools, each pool with its own root and loopback address.
pub struct Site {
    pub door: Proc,
    pub control: std::net::SocketAddr,
    pub pool_port: u16,
    pub pools: Vec<(Proc, tempfile::TempDir)>,
    pub log: std::path::PathBuf,
    /// The door's pool keys: one for each of 127.0.0.2 to 127.0.0.9.
    pub keys: std::path::PathBuf,
    _state: tempfile::TempDir,
}

impl Site {
    pub fn start(pool_addrs: &[&str]) -> Site {
        Site::start_with(pool_addrs, &[])
    }

    pub fn start_with(pool_addrs: &[&str], door_args: &[&str]) -> Site {
        let state = tempfile::tempdir().unwrap();
        let users = state.path().join("users");
        ringmover::door::auth::Users::set_password(&users, USER, PASSWORD).unwrap();
        let keys = state.path().join("pool-keys");
        for i in 2..=9 {
            ringmover::link::auth::LinkKeys::add(&keys, &format!("127.0.0.{i}")).unwrap();
        }
        let log = state.path().join("door.log");
        let pool_port = free_port();
        let mut door = Command::new(env!("CARGO_BIN_EXE_ringmover"))
            .args([
                "door",
                "--listen",
                "127.0.0.1:0",
                "--pool-listen",
                &format!("127.0.0.1:{pool_port}"),
                "--users",
            ])
            .arg(&users)
            .arg("--pool-keys")
            .arg(&keys)
            .args(door_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(door.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let control = line
            .trim()
            .strip_prefix("listening on ")
            .expect("door address")
            .parse()
            .unwrap();
        let mut site = Site {
            door: Proc(door),
            control,
            pool_port,
            pools: Vec::new(),
            log,
            keys,
            _state: state,
        };
        for addr in pool_addrs {
            site.add_pool(addr);
        }
        site.wait_for_pools(pool_addrs.len());
        site
    }

    pub fn add_pool(&mut self, addr: &str) {
        let root = scratch();
        let child = Command::new(env!("CARGO_BIN_EXE_ringmover"))
            .args([
                "pool",
                "--door",
                &format!("127.0.0.1:{}", self.pool_port),
                "--data-address",
                addr,
                "--cores",
                "1",
            ])
            .arg("--root")
            .arg(root.path())
            .arg("--key-file")
            .arg(&self.keys)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.pools.push((Proc(child), root));
    }

    pub fn wait_for_pools(&self, n: usize) {
        let t = Instant::now();
        while self.log().matches("pool registered").count() < n {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "pools did not register: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn root(&self, i: usize) -> &Path {
        self.pools[i].1.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("ftp://{}{}", self.control, path)
    }

    pub fn user_url(&self, path: &str) -> String {
        format!("ftp://{USER}:{PASSWORD}@{}{}", self.control, path)
    }
}
