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
    pub pool_addrs: Vec<String>,
    /// The door's pool keys: one for each of 127.0.0.2 to 127.0.0.9.
    pub keys: std::path::PathBuf,
    door_args: Vec<String>,
    pool_args: Vec<String>,
    _state: tempfile::TempDir,
}

impl Site {
    pub fn start(pool_addrs: &[&str]) -> Site {
        Site::start_with(pool_addrs, &[])
    }

    pub fn start_with(pool_addrs: &[&str], door_args: &[&str]) -> Site {
        Site::start_full(pool_addrs, door_args, &[])
    }

    /// A site whose door and pools get extra arguments.
    pub fn start_full(pool_addrs: &[&str], door_args: &[&str], pool_args: &[&str]) -> Site {
        let state = tempfile::tempdir().unwrap();
        let users = state.path().join("users");
        ringmover::door::auth::Users::set_password(&users, USER, PASSWORD).unwrap();
        let keys = state.path().join("pool-keys");
        for i in 2..=9 {
            ringmover::link::auth::LinkKeys::add(&keys, &format!("127.0.0.{i}")).unwrap();
        }
        let mut site = Site {
            door: Proc(Command::new("true").spawn().unwrap()),
            control: "127.0.0.1:0".parse().unwrap(),
            pool_port: free_port(),
            pools: Vec::new(),
            pool_addrs: Vec::new(),
            log: state.path().join("door.log"),
            keys,
            door_args: door_args.iter().map(|a| a.to_string()).collect(),
            pool_args: pool_args.iter().map(|a| a.to_string()).collect(),
            _state: state,
        };
        site.spawn_door("127.0.0.1:0");
        for addr in pool_addrs {
            site.add_pool(addr);
        }
        site.wait_for_pools(pool_addrs.len());
        site
    }

    /// Starts the door on `listen` (its log appended to the site's log).
    fn spawn_door(&mut self, listen: &str) {
        let users = self._state.path().join("users");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut door = Command::new(env!("CARGO_BIN_EXE_ringmover"))
            .args([
                "door",
                "--listen",
                listen,
                "--pool-listen",
                &format!("127.0.0.1:{}", self.pool_port),
                "--users",
            ])
            .arg(&users)
            .arg("--pool-keys")
            .arg(&self.keys)
            .args(&self.door_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(door.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.control = line
            .trim()
            .strip_prefix("listening on ")
            .expect("door address")
            .parse()
            .unwrap();
        self.door = Proc(door);
    }

    /// Kills the door (SIGKILL) and starts it again on the same ports; the pools reconnect.
    pub fn restart_door(&mut self) {
        let before = self.log().matches("pool registered").count();
        let _ = self.door.0.kill();
        let _ = self.door.0.wait();
        let listen = self.control.to_string();
        self.spawn_door(&listen);
        self.wait_for_pools(before + self.pools.len());
    }

    pub fn add_pool(&mut self, addr: &str) {
        let root = scratch();
        let child = self.spawn_pool(addr, root.path());
        self.pools.push((child, root));
        self.pool_addrs.push(addr.to_string());
    }

    fn spawn_pool(&self, addr: &str, root: &Path) -> Proc {
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
            .arg(root)
            .arg("--key-file")
            .arg(&self.keys)
            .args(&self.pool_args)
            .env_remove("X509_CERT_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Proc(child)
    }

    /// Kills pool `i` (SIGKILL) and starts it again on the same root and address.
    pub fn restart_pool(&mut self, i: usize) {
        let before = self.log().matches("pool registered").count();
        let _ = self.pools[i].0 .0.kill();
        let _ = self.pools[i].0 .0.wait();
        let fresh = self.spawn_pool(&self.pool_addrs[i], self.pools[i].1.path());
        self.pools[i].0 = fresh;
        self.wait_for_pools(before + 1);
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
