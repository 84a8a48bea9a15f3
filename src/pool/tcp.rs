//! Socket options of data connections: buffers, Nagle, and the congestion control.
//!
//! Why the congestion control: BBR paces its sends. Without an `fq` qdisc to do it (loopback has
//! none, and `pfifo_fast` is many hosts' default) TCP paces by itself with a high-resolution
//! timer per burst, and in a VM every timer is an interrupt the hypervisor delivers. A same-host
//! stream download spent two thirds of the sender's CPU there: 2 GiB took 0.53-0.68 s with bbr
//! and 0.18-0.21 s with cubic (`docs/engine-paths.md`). Between two ends on one host there is no
//! queue that pacing protects. The choice is made before a connection exists (on its listener,
//! or before connect): an established bbr connection switched to cubic keeps pacing.

use std::net::{IpAddr, SocketAddr};
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
    /// The algorithm a data connection should run, given the host's default.
    pub fn wanted<'a>(&'a self, host: &'a str, same_host: bool) -> &'a str {
        match self {
            Congestion::Auto if same_host && paces_itself(host) => "cubic",
            Congestion::Auto | Congestion::Host => host,
            Congestion::Named(name) => name,
        }
    }

    /// Sets the algorithm on a socket before it connects or listens (the children of a
    /// listener inherit it). It must be chosen before the connection exists: a bbr connection
    /// switched later keeps pacing inside TCP (the kernel does not undo what bbr's start set).
    pub fn prepare(&self, sock: &impl AsFd, same_host: bool) {
        if *self != Congestion::Host {
            self.set(sock, same_host);
        }
    }

    /// Corrects an accepted or made connection whose algorithm is not the one wanted (a
    /// listener prepared for one peer, a connection from another).
    pub fn apply(&self, stream: &impl Connected) {
        if *self != Congestion::Host {
            self.set(stream, same_host(stream));
        }
    }

    fn set(&self, sock: &impl AsFd, same_host: bool) {
        let (Some(host), Ok(current)) = (host_default(), rustix::net::sockopt::tcp_congestion(sock)) else {
            return;
        };
        let want = self.wanted(&host, same_host);
        if want == current {
            return;
        }
        match rustix::net::sockopt::set_tcp_congestion(sock, want) {
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

/// The host's (this network namespace's) default algorithm, read each time: an operator may
/// change it while the server runs.
pub fn host_default() -> Option<String> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| is_algorithm_name(s))
}

/// Algorithms that pace their own sends (and so arm a timer per burst without `fq`).
pub fn paces_itself(algorithm: &str) -> bool {
    algorithm.starts_with("bbr")
}

/// Whether the socket's peer runs on this host (loopback, or our own address).
pub fn same_host(sock: &impl Connected) -> bool {
    sock.peer()
        .zip(sock.local())
        .is_some_and(|(p, l)| same_host_ip(p.ip(), l.ip()))
}

/// Whether `peer` is this host, seen from a socket on `local`.
pub fn same_host_ip(peer: IpAddr, local: IpAddr) -> bool {
    let peer = peer.to_canonical();
    peer.is_loopback() || peer == local.to_canonical()
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
    set_connection_buffers(stream, buffer);
    let _ = stream.set_nodelay(true);
    congestion.apply(stream);
}

/// Fixed buffers on a connection that exists already, when given.
pub fn set_connection_buffers(sock: &impl AsFd, buffer: Option<u64>) {
    if let Some(n) = buffer {
        let n = n.min(usize::MAX as u64) as usize;
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(sock, n);
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(sock, n);
    }
}

/// A TCP socket of `addr`'s family.
pub fn new_socket(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
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
        assert_eq!(auto.wanted("bbr", true), "cubic");
        assert_eq!(auto.wanted("bbr", false), "bbr");
        assert_eq!(auto.wanted("cubic", true), "cubic");
        assert_eq!(auto.wanted("htcp", true), "htcp");
        assert_eq!(Congestion::Host.wanted("bbr", true), "bbr");
        let named = Congestion::Named("bbr".into());
        assert_eq!(named.wanted("cubic", false), "bbr");
        assert_eq!(named.wanted("cubic", true), "bbr");
        let v6_loopback: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(same_host_ip(v6_loopback, "10.0.0.1".parse().unwrap()));
        assert!(same_host_ip("10.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap()));
        assert!(!same_host_ip("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_prepared_listener_hands_its_algorithm_to_each_connection() {
        let sock = TcpSocket::new_v4().unwrap();
        let reno = Congestion::Named("reno".into());
        reno.prepare(&sock, true);
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let l = sock.listen(4).unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        assert!(same_host(&a) && same_host(&b));
        assert_eq!(rustix::net::sockopt::tcp_congestion(&b).unwrap(), "reno");
        // A connection whose algorithm is not the wanted one is corrected once it exists.
        tune(&a, None, &reno);
        assert_eq!(rustix::net::sockopt::tcp_congestion(&a).unwrap(), "reno");
        let host = host_default().unwrap();
        tune(&b, None, &Congestion::Auto);
        assert_eq!(
            rustix::net::sockopt::tcp_congestion(&b).unwrap(),
            Congestion::Auto.wanted(&host, true)
        );
    }
}
