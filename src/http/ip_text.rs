//! An IP address as text, formatted once per connection for the `X-Forwarded-For` field
//! rather than once per request.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;

/// Room for the longest text an IP address has in any standard form (45 bytes, an IPv6
/// address with a dotted-quad tail written in full); `IpAddr`'s `Display` writes at most 39.
const MAX_LEN: usize = 45;

/// An IP address's text (`Display` form), kept inline.
#[derive(Clone, Copy)]
pub struct IpText {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl IpText {
    /// Formats `ip`.
    pub fn new(ip: IpAddr) -> Self {
        let mut bytes = [0; MAX_LEN];
        let room = {
            let mut rest = &mut bytes[..];
            // Writing to a slice fails only when it is too short, and MAX_LEN holds every
            // address; a failure would leave the text cut short, never panic.
            let _ = write!(rest, "{ip}");
            rest.len()
        };
        let len = u8::try_from(MAX_LEN - room).unwrap_or(0);
        Self { len, bytes }
    }

    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn is_the_display_form_of_every_kind_of_address() {
        let longest = Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 1);
        let cases = [
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6("2001:db8::1".parse().expect("literal")),
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
            IpAddr::V6(longest),
        ];
        for ip in cases {
            assert_eq!(
                IpText::new(ip).as_bytes(),
                ip.to_string().as_bytes(),
                "{ip}"
            );
        }
    }
}
