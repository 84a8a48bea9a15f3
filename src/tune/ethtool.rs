//! The few ethtool queries `tune check` needs, through the SIOCETHTOOL ioctl (no ethtool
//! binary): ring sizes, channel counts and the main offloads.

use std::os::fd::AsRawFd;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GRINGPARAM: u32 = 0x10;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_GGRO: u32 = 0x2b;

#[repr(C)]
#[derive(Default)]
struct RingParam {
    cmd: u32,
    rx_max_pending: u32,
    rx_mini_max_pending: u32,
    rx_jumbo_max_pending: u32,
    tx_max_pending: u32,
    rx_pending: u32,
    rx_mini_pending: u32,
    rx_jumbo_pending: u32,
    tx_pending: u32,
}

#[repr(C)]
#[derive(Default)]
struct Channels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

#[repr(C)]
#[derive(Default)]
struct Value {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Runs one ethtool get command on `iface`, filling `arg` (whose first field is `cmd`).
fn query<T>(iface: &str, arg: &mut T) -> std::io::Result<()> {
    if iface.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other("interface name too long"));
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: arg as *mut T as *mut libc::c_void,
        _pad: [0; 16],
    };
    for (d, s) in req.name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads the NUL-terminated name and writes at most size_of::<T>()
    // bytes through `data`, which points at `arg`, alive and exclusively borrowed here; the
    // caller picks T to match the command in its first field.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// (rx, rx max, tx, tx max) ring sizes.
pub fn rings(iface: &str) -> std::io::Result<(u32, u32, u32, u32)> {
    let mut p = RingParam {
        cmd: ETHTOOL_GRINGPARAM,
        ..RingParam::default()
    };
    query(iface, &mut p)?;
    Ok((p.rx_pending, p.rx_max_pending, p.tx_pending, p.tx_max_pending))
}

/// (combined, max combined, rx, tx) channel counts.
pub fn channels(iface: &str) -> std::io::Result<(u32, u32, u32, u32)> {
    let mut c = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    query(iface, &mut c)?;
    Ok((c.combined_count, c.max_combined, c.rx_count, c.tx_count))
}

/// (name, on) for TSO, GSO and GRO.
pub fn offloads(iface: &str) -> Vec<(&'static str, std::io::Result<bool>)> {
    [("tso", ETHTOOL_GTSO), ("gso", ETHTOOL_GGSO), ("gro", ETHTOOL_GGRO)]
        .into_iter()
        .map(|(name, cmd)| {
            let mut v = Value { cmd, data: 0 };
            (name, query(iface, &mut v).map(|_| v.data != 0))
        })
        .collect()
}
