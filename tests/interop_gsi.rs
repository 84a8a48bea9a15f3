//! gsiftp:// against `ringmover serve` with the real Globus client: GSI on the control
//! channel (AUTH GSSAPI, ADAT, delegation, ENC/632), mapped by the grid-mapfile.

mod common;

use common::grid::Grid;
use common::{assert_same, write_big, Server};

/// Environment variables for one globus-url-copy run.
type Env<'a> = &'a [(&'a str, &'a str)];

fn gsi_server(grid: &Grid, certdir: &str) -> Server {
    let args = grid.server_args(certdir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

fn gsi_url(server: &Server, path: &str) -> String {
    format!("gsiftp://localhost:{}{path}", server.addr.port())
}

#[test]
fn globus_url_copy_moves_files_over_gsi() {
    let grid = Grid::new();
    let server = gsi_server(&grid, "certdir");
    write_big(&server.path("src.bin"), 9 << 20, 7);
    let local = tempfile::tempdir().unwrap();
    let down = local.path().join("down.bin");
    let src = server.path("src.bin");
    let file = |p: &std::path::Path| format!("file://{}", p.display());

    // Download, upload, four streams each way, TLS 1.3 and 1.2.
    let cases: [(Env, Vec<String>, std::path::PathBuf); 5] = [
        (&[], vec![gsi_url(&server, "/src.bin"), file(&down)], down.clone()),
        (
            &[],
            vec![file(&src), gsi_url(&server, "/up.bin")],
            server.path("up.bin"),
        ),
        (
            &[],
            vec!["-p".into(), "4".into(), gsi_url(&server, "/src.bin"), file(&down)],
            down.clone(),
        ),
        (
            &[],
            vec!["-p".into(), "4".into(), file(&src), gsi_url(&server, "/up4.bin")],
            server.path("up4.bin"),
        ),
        (
            &[("GLOBUS_GSSAPI_MAX_TLS_PROTOCOL", "TLS1_2_VERSION")],
            vec![gsi_url(&server, "/src.bin"), file(&down)],
            down.clone(),
        ),
    ];
    for (env, args, result) in cases {
        let _ = std::fs::remove_file(&down);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = grid.guc("proxy", env, &args);
        assert!(ok, "{args:?} {env:?}: {out}\n{}", server.log());
        assert_same(&src, &result);
    }

    // Listing and a recursive copy of a directory.
    std::fs::create_dir_all(server.path("tree/sub")).unwrap();
    std::fs::write(server.path("tree/a.txt"), b"alpha").unwrap();
    std::fs::write(server.path("tree/sub/b.txt"), b"beta").unwrap();
    let (ok, out) = grid.guc("proxy", &[], &["-list", &gsi_url(&server, "/tree/")]);
    assert!(ok && out.contains("a.txt") && out.contains("sub/"), "{out}");
    let copy = local.path().join("copy/");
    let (ok, out) = grid.guc("proxy", &[], &["-r", "-cd", &gsi_url(&server, "/tree/"), &file(&copy)]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(copy.join("sub/b.txt")).unwrap(), b"beta");

    // PROT P and S: the data in TLS records, stream and four streams, both ways.
    for level in ["-dcpriv", "-dcsafe"] {
        for p in ["1", "4"] {
            let _ = std::fs::remove_file(&down);
            let args = [level, "-p", p, &gsi_url(&server, "/src.bin"), &file(&down)];
            let (ok, out) = grid.guc("proxy", &[], &args);
            assert!(ok, "{args:?}: {out}\n{}", server.log());
            assert_same(&src, &down);
            let up = format!("/up{level}-{p}.bin");
            let (ok, out) = grid.guc("proxy", &[], &[level, "-p", p, &file(&src), &gsi_url(&server, &up)]);
            assert!(ok, "{out}");
            assert_same(&src, &server.path(&up));
        }
    }

    // -nodcau: data channels in clear.
    let (ok, out) = grid.guc("proxy", &[], &["-nodcau", &gsi_url(&server, "/src.bin"), &file(&down)]);
    assert!(ok, "{out}");
    assert_same(&src, &down);

    let log = server.log();
    assert!(
        log.contains("GSI authenticated") && log.contains("delegated=true"),
        "{log}"
    );
    assert!(log.contains("login (GSI)") && log.contains("user=\"tester\""), "{log}");
    // FEAT lists DCAU, so globus-url-copy authenticated every data channel (DCAU A) until
    // it said DCAU N.
    let transfers: Vec<&str> = log.lines().filter(|l| l.contains("ringmover::transfer")).collect();
    let dcau_a = transfers.iter().filter(|l| l.contains("dcau=\"A\"")).count();
    let dcau_n = transfers.iter().filter(|l| l.contains("dcau=\"N\"")).count();
    assert!(
        dcau_a >= 15 && dcau_n == 1,
        "{dcau_a} with DCAU A, {dcau_n} with N:\n{log}"
    );
    let prot_p = transfers.iter().filter(|l| l.contains("prot=\"P\"")).count();
    assert_eq!(prot_p, 8, "{log}");
}

#[test]
fn gsi_refusals_say_why() {
    let grid = Grid::new();
    let server = gsi_server(&grid, "certdir");
    std::fs::write(server.path("f"), b"x").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}/f", out_dir.path().display());

    let cases = [
        (
            "stranger-proxy",
            "530 No local user for /O=Grid/OU=RingmoverTest/CN=Stranger",
        ),
        ("revoked-proxy", "certificate revoked"),
    ];
    for (proxy, want) in cases {
        let (ok, out) = grid.guc(proxy, &[], &[&gsi_url(&server, "/f"), &dest]);
        assert!(!ok && out.contains(want), "{proxy}: {out}");
    }
    let log = server.log();
    assert!(log.contains("GSI login refused: not in the grid-mapfile"), "{log}");
    assert!(
        log.contains("GSI authentication refused") && log.contains("certificate revoked"),
        "{log}"
    );

    // A limited proxy logs in, unless the server refuses them.
    let (ok, out) = grid.guc("limited-proxy", &[], &[&gsi_url(&server, "/f"), &dest]);
    assert!(ok, "{out}");
    let mut args = grid.server_args("certdir");
    args.push("--refuse-limited-proxies".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let strict = Server::start(&args);
    std::fs::write(strict.path("f"), b"x").unwrap();
    let (ok, out) = grid.guc("limited-proxy", &[], &[&gsi_url(&strict, "/f"), &dest]);
    assert!(!ok && out.contains("refuses limited proxies"), "{out}");
    assert!(
        strict.log().contains("GSI authentication refused: a limited proxy"),
        "{}",
        strict.log()
    );
    let (ok, out) = grid.guc("proxy", &[], &[&gsi_url(&strict, "/f"), &dest]);
    assert!(ok, "{out}");

    // A server that does not trust the client's CA.
    let rogue = gsi_server(&grid, "rogue-certdir");
    std::fs::write(rogue.path("f"), b"x").unwrap();
    let (ok, out) = grid.guc("proxy", &[], &[&gsi_url(&rogue, "/f"), &dest]);
    assert!(!ok && out.contains("certificate verify failed"), "{out}");
    // globus-url-copy opens its local file first; nothing reached it.
    let got = std::fs::read(out_dir.path().join("f")).unwrap_or_default();
    assert!(got.is_empty());
}

#[test]
fn a_door_with_remote_pools_authenticates_data_on_the_pools() {
    let grid = Grid::new();
    let args = grid.server_args("certdir");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let certdir = grid.path("certdir").display().to_string();
    // Pool 127.0.0.2 checks DCAU peers against the grid's CAs; 127.0.0.3 has no CA directory.
    let mut site = common::site::Site::start_full(&["127.0.0.2"], &args, &["--ca-dir", &certdir]);
    write_big(&site.root(0).join("a"), 3 << 20, 6);
    let local = tempfile::tempdir().unwrap();
    let down = local.path().join("a");
    let url = format!("gsiftp://localhost:{}/a", site.control.port());
    let dst = format!("file://{}", down.display());
    // FEAT lists DCAU: the door seals the delegated proxy for the pool, which authenticates
    // (and with -dcpriv encrypts) the data connections GET/PUT and MODE E open to it.
    for extra in [&[][..], &["-p", "4"][..], &["-dcpriv"][..], &["-dcpriv", "-p", "4"][..]] {
        let mut a = extra.to_vec();
        a.extend([url.as_str(), dst.as_str()]);
        let (ok, out) = grid.guc("proxy", &[], &a);
        assert!(ok, "{a:?}: {out}");
        assert_same(&site.root(0).join("a"), &down);
    }
    let up = format!("gsiftp://localhost:{}/b", site.control.port());
    let (ok, out) = grid.guc("proxy", &[], &["-dcpriv", &dst, &up]);
    assert!(ok, "{out}");
    assert_same(&down, &site.root(0).join("b"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args(["copy", "-q", "--dcpriv", &url, &down.display().to_string()])
        .env("X509_CERT_DIR", grid.path("certdir"))
        .env("X509_USER_PROXY", grid.path("proxy"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same(&site.root(0).join("a"), &down);
    // Without GET/PUT (-no-g2) globus-url-copy sends plain PASV and the door relays: the door
    // runs the DCAU handshake on the client's connections itself (stream, MODE E and the
    // listing); with -dcpriv the pool runs it through the door, end to end.
    for extra in [
        &["-no-g2"][..],
        &["-no-g2", "-p", "4"][..],
        &["-no-g2", "-dcpriv"][..],
        &["-no-g2", "-dcpriv", "-p", "4"][..],
    ] {
        let _ = std::fs::remove_file(&down);
        let mut a = extra.to_vec();
        a.extend([url.as_str(), dst.as_str()]);
        let (ok, out) = grid.guc("proxy", &[], &a);
        assert!(ok, "{a:?}: {out}");
        assert_same(&site.root(0).join("a"), &down);
    }
    // MODE E uploads to a passive server are relayed per connection.
    let (ok, out) = grid.guc("proxy", &[], &["-no-g2", "-p", "4", &dst, &up]);
    assert!(ok, "{out}");
    assert_same(&down, &site.root(0).join("b"));
    let dir_url = format!("gsiftp://localhost:{}/", site.control.port());
    let (ok, out) = grid.guc("proxy", &[], &["-no-g2", "-list", &dir_url]);
    assert!(ok && out.contains('a'), "{out}");
    let (ok, out) = grid.guc("proxy", &[], &["-no-g2", "-dcpriv", "-p", "4", &dst, &up]);
    assert!(ok, "{out}");
    assert_same(&down, &site.root(0).join("b"));
    // The door sends the listing itself: in TLS records with -dcpriv.
    let (ok, out) = grid.guc("proxy", &[], &["-no-g2", "-dcpriv", "-list", &dir_url]);
    assert!(ok && out.contains('a'), "{out}");
    // A pool without a CA directory refuses DCAU with a reply that says so; -nodcau works.
    let (mut old, _root) = site.pools.remove(0);
    let _ = old.0.kill();
    let _ = old.0.wait();
    let mut bare = common::site::Site::start_with(&["127.0.0.3"], &args);
    write_big(&bare.root(0).join("a"), 1 << 20, 7);
    let url = format!("gsiftp://localhost:{}/a", bare.control.port());
    let (ok, out) = grid.guc("proxy", &[], &[url.as_str(), dst.as_str()]);
    assert!(!ok && out.contains("CA directory"), "{out}");
    let (ok, out) = grid.guc("proxy", &[], &["-nodcau", url.as_str(), dst.as_str()]);
    assert!(ok, "{out}");
    assert_same(&bare.root(0).join("a"), &down);
    bare.pools.clear();
}

#[test]
fn sighup_reloads_the_gridmap_for_new_sessions() {
    let grid = Grid::new();
    let map = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(grid.path("gridmap"), map.path()).unwrap();
    let mut args = grid.server_args("certdir");
    let at = args.iter().position(|a| a == "--gridmap").unwrap();
    args[at + 1] = map.path().display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    std::fs::write(server.path("f"), b"reloaded").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}/f", out_dir.path().display());
    let (ok, out) = grid.guc("stranger-proxy", &[], &[&gsi_url(&server, "/f"), &dest]);
    assert!(!ok && out.contains("No local user"), "{out}");

    let mut text = std::fs::read_to_string(map.path()).unwrap();
    text.push_str("\"/O=Grid/OU=RingmoverTest/CN=Stranger\" tester\n");
    std::fs::write(map.path(), text).unwrap();
    server.signal(libc::SIGHUP);
    let start = std::time::Instant::now();
    while !server.log().contains("reloaded on SIGHUP") {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (ok, out) = grid.guc("stranger-proxy", &[], &[&gsi_url(&server, "/f"), &dest]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(out_dir.path().join("f")).unwrap(), b"reloaded");
}
