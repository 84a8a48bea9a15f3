//! `ringmover bench` runs its memory-to-memory case and iperf3 in the same run and prints the
//! ratio (a functional check with small sizes; the figures themselves are not asserted).

mod common;

use std::process::Command;

#[test]
fn bench_prints_a_table_with_iperf3_ratio() {
    common::require_peer("iperf3");
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args(["bench", "--size", "64M", "--runs", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ringmover m2m") && text.contains("iperf3 -Z"), "{text}");
    assert!(text.lines().filter(|l| l.contains(" x")).count() == 3, "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args(["bench", "--size", "16M", "--runs", "2", "--no-iperf3", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["runs"].as_array().unwrap().len(), 2);
    assert!(v[0]["median_gbytes_per_s"].as_f64().unwrap() > 0.0);
}
