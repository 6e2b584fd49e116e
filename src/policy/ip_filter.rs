//! `kind = "ip_filter"`: allow and deny lists of CIDR ranges on the client address.
//!
//! The client address is the TCP peer, or, when the peer is a trusted proxy, the address it
//! forwarded for (see `client_addr`). Deny wins over allow; a non-empty allow list refuses
//! every address outside it. A few range comparisons, no allocation.

use std::net::IpAddr;

use ipnet::IpNet;

use super::client_addr::{client_addr, contains};
use super::{Denial, Identity, RequestView};
use crate::http::problem::cause;

/// A compiled `ip_filter` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpFilter {
    /// The policy's name.
    pub name: String,
    /// Addresses let through; empty lets every address not denied through.
    pub allow: Vec<IpNet>,
    /// Addresses refused.
    pub deny: Vec<IpNet>,
    /// This policy's own trusted proxies, replacing `[server] trusted_proxies` when set.
    pub trusted_proxies: Option<Vec<IpNet>>,
}

impl IpFilter {
    /// 403 unless the client address passes the lists.
    pub fn check(&self, req: &RequestView<'_>, identity: &Identity) -> Result<(), Denial> {
        let client = match &self.trusted_proxies {
            Some(trusted) => client_addr(req, trusted),
            None => identity.client_ip,
        };
        if self.allows(client) {
            Ok(())
        } else {
            Err(Denial::forbidden(
                cause::ADDRESS_DENIED,
                "forbidden: client address not allowed",
            ))
        }
    }

    /// Whether `ip` passes: not denied, and allowed if there is an allow list.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if contains(&self.deny, ip) {
            return false;
        }
        self.allow.is_empty() || contains(&self.allow, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: &[&str], deny: &[&str]) -> IpFilter {
        let nets = |l: &[&str]| l.iter().map(|n| n.parse().expect("net")).collect();
        IpFilter {
            name: "f".into(),
            allow: nets(allow),
            deny: nets(deny),
            trusted_proxies: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn deny_wins_over_allow() {
        let f = filter(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert!(f.allows(ip("10.1.2.3")));
        assert!(!f.allows(ip("10.9.2.3")));
        assert!(!f.allows(ip("192.0.2.1")));
    }

    #[test]
    fn empty_allow_list_allows_all_not_denied() {
        let f = filter(&[], &["2001:db8::/32"]);
        assert!(f.allows(ip("192.0.2.1")));
        assert!(f.allows(ip("2001:db9::1")));
        assert!(!f.allows(ip("2001:db8::5")));
    }

    #[test]
    fn ipv4_ranges_cover_mapped_ipv6_addresses() {
        let f = filter(&["127.0.0.0/8"], &[]);
        assert!(f.allows(ip("::ffff:127.0.0.1")));
    }
}
