//! The client's address behind trusted proxies.
//!
//! `X-Forwarded-For` is believed only as far as it was written by proxies we trust: when the
//! TCP peer is a trusted proxy, the entries are walked from the right (the most recently
//! appended, by the proxy nearest to us) and the first address that is not itself a trusted
//! proxy is the client. Everything to its left was written by parties we do not trust and is
//! ignored, so a client cannot choose its own address by sending a forged header. No
//! allocation: entries are parsed in place.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::RequestView;

/// Whether `ip` lies in one of `nets`. IPv4-mapped IPv6 addresses match IPv4 ranges.
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|net| net.contains(&ip))
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so one IPv4 range covers both spellings.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client address of `req` given the `trusted` proxies (see the module docs).
pub fn client_addr(req: &RequestView<'_>, trusted: &[IpNet]) -> IpAddr {
    let mut client = canonical(req.peer);
    if trusted.is_empty() || !contains(trusted, client) {
        return client;
    }
    let data = req.data;
    let fields = req
        .headers
        .iter()
        .rev()
        .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"x-forwarded-for"));
    for field in fields {
        for entry in field.value.of(data).rsplit(|&b| b == b',') {
            match parse_entry(entry) {
                // A hop we trust: the entry to its left is the address it received from.
                Some(ip) if contains(trusted, ip) => client = ip,
                Some(ip) => return ip,
                // Garbage written by someone: the last trusted hop is all we know.
                None => return client,
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(canonical(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeaderSpan, Span};

    fn view<'a>(data: &'a [u8], headers: &'a [HeaderSpan], peer: &str) -> RequestView<'a> {
        RequestView {
            data,
            headers,
            query: None,
            peer: peer.parse().expect("ip"),
            trusted_proxies: &[],
            route: "r",
            path_params: None,
        }
    }

    /// Headers `X-Forwarded-For: {value}` for each value, laid out in one buffer.
    fn xff(values: &[&str]) -> (Vec<u8>, Vec<HeaderSpan>) {
        let mut data = Vec::new();
        let mut headers = Vec::new();
        for v in values {
            let name = span(data.len(), data.len() + 15);
            data.extend_from_slice(b"X-Forwarded-For");
            let value = span(data.len(), data.len() + v.len());
            data.extend_from_slice(v.as_bytes());
            headers.push(HeaderSpan { name, value });
        }
        (data, headers)
    }

    fn span(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let (data, headers) = xff(&["1.1.1.1"]);
        let req = view(&data, &headers, "192.0.2.7");
        assert_eq!(client_addr(&req, &nets(&["10.0.0.0/8"])), req.peer);
    }

    #[test]
    fn rightmost_untrusted_entry_is_the_client() {
        let (data, headers) = xff(&["6.6.6.6, 203.0.113.9", "10.0.0.2"]);
        let req = view(&data, &headers, "10.0.0.1");
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(client_addr(&req, &nets(&["10.0.0.0/8"])), ip);
    }

    #[test]
    fn all_trusted_entries_leave_the_leftmost_hop() {
        let (data, headers) = xff(&["10.1.1.1, 10.2.2.2"]);
        let req = view(&data, &headers, "10.0.0.1");
        let ip: IpAddr = "10.1.1.1".parse().expect("ip");
        assert_eq!(client_addr(&req, &nets(&["10.0.0.0/8"])), ip);
    }

    #[test]
    fn garbage_entry_stops_at_the_last_trusted_hop() {
        let (data, headers) = xff(&["1.2.3.4, nonsense"]);
        let req = view(&data, &headers, "10.0.0.1");
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(client_addr(&req, &nets(&["10.0.0.0/8"])), ip);
    }

    #[test]
    fn entries_with_ports_and_ipv6_and_mapped_addresses_parse() {
        let (data, headers) = xff(&["[2001:db8::1]:443, 198.51.100.1:80"]);
        let req = view(&data, &headers, "::ffff:10.0.0.1");
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(client_addr(&req, &nets(&["10.0.0.0/8"])), ip);
        let trusted = nets(&["10.0.0.0/8", "198.51.100.0/24"]);
        let ip: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(client_addr(&req, &trusted), ip);
    }
}
