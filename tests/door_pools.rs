//! `ringmover door` with `ringmover pool`s in separate processes on distinct loopback
//! addresses: data moves pool↔client directly (the 127 reply carries the pool's address),
//! listings merge, a pool that dies fails its transfer and leaves the rest working, and a
//! third-party copy runs between two doors whose files sit on different pools.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::site::*;
use common::*;

#[test]
fn data_moves_between_client_and_pools_directly() {
    let site = Site::start(&["127.0.0.2", "127.0.0.3"]);
    write_big(&site.root(0).join("a"), (6 << 20) + 1, 1);
    write_big(&site.root(1).join("b"), (4 << 20) + 3, 2);
    let local = scratch();

    for (name, pool, addr) in [("a", 0, "127,0,0,2,"), ("b", 1, "127,0,0,3,")] {
        let dst = local.path().join(name);
        let (ok, text) = guc(&["-dbg", &site.url(&format!("/{name}")), &file_url(&dst)]);
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("127 PORT ({addr}")),
            "data must come from the pool: {text}"
        );
        assert_same(&site.root(pool).join(name), &dst);
        // MODE E: the pool connects to the client (GET ...;port=...;).
        let (ok, text) = guc(&["-p", "4", &site.url(&format!("/{name}")), &file_url(&dst)]);
        assert!(ok, "{text}");
        assert_same(&site.root(pool).join(name), &dst);
        // Delayed passive without GET/PUT also reaches the pool directly.
        let (ok, text) = guc(&["-dbg", "-no-g2", "-dp", &site.url(&format!("/{name}")), &file_url(&dst)]);
        assert!(ok, "{text}");
        assert!(text.contains(&format!("127 Entering Passive Mode ({addr}")), "{text}");
    }

    // Plain PASV (-no-g2 without -dp): the door relays between client and pool.
    let relayed = local.path().join("relayed");
    let (ok, text) = guc(&["-dbg", "-no-g2", &site.url("/a"), &file_url(&relayed)]);
    assert!(ok, "{text}");
    assert!(
        text.contains("227 Entering Passive Mode (127,0,0,1,"),
        "the client talks to the door: {text}"
    );
    assert_same(&site.root(0).join("a"), &relayed);
    let (ok, text) = guc(&["-no-g2", &file_url(&relayed), &site.user_url("/relayed-up")]);
    assert!(ok, "{text}");
    let on: Vec<usize> = (0..2).filter(|&i| site.root(i).join("relayed-up").exists()).collect();
    assert_eq!(on.len(), 1);
    assert_same(&relayed, &site.root(on[0]).join("relayed-up"));

    // An upload lands on exactly one pool, byte for byte.
    let src = local.path().join("a");
    let (ok, text) = guc(&["-dbg", &file_url(&src), &site.user_url("/up")]);
    assert!(ok, "{text}");
    let on: Vec<usize> = (0..2).filter(|&i| site.root(i).join("up").exists()).collect();
    assert_eq!(on.len(), 1, "{text}");
    assert_same(&src, &site.root(on[0]).join("up"));

    // Listings merge both pools; namespace commands reach the right pool.
    let (ok, text) = guc(&["-list", &site.url("/")]);
    assert!(
        ok && text.contains(" a") && text.contains(" b") && text.contains(" up"),
        "{text}"
    );
    let mut c = Control::login(site.control, USER, PASSWORD);
    assert_eq!(c.expect("SIZE /b", 213).text(), format!("213 {}", (4 << 20) + 3));
    c.expect("MKD /dir", 257);
    assert!(site.root(0).join("dir").is_dir() && site.root(1).join("dir").is_dir());
    c.expect("RNFR /b", 350);
    c.expect("RNTO /dir/b2", 250);
    assert!(site.root(1).join("dir/b2").exists());
    let md5 = c.expect("CKSM MD5 0 -1 /dir/b2", 213).text();
    assert_eq!(md5.len(), 4 + 32);
    c.expect("DELE /up", 250);
    assert!(!site.root(on[0]).join("up").exists());
    assert_eq!(c.cmd("SIZE /nothing").code, 550);
}

#[test]
fn a_pool_dying_mid_transfer_fails_only_that_transfer() {
    let mut site = Site::start(&["127.0.0.2", "127.0.0.3"]);
    write_big(&site.root(0).join("big"), 1 << 30, 3);
    write_big(&site.root(1).join("small"), 1 << 20, 4);
    let local = scratch();
    let guc_bin = require_peer("globus-url-copy");
    let child = Command::new(&guc_bin)
        .args([&site.url("/big"), &file_url(&local.path().join("big"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the pool once data is flowing.
    let partial = local.path().join("big");
    let t = Instant::now();
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < (1 << 20) {
        assert!(t.elapsed() < Duration::from_secs(20), "the download never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (mut pool, _root) = site.pools.remove(0);
    let _ = pool.0.kill();
    let _ = pool.0.wait();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "the transfer from the dead pool must fail: {text}"
    );
    assert!(site.log().contains("taken out of rotation"), "{}", site.log());
    // The door and the other pool keep working.
    let dst = local.path().join("small");
    let (ok, text) = guc(&[&site.url("/small"), &file_url(&dst)]);
    assert!(ok, "{text}");
    assert_same(&site.root(0).join("small"), &dst);
    let (ok, text) = guc(&["-list", &site.url("/")]);
    assert!(ok && text.contains("small") && !text.contains("big"), "{text}");
}

#[test]
fn third_party_between_doors_with_files_on_different_pools() {
    // The pools' data addresses differ from the client's: third-party needs trusted networks.
    let trust = ["--trusted-networks", "127.0.0.0/8"];
    let a = Site::start_with(&["127.0.0.2"], &trust);
    let b = Site::start_with(&["127.0.0.4", "127.0.0.5"], &trust);
    write_big(&a.root(0).join("src"), (16 << 20) + 5, 5);
    for opts in [&[][..], &["-p", "4"]] {
        let dst = format!("/copy{}", opts.len());
        let mut args = opts.to_vec();
        // Authenticated at the source: anonymous sessions may only PORT back to the client.
        let (s, d) = (a.user_url("/src"), b.user_url(&dst));
        args.extend([s.as_str(), d.as_str()]);
        let (ok, text) = guc(&args);
        assert!(ok, "{opts:?}: {text}");
        let name = dst.trim_start_matches('/');
        let on: Vec<usize> = (0..2).filter(|&i| b.root(i).join(name).exists()).collect();
        assert_eq!(on.len(), 1);
        assert_same(&a.root(0).join("src"), &b.root(on[0]).join(name));
    }
    drop(a.door);
}

#[test]
fn placement_and_put_then_get_on_one_session() {
    // Pools are named after their data address; new files under /raw go to 127.0.0.3.
    let site = Site::start_with(&["127.0.0.2", "127.0.0.3"], &["--place", "/raw=127.0.0.3"]);
    let local = scratch();
    write_big(&local.path().join("x"), (3 << 20) + 1, 6);
    let mut c = Control::login(site.control, USER, PASSWORD);
    c.expect("MKD /raw", 257);
    drop(c);
    let list = local.path().join("list");
    let lines = [
        format!("{} {}", file_url(&local.path().join("x")), site.user_url("/raw/x")),
        format!("{} {}", site.user_url("/raw/x"), file_url(&local.path().join("x-back"))),
        format!("{} {}", file_url(&local.path().join("x")), site.user_url("/raw/y")),
    ];
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    for opts in [&[][..], &["-fast"], &["-fast", "-p", "4"]] {
        let mut args = opts.to_vec();
        args.extend(["-f", list.to_str().unwrap()]);
        let (ok, text) = guc(&args);
        assert!(ok, "{opts:?}: {text}");
        assert!(
            site.root(1).join("raw/x").exists() && !site.root(0).join("raw/x").exists(),
            "placed on 127.0.0.3"
        );
        assert_same(&local.path().join("x"), &site.root(1).join("raw/x"));
        assert_same(&local.path().join("x"), &local.path().join("x-back"));
        assert_same(&local.path().join("x"), &site.root(1).join("raw/y"));
        std::fs::remove_file(local.path().join("x-back")).unwrap();
    }
}

#[test]
fn mode_e_uploads_over_plain_pasv_are_relayed_per_connection() {
    let site = Site::start(&["127.0.0.2"]);
    let local = scratch();
    let list = local.path().join("list");
    let mut lines = Vec::new();
    for i in 0..3 {
        let f = local.path().join(format!("u{i}"));
        write_big(&f, (2 << 20) + i, 7 + i as u8);
        lines.push(format!("{} {}", file_url(&f), site.user_url(&format!("/u{i}"))));
    }
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    // -no-g2 without -dp: PASV to the door, MODE E with 4 streams, connections kept across
    // files (-fast): each client connection is relayed to its own pool connection.
    let (ok, text) = guc(&["-dbg", "-no-g2", "-fast", "-p", "4", "-f", list.to_str().unwrap()]);
    assert!(ok, "{text}");
    for i in 0..3 {
        assert_same(&local.path().join(format!("u{i}")), &site.root(0).join(format!("u{i}")));
    }
    assert!(text.contains("227 Entering Passive Mode (127,0,0,1,"), "{text}");
    // The second and third files reuse the relayed connections.
    assert!(
        text.matches("125 Beginning transfer; reusing existing data connection.")
            .count()
            >= 2,
        "{text}"
    );
}
