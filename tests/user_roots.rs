//! `serve --user-root /homes/{user}`: each logged-in user is confined to their own root
//! (password and GSI logins), symlinks out of it included; anonymous users keep `--root`.

mod common;

use common::grid::Grid;
use common::{Control, Server, PASSWORD, USER};

#[test]
fn each_user_sees_only_their_own_root() {
    let homes = tempfile::tempdir().unwrap();
    let own = homes.path().join(USER);
    std::fs::create_dir_all(&own).unwrap();
    std::fs::create_dir_all(homes.path().join("bob")).unwrap();
    std::fs::write(own.join("mine"), b"alice's").unwrap();
    std::fs::write(homes.path().join("bob/secret"), b"bob's").unwrap();
    std::os::unix::fs::symlink("../bob/secret", own.join("link")).unwrap();

    let grid = Grid::new();
    let template = format!("{}/{{user}}", homes.path().display());
    let mut args = grid.server_args("certdir");
    args.extend(["--user-root".to_string(), template]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    std::fs::write(server.path("public"), b"for everyone").unwrap();

    let mut c = Control::login(server.addr, USER, PASSWORD);
    assert_eq!(c.download("RETR /mine").0, b"alice's");
    assert!(
        c.download("RETR /link").1.code >= 500,
        "a symlink out of the user's root"
    );
    assert!(c.download("RETR /../bob/secret").1.code >= 500);
    assert!(
        c.download("RETR /public").1.code >= 500,
        "the served root is not the user's"
    );
    assert!(c.upload("STOR /new", b"written").code < 300);
    assert_eq!(std::fs::read(own.join("new")).unwrap(), b"written");
    let (list, _) = c.download("NLST /");
    let names = String::from_utf8(list).unwrap();
    assert!(
        names.contains("mine") && !names.contains("secret") && !names.contains("public"),
        "{names}"
    );

    // Anonymous users keep the served root (read-only).
    let mut anon = Control::login(server.addr, "anonymous", "x");
    assert_eq!(anon.download("RETR /public").0, b"for everyone");

    // A GSI user mapped to a name without a directory cannot log in.
    let (ok, out) = grid.guc(
        "proxy",
        &[],
        &[
            &format!("gsiftp://localhost:{}/x", server.addr.port()),
            &format!("file://{}/x", homes.path().display()),
        ],
    );
    assert!(!ok && out.contains("No root directory for tester"), "{out}");
    assert!(
        server.log().contains("login refused: no root of their own"),
        "{}",
        server.log()
    );
    // ... and with one, lands in it.
    std::fs::create_dir_all(homes.path().join("tester")).unwrap();
    std::fs::write(homes.path().join("tester/t"), b"tester's").unwrap();
    let dest = homes.path().join("got");
    let (ok, out) = grid.guc(
        "proxy",
        &[],
        &[
            &format!("gsiftp://localhost:{}/t", server.addr.port()),
            &format!("file://{}", dest.display()),
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"tester's");
}
