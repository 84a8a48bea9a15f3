//! Socket options of data connections: buffers, Nagle, and the congestion control.
//!
//! Why the congestion control: BBR paces its sends. Without an `fq` qdisc to do it (loopback has
//! none, and `pfifo_fast` is many hosts' default) TCP paces by itself with a high-resolution
//! timer per burst, and in a VM every timer is an interrupt the hypervisor delivers. A same-host
//! stream download spent two thirds of the sender's CPU there: 2 GiB took 0.53-0.68 s with bbr
//! and 0.18-0.21 s with cubic (`docs/engine-paths.md`). Between two ends on one host there is no
//! queue that pacing protects.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::str::FromStr;
use std::sync::Once;

use tokio::net::{TcpSocket, TcpStream};

/// The congestion control of data connections (`--congestion`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// The host's, except that a same-host connection under a pacing algorithm (bbr) gets
    /// cubic: see the module docs.
    #[default]
    Auto,
    /// The host's, always.
    Host,
    /// This algorithm on every data connection (as `iperf3 -C`), e.g. bbr for a WAN pool on a
    /// host whose default is cubic.
    Named(String),
}

/// Longest algorithm name the kernel takes (TCP_CA_NAME_MAX less its NUL).
const NAME_MAX: usize = 15;

impl FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Congestion::Auto),
            "host" => Ok(Congestion::Host),
            name if is_algorithm_name(name) => Ok(Congestion::Named(name.to_owned())),
            _ => Err(format!(
                "'{s}' is not a congestion control: auto, host, or an algorithm such as cubic or bbr"
            )),
        }
    }
}

fn is_algorithm_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= NAME_MAX && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Congestion {
    /// The algorithm to set on a connection, if any: `current` is the socket's algorithm now.
    pub fn choice(&self, current: &str, same_host: bool) -> Option<&str> {
        match self {
            Congestion::Auto if same_host && paces_itself(current) => Some("cubic"),
            Congestion::Auto | Congestion::Host => None,
            Congestion::Named(name) if name == current => None,
            Congestion::Named(name) => Some(name),
        }
    }

    /// Sets the chosen algorithm on an established connection (the kernel re-initialises the
    /// congestion state; nothing was sent yet). A refusal is logged once and the host's
    /// algorithm stays.
    pub fn apply(&self, stream: &TcpStream) {
        if *self == Congestion::Host {
            return;
        }
        let Ok(current) = rustix::net::sockopt::tcp_congestion(stream) else {
            return;
        };
        let Some(want) = self.choice(&current, same_host(stream)) else {
            return;
        };
        match rustix::net::sockopt::set_tcp_congestion(stream, want) {
            Ok(()) => {
                static SAID: Once = Once::new();
                SAID.call_once(|| tracing::info!(from = %current, to = want, "data connections' congestion control"));
            }
            Err(e) => {
                static REFUSED: Once = Once::new();
                REFUSED.call_once(|| {
                    tracing::warn!(want, error = %e, "congestion control refused (see net.ipv4.tcp_allowed_congestion_control); keeping {current}")
                });
            }
        }
    }
}

/// Algorithms that pace their own sends (and so arm a timer per burst without `fq`).
fn paces_itself(algorithm: &str) -> bool {
    algorithm.starts_with("bbr")
}

/// Whether the socket's peer runs on this host (loopback, or our own address).
pub fn same_host(sock: &impl Connected) -> bool {
    match (sock.peer(), sock.local()) {
        (Some(peer), Some(local)) => {
            let peer = peer.ip().to_canonical();
            peer.is_loopback() || peer == local.ip().to_canonical()
        }
        _ => false,
    }
}

/// A connected socket's two addresses (std's and tokio's streams).
pub trait Connected: AsFd {
    fn peer(&self) -> Option<SocketAddr>;
    fn local(&self) -> Option<SocketAddr>;
}

impl Connected for std::net::TcpStream {
    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
    fn local(&self) -> Option<SocketAddr> {
        self.local_addr().ok()
    }
}

impl Connected for TcpStream {
    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
    fn local(&self) -> Option<SocketAddr> {
        self.local_addr().ok()
    }
}

/// Options of a new data connection: fixed buffers when given, no Nagle, the congestion control.
pub fn tune(stream: &TcpStream, buffer: Option<u64>, congestion: &Congestion) {
    if let Some(n) = buffer {
        let n = n.min(usize::MAX as u64) as usize;
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(stream, n);
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(stream, n);
    }
    let _ = stream.set_nodelay(true);
    congestion.apply(stream);
}

/// Fixed buffers on a socket before it listens or connects (so the window scale fits them).
pub fn set_buffers(sock: &TcpSocket, buffer: Option<u64>) {
    if let Some(n) = buffer {
        let n = n.min(u32::MAX as u64) as u32;
        let _ = sock.set_send_buffer_size(n);
        let _ = sock.set_recv_buffer_size(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_option() {
        assert_eq!("auto".parse(), Ok(Congestion::Auto));
        assert_eq!("host".parse(), Ok(Congestion::Host));
        assert_eq!("bbr".parse(), Ok(Congestion::Named("bbr".into())));
        for bad in ["", "cu bic", "a/b", "sixteen_letters_", "cubic\0"] {
            assert!(bad.parse::<Congestion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auto_drops_pacing_only_between_ends_on_one_host() {
        let auto = Congestion::Auto;
        assert_eq!(auto.choice("bbr", true), Some("cubic"));
        assert_eq!(auto.choice("bbr", false), None);
        assert_eq!(auto.choice("cubic", true), None);
        assert_eq!(auto.choice("htcp", true), None);
        assert_eq!(Congestion::Host.choice("bbr", true), None);
        let named = Congestion::Named("bbr".into());
        assert_eq!(named.choice("cubic", false), Some("bbr"));
        assert_eq!(named.choice("bbr", true), None);
    }

    #[tokio::test]
    async fn a_loopback_connection_leaves_bbr() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        assert!(same_host(&a) && same_host(&b));
        // This host may lack bbr; the test then checks that cubic stays as it is.
        let had_bbr = rustix::net::sockopt::set_tcp_congestion(&a, "bbr").is_ok();
        tune(&a, None, &Congestion::Auto);
        let now = rustix::net::sockopt::tcp_congestion(&a).unwrap();
        if had_bbr {
            assert_eq!(now, "cubic");
        }
        tune(&b, None, &Congestion::Named("reno".into()));
        assert_eq!(rustix::net::sockopt::tcp_congestion(&b).unwrap(), "reno");
    }
}
