//! A compiled `kind = "rate_limit"` policy: what it keys on, its rate, burst and scope, and
//! its response fields rendered once at compile time.
//!
//! Response fields follow draft-ietf-httpapi-ratelimit-headers (structured fields, revision
//! 11): `RateLimit-Policy: "NAME";q=QUOTA;w=WINDOW` (the configured rate as a quota per
//! window of seconds) and `RateLimit: "NAME";r=REMAINING;t=RESET` (requests left now, and
//! seconds until the bucket is full again), plus `Retry-After` on a 429. Everything but the
//! two numbers is pre-rendered, so writing them allocates nothing.

use std::sync::OnceLock;
use std::time::Duration;

use super::gcra::{Decision, Gcra};

/// What a policy counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The client's address (the connection's peer).
    Ip,
    /// The value of a request header (lower-case name); requests without it share one key.
    Header(String),
    /// The consumer authentication established (requests without one share one key).
    Consumer,
    /// The route: one bucket for all its requests.
    Route,
}

/// Who shares one configured rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Each worker applies the whole rate on its own.
    Worker,
    /// The whole process: workers get shares by demand.
    Instance,
    /// Every instance using the same Redis: instances get shares by demand.
    Cluster,
}

/// `rate = "100/s"`: a count per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period (at least 1).
    pub count: u64,
    /// The period: one second, minute or hour.
    pub period: Duration,
}

impl Rate {
    /// Parses `"N/s"`, `"N/m"` or `"N/h"` (N at least 1).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad =
            || format!("invalid rate `{text}`: expected a count per s, m or h, e.g. \"100/s\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!(
                "invalid rate `{text}`: the count must be at least 1"
            ));
        }
        Ok(Rate { count, period })
    }

    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.period.as_secs_f64()
    }

    /// Nanoseconds one request costs.
    pub fn interval_nanos(&self) -> u64 {
        let nanos = self.period.as_nanos() / u128::from(self.count.max(1));
        u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
    }
}

/// One compiled rate-limit policy.
#[derive(Debug)]
pub struct RateLimitPolicy {
    /// The policy's name (`[policies.NAME]`), also its name in the response fields.
    pub name: String,
    /// Its position in the snapshot's rate limits (a worker's table for it sits there).
    pub slot: usize,
    /// What requests are counted by.
    pub key: KeySource,
    /// The configured rate.
    pub rate: Rate,
    /// Requests admitted at once from a full bucket.
    pub burst: u64,
    /// Who shares the rate.
    pub scope: Scope,
    /// Most keys one worker tracks.
    pub max_keys: usize,
    hasher: ahash::RandomState,
    policy_field: Box<[u8]>,
    limit_prefix: Box<[u8]>,
}

/// Seeds of the key hash shared by every instance of a cluster (they must agree on a key's
/// hash, which names its Redis entry).
const CLUSTER_SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Seeds of the key hash for worker and instance scopes: random per process (an attacker
/// cannot precompute colliding keys), the same for every policy and reload (so a reload
/// keeps the tables' meaning).
fn process_seeds() -> [u64; 4] {
    static SEEDS: OnceLock<[u64; 4]> = OnceLock::new();
    *SEEDS.get_or_init(|| {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new();
        std::array::from_fn(|i| random.hash_one(i))
    })
}

impl RateLimitPolicy {
    /// A policy; `name` must be a valid structured-field string (the config's name rules
    /// guarantee it: letters, digits, `_`, `.`, `-`).
    pub fn new(
        name: &str,
        key: KeySource,
        rate: Rate,
        burst: u64,
        scope: Scope,
        max_keys: usize,
    ) -> Self {
        let seeds = match scope {
            Scope::Cluster => CLUSTER_SEEDS,
            Scope::Worker | Scope::Instance => process_seeds(),
        };
        let window = rate.period.as_secs();
        let policy_field = format!(
            "RateLimit-Policy: \"{name}\";q={};w={window}\r\n",
            rate.count
        )
        .into_bytes();
        let limit_prefix = format!("RateLimit: \"{name}\";r=").into_bytes();
        RateLimitPolicy {
            name: name.to_string(),
            slot: 0,
            key,
            rate,
            burst: burst.max(1),
            scope,
            max_keys: max_keys.max(1),
            hasher: ahash::RandomState::with_seeds(seeds[0], seeds[1], seeds[2], seeds[3]),
            policy_field: policy_field.into_boxed_slice(),
            limit_prefix: limit_prefix.into_boxed_slice(),
        }
    }

    /// The 64-bit hash a key's bytes are tracked by.
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The rate a worker applies when it holds `fraction` of the configured rate and burst.
    pub fn gcra(&self, fraction: f64) -> Gcra {
        let fraction = fraction.clamp(1e-6, 1.0);
        let interval = (self.rate.interval_nanos() as f64 / fraction).min(u64::MAX as f64);
        let capacity = (self.burst as f64 * fraction).round().max(1.0);
        Gcra::new(interval as u64, capacity as u64)
    }

    /// Whether `other` limits the same way (a reload may keep this policy's tables).
    pub fn same_limit(&self, other: &RateLimitPolicy) -> bool {
        self.name == other.name
            && self.key == other.key
            && self.rate == other.rate
            && self.burst == other.burst
            && self.scope == other.scope
            && self.max_keys == other.max_keys
    }

    /// Appends this policy's response fields for `decision` (and `Retry-After` if refused).
    pub fn write_fields(&self, decision: &Decision, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.policy_field);
        out.extend_from_slice(&self.limit_prefix);
        write_u64(out, decision.remaining);
        out.extend_from_slice(b";t=");
        write_u64(out, ceil_secs(decision.reset));
        out.extend_from_slice(b"\r\n");
        if !decision.admitted {
            out.extend_from_slice(b"Retry-After: ");
            write_u64(out, ceil_secs(decision.retry_after).max(1));
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Whole seconds, rounded up, in `nanos`.
fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

/// Appends `n` in decimal without allocating.
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate: &str, burst: u64) -> RateLimitPolicy {
        let rate = Rate::parse(rate).expect("valid rate");
        RateLimitPolicy::new("per-client", KeySource::Ip, rate, burst, Scope::Worker, 16)
    }

    #[test]
    fn parses_rates_per_second_minute_and_hour() {
        assert_eq!(Rate::parse("100/s").map(|r| r.per_second()), Ok(100.0));
        assert_eq!(Rate::parse("60/m").map(|r| r.per_second()), Ok(1.0));
        assert_eq!(Rate::parse(" 7200 / h ").map(|r| r.per_second()), Ok(2.0));
        for bad in ["100", "0/s", "-1/s", "10/d", "x/s", "/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_the_draft_fields_for_an_admitted_request() {
        let p = policy("100/s", 50);
        let d = Decision {
            admitted: true,
            remaining: 42,
            reset: 1_200_000_000,
            retry_after: 0,
        };
        let mut out = Vec::new();
        p.write_fields(&d, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "RateLimit-Policy: \"per-client\";q=100;w=1\r\nRateLimit: \"per-client\";r=42;t=2\r\n"
        );
    }

    #[test]
    fn adds_retry_after_to_a_refusal() {
        let p = policy("6000/m", 10);
        let d = Decision {
            admitted: false,
            remaining: 0,
            reset: 30_000_000_000,
            retry_after: 10_000_000,
        };
        let mut out = Vec::new();
        p.write_fields(&d, &mut out);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("RateLimit-Policy: \"per-client\";q=6000;w=60\r\n"));
        assert!(text.contains("RateLimit: \"per-client\";r=0;t=30\r\n"));
        assert!(text.ends_with("Retry-After: 1\r\n"), "{text}");
    }

    #[test]
    fn a_share_scales_rate_and_burst_down() {
        let p = policy("100/s", 50);
        assert_eq!(p.gcra(1.0), Gcra::new(10_000_000, 50));
        assert_eq!(p.gcra(0.5), Gcra::new(20_000_000, 25));
        assert_eq!(p.gcra(0.0001).capacity(), 1);
    }

    #[test]
    fn policies_of_one_scope_class_hash_keys_alike() {
        let rate = Rate::parse("1/s").expect("valid");
        let new = |name, scope| RateLimitPolicy::new(name, KeySource::Ip, rate, 1, scope, 1);
        let key = b"10.0.0.1";
        // Cluster: fixed seeds, so every instance names a key's Redis entry alike.
        let (a, b) = (new("a", Scope::Cluster), new("b", Scope::Cluster));
        assert_eq!(a.hash_key(key), b.hash_key(key));
        // Worker and instance: the process's seeds, kept across reloads.
        let (c, d) = (new("c", Scope::Instance), new("c", Scope::Instance));
        assert_eq!(c.hash_key(key), d.hash_key(key));
        assert_ne!(c.hash_key(key), c.hash_key(b"10.0.0.2"));
    }
}
