//! SIGHUP reload (users file, log level from the config file, transfer log reopened) without
//! touching running sessions and transfers, and the JSON log format.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{write_big, Control};
use ringmover::door::auth::Users;

struct Serve {
    child: Child,
    addr: std::net::SocketAddr,
    stderr: std::path::PathBuf,
}

impl Serve {
    fn start(dir: &Path, args: &[&str]) -> Serve {
        let stderr = dir.join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringmover"))
            .arg("serve")
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().strip_prefix("listening on ").expect(&line).parse().unwrap();
        Serve { child, addr, stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn hangup_and_wait(&self, reloads: usize) {
        // SAFETY: kill(2) on our own child with a valid signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
        let start = Instant::now();
        while self.log().matches("reloaded on SIGHUP").count() < reloads {
            assert!(start.elapsed() < Duration::from_secs(10), "no reload: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_reloads_users_level_and_transfer_log_while_a_transfer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    write_big(&root.join("big"), 64 << 20, 7);
    let users = dir.path().join("users");
    Users::set_password(&users, "alice", "alice-pw").unwrap();
    let config = dir.path().join("rm.toml");
    let tlog = dir.path().join("transfers.log");
    let write_config = |level: &str| {
        let text = format!(
            "root = \"{}\"\nlisten = \"127.0.0.1:0\"\nusers = \"{}\"\nlog-level = \"{level}\"\ntransfer-log = \"{}\"\n",
            root.display(),
            users.display(),
            tlog.display()
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("info");
    let server = Serve::start(dir.path(), &["--config", config.to_str().unwrap()]);

    // A session logged in before the reload, with a download under way across it.
    let mut alice = Control::login(server.addr, "alice", "alice-pw");
    alice.expect("TYPE I", 200);
    let mut data = alice.pasv();
    let r = alice.cmd("RETR big");
    assert_eq!(r.code, 150, "{}", r.text());
    let mut first = vec![0u8; 1 << 20];
    data.read_exact(&mut first).unwrap();

    let mut bob = Control::connect(server.addr);
    bob.expect("USER bob", 331);
    bob.expect("PASS bob-pw", 530);

    Users::set_password(&users, "bob", "bob-pw").unwrap();
    write_config("trace");
    std::fs::rename(&tlog, dir.path().join("transfers.log.1")).unwrap();
    server.hangup_and_wait(1);

    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() + rest.len(), 64 << 20);
    assert_eq!(alice.final_reply().code, 226);
    alice.expect("NOOP", 200);
    Control::login(server.addr, "bob", "bob-pw").expect("NOOP", 200);

    let log = server.log();
    let after = &log[log.find("reloaded on SIGHUP").unwrap()..];
    assert!(after.contains("TRACE"), "no trace lines after the reload: {after}");
    assert!(
        !log[..log.find("reloaded on SIGHUP").unwrap()].contains("TRACE"),
        "{log}"
    );
    let fresh = std::fs::read_to_string(&tlog).unwrap();
    assert!(fresh.contains("path=/big") && fresh.contains("result=ok"), "{fresh}");
    assert_eq!(fresh.lines().count(), 1, "{fresh}");

    // A config file that no longer parses changes nothing.
    std::fs::write(&config, "bogus = 1\n").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let start = Instant::now();
    while !server.log().contains("reload refused") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    Control::login(server.addr, "bob", "bob-pw").expect("NOOP", 200);
}

#[test]
fn json_logs_carry_the_transfer_fields_as_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), vec![5u8; 100_000]).unwrap();
    let server = Serve::start(
        dir.path(),
        &[
            "--root",
            root.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
    );
    let mut c = Control::login(server.addr, "anonymous", "x@y");
    c.expect("TYPE I", 200);
    let (bytes, reply) = c.download("RETR f");
    assert_eq!((bytes.len(), reply.code), (100_000, 226));
    let start = Instant::now();
    let transfer = loop {
        let log = server.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if let Some(t) = lines.into_iter().find(|v| v["target"] == "ringmover::transfer") {
            break t;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(transfer["bytes"], 100_000);
    assert_eq!(transfer["direction"], "download");
    assert_eq!(transfer["path"], "/f");
    assert_eq!(transfer["result"], "ok");
    assert!(
        transfer["seconds"].is_f64() && transfer["rate_mb_s"].is_f64(),
        "{transfer}"
    );
}
