//! Who may be at the far end of a data connection: the client on the control connection, and
//! the networks the operator trusts for third-party transfers. Everything else is a stranger
//! racing for a passive port or a bounce target (GridFTP pitfall: PORT to someone else).

use core::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The addresses a transfer's data connections may come from or go to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPeers {
    /// The control connection's peer.
    pub client: IpAddr,
    /// Further networks allowed (third-party sources and destinations).
    pub trusted: Vec<IpNet>,
}

impl DataPeers {
    /// Only `client`.
    pub fn only(client: IpAddr) -> DataPeers {
        DataPeers {
            client,
            trusted: Vec::new(),
        }
    }

    /// True when `ip` is the client or inside a trusted network.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip == canonical(self.client) || self.trusted.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses as plain IPv4, so both spellings of one host compare equal.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Parses a comma-separated list of networks (`10.1.0.0/16,2001:db8::/32`); a bare address is
/// a single host.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("invalid network '{s}': expected ADDRESS/PREFIX or ADDRESS"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_trusted_networks_only() {
        let p = DataPeers {
            client: "10.0.0.9".parse().unwrap(),
            trusted: parse_networks("192.168.5.0/24, 2001:db8::1").unwrap(),
        };
        assert!(p.allows("10.0.0.9".parse().unwrap()));
        assert!(p.allows("::ffff:10.0.0.9".parse().unwrap()));
        assert!(p.allows("192.168.5.77".parse().unwrap()));
        assert!(p.allows("2001:db8::1".parse().unwrap()));
        assert!(!p.allows("10.0.0.10".parse().unwrap()));
        assert!(!p.allows("192.168.6.1".parse().unwrap()));
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("nope").is_err());
        assert_eq!(parse_networks("").unwrap(), Vec::<IpNet>::new());
    }
}
