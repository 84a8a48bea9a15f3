//! A WAN lab on one host: namespaces `<P>-client` (10.77.0.1) and `<P>-server` (10.77.0.2)
//! joined by `ringmover wan-emu` over two TUN devices. Used by `ringmover wan-lab` (and so by
//! scripts/wan-lab.sh) and by `ringmover bench --wan`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT_IP: &str = "10.77.0.1";
pub const SERVER_IP: &str = "10.77.0.2";

/// Names of one lab.
#[derive(Clone, Debug)]
pub struct Lab {
    pub prefix: String,
    pub state: PathBuf,
}

impl Lab {
    pub fn new(prefix: &str) -> Lab {
        Lab {
            prefix: prefix.into(),
            state: PathBuf::from(format!("/run/ringmover-wan-lab-{prefix}")),
        }
    }

    pub fn ns(&self, side: &str) -> String {
        format!("{}-{side}", self.prefix)
    }

    fn tun(&self, i: u8) -> String {
        format!("{}wan{i}", self.prefix)
    }

    /// A command run inside the `client` or `server` namespace.
    pub fn exec(&self, side: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(side)]).arg(program);
        c
    }

    /// Builds the lab: any old one with this prefix is removed first; `emu` are wan-emu
    /// options. The emulator runs on after this process exits (its pid is in the state dir).
    pub fn up(&self, exe: &Path, emu: &[String]) -> std::io::Result<()> {
        if self.prefix.is_empty() || self.prefix.len() > 8 || !self.prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(std::io::Error::other("lab prefix: 1-8 letters or digits"));
        }
        self.down();
        std::fs::create_dir_all(&self.state)?;
        ip(&["netns", "add", &self.ns("client")])?;
        ip(&["netns", "add", &self.ns("server")])?;
        // `ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts: names for the lab's
        // addresses, so servers that look their address up (globus-gridftp-server) need no DNS.
        // The host's own name resolves to each side's lab address (globus-url-copy looks it up).
        let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let me = me.trim();
        for (side, own) in [("client", CLIENT_IP), ("server", SERVER_IP)] {
            let hosts = format!(
                "127.0.0.1 localhost\n{own} {me}\n{CLIENT_IP} {}\n{SERVER_IP} {}\n",
                self.ns("client"),
                self.ns("server")
            );
            let dir = Path::new("/etc/netns").join(self.ns(side));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("hosts"), hosts)?;
        }
        let out = std::fs::File::create(self.state.join("emu.out"))?;
        let log = std::fs::File::create(self.state.join("emu.log"))?;
        let child = Command::new(exe)
            .args(["wan-emu", "--tun-a", &self.tun(0), "--tun-b", &self.tun(1)])
            .args(emu)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()?;
        std::fs::write(self.state.join("emu.pid"), child.id().to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(self.state.join("emu.out"))?.starts_with("ready") {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.state.join("emu.log")).unwrap_or_default();
                self.down();
                return Err(std::io::Error::other(format!("wan-emu did not start: {log}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (c, s) = (self.ns("client"), self.ns("server"));
        ip(&["link", "set", &self.tun(0), "netns", &c])?;
        ip(&["link", "set", &self.tun(1), "netns", &s])?;
        ip(&[
            "-n",
            &c,
            "addr",
            "add",
            CLIENT_IP,
            "peer",
            SERVER_IP,
            "dev",
            &self.tun(0),
        ])?;
        ip(&[
            "-n",
            &s,
            "addr",
            "add",
            SERVER_IP,
            "peer",
            CLIENT_IP,
            "dev",
            &self.tun(1),
        ])?;
        for (ns, dev) in [(&c, self.tun(0)), (&s, self.tun(1))] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", &dev, "up"])?;
        }
        Ok(())
    }

    /// Stops the emulator and removes the namespaces (the TUN devices go with the emulator).
    pub fn down(&self) {
        if let Some(pid) = std::fs::read_to_string(self.state.join("emu.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) on the pid recorded for this lab's emulator with a valid signal.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                // Reap it when it is our own child (bench --wan); otherwise wait for it to go.
                // SAFETY: waitpid on a specific pid with WNOHANG and no status pointer.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for side in ["client", "server"] {
            let _ = ip(&["netns", "del", &self.ns(side)]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(self.ns(side)));
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }

    /// Sets a sysctl inside both namespaces (per-namespace ones: tcp_*, congestion control).
    pub fn sysctl(&self, name: &str, value: &str) -> std::io::Result<()> {
        for side in ["client", "server"] {
            let out = self
                .exec(side, "sysctl")
                .args(["-q", "-w", &format!("{name}={value}")])
                .output()?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "sysctl {name}={value} in {}: {}",
                    self.ns(side),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(())
    }
}

fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
