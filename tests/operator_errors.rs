//! The mistakes operators make, each answered by one clear message and a failed start (or, for
//! locked memory, a warning and a working server), and `config check`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ringmover, Server};

/// Runs `ringmover ARGS`, killed after `limit`: (exited by itself, exit code, stdout + stderr).
fn run_for(args: &[&str], limit: Duration) -> (bool, Option<i32>, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args(args)
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(out.path()).unwrap();
    (status.is_some(), status.and_then(|s| s.code()), text)
}

fn fails(sub: &str, args: &[&str], says: &[&str]) -> String {
    let (status, text) = ringmover(sub, args);
    assert_eq!(status.code(), Some(2), "{text}");
    for s in says {
        assert!(text.contains(s), "expected {s:?} in: {text}");
    }
    text
}

#[test]
fn a_pool_pointed_at_the_control_port_says_so_and_stops() {
    let server = Server::start(&[]);
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("keys");
    let (status, text) = ringmover("link-key", &["p1", "--keys", keys.to_str().unwrap()]);
    assert!(status.success(), "{text}");
    let door = server.addr.to_string();
    let (exited, code, text) = run_for(
        &[
            "pool",
            "--root",
            d.path().to_str().unwrap(),
            "--door",
            &door,
            "--key-file",
            keys.to_str().unwrap(),
            "--name",
            "p1",
        ],
        Duration::from_secs(20),
    );
    assert!(exited, "the pool kept retrying: {text}");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("FTP control port") && text.contains("--pool-listen"),
        "{text}"
    );
    assert!(!text.contains("842149920"), "{text}");
}

#[test]
fn a_missing_root_is_said_once() {
    let text = fails("serve", &["--root", "/nonexistent/ringmover-root"], &["does not exist"]);
    assert_eq!(text.matches("/nonexistent/ringmover-root").count(), 1, "{text}");
    let file = tempfile::NamedTempFile::new().unwrap();
    fails(
        "serve",
        &["--root", file.path().to_str().unwrap()],
        &["not a directory"],
    );
}

#[test]
fn a_port_in_use_names_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let d = tempfile::tempdir().unwrap();
    let text = fails(
        "serve",
        &["--root", d.path().to_str().unwrap(), "--listen", &addr],
        &["--listen", "in use by another process"],
    );
    assert!(!text.contains("os error 98: "), "{text}");
}

#[test]
fn a_bad_users_line_names_its_line() {
    let d = tempfile::tempdir().unwrap();
    let users = d.path().join("users");
    ringmover::door::auth::Users::set_password(&users, "alice", "secretpw").unwrap();
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("bob:not-a-hash\n");
    std::fs::write(&users, text).unwrap();
    fails(
        "serve",
        &["--root", d.path().to_str().unwrap(), "--users", users.to_str().unwrap()],
        &["line 2"],
    );
}

#[test]
fn a_port_range_smaller_than_the_sessions_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    fails(
        "serve",
        &["--root", root, "--port-range", "50000-50009", "--max-sessions", "20"],
        &["10 ports", "--max-sessions 20", "widen the range"],
    );
    let (exited, _, text) = run_for(
        &[
            "serve",
            "--root",
            root,
            "--listen",
            "127.0.0.1:0",
            "--port-range",
            "50000-50009",
            "--max-sessions",
            "10",
        ],
        Duration::from_secs(3),
    );
    assert!(!exited && text.contains("listening on"), "{text}");
}

#[test]
fn cpus_this_process_may_not_use_are_refused() {
    let d = tempfile::tempdir().unwrap();
    fails(
        "serve",
        &["--root", d.path().to_str().unwrap(), "--cpus", "4095"],
        &["--cpus [4095]", "may only use CPUs"],
    );
}

#[test]
fn a_congestion_control_that_is_not_a_name_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    fails(
        "serve",
        &["--root", root, "--congestion", "cu bic"],
        &["--congestion", "not a congestion control"],
    );
    fails(
        "copy",
        &["--congestion", "a/b", "/dev/null", "/dev/null"],
        &["--congestion"],
    );
}

/// Without CAP_IPC_LOCK and with a small RLIMIT_MEMLOCK the kernel refuses to register the
/// engine's buffers: the server still runs and says how to raise the limit (needs root to
/// drop to nobody, as CI has).
#[test]
fn a_small_memlock_limit_is_a_warning_with_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("ringmover");
    std::fs::copy(env!("CARGO_BIN_EXE_ringmover"), &bin).unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [d.path(), root.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = format!(
        "ulimit -l 64; exec {} serve --root {} --listen 127.0.0.1:0",
        bin.display(),
        root.display()
    );
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv(1) is needed for this test");
    let mut stdout = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut stdout)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.starts_with("listening on"), "{stdout} {stderr}");
    assert!(stderr.contains("LimitMEMLOCK") && stderr.contains("64 KiB"), "{stderr}");
    assert_eq!(stderr.matches("LimitMEMLOCK").count(), 1, "once per process: {stderr}");
}

#[test]
fn config_check_validates_every_role_without_starting() {
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("keys");
    let (status, text) = ringmover("link-key", &["p1", "--keys", keys.to_str().unwrap()]);
    assert!(status.success(), "{text}");
    let file = d.path().join("site.toml");
    let site = format!(
        "root = \"{root}\"\nport-range = \"50000-50999\"\nidle-timeout = \"10m\"\n\n[door]\nlisten = \"127.0.0.1:1\"\n\
         pool-keys = \"{keys}\"\n\n[pool]\nname = \"p1\"\nkey-file = \"{keys}\"\n",
        root = d.path().display(),
        keys = keys.display()
    );
    std::fs::write(&file, &site).unwrap();
    let (status, text) = ringmover("config", &["check", file.to_str().unwrap()]);
    assert!(status.success(), "{text}");
    assert!(
        text.contains("valid for `ringmover door`") && text.contains("valid for `ringmover pool`"),
        "{text}"
    );
    // Port 1 is not bound: nothing started.
    std::fs::write(&file, site.replace("idle-timeout = \"10m\"", "idle-timeout = \"10x\"")).unwrap();
    fails(
        "config",
        &["check", file.to_str().unwrap()],
        &["--idle-timeout", "line 3"],
    );
    std::fs::write(&file, site.replace("name = \"p1\"", "nme = \"p1\"")).unwrap();
    fails("config", &["check", file.to_str().unwrap()], &["'nme'", "line 10"]);
    std::fs::write(&file, site.replace(&keys.display().to_string(), "/nonexistent/keys")).unwrap();
    fails("config", &["check", file.to_str().unwrap()], &["/nonexistent/keys"]);
    // And the same file starts a server: the [serve]-less file gives serve its top-level keys.
    std::fs::write(
        &file,
        format!("root = \"{}\"\nlisten = \"127.0.0.1:0\"\n", d.path().display()),
    )
    .unwrap();
    let (exited, _, text) = run_for(&["serve", "--config", file.to_str().unwrap()], Duration::from_secs(3));
    assert!(!exited && text.contains("listening on 127.0.0.1:"), "{text}");
}
