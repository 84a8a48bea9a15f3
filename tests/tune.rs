//! `ringmover tune`: check against a prepared /proc + /sys tree (exit status, JSON), and
//! apply/revert of a profile against a temporary sysctl root, never the host's.

mod common;

use std::path::Path;

fn tune(args: &[&str]) -> (i32, String) {
    let (status, text) = common::ringmover("tune", args);
    (status.code().unwrap_or(-1), text)
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn sysctls(root: &Path, rmem_max: &str) {
    put(root, "proc/sys/net/core/rmem_max", rmem_max);
    put(root, "proc/sys/net/core/wmem_max", "212992\n");
    put(root, "proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456\n");
    put(root, "proc/sys/net/ipv4/tcp_wmem", "4096\t16384\t4194304\n");
    put(root, "proc/sys/net/ipv4/tcp_congestion_control", "cubic\n");
    put(
        root,
        "proc/sys/net/ipv4/tcp_available_congestion_control",
        "reno cubic bbr\n",
    );
    put(root, "proc/sys/net/core/default_qdisc", "fq_codel\n");
    put(root, "proc/sys/net/ipv4/tcp_mtu_probing", "0\n");
    put(root, "proc/sys/net/core/netdev_max_backlog", "1000\n");
}

#[test]
fn check_reports_and_exits_1_on_critical_items() {
    let d = tempfile::tempdir().unwrap();
    sysctls(d.path(), "212992\n");
    let root = d.path().to_str().unwrap();
    let (code, text) = tune(&["check", "--sysroot", root, "--target", "10g", "--rtt", "50ms", "--json"]);
    assert_eq!(code, 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["bdp_bytes"], 62_500_000);
    let rows = v["rows"].as_array().unwrap();
    let row = |item: &str| rows.iter().find(|r| r["item"] == item).unwrap().clone();
    assert_eq!(row("net.core.rmem_max")["status"], "critical");
    assert_eq!(row("net.ipv4.tcp_congestion_control")["recommended"], "bbr");
    assert_eq!(
        row("net.core.default_qdisc")["fix"],
        "sysctl -w net.core.default_qdisc=fq"
    );
    // Applying the 10g profile (into the same tree) clears every critical row for 10G at 20 ms.
    let revert = d.path().join("revert.conf");
    let (code, text) = tune(&["apply", "--profile", "10g", "--sysroot", root]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("dry run") && text.contains("change net.core.rmem_max"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("proc/sys/net/core/rmem_max")).unwrap(),
        "212992\n"
    );
    let r = revert.to_str().unwrap();
    let (code, text) = tune(&[
        "apply",
        "--profile",
        "10g",
        "--yes",
        "--revert-file",
        r,
        "--sysroot",
        root,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("proc/sys/net/core/rmem_max")).unwrap(),
        "67108864\n"
    );
    let (code, text) = tune(&["check", "--sysroot", root, "--target", "10g", "--rtt", "20ms"]);
    assert_eq!(code, 0, "{text}");
    // A second apply would overwrite the record of the original values: refused.
    let (code, text) = tune(&[
        "apply",
        "--profile",
        "100g",
        "--yes",
        "--revert-file",
        r,
        "--sysroot",
        root,
    ]);
    assert_ne!(code, 0, "{text}");
    let (code, text) = tune(&["revert", r, "--sysroot", root]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("proc/sys/net/core/rmem_max")).unwrap(),
        "212992\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("proc/sys/net/ipv4/tcp_rmem")).unwrap(),
        "4096 131072 6291456\n"
    );
    let (code, text) = tune(&["apply", "--profile", "1t"]);
    assert_ne!(code, 0);
    assert!(text.contains("unknown profile"), "{text}");
}

#[test]
fn check_runs_on_this_host() {
    // Read-only on the live host: it must finish with a table whatever the verdict.
    let (code, text) = tune(&["check", "--target", "100g", "--rtt", "100ms"]);
    assert!(code == 0 || code == 1, "{text}");
    assert!(
        text.contains("net.core.rmem_max") && text.contains("io_uring"),
        "{text}"
    );
}

/// Every `sysctl -w net.…` fix `tune check` prints for the largest targets is one the kernel
/// accepts: each is run in a fresh network namespace (those sysctls are per namespace, so the
/// host is never touched). Needs root and unshare(1), as CI has.
#[test]
fn every_printed_buffer_fix_is_accepted_by_the_kernel() {
    let bin = env!("CARGO_BIN_EXE_ringmover");
    let mut tried = 0;
    for (target, rtt) in [("100g", "80ms"), ("100g", "300ms"), ("10g", "50ms"), ("40g", "1s")] {
        let out = std::process::Command::new("unshare")
            .args(["-n", bin, "tune", "check", "--target", target, "--rtt", rtt, "--json"])
            .output()
            .expect("unshare(1) is needed for this test");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
        for row in v["rows"].as_array().unwrap() {
            let fix = row["fix"].as_str().unwrap();
            let item = row["item"].as_str().unwrap();
            if !fix.starts_with("sysctl -w net.") || !item.contains("mem") {
                continue;
            }
            let run = std::process::Command::new("unshare")
                .args(["-n", "sh", "-c", fix])
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "{target} {rtt}: `{fix}` refused: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            tried += 1;
        }
        if target == "100g" && rtt == "300ms" {
            let row = v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["item"] == "net.core.rmem_max")
                .unwrap();
            assert!(row["why"].as_str().unwrap().contains("parallel streams"), "{row}");
        }
    }
    // A fresh namespace starts at 4 MiB buffers, so every target printed fixes to try.
    assert!(tried >= 16, "only {tried} fixes tried");
}
