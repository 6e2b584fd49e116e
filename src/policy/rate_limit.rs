//! `kind = "rate_limit"` as a chain stage: picks the request's key and checks it against the
//! worker's table for the policy (see `crate::rate_limit`), writing the policy's response
//! fields on every answer of the route, admitted or refused (429).
//!
//! No allocation for a key already tracked: the key bytes are read in place (a header
//! value, the route name) or built on the stack (the client address).

use std::net::IpAddr;
use std::sync::Arc;

use super::{Challenge, Denial, Identity, RequestView};
use crate::http::problem::cause;
use crate::rate_limit::{KeySource, RateLimitPolicy, WorkerLimits};

/// Checks one request against `policy`; appends its response fields to `fields`.
pub fn check(
    policy: &Arc<RateLimitPolicy>,
    req: &RequestView<'_>,
    identity: &Identity,
    limits: &WorkerLimits,
    fields: &mut Vec<u8>,
) -> Result<(), Denial> {
    let ip = IpKey::new(identity.client_ip);
    let key: &[u8] = match &policy.key {
        KeySource::Ip => ip.bytes(),
        // Requests without the header share one bucket (the empty key).
        KeySource::Header(name) => req.header(name).unwrap_or(b""),
        // Requests no authentication policy identified share one bucket (the empty key).
        KeySource::Consumer => identity.consumer_name().unwrap_or_default().as_bytes(),
        KeySource::Route => req.route.as_bytes(),
    };
    let decision = limits.check(policy, key);
    policy.write_fields(&decision, fields);
    if decision.admitted {
        Ok(())
    } else {
        Err(Denial {
            status: 429,
            cause: cause::RATE_LIMITED,
            message: "too many requests",
            challenge: Challenge::None,
            violations: Vec::new(),
        })
    }
}

/// A client address as key bytes, on the stack.
struct IpKey {
    bytes: [u8; 16],
    len: usize,
}

impl IpKey {
    fn new(ip: IpAddr) -> Self {
        let mut bytes = [0u8; 16];
        let len = match ip {
            IpAddr::V4(v4) => {
                bytes[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                bytes.copy_from_slice(&v6.octets());
                16
            }
        };
        IpKey { bytes, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::{Rate, Scope};

    fn view<'a>(data: &'a [u8], headers: &'a [crate::http::HeaderSpan]) -> RequestView<'a> {
        RequestView {
            data,
            headers,
            query: None,
            peer: IpAddr::from([10, 0, 0, 1]),
            trusted_proxies: &[],
            route: "api",
            path_params: None,
        }
    }

    fn policy(key: KeySource) -> Arc<RateLimitPolicy> {
        let rate = Rate::parse("1/h").expect("valid");
        Arc::new(RateLimitPolicy::new("p", key, rate, 1, Scope::Worker, 16))
    }

    #[test]
    // Identity grows fields as authentication kinds arrive: set only the one this needs.
    #[allow(clippy::field_reassign_with_default)]
    fn keys_on_the_client_address_and_answers_429_with_retry_after() {
        let limits = WorkerLimits::new(0, 1);
        let p = policy(KeySource::Ip);
        let mut identity = Identity::default();
        identity.client_ip = IpAddr::from([10, 0, 0, 1]);
        let mut fields = Vec::new();
        let req = view(b"", &[]);
        assert!(check(&p, &req, &identity, &limits, &mut fields).is_ok());
        fields.clear();
        let denial = check(&p, &req, &identity, &limits, &mut fields).expect_err("limited");
        assert_eq!(denial.status, 429);
        let text = String::from_utf8(fields).expect("ascii");
        assert!(text.contains("RateLimit: \"p\";r=0;"), "{text}");
        assert!(text.contains("Retry-After: "), "{text}");
        // Another address has its own bucket.
        identity.client_ip = IpAddr::from([10, 0, 0, 2]);
        assert!(check(&p, &req, &identity, &limits, &mut Vec::new()).is_ok());
    }

    #[test]
    fn one_bucket_per_route_for_a_route_key() {
        let limits = WorkerLimits::new(0, 1);
        let p = policy(KeySource::Route);
        let mut identity = Identity::default();
        let req = view(b"", &[]);
        assert!(check(&p, &req, &identity, &limits, &mut Vec::new()).is_ok());
        identity.client_ip = IpAddr::from([10, 9, 9, 9]);
        assert!(check(&p, &req, &identity, &limits, &mut Vec::new()).is_err());
    }
}
