//! `ringmover bench` runs our cases and the peers (iperf3, globus-url-copy with
//! globus-gridftp-server) in the same run and prints ratios, CSV and an SVG plot (a functional
//! check with small sizes; the figures themselves are not asserted).

mod common;

use std::process::Command;

#[test]
fn bench_prints_ratios_csv_and_svg() {
    for peer in ["iperf3", "globus-url-copy", "globus-gridftp-server"] {
        common::require_peer(peer);
    }
    let out_dir = tempfile::tempdir().unwrap();
    let (csv, svg) = (out_dir.path().join("b.csv"), out_dir.path().join("b.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args([
            "bench",
            "--size",
            "32M",
            "--runs",
            "1",
            "--streams",
            "1,2",
            "--scenarios",
            "m2m,download,upload",
        ])
        .arg("--csv")
        .arg(&csv)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for tool in [
        "iperf3 -Z",
        "guc ⇄ globus-gridftp-server",
        "guc ⇄ ringmover",
        "ringmover copy ⇄ ringmover",
    ] {
        assert!(text.contains(tool), "{tool} missing: {text}");
    }
    // Every one of our rows has a ratio to the peer of its point.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' ') && (l.contains("ringmover send") || l.contains("ringmover copy")))
        .collect();
    assert!(!ours.is_empty() && ours.iter().all(|l| l.contains(" x")), "{text}");
    assert!(text.contains("targets (medians of this run)"), "{text}");
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("scenario,tool,streams"), "{csv}");
    // 4 m2m tools (ours with sendfile and with send, iperf3, iperf3 -Z), 3 download tools and
    // 4 upload tools (the 3 pairs and dd's new-file ceiling), at 2 points each.
    assert_eq!(csv.lines().count(), 1 + 4 * 2 + 3 * 2 + 4 * 2, "{csv}");
    assert!(
        text.contains("dd /dev/zero → new file") && text.contains("vs writing a new file"),
        "{text}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    // One dot per measured point (the same 22 rows as the CSV), one legend entry per tool.
    assert!(svg.starts_with("<svg") && svg.matches("<circle").count() == 22, "{svg}");
    assert!(
        svg.contains("iperf3 -Z") && svg.contains("ringmover copy ⇄ ringmover"),
        "{svg}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args([
            "bench",
            "--size",
            "16M",
            "--runs",
            "2",
            "--no-peers",
            "--json",
            "--scenarios",
            "m2m",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let case = &v["cases"][0];
    assert_eq!(case["runs"].as_array().unwrap().len(), 2);
    assert!(case["median"]["gbytes_per_s"].as_f64().unwrap() > 0.0);
    assert!(case["op_latency_us"]["count"].as_u64().unwrap() > 0);
    // A scenario the bench does not know is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args(["bench", "--scenarios", "warp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));
}

/// The disk scenarios: a cold-cache read and a synced write in a directory on disk, with our
/// direct-I/O row and fio beside the peers. Dropping the page cache needs root: without it the
/// bench must say so and fail, not measure a warm cache.
#[test]
fn bench_disk_scenarios() {
    for peer in ["fio", "globus-url-copy", "globus-gridftp-server"] {
        common::require_peer(peer);
    }
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let dir = dir.path().to_str().unwrap();
    let (status, text) = common::ringmover(
        "bench",
        &[
            "--size",
            "16M",
            "--runs",
            "1",
            "--streams",
            "1",
            "--scenarios",
            "disk",
            "--dir",
            dir,
        ],
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(!status.success() && text.contains("run as root"), "{text}");
        return;
    }
    assert!(status.success(), "{text}");
    for scenario in ["disk-read", "disk-write"] {
        for tool in [
            "ringmover copy ⇄ ringmover --direct-io",
            "guc ⇄ globus-gridftp-server",
            "fio",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(scenario) && l.contains(tool)),
                "{scenario} {tool} missing: {text}"
            );
        }
        assert!(
            text.contains(&format!("{scenario}, -p 1, --direct-io vs fio and Globus")),
            "{text}"
        );
    }
}

#[test]
fn bench_gsi_rows_run_beside_globus() {
    let grid = common::grid::Grid::new();
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args([
            "bench",
            "--size",
            "8M",
            "--runs",
            "1",
            "--streams",
            "1",
            "--scenarios",
            "download,upload",
        ])
        .arg("--gsi-grid")
        .arg(grid.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for row in [
        "ringmover copy ⇄ ringmover gsiftp -dcpriv",
        "guc ⇄ globus-gridftp-server gsiftp -dcpriv",
    ] {
        assert_eq!(text.matches(row).count(), 2, "{row}: {text}");
    }
    // The PROT C rows: each name also begins its -dcpriv row's name.
    for row in [
        "ringmover copy ⇄ ringmover gsiftp",
        "guc ⇄ globus-gridftp-server gsiftp",
    ] {
        assert_eq!(text.matches(row).count(), 4, "{row}: {text}");
    }
    assert!(text.contains("gsiftp:// DCAU A + PROT C vs our ftp://"), "{text}");
    assert!(text.contains("gsiftp:// PROT P vs Globus -dcpriv"), "{text}");
}
