//! What the Globus client library sends that a server must answer as globus-gridftp-server
//! does: striped layouts with their own block size, MLSR, SITE CHMOD/UTIME/CHGRP and MFMT.

mod common;

use std::io::Read;

use common::*;

fn file_url(p: &std::path::Path) -> String {
    format!("file://{}", p.display())
}

#[test]
fn striped_layout_block_size_is_not_the_mode_e_block_size() {
    let srv = Server::start(&[]);
    let local = scratch();
    write_big(&srv.path("f"), (5 << 20) + 3, 21);
    for sbs in ["1024", "15", "4194304"] {
        let dst = local.path().join(format!("f{sbs}"));
        let (ok, text) = guc(&["-dbg", "-stripe", "-sbs", sbs, &srv.url("/f"), &file_url(&dst)]);
        assert!(ok, "-sbs {sbs}: {text}");
        assert!(
            text.contains(&format!("StripeLayout=Blocked;BlockSize={sbs};")),
            "the client sent no layout: {text}"
        );
        assert_same(&srv.path("f"), &dst);
    }
    // Uploads with a layout too.
    let src = local.path().join("f15");
    let (ok, text) = guc(&["-stripe", "-sbs", "15", &file_url(&src), &srv.user_url("/up")]);
    assert!(ok, "{text}");
    assert_same(&src, &srv.path("up"));
}

/// Runs a listing command over PASV and returns its lines, or the error reply.
fn listing(c: &mut Control, cmd: &str) -> Result<Vec<String>, Reply> {
    let mut data = c.pasv();
    let r = c.cmd(cmd);
    if r.code >= 400 {
        return Err(r);
    }
    let mut text = String::new();
    data.read_to_string(&mut text).unwrap();
    let r = c.final_reply();
    assert_eq!(r.code, 226, "{}", r.text());
    Ok(text.lines().map(String::from).collect())
}

#[test]
fn mlsr_lists_a_tree_with_relative_names() {
    let srv = Server::start(&[]);
    std::fs::create_dir_all(srv.path("top/sub/deeper")).unwrap();
    std::fs::create_dir_all(srv.path("top/empty")).unwrap();
    std::fs::write(srv.path("top/a"), b"1").unwrap();
    std::fs::write(srv.path("top/sub/b"), b"22").unwrap();
    std::fs::write(srv.path("top/sub/deeper/c"), b"333").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"x").unwrap();
    std::os::unix::fs::symlink(outside.path(), srv.path("top/out")).unwrap();
    let mut c = Control::connect(srv.addr);
    c.expect("USER anonymous", 331);
    c.expect("PASS x", 230);
    let lines = listing(&mut c, "MLSR /top").unwrap();
    let names: Vec<&str> = lines.iter().map(|l| l.split_once("; ").unwrap().1).collect();
    assert_eq!(
        names,
        ["a", "empty", "out", "sub", "sub/b", "sub/deeper", "sub/deeper/c"]
    );
    assert!(lines[0].starts_with("Type=file;Size=1;"), "{lines:?}");
    assert!(lines[3].starts_with("Type=dir;"), "{lines:?}");
    // The symlink out of the root is listed, never followed.
    assert!(!lines.iter().any(|l| l.contains("secret")));
    // A file lists itself; a missing path is a 550; CWD-relative paths work.
    assert_eq!(listing(&mut c, "MLSR /top/sub/b").unwrap().len(), 1);
    assert_eq!(listing(&mut c, "MLSR /nope").unwrap_err().code, 550);
    c.expect("CWD /top/sub", 250);
    let names: Vec<String> = listing(&mut c, "MLSR")
        .unwrap()
        .iter()
        .map(|l| l.split_once("; ").unwrap().1.to_string())
        .collect();
    assert_eq!(names, ["b", "deeper", "deeper/c"]);
    assert_eq!(listing(&mut c, "MLSR ../..").unwrap().len(), 8);
    c.expect("HELP", 214);
}

#[test]
fn site_chmod_utime_chgrp_and_mfmt_change_the_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let srv = Server::start(&[]);
    std::fs::write(srv.path("f"), b"data").unwrap();
    std::fs::create_dir(srv.path("d")).unwrap();
    std::os::unix::fs::symlink("f", srv.path("link")).unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("SITE CHMOD 640 f", 250);
    c.expect("SITE CHMOD 700 /d", 250);
    c.expect("SITE UTIME 20200102030405 f", 250);
    let mlst = c.expect("MLST f", 250).text();
    assert!(
        mlst.contains("Modify=20200102030405;") && mlst.contains("UNIX.mode=0640;"),
        "{mlst}"
    );
    assert_eq!(
        std::fs::metadata(srv.path("f")).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        std::fs::metadata(srv.path("d")).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    // The ProFTPD spelling, and MFMT.
    c.expect("SITE UTIME f 20200101000000 20210102030405 20200101000000 UTC", 250);
    assert!(c.expect("MDTM f", 213).text().contains("20210102030405"));
    let r = c.expect("MFMT 20220304050607 f", 213);
    assert_eq!(r.text(), "213 Modify=20220304050607; f");
    assert_eq!(std::fs::metadata(srv.path("f")).unwrap().mtime(), 1_646_370_367);
    // CHGRP to the file's own group always works; a name is looked up; nonsense is a 501.
    let gid = std::fs::metadata(srv.path("f")).unwrap().gid();
    c.expect(&format!("SITE CHGRP {gid} f"), 250);
    c.expect("SITE CHGRP root f", 250);
    c.expect("SITE CHGRP no-such-group-here f", 501);
    // Never through a symlink, never outside the root, bad modes refused.
    c.expect("SITE CHMOD 777 link", 550);
    assert_eq!(
        std::fs::metadata(srv.path("f")).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    c.expect("SITE CHMOD 777 ../../etc/passwd", 550);
    c.expect("SITE CHMOD 9 f", 501);
    c.expect("SITE UTIME 2020 f", 501);
    c.expect("SITE CHMOD 600 nope", 550);
    let help = c.expect("SITE HELP", 214).text();
    assert!(help.contains("SITE CHMOD") && help.contains("SITE UTIME") && help.contains("SITE CHGRP"));
    // Anonymous users may not.
    let mut anon = Control::connect(srv.addr);
    anon.expect("USER anonymous", 331);
    anon.expect("PASS x", 230);
    anon.expect("SITE CHMOD 777 f", 550);
    anon.expect("SITE UTIME 20200102030405 f", 550);
    anon.expect("MFMT 20200102030405 f", 550);
}

/// `globus-url-copy -pp` third-party copies of a directory of files: every file arrives whole.
fn pipelined_third_party(src_dir: &str, dst_dir: &str, src_root: &std::path::Path, dst_root: &std::path::Path) {
    let (ok, text) = guc(&["-pp", "-cd", "-verify-checksum", src_dir, dst_dir]);
    assert!(ok, "{src_dir} -> {dst_dir}: {text}");
    let mut names: Vec<_> = std::fs::read_dir(src_root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 6);
    for n in names {
        assert_same(&src_root.join(&n), &dst_root.join(&n));
    }
}

fn six_files(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..6u8 {
        write_big(&dir.join(format!("f{i}")), 200_000 * (u64::from(i) + 1) + 7, 30 + i);
    }
}

#[test]
fn pipelined_third_party_copies_work_both_ways() {
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    let globus = Globus::start();
    six_files(&a.path("src"));
    six_files(&globus.root.path().join("gsrc"));
    std::fs::create_dir(b.path("dst")).unwrap();
    std::fs::create_dir(a.path("fromg")).unwrap();
    std::fs::create_dir(globus.root.path().join("fromr")).unwrap();
    // Globus writes as its anonymous user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(globus.root.path().join("fromr"), std::fs::Permissions::from_mode(0o777)).unwrap();
    // ringmover -> ringmover, ringmover -> Globus, Globus -> ringmover.
    pipelined_third_party(&a.url("/src/"), &b.user_url("/dst/"), &a.path("src"), &b.path("dst"));
    pipelined_third_party(
        &a.url("/src/"),
        &globus.url("/fromr/"),
        &a.path("src"),
        &globus.root.path().join("fromr"),
    );
    pipelined_third_party(
        &globus.url("/gsrc/"),
        &a.user_url("/fromg/"),
        &globus.root.path().join("gsrc"),
        &a.path("fromg"),
    );
}

#[test]
fn getput_is_advertised_as_configured() {
    for (args, listed) in [
        (&[][..], false),
        (&["--getput", "always"][..], true),
        (&["--getput", "never"][..], false),
    ] {
        let srv = Server::start(args);
        let mut c = srv.control();
        let feat = c.expect("FEAT", 211).text();
        assert_eq!(feat.contains(" GETPUT"), listed, "{args:?}: {feat}");
        // The commands work whatever FEAT says.
        c.expect("USER anonymous", 331);
        c.expect("PASS x", 230);
        std::fs::write(srv.path("f"), b"x").unwrap();
        assert_eq!(c.cmd("GET path=/f;pasv;").code, 127);
    }
}
