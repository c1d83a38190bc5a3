//! Where the server may connect on a tenant's behalf. A tenant administrator chooses the URLs the
//! SSO code fetches (OIDC issuer, SAML metadata, GitHub Enterprise), so without a guard any tenant
//! could make the server request its own loopback services, the cloud metadata endpoint
//! (169.254.169.254) or the private network behind it (server-side request forgery).
//!
//! The guard is applied twice: when a URL is configured (so a bad one is refused with a clear
//! 4xx), and on every connection, by the HTTP client's resolver (so a name that resolved to a
//! public address then is not later pointed at a private one: DNS rebinding). URLs with an IP
//! address as their host never reach a resolver and are checked before the request.
//!
//! `PLATFORM_SSO_ALLOW_PRIVATE_NETWORKS=true` lifts it, for development and tests against a local
//! identity provider; plain `http` is only ever accepted for a loopback host, and only then.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::SsoError;

/// Whether `ip` is a public unicast address (what `IpAddr::is_global` will say once stable):
/// not loopback, private, link-local, shared (CGNAT), documentation, benchmarking, multicast,
/// reserved or unspecified; IPv6 addresses that embed an IPv4 address are judged by it.
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// The outbound policy: whether private and loopback addresses may be reached.
#[derive(Clone, Copy, Debug)]
pub struct Egress {
    pub allow_private_networks: bool,
}

impl Egress {
    fn allows(self, ip: IpAddr) -> bool {
        self.allow_private_networks || is_public(ip)
    }

    /// Refuses a URL whose host is an IP address this policy does not allow (names are checked
    /// by the resolver, at connection time).
    pub(crate) fn check_literal(self, url: &url::Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("the URL has no host".into()),
        };
        if self.allows(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is not a public address"))
        }
    }

    /// Checks a URL a tenant administrator configures (`field` names it in the problem): `https`
    /// (or `http` to a loopback host when private networks are allowed), and a host that is, or
    /// resolves only to, addresses this policy allows.
    pub async fn check_url(self, raw: &str, field: &str) -> Result<url::Url, SsoError> {
        let invalid = |why: String| SsoError::Invalid(format!("`{field}` {why}"));
        let url = url::Url::parse(raw).map_err(|_| invalid("is not a URL".into()))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(v4)) => v4.is_loopback(),
            Some(url::Host::Ipv6(v6)) => v6.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        let plain_ok = url.scheme() == "http" && loopback && self.allow_private_networks;
        if url.scheme() != "https" && !plain_ok {
            return Err(invalid("must be an https URL".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials".into()));
        }
        self.check_literal(&url)
            .map_err(|why| invalid(format!("points at a non-public address ({why})")))?;
        if let Some(url::Host::Domain(host)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| invalid(format!("has a host that does not resolve ({e})")))?
                .collect();
            if let Some(bad) = addrs.iter().find(|a| !self.allows(a.ip())) {
                return Err(invalid(format!(
                    "points at a non-public address ({host} resolves to {})",
                    bad.ip()
                )));
            }
        }
        Ok(url)
    }
}

/// The HTTP client's resolver: the system's answer, refused whole if any address in it is not
/// allowed (a name with one private address among public ones is a rebinding attempt, or a
/// misconfiguration worth hearing about).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardedResolver(pub(crate) Egress);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !policy.allows(a.ip())) {
                return Err(format!(
                    "outbound connection refused: {host} resolves to {}, not a public address",
                    bad.ip()
                )
                .into());
            }
            let out: Addrs = Box::new(addrs.into_iter());
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_reserved_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().expect("an address")), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "140.82.112.3",
            "2606:4700::1111",
            "::ffff:8.8.4.4",
        ] {
            assert!(is_public(ip.parse().expect("an address")), "{ip}");
        }
    }

    #[tokio::test]
    async fn configured_urls_must_be_https_and_public_unless_private_networks_are_allowed() {
        let strict = Egress {
            allow_private_networks: false,
        };
        for url in [
            "http://127.0.0.1:8080/",
            "https://127.0.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/",
            "https://localhost/",
            "https://10.0.0.5/realms/x",
            "http://idp.example.com/",
            "https://user:pw@8.8.8.8/",
        ] {
            let e = strict.check_url(url, "issuer").await.expect_err("refused");
            assert!(matches!(e, SsoError::Invalid(_)), "{url}: {e:?}");
        }
        strict
            .check_url("https://8.8.8.8/", "issuer")
            .await
            .expect("a public address");
        let dev = Egress {
            allow_private_networks: true,
        };
        dev.check_url("http://127.0.0.1:8080/", "issuer")
            .await
            .expect("loopback http in development");
        dev.check_url("http://localhost:8080/", "issuer")
            .await
            .expect("localhost http in development");
        assert!(dev.check_url("http://10.0.0.5/", "issuer").await.is_err());
    }

    #[tokio::test]
    async fn the_client_resolver_refuses_names_of_private_addresses() {
        let name = |n: &str| n.parse::<Name>().expect("name");
        let strict = GuardedResolver(Egress {
            allow_private_networks: false,
        });
        let err = strict
            .resolve(name("localhost"))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("not a public address"), "{err}");
        let dev = GuardedResolver(Egress {
            allow_private_networks: true,
        });
        let addrs: Vec<SocketAddr> = dev
            .resolve(name("localhost"))
            .await
            .expect("allowed")
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
