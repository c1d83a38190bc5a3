//! Who a client is, for limiting: the address the platform believes (socket peer, or
//! `X-Forwarded-For` behind a trusted proxy) and the key every per-address limit counts under.
//! An IPv6 client gets a whole /64 from any provider (and picks any address in it at will), so a
//! per-address limit keyed on the full address would give one client 2^64 buckets: IPv6 keys on
//! its /64, IPv4 on the address. This is the one place that rule lives.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// The key of a client address in every per-address limit (IPv4: the address; IPv6: its /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `ip` (IPv4-mapped IPv6 counts as the IPv4 address).
    #[must_use]
    pub fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !(u128::MAX >> 64);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 @ IpAddr::V4(_) => Self(v4),
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(_) => write!(f, "{}/64", self.0),
            IpAddr::V4(_) => self.0.fmt(f),
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client has one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` that is not itself a trusted proxy (addresses further left were
/// written by the client and prove nothing).
pub(crate) fn client_ip(
    trusted_proxies: &[IpNet],
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for part in forwarded_for
        .iter()
        .rev()
        .flat_map(|h| h.rsplit(','))
        .map(str::trim)
    {
        let Ok(ip) = part.parse::<IpAddr>().map(canonical) else {
            // A malformed entry: stop at the last address we could trust.
            break;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::of(s.parse().expect("ip"))
    }

    #[test]
    fn ipv6_keys_on_its_64_and_ipv4_on_the_address() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::9").to_string(), "2001:db8:1:2::/64");
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    }
}
