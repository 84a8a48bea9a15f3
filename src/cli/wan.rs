//! `ringmover wan-emu`: the userspace WAN link between two TUN devices.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::wan::{self, LinkConfig};

#[derive(Debug, Args)]
#[command(after_help = super::UNITS_HELP)]
pub struct WanArgs {
    /// First TUN device (created; move it into a namespace with `ip link set NAME netns NS`).
    #[arg(long = "tun-a")]
    pub tun_a: String,
    /// Second TUN device.
    #[arg(long = "tun-b")]
    pub tun_b: String,
    /// One-way delay (e.g. 25ms); the round trip is twice this.
    #[arg(long, default_value = "0ms")]
    pub delay: String,
    /// Delay variation, uniform within ±jitter (packet order is kept).
    #[arg(long, default_value = "0ms")]
    pub jitter: String,
    /// Random loss, e.g. 0.1% or 0.001.
    #[arg(long, default_value = "0")]
    pub loss: String,
    /// Burst loss (Gilbert): ENTER,LEAVE probabilities per packet, e.g. 0.1%,30%.
    #[arg(long = "burst-loss")]
    pub burst_loss: Option<String>,
    /// Share of packets that skip the delay (arrive ahead of earlier ones).
    #[arg(long, default_value = "0")]
    pub reorder: String,
    /// Rate limit, e.g. 1gbit, 200mbit (default: none).
    #[arg(long)]
    pub rate: Option<String>,
    /// Queue in front of the rate limit, in bytes (e.g. 4M); the tail is dropped past it.
    #[arg(long, default_value = "4M")]
    pub queue: String,
    /// Seed of the random impairments (runs repeat exactly with the same seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(a: WanArgs) -> Result<ExitCode> {
    let dur =
        |s: &str| crate::units::parse_rtt(s).with_context(|| format!("invalid duration '{s}': give a unit, e.g. 25ms"));
    let prob = |s: &str| wan::parse_probability(s).with_context(|| format!("invalid probability '{s}'"));
    let burst = match &a.burst_loss {
        Some(b) => {
            let (x, y) = b.split_once(',').context("--burst-loss wants ENTER,LEAVE")?;
            Some((prob(x)?, prob(y)?))
        }
        None => None,
    };
    let cfg = LinkConfig {
        delay: dur(&a.delay)?,
        jitter: dur(&a.jitter)?,
        loss: prob(&a.loss)?,
        burst,
        reorder: prob(&a.reorder)?,
        rate_bps: a
            .rate
            .as_deref()
            .map(|r| crate::units::parse_rate(r).with_context(|| format!("invalid rate '{r}': e.g. 1gbit, 200mbit")))
            .transpose()?,
        queue_bytes: super::parse_size(&a.queue)?,
        seed: a.seed,
    };
    let (stats, threads) = wan::start(&a.tun_a, &a.tun_b, &cfg)
        .with_context(|| format!("creating TUN devices {} and {}", a.tun_a, a.tun_b))?;
    // The lab script waits for this line before moving the devices into their namespaces.
    println!("ready {} {}", a.tun_a, a.tun_b);
    tracing::info!(?cfg, "wan emulator running");
    let mut last = [0u64; 2];
    loop {
        std::thread::sleep(Duration::from_secs(10));
        if threads.iter().all(|t| t.is_finished()) {
            break;
        }
        for (i, s) in stats.iter().enumerate() {
            let f = s.forwarded.load(std::sync::atomic::Ordering::Relaxed);
            if f != last[i] {
                tracing::info!(direction = i, stats = %serde_json::to_string(&**s).unwrap_or_default(), "wan counters");
                last[i] = f;
            }
        }
    }
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            tracing::warn!("wan direction ended: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ringmover wan-lab`: build or remove the two-namespace lab around wan-emu.
#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {
    /// Namespaces <P>-client (10.77.0.1) and <P>-server (10.77.0.2) joined by wan-emu; the
    /// options after the prefix go to wan-emu (e.g. --delay 25ms --rate 1gbit).
    Up {
        #[arg(long, default_value = "rm")]
        prefix: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        emu: Vec<String>,
    },
    /// Stop the emulator and delete the namespaces.
    Down {
        #[arg(long, default_value = "rm")]
        prefix: String,
    },
}

pub fn lab(a: LabArgs) -> Result<ExitCode> {
    match a.command {
        LabCmd::Up { prefix, emu } => {
            let lab = wan::lab::Lab::new(&prefix);
            let exe = std::env::current_exe().context("finding this program")?;
            lab.up(&exe, &emu).context("building the lab")?;
            println!(
                "wan-lab: {} ({}) <-> {} ({}) through wan-emu {}",
                lab.ns("client"),
                wan::lab::CLIENT_IP,
                lab.ns("server"),
                wan::lab::SERVER_IP,
                emu.join(" ")
            );
        }
        LabCmd::Down { prefix } => {
            wan::lab::Lab::new(&prefix).down();
            println!("wan-lab: down");
        }
    }
    Ok(ExitCode::SUCCESS)
}
