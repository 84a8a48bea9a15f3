//! FTPS (RFC 4217, explicit `AUTH TLS`) for password users: curl and lftp against
//! `ringmover serve --tls-cert`, data channels in clear (`PROT C`); commands sent in clear
//! behind `AUTH TLS` are dropped.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use common::grid::Grid;
use common::{assert_same, run_peer, write_big, Server, PASSWORD, USER};

fn ftps_server(grid: &Grid) -> Server {
    let cert = grid.path("host.pem").display().to_string();
    let key = grid.path("host.key").display().to_string();
    Server::start(&["--tls-cert", &cert, "--tls-key", &key])
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    run_peer(program, args, &[])
}

/// curl with the test CA and the password user, then `args`.
fn curl(ca: &str, args: &[&str]) -> (bool, String) {
    let login = format!("{USER}:{PASSWORD}");
    let mut all = vec!["-sS", "--cacert", ca, "-u", &login];
    all.extend_from_slice(args);
    run("curl", &all)
}

#[test]
fn curl_and_lftp_over_auth_tls() {
    let grid = Grid::new();
    let server = ftps_server(&grid);
    write_big(&server.path("src.bin"), 6 << 20, 5);
    let ca = grid.path("ca.pem").display().to_string();
    let local = tempfile::tempdir().unwrap();
    let down = local.path().join("down.bin");
    let port = server.addr.port();
    let login = format!("{USER}:{PASSWORD}");

    // curl --ftp-ssl-control: TLS for the login and commands, data in clear; --ssl-reqd:
    // PROT P, the data in TLS too.
    let url = format!("ftp://localhost:{port}/src.bin");
    let down_s = down.display().to_string();
    for (level, up) in [("--ftp-ssl-control", "curl-up.bin"), ("--ssl-reqd", "curl-p.bin")] {
        let _ = std::fs::remove_file(&down);
        let (ok, out) = curl(&ca, &[level, &url, "-o", &down_s]);
        assert!(ok, "{level}: {out}\n{}", server.log());
        assert_same(&server.path("src.bin"), &down);
        let (ok, out) = curl(&ca, &[level, "-T", &down_s, &format!("ftp://localhost:{port}/{up}")]);
        assert!(ok, "{level}: {out}");
        assert_same(&down, &server.path(up));
    }
    let (ok, out) = curl(&ca, &["--ssl-reqd", &format!("ftp://localhost:{port}/")]);
    assert!(ok && out.contains("curl-p.bin"), "{out}");
    assert!(server.log().contains("prot=\"P\""), "{}", server.log());

    // lftp upgrades by itself when FEAT lists AUTH TLS, and checks the certificate.
    let script = format!(
        "set ssl:ca-file {ca}; set ftp:ssl-force true; set ftp:ssl-protect-data false; \
         get src.bin -o {}; put {} -o lftp-up.bin; set ftp:ssl-protect-data true; \
         put {} -o lftp-p.bin; ls; quit",
        local.path().join("lftp.bin").display(),
        down.display(),
        down.display()
    );
    let (ok, out) = run(
        "lftp",
        &[
            "-u",
            &format!("{USER},{PASSWORD}"),
            "-e",
            &script,
            &format!("ftp://localhost:{port}"),
        ],
    );
    assert!(ok && out.contains("curl-up.bin"), "{out}\n{}", server.log());
    assert_same(&server.path("src.bin"), &local.path().join("lftp.bin"));
    assert_same(&down, &server.path("lftp-up.bin"));
    assert_same(&down, &server.path("lftp-p.bin"));
    // Without a trusted CA lftp refuses the certificate.
    let (ok, _) = run(
        "lftp",
        &[
            "-u",
            &login.replace(':', ","),
            "-e",
            "set ftp:ssl-force true; ls; quit",
            &format!("ftp://localhost:{port}"),
        ],
    );
    assert!(!ok, "lftp accepted an untrusted certificate");
}

#[test]
fn commands_sent_in_clear_behind_auth_tls_are_dropped() {
    let grid = Grid::new();
    let server = ftps_server(&grid);
    std::fs::write(server.path("victim"), b"keep").unwrap();
    let mut c = TcpStream::connect(server.addr).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    c.write_all(format!("USER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes())
        .unwrap();
    for _ in 0..2 {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    assert!(line.starts_with("230"), "{line}");
    // A logged-in user cannot switch to TLS any more; a fresh connection can, and what it
    // pipelines in clear behind AUTH TLS never runs.
    let mut c = TcpStream::connect(server.addr).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    line.clear();
    r.read_line(&mut line).unwrap();
    c.write_all(format!("AUTH TLS\r\nUSER {USER}\r\nPASS {PASSWORD}\r\nDELE /victim\r\n").as_bytes())
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("234"), "{line}");
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read(server.path("victim")).unwrap(), b"keep");
    assert!(
        server.log().contains("dropped commands sent in clear after AUTH TLS"),
        "{}",
        server.log()
    );
}

/// FTPS PROT P with pools in other processes: curl and lftp use plain PASV, so the door
/// passes the TLS records through and the pool (holding the door's certificate, sealed over
/// the link) is the TLS server; in active mode the pool connects to the client and is the
/// TLS server there too; listings come from the door, in TLS.
#[test]
fn ftps_prot_p_through_a_door_with_remote_pools() {
    let grid = Grid::new();
    let cert = grid.path("host.pem").display().to_string();
    let key = grid.path("host.key").display().to_string();
    let site = common::site::Site::start_with(&["127.0.0.2"], &["--tls-cert", &cert, "--tls-key", &key]);
    write_big(&site.root(0).join("src.bin"), 5 << 20, 9);
    let ca = grid.path("ca.pem").display().to_string();
    let local = tempfile::tempdir().unwrap();
    let down = local.path().join("down.bin");
    let down_s = down.display().to_string();
    let port = site.control.port();
    let url = format!("ftp://localhost:{port}/src.bin");
    let (ok, out) = curl(&ca, &["--ssl-reqd", &url, "-o", &down_s]);
    assert!(ok, "{out}\n{}", site.log());
    assert_same(&site.root(0).join("src.bin"), &down);
    let (ok, out) = curl(
        &ca,
        &["--ssl-reqd", "-T", &down_s, &format!("ftp://localhost:{port}/up0.bin")],
    );
    assert!(ok, "{out}\n{}", site.log());
    assert_same(&down, &site.root(0).join("up0.bin"));
    let (ok, out) = curl(&ca, &["--ssl-reqd", &format!("ftp://localhost:{port}/")]);
    assert!(ok && out.contains("up0.bin"), "{out}\n{}", site.log());
    // lftp passive, then active (curl 7.88's active mode with TLS fails on curl's side).
    let script = format!(
        "set ssl:ca-file {ca}; set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         get src.bin -o {}; put {} -o lftp-p.bin; ls; set ftp:passive-mode off; \
         get src.bin -o {}; put {} -o lftp-a.bin; quit",
        local.path().join("lftp.bin").display(),
        down.display(),
        local.path().join("lftp-a.bin").display(),
        down.display(),
    );
    let login = format!("{USER},{PASSWORD}");
    let (ok, out) = run(
        "lftp",
        &["-u", &login, "-e", &script, &format!("ftp://localhost:{port}")],
    );
    assert!(ok && out.contains("up0.bin"), "{out}\n{}", site.log());
    assert_same(&site.root(0).join("src.bin"), &local.path().join("lftp.bin"));
    assert_same(&down, &site.root(0).join("lftp-p.bin"));
    assert_same(&site.root(0).join("src.bin"), &local.path().join("lftp-a.bin"));
    assert_same(&down, &site.root(0).join("lftp-a.bin"));
    let log = site.log();
    assert_eq!(log.matches("prot=\"P\" peer=127.0.0.1 result=ok").count(), 8, "{log}");
}

/// An FTPS PROT P upload cut off by a reset, through the door's pass-through relay: the
/// door passes the reset on (not an orderly end), so the pool fails the upload and the file
/// never appears under its name.
#[test]
fn a_reset_prot_p_upload_through_a_door_is_not_complete() {
    let grid = Grid::new();
    let cert = grid.path("host.pem").display().to_string();
    let key = grid.path("host.key").display().to_string();
    let site = common::site::Site::start_full(
        &["127.0.0.2"],
        &["--tls-cert", &cert, "--tls-key", &key],
        &["--stall-timeout", "3"],
    );
    let script = r#"
import ftplib, socket, ssl, struct, sys
port, ca, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ftp = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=ca))
ftp.connect("localhost", port)
ftp.login(user, password)
ftp.prot_p()
data = ftp.transfercmd("STOR cut.bin")
data.sendall(b"x" * (1 << 20))
data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
data.close()
try:
    print("reply", ftp.voidresp())
except ftplib.Error as e:
    print("refused", e)
"#;
    let port = site.control.port().to_string();
    let ca = grid.path("ca.pem").display().to_string();
    let (ok, out) = run("python3", &["-c", script, &port, &ca, USER, PASSWORD]);
    assert!(ok, "{out}\n{}", site.log());
    assert!(out.starts_with("refused 4"), "{out}\n{}", site.log());
    assert!(!site.root(0).join("cut.bin").exists(), "{out}");
}
