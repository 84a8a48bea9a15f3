//! `serve --user-root /homes/{user}`: each logged-in user is confined to their own root
//! (password and GSI logins), symlinks out of it included; anonymous users keep `--root`.

mod common;

use common::grid::Grid;
use common::{Control, Server, PASSWORD, USER};

/// A user logged in to their own `place`: a symlink out of it, `..` and the `served` root's
/// files are refused; an upload lands (the callers check where).
fn assert_confined(c: &mut Control, place: &str, served: &str) {
    assert!(
        c.download("RETR /link").1.code >= 500,
        "a symlink out of the user's {place}"
    );
    assert!(c.download("RETR /../bob/secret").1.code >= 500);
    assert!(c.download("RETR /public").1.code >= 500, "{served} is not the user's");
    assert!(c.upload("STOR /new", b"written").code < 300);
}

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
    assert_confined(&mut c, "root", "the served root");
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

/// `door --user-root users/{user}`: on every remote pool the user's directory beneath the
/// pool's root is their root (the pool resolves it beneath its root: no `..`, no symlink out).
#[test]
fn a_door_confines_each_user_to_their_directory_on_every_pool() {
    let site = common::site::Site::start_full(&["127.0.0.2", "127.0.0.3"], &["--user-root", "users/{user}"], &[]);
    // Without the directory on every pool the login is refused.
    std::fs::create_dir_all(site.root(0).join("users").join(USER)).unwrap();
    let mut early = Control::connect(site.control);
    early.expect(&format!("USER {USER}"), 331);
    let r = early.expect(&format!("PASS {PASSWORD}"), 530);
    assert!(r.text().contains("No root directory"), "{}", r.text());
    for i in 0..2 {
        std::fs::create_dir_all(site.root(i).join("users").join(USER)).unwrap();
        std::fs::create_dir_all(site.root(i).join("users/bob")).unwrap();
    }
    let own = site.root(0).join("users").join(USER);
    std::fs::write(own.join("mine"), b"alice's").unwrap();
    std::fs::write(
        site.root(1).join("users").join(USER).join("other"),
        b"on the second pool",
    )
    .unwrap();
    std::fs::write(site.root(1).join("users/bob/secret"), b"bob's").unwrap();
    std::fs::write(site.root(0).join("public"), b"for everyone").unwrap();
    std::os::unix::fs::symlink("../bob/secret", own.join("link")).unwrap();

    let mut c = Control::login(site.control, USER, PASSWORD);
    c.expect("TYPE I", 200);
    assert_eq!(c.download("RETR /mine").0, b"alice's");
    assert_eq!(c.download("RETR /other").0, b"on the second pool");
    assert_confined(&mut c, "directory", "the pool's root");
    let landed: Vec<_> = (0..2)
        .map(|i| site.root(i).join("users").join(USER).join("new"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(landed.len(), 1, "{landed:?}");
    assert_eq!(std::fs::read(&landed[0]).unwrap(), b"written");
    let (list, _) = c.download("NLST /");
    let names = String::from_utf8(list).unwrap();
    assert!(
        names.contains("mine") && names.contains("other") && !names.contains("secret") && !names.contains("public"),
        "{names}"
    );

    // Anonymous users keep the pools' roots (read-only).
    let mut anon = Control::login(site.control, "anonymous", "x");
    anon.expect("TYPE I", 200);
    assert_eq!(anon.download("RETR /public").0, b"for everyone");
}
