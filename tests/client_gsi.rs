//! `ringmover copy gsiftp://`: GSI on the control channel with delegation, DCAU on the data
//! channels, against ringmover serve and globus-gridftp-server, and third-party between the
//! two with globus-url-copy and ringmover copy.

mod common;

use common::grid::{copy, GlobusGsi, Grid};
use common::{assert_same, write_big, Server};

fn gsi_server(grid: &Grid) -> Server {
    let args = grid.server_args("certdir");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

fn ours(server: &Server, path: &str) -> String {
    format!("gsiftp://localhost:{}{path}", server.addr.port())
}

#[test]
fn copy_against_ringmover_and_globus_over_gsi() {
    let grid = Grid::new();
    let server = gsi_server(&grid);
    let globus = GlobusGsi::start(&grid);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src.bin");
    write_big(&src, 7 << 20, 3);
    let down = local.path().join("down.bin");
    let src_s = src.display().to_string();
    let down_s = down.display().to_string();
    std::fs::copy(&src, server.path("src.bin")).unwrap();
    let globus_src = globus.file("src.bin", &src);

    // To and from each server: stream and four streams, DCAU A (both list DCAU), and N.
    let downloads = [ours(&server, "/src.bin"), globus_src.clone()];
    for from in &downloads {
        for extra in [
            &[][..],
            &["-p", "4"][..],
            &["--nodcau"][..],
            &["--dcpriv", "-p", "4"][..],
            &["--dcsafe"][..],
        ] {
            let _ = std::fs::remove_file(&down);
            let mut args = extra.to_vec();
            args.extend([from.as_str(), down_s.as_str()]);
            let (ok, out) = copy(&grid, "proxy", &args);
            assert!(ok, "{args:?}: {out}\n{}", server.log());
            assert_same(&src, &down);
        }
    }
    for (to, stored) in [
        (ours(&server, "/up.bin"), server.path("up.bin")),
        (globus.url("up.bin"), globus.dir.path().join("up.bin")),
    ] {
        let (ok, out) = copy(&grid, "proxy", &["-p", "4", &src_s, &to]);
        assert!(ok, "{to}: {out}");
        assert_same(&src, &stored);
    }
    let log = server.log();
    let with_a = log.matches("dcau=\"A\"").count();
    let with_n = log.matches("dcau=\"N\"").count();
    assert!(with_a == 5 && with_n == 1, "DCAU A {with_a}, N {with_n}:\n{log}");
    assert_eq!(log.matches("prot=\"P\"").count(), 2, "{log}");

    // Third-party between the two, both ways, the servers authenticating each other's data
    // connections with the proxies delegated to them.
    for (from, to, stored) in [
        (
            ours(&server, "/src.bin"),
            globus.url("tp1.bin"),
            globus.dir.path().join("tp1.bin"),
        ),
        (globus_src.clone(), ours(&server, "/tp2.bin"), server.path("tp2.bin")),
    ] {
        for extra in [&[][..], &["-p", "4"][..]] {
            let _ = std::fs::remove_file(&stored);
            let mut args = extra.to_vec();
            args.extend([from.as_str(), to.as_str()]);
            let (ok, out) = copy(&grid, "proxy", &args);
            assert!(ok, "{args:?}: {out}\n{}", server.log());
            assert_same(&src, &stored);
            let (ok, out) = grid.guc("proxy", &[], &args);
            assert!(ok, "globus-url-copy {args:?}: {out}\n{}", server.log());
            assert_same(&src, &stored);
        }
    }
}

#[test]
fn copy_refuses_bad_credentials_clearly() {
    let grid = Grid::new();
    let server = gsi_server(&grid);
    std::fs::write(server.path("f"), b"x").unwrap();
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("f").display().to_string();
    let url = ours(&server, "/f");

    let (ok, out) = copy(&grid, "expired-proxy", &[&url, &dest]);
    assert!(!ok && out.contains("expired"), "{out}");
    let (ok, out) = copy(&grid, "missing-proxy", &[&url, &dest]);
    assert!(!ok && out.contains("missing-proxy"), "{out}");
    let (ok, out) = copy(&grid, "stranger-proxy", &[&url, &dest]);
    assert!(!ok && out.contains("No local user for"), "{out}");
    // A server whose certificate does not name the host asked for (a user's certificate).
    let mut args = grid.server_args("certdir");
    args[1] = grid.path("stranger.pem").display().to_string();
    args[3] = grid.path("stranger.key").display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let impostor = Server::start(&args);
    std::fs::write(impostor.path("f"), b"x").unwrap();
    let (ok, out) = copy(&grid, "proxy", &[&ours(&impostor, "/f"), &dest]);
    assert!(!ok && out.contains("hostname mismatch"), "{out}");
    // Unless the user names the subject the server must have instead (-ss, as
    // globus-url-copy); a wrong one is refused.
    let (ok, out) = copy(
        &grid,
        "proxy",
        &[
            "--ss",
            "/O=Grid/OU=RingmoverTest/CN=Stranger",
            &ours(&impostor, "/f"),
            &dest,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = copy(
        &grid,
        "proxy",
        &["-s", "/O=Grid/CN=Someone", &ours(&server, "/f"), &dest],
    );
    assert!(!ok && out.contains("not the expected /O=Grid/CN=Someone"), "{out}");
    // globus-url-copy with the expired credential is refused by the server's check.
    let (ok, out) = grid.guc("expired-proxy", &[], &[&url, &format!("file://{dest}")]);
    assert!(!ok, "{out}");
    assert!(std::fs::read(&dest).is_ok_and(|b| b.is_empty() || b == b"x"));
}
