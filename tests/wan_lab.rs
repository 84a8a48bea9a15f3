//! The WAN emulator through `scripts/wan-lab.sh`: two namespaces joined by `ringmover wan-emu`
//! over TUN. Ping RTT within 10% of the set delay, a rate limit held within 5% (iperf3), a loss
//! rate within tolerance over 100k packets, and `down` leaving nothing behind. Needs root,
//! iproute2, ping and iperf3 (installed by .ci/run).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A lab with its own prefix (tests run in parallel); torn down on drop.
struct Lab {
    prefix: String,
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wan-lab.sh")
}

fn lab_cmd(prefix: &str, args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .env("WAN_LAB_PREFIX", prefix)
        .env("RINGMOVER", env!("CARGO_BIN_EXE_ringmover"))
        .output()
        .unwrap()
}

impl Lab {
    fn up(prefix: &str, emu: &[&str]) -> Lab {
        for tool in ["ip", "ping", "iperf3"] {
            common::require_peer(tool);
        }
        let mut args = vec!["up"];
        args.extend(emu);
        let out = lab_cmd(prefix, &args);
        assert!(
            out.status.success(),
            "wan-lab up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Lab { prefix: prefix.into() }
    }

    fn exec(&self, side: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{side}", self.prefix)]).args(args);
        c
    }

    fn iperf3_server(&self) -> Child {
        let child = self
            .exec("server", &["iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        child
    }

    fn iperf3_json(&self, args: &[&str]) -> serde_json::Value {
        let mut server = self.iperf3_server();
        let mut all = vec!["iperf3", "-c", "10.77.0.2", "-J"];
        all.extend(args);
        let out = self.exec("client", &all).output().unwrap();
        let _ = server.wait();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("iperf3 {args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        lab_cmd(&self.prefix, &["down"]);
    }
}

#[test]
fn ping_rtt_follows_the_delay() {
    let lab = Lab::up("wq1", &["--delay", "15ms"]);
    let out = lab
        .exec("client", &["ping", "-c", "20", "-i", "0.05", "10.77.0.2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let avg: f64 = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    assert!((avg - 30.0).abs() <= 3.0, "RTT {avg} ms for 2 × 15 ms: {text}");
}

#[test]
fn rate_limit_holds_within_5_percent() {
    let lab = Lab::up("wq2", &["--delay", "1ms", "--rate", "100mbit", "--queue", "512K"]);
    // UDP offered above the limit: what arrives is the limit. iperf3 counts UDP payload;
    // the emulator meters whole IP packets (28 bytes of IP+UDP header per 1400).
    let v = lab.iperf3_json(&["-u", "-b", "160M", "-l", "1400", "-t", "3"]);
    let got = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() * 1428.0 / 1400.0;
    assert!(
        (got / 100e6 - 1.0).abs() <= 0.05,
        "{got} bit/s through a 100 Mbit/s limit"
    );
    // TCP fills it too (goodput below the wire rate by its headers).
    let v = lab.iperf3_json(&["-t", "3", "-O", "1"]);
    let tcp = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap();
    assert!(tcp > 0.9 * 100e6 && tcp < 1.01 * 100e6, "TCP {tcp} bit/s");
}

#[test]
fn loss_rate_over_100k_packets() {
    let lab = Lab::up("wq3", &["--delay", "1ms", "--loss", "1%", "--seed", "42"]);
    let v = lab.iperf3_json(&["-u", "-b", "40M", "-l", "200", "-k", "100000"]);
    let sum = &v["end"]["sum"];
    let (lost, sent) = (sum["lost_packets"].as_f64().unwrap(), sum["packets"].as_f64().unwrap());
    assert!(sent >= 100_000.0, "{sum}");
    // 1% of 100k is 1000 ± 31 (one standard deviation); allow 1000 ± 200.
    assert!((lost - sent * 0.01).abs() <= 200.0, "{lost} lost of {sent}");
}

#[test]
fn down_leaves_nothing_behind() {
    let lab = Lab::up("wq4", &["--delay", "2ms"]);
    let pid_file = "/run/ringmover-wan-lab-wq4/emu.pid";
    let pid = std::fs::read_to_string(pid_file).unwrap().trim().to_string();
    drop(lab);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&netns.stdout);
    assert!(!list.contains("wq4-"), "{list}");
    let links = Command::new("ip").args(["link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("wq4wan"));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "emulator {pid} still running"
    );
    assert!(!Path::new(pid_file).exists());
}

#[test]
fn bench_sweeps_through_the_emulator() {
    for tool in ["ip", "iperf3", "globus-url-copy", "globus-gridftp-server"] {
        common::require_peer(tool);
    }
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("wan.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args(["bench", "--wan", "rtt=4ms,rate=100mbit", "--size", "4M", "--runs", "1"])
        .args(["--streams", "1,2", "--cc", "bbr,reno", "--lab-prefix", "wq5", "--svg"])
        .arg(&svg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // Four tools at 2 streams × 2 congestion controls, each with a ratio to iperf3.
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("wan ")).collect();
    assert_eq!(rows.len(), 16, "{text}");
    assert!(rows.iter().all(|r| r.contains(" x")), "{text}");
    assert!(text.contains("best settings:") && text.contains("reno"), "{text}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    // The lab is gone afterwards.
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains("wq5-"));
}
