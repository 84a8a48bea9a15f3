//! GridFTP v2 control against globus-url-copy: GET/PUT with the 127 reply (its default when
//! FEAT lists GETPUT), -no-g2 fallback, delayed passive (-dp), and the PUT-then-GET /
//! GET-then-PUT sequences on one session that hung dCache (dcache#4830).

mod common;

use std::path::Path;

use common::*;

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

#[test]
fn default_g2_uses_get_put_with_127() {
    let srv = Server::start(&["--getput", "always"]);
    let local = scratch();
    write_big(&srv.path("f"), (3 << 20) + 9, 1);
    let down = local.path().join("down");
    let (ok, text) = guc(&["-dbg", &srv.url("/f"), &file_url(&down)]);
    assert!(ok, "{text}");
    assert_same(&srv.path("f"), &down);
    assert!(
        text.contains("GET path=/f;pasv;") && text.contains("127 PORT (127,0,0,1,"),
        "{text}"
    );

    let (ok, text) = guc(&["-dbg", &file_url(&down), &srv.user_url("/up")]);
    assert!(ok, "{text}");
    assert_same(&down, &srv.path("up"));
    assert!(
        text.contains("PUT path=/up;pasv;") && text.contains("127 PORT ("),
        "{text}"
    );

    // MODE E downloads: GET ...;port=...; (the client listens, the server connects).
    let (ok, text) = guc(&["-dbg", "-p", "4", &srv.url("/f"), &file_url(&down)]);
    assert!(ok, "{text}");
    assert_same(&srv.path("f"), &down);
    assert!(text.contains("GET path=/f;port="), "{text}");

    let (ok, text) = guc(&["-dbg", "-no-g2", &srv.url("/f"), &file_url(&down)]);
    assert!(ok, "{text}");
    assert!(text.contains("RETR /f") && !text.contains("GET path="), "{text}");
    assert_same(&srv.path("f"), &down);
}

#[test]
fn put_then_get_and_get_then_put_on_one_session() {
    let srv = Server::start(&["--getput", "always"]);
    let local = scratch();
    write_big(&local.path().join("a"), (2 << 20) + 1, 2);
    write_big(&srv.path("b"), (2 << 20) + 3, 3);
    let list = local.path().join("list");
    let lines = [
        format!("{} {}", file_url(&local.path().join("a")), srv.user_url("/a")),
        format!("{} {}", srv.user_url("/a"), file_url(&local.path().join("a-back"))),
        format!("{} {}", srv.user_url("/b"), file_url(&local.path().join("b"))),
        format!("{} {}", file_url(&local.path().join("b")), srv.user_url("/b-up")),
    ];
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    for opts in [&[][..], &["-fast"], &["-fast", "-p", "4"]] {
        let mut args = opts.to_vec();
        args.extend(["-f", list.to_str().unwrap()]);
        let (ok, text) = guc(&args);
        assert!(ok, "{opts:?}: {text}");
        assert_same(&local.path().join("a"), &srv.path("a"));
        assert_same(&local.path().join("a"), &local.path().join("a-back"));
        assert_same(&srv.path("b"), &local.path().join("b"));
        assert_same(&srv.path("b"), &srv.path("b-up"));
        for f in ["a-back", "b"] {
            std::fs::remove_file(local.path().join(f)).unwrap();
        }
        std::fs::remove_file(srv.path("b-up")).unwrap();
    }
}

#[test]
fn delayed_passive() {
    let srv = Server::start(&["--getput", "always"]);
    let local = scratch();
    write_big(&srv.path("f"), (1 << 20) + 5, 4);
    let down = local.path().join("down");
    let (ok, text) = guc(&["-dbg", "-dp", "-no-g2", &srv.url("/f"), &file_url(&down)]);
    assert!(ok, "{text}");
    assert_same(&srv.path("f"), &down);
    assert!(
        text.contains("200 Passive delayed.") && text.contains("127 Entering Passive Mode ("),
        "{text}"
    );
    let (ok, text) = guc(&["-dbg", "-dp", "-no-g2", &file_url(&down), &srv.user_url("/up")]);
    assert!(ok, "{text}");
    assert_same(&down, &srv.path("up"));

    // Over a raw connection: EPSV answers 129, and a PORT cancels delayed mode.
    let mut c = Control::login(srv.addr, "anonymous", "x");
    c.expect("OPTS PASV AllowDelayed=1;", 200);
    c.expect("EPSV", 200);
    let r = c.expect("RETR f", 129);
    let text = r.text();
    let port: u16 = text[text.find("(|||").unwrap() + 4..text.rfind("|)").unwrap()]
        .parse()
        .unwrap();
    let mut data = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(c.reply().code, 150);
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut buf).unwrap();
    assert_eq!(c.final_reply().code, 226);
    assert_eq!(buf.len(), (1 << 20) + 5);
    c.expect("OPTS PASV AllowDelayed=0;", 200);
    c.expect("PASV", 227);
}

#[test]
fn get_put_parameters_over_control() {
    let srv = Server::start(&["--getput", "always"]);
    std::fs::write(srv.path("f"), b"hello").unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    // file= is an alias, unknown keys are ignored, mode=E needs the client to listen.
    let r = c.expect("GET file=/f;foo=bar;pasv;", 127);
    let text = r.text();
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    let mut data = std::net::TcpStream::connect(("127.0.0.1", n[4] * 256 + n[5])).unwrap();
    assert_eq!(c.reply().code, 150);
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut buf).unwrap();
    assert_eq!(buf, b"hello");
    assert_eq!(c.final_reply().code, 226);
    assert_eq!(c.cmd("GET path=/f;mode=E;pasv;").code, 500);
    assert_eq!(c.cmd("GET path=/f;mode=B;pasv;").code, 501);
    assert_eq!(c.cmd("PUT path=/x;y;pasv;").code, 501);
    // The mover looks the file up before it opens a listener: no 127 for a missing file.
    assert_eq!(c.cmd("GET path=/missing;pasv;").code, 550);
    assert_eq!(c.cmd("MODE E").code, 200);
    assert_eq!(c.cmd("PUT path=/x;port=127,0,0,1,4,1;").code, 504);
    let feat = c.expect("FEAT", 211).text();
    assert!(
        feat.contains(" GETPUT") && feat.contains(" PASV AllowDelayed;"),
        "{feat}"
    );
}
