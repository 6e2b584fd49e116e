//! Service discovery by DNS: a group with `resolve_every` has its targets' names re-resolved
//! on the health thread (never on a worker); every A/AAAA record becomes a target with the
//! configured weight, and a changed list is published as a new [`TargetSet`] that keeps the
//! health cells of addresses that stayed.
//!
//! A failed resolution keeps the current set (and is logged): a DNS hiccup must not empty a
//! group.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::targets::TargetSet;
use crate::config::{Target, Upstream};

/// A configured target before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// `ip:port` or `name:port`.
    pub addr: String,
    /// Relative weight.
    pub weight: u32,
}

/// `resolve_every` of an upstream group and the names it re-resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Time between two resolutions.
    pub every: Duration,
    /// The configured targets, in order.
    pub specs: Vec<TargetSpec>,
}

/// Turns `host:port` into addresses.
pub trait Resolver {
    /// Every address of `addr`.
    fn resolve(&self, addr: &str) -> io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`, blocking).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, addr: &str) -> io::Result<Vec<SocketAddr>> {
        if let Ok(parsed) = addr.parse::<SocketAddr>() {
            return Ok(vec![parsed]);
        }
        Ok(addr.to_socket_addrs()?.collect())
    }
}

/// Every address of every spec, in order, without duplicates.
pub fn resolve_all(specs: &[TargetSpec], resolver: &impl Resolver) -> Result<Vec<Target>, String> {
    let mut out: Vec<Target> = Vec::new();
    for spec in specs {
        let found = resolver
            .resolve(&spec.addr)
            .map_err(|e| format!("cannot resolve `{}`: {e}", spec.addr))?;
        if found.is_empty() {
            return Err(format!("`{}` resolved to no address", spec.addr));
        }
        for addr in found {
            if !out.iter().any(|t| t.addr == addr) {
                out.push(Target {
                    addr,
                    weight: spec.weight,
                });
            }
        }
    }
    Ok(out)
}

/// Re-resolves `group` and publishes the result if the targets changed. Returns whether a
/// new set was published.
pub fn refresh(group: &Upstream, resolver: &impl Resolver) -> bool {
    let Some(discovery) = &group.discovery else {
        return false;
    };
    let targets = match resolve_all(&discovery.specs, resolver) {
        Ok(targets) => targets,
        Err(e) => {
            log::warn!("upstream {}: {e}; keeping its current targets", group.name);
            return false;
        }
    };
    let current = group.live.current();
    if current.targets == targets {
        return false;
    }
    log::info!(
        "upstream {}: targets now {:?}",
        group.name,
        targets.iter().map(|t| t.addr).collect::<Vec<_>>()
    );
    let hashed = current.ring.is_some();
    group
        .live
        .store(TargetSet::build(targets, hashed, |addr| current.cell(addr)));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// A resolver answering from a table the test edits.
    #[derive(Default)]
    struct Fake(RefCell<HashMap<String, io::Result<Vec<SocketAddr>>>>);

    impl Fake {
        fn set(&self, name: &str, answer: io::Result<Vec<SocketAddr>>) {
            self.0.borrow_mut().insert(name.into(), answer);
        }
    }

    impl Resolver for Fake {
        fn resolve(&self, addr: &str) -> io::Result<Vec<SocketAddr>> {
            match self.0.borrow().get(addr) {
                Some(Ok(v)) => Ok(v.clone()),
                Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "unknown")),
            }
        }
    }

    fn ip(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    fn group(text: &str) -> crate::config::Snapshot {
        crate::config::load_str(text, "t").expect("config")
    }

    fn addrs(up: &Upstream) -> Vec<SocketAddr> {
        up.live.current().targets.iter().map(|t| t.addr).collect()
    }

    const CONFIG: &str = "[[upstreams]]\nname = \"svc\"\nresolve_every = \"1s\"\n\
                          targets = [{ addr = \"localhost:80\", weight = 3 }]\n";

    #[test]
    fn publishes_every_address_and_keeps_health_of_those_that_stay() {
        let snapshot = group(CONFIG);
        let up = &snapshot.upstreams[0];
        let fake = Fake::default();
        fake.set("localhost:80", Ok(vec![ip(1), ip(2)]));
        assert!(refresh(up, &fake));
        assert_eq!(addrs(up), vec![ip(1), ip(2)]);
        assert!(up.live.current().targets.iter().all(|t| t.weight == 3));
        let kept = up.live.current().cell(ip(2)).expect("cell");
        fake.set("localhost:80", Ok(vec![ip(2), ip(3), ip(2)]));
        assert!(refresh(up, &fake));
        assert_eq!(addrs(up), vec![ip(2), ip(3)]);
        assert!(Arc::ptr_eq(&kept, &up.live.current().health[0]));
        assert!(!refresh(up, &fake), "unchanged: nothing published");
    }

    #[test]
    fn a_failed_resolution_keeps_the_current_targets() {
        let snapshot = group(CONFIG);
        let up = &snapshot.upstreams[0];
        let before = addrs(up);
        let fake = Fake::default();
        fake.set("localhost:80", Err(io::Error::other("SERVFAIL")));
        assert!(!refresh(up, &fake));
        fake.set("localhost:80", Ok(vec![]));
        assert!(!refresh(up, &fake));
        assert_eq!(addrs(up), before);
    }

    #[test]
    fn localhost_resolves_to_loopback_with_the_system_resolver() {
        let specs = [TargetSpec {
            addr: "localhost:9".into(),
            weight: 1,
        }];
        let targets = resolve_all(&specs, &SystemResolver).expect("localhost resolves");
        assert!(!targets.is_empty());
        assert!(targets
            .iter()
            .all(|t| t.addr.ip().is_loopback() && t.addr.port() == 9));
        assert!(targets
            .iter()
            .any(|t| t.addr == SocketAddr::from(([127, 0, 0, 1], 9))));
    }
}
