//! gfal2 (gfal-ls, gfal-copy, gfal-sum: the tools FTS uses) against `ringmover serve` over
//! gsiftp://. gfal2 sends DCAU N, SITE CLIENTINFO and delayed passive.

mod common;

use common::grid::Grid;
use common::{assert_same, run_peer, write_big, Server};

fn gfal(grid: &Grid, tool: &str, args: &[&str]) -> (bool, String) {
    let (ca, proxy) = (grid.path("certdir"), grid.path("proxy"));
    let env = [
        ("X509_CERT_DIR", ca.as_os_str()),
        ("X509_USER_PROXY", proxy.as_os_str()),
        ("GFAL_PYTHONBIN", std::ffi::OsStr::new("/usr/bin/python3")),
    ];
    run_peer(tool, args, &env)
}

#[test]
fn gfal_lists_copies_and_sums_over_gsi() {
    let grid = Grid::new();
    let args = grid.server_args("certdir");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    write_big(&server.path("src.bin"), 5 << 20, 4);
    let url = |p: &str| format!("gsiftp://localhost:{}{p}", server.addr.port());
    let local = tempfile::tempdir().unwrap();
    let down = local.path().join("down.bin");

    let (ok, out) = gfal(&grid, "gfal-ls", &[&url("/")]);
    assert!(ok && out.contains("src.bin"), "{out}");
    let (ok, out) = gfal(
        &grid,
        "gfal-copy",
        &["-f", &url("/src.bin"), &format!("file://{}", down.display())],
    );
    assert!(ok, "{out}\n{}", server.log());
    assert_same(&server.path("src.bin"), &down);
    let (ok, out) = gfal(
        &grid,
        "gfal-copy",
        &[&format!("file://{}", down.display()), &url("/up.bin")],
    );
    assert!(ok, "{out}\n{}", server.log());
    assert_same(&down, &server.path("up.bin"));

    let (ok, out) = gfal(&grid, "gfal-sum", &[&url("/src.bin"), "ADLER32"]);
    let bytes = std::fs::read(server.path("src.bin")).unwrap();
    let want = format!("{:08x}", simd_adler32::adler32(&bytes.as_slice()));
    assert!(ok && out.contains(&want), "want {want}: {out}");
    assert!(server.log().contains("login (GSI)"));
}
