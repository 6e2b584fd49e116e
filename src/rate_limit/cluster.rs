//! `scope = "cluster"`: instances share one rate through Redis, off the request path.
//!
//! Every re-balance the coordinator publishes, per active key, this instance's demand into a
//! Redis hash (`ringgate:rl:POLICY:KEYHASH`, one field per instance, value
//! `DEMAND:UNIX_MS`, expiring when no instance refreshes it) and reads back the others'
//! demand in the same pipelined round trip. The instance's capacity for the key is its
//! max-min fair share of the configured rate (`shares::split`), which its workers then
//! split among themselves as for `scope = "instance"`. Requests never wait for Redis: they
//! are checked against the shares computed at the last re-balance.
//!
//! If Redis cannot be reached the instance falls back to the whole configured rate for
//! itself (the `instance` limit), says so once in the log, and reports it in `/metrics`
//! (`ringgate_rate_limit_redis_up 0`, `ringgate_rate_limit_redis_errors_total`); it retries
//! the connection at most once a second and says so again when Redis is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::policy::RateLimitPolicy;
use super::shares::split;

/// Longest wait to connect to Redis, and for one pipelined exchange.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Least time between two connection attempts.
const RECONNECT_SPACING: Duration = Duration::from_secs(1);
/// A peer's demand older than this is ignored (the peer stopped or lost Redis).
const STALE_AFTER_MS: u64 = 1_500;
/// Expiry of a key's hash when no instance refreshes it.
const KEY_TTL_MS: u64 = 5_000;

/// Redis health as `/metrics` reports it; written by the coordinator, read by the admin.
#[derive(Debug, Default)]
pub struct ClusterStatus {
    configured: AtomicBool,
    up: AtomicBool,
    errors: AtomicU64,
}

impl ClusterStatus {
    /// Whether a cluster-scoped policy is in force (else nothing is reported).
    pub fn configured(&self) -> bool {
        self.configured.load(Ordering::Relaxed)
    }

    /// Whether the last exchange with Redis succeeded.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Failed connections and exchanges since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// The coordinator's Redis side.
pub struct ClusterSync {
    url: Option<String>,
    client: Option<redis::Client>,
    conn: Option<redis::Connection>,
    last_attempt: Option<Instant>,
    instance: String,
    status: Arc<ClusterStatus>,
}

impl std::fmt::Debug for ClusterSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSync")
            .field("url", &self.url)
            .field("connected", &self.conn.is_some())
            .field("instance", &self.instance)
            .finish()
    }
}

impl ClusterSync {
    /// Not connected yet; `status` is where health is reported.
    pub fn new(status: Arc<ClusterStatus>) -> Self {
        ClusterSync {
            url: None,
            client: None,
            conn: None,
            last_attempt: None,
            instance: instance_id(),
            status,
        }
    }

    /// The Redis URL in force (`None`: no cluster policy); a change reconnects.
    pub fn set_url(&mut self, url: Option<&str>) {
        if self.url.as_deref() == url {
            return;
        }
        self.url = url.map(str::to_string);
        self.client = None;
        self.conn = None;
        self.last_attempt = None;
        self.status
            .configured
            .store(url.is_some(), Ordering::Relaxed);
        // Optimistic until the first exchange says otherwise.
        self.status.up.store(url.is_some(), Ordering::Relaxed);
    }

    /// This instance's capacity (requests per second) for each of `demands` (key hash,
    /// this instance's demand per second) of `policy`. Without Redis: the whole rate.
    pub fn capacities(
        &mut self,
        policy: &RateLimitPolicy,
        demands: &[(u64, f64)],
    ) -> HashMap<u64, f64> {
        let rate = policy.rate.per_second();
        if demands.is_empty() {
            return HashMap::new();
        }
        match self.exchange(policy, demands) {
            Ok(peers) => {
                self.mark(true, None);
                demands
                    .iter()
                    .zip(peers)
                    .map(|(&(hash, own), others)| (hash, own_share(rate, own, &others)))
                    .collect()
            }
            Err(e) => {
                self.mark(false, Some(e));
                demands.iter().map(|&(hash, _)| (hash, rate)).collect()
            }
        }
    }

    /// Publishes this instance's demands and reads every fresh peer demand, per key.
    fn exchange(
        &mut self,
        policy: &RateLimitPolicy,
        demands: &[(u64, f64)],
    ) -> Result<Vec<Vec<f64>>, String> {
        let now_ms = unix_ms();
        let mut pipe = redis::pipe();
        for &(hash, demand) in demands {
            let key = format!("ringgate:rl:{}:{hash:016x}", policy.name);
            pipe.cmd("HSET")
                .arg(&key)
                .arg(&self.instance)
                .arg(format!("{demand}:{now_ms}"))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(KEY_TTL_MS)
                .ignore()
                .cmd("HGETALL")
                .arg(&key);
        }
        let conn = self.connection()?;
        let tables: Vec<HashMap<String, String>> = match pipe.query(conn) {
            Ok(tables) => tables,
            Err(e) => {
                self.conn = None;
                return Err(format!("redis exchange failed: {e}"));
            }
        };
        Ok(tables
            .into_iter()
            .map(|fields| peer_demands(&fields, &self.instance, now_ms))
            .collect())
    }

    fn connection(&mut self) -> Result<&mut redis::Connection, String> {
        if self.conn.is_none() {
            let url = self.url.clone().ok_or("no [redis] url")?;
            if self
                .last_attempt
                .is_some_and(|at| at.elapsed() < RECONNECT_SPACING)
            {
                return Err("redis unreachable (waiting to retry)".into());
            }
            self.last_attempt = Some(Instant::now());
            if self.client.is_none() {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| format!("invalid redis url: {e}"))?;
                self.client = Some(client);
            }
            let client = self.client.as_ref().ok_or("no redis client")?;
            let conn = client
                .get_connection_with_timeout(REDIS_TIMEOUT)
                .map_err(|e| format!("cannot connect to redis at {url}: {e}"))?;
            conn.set_read_timeout(Some(REDIS_TIMEOUT))
                .and_then(|()| conn.set_write_timeout(Some(REDIS_TIMEOUT)))
                .map_err(|e| format!("redis socket: {e}"))?;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| "not connected".into())
    }

    fn mark(&mut self, up: bool, error: Option<String>) {
        let was_up = self.status.up.swap(up, Ordering::Relaxed);
        if let Some(error) = &error {
            // "waiting to retry" is not a new failure.
            if !error.contains("waiting to retry") {
                self.status.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        match (was_up, up) {
            (true, false) => log::warn!(
                "rate limiting: {}; cluster-scoped limits fall back to instance limits",
                error.as_deref().unwrap_or("redis unreachable")
            ),
            (false, true) => {
                log::info!("rate limiting: redis reachable again; cluster-scoped limits restored")
            }
            _ => {}
        }
    }
}

/// This instance's max-min fair part of `rate` when it asks `own` and its peers `others`.
fn own_share(rate: f64, own: f64, others: &[f64]) -> f64 {
    let mut demands = Vec::with_capacity(others.len() + 1);
    demands.push(own);
    demands.extend_from_slice(others);
    let mut shares = vec![0.0; demands.len()];
    split(rate, &demands, &mut shares);
    shares[0]
}

/// Demands of the peers in a key's hash that are fresh at `now_ms`.
fn peer_demands(fields: &HashMap<String, String>, own: &str, now_ms: u64) -> Vec<f64> {
    fields
        .iter()
        .filter(|(instance, _)| instance.as_str() != own)
        .filter_map(|(_, value)| {
            let (demand, at) = value.split_once(':')?;
            let at: u64 = at.parse().ok()?;
            let demand: f64 = demand.parse().ok()?;
            (now_ms.saturating_sub(at) <= STALE_AFTER_MS && demand.is_finite())
                .then_some(demand.max(0.0))
        })
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A name for this process among the instances: random, fixed for its life.
fn instance_id() -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new();
    format!("{:016x}", random.hash_one((std::process::id(), unix_ms())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_equally_busy_instances_get_half_each() {
        assert!((own_share(100.0, 500.0, &[500.0]) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn an_instance_alone_gets_the_whole_rate() {
        assert!((own_share(100.0, 500.0, &[]) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn stale_and_own_and_malformed_entries_are_ignored() {
        let mut fields = HashMap::new();
        fields.insert("me".to_string(), "10:1000".to_string());
        fields.insert("fresh".to_string(), "20:900".to_string());
        fields.insert("stale".to_string(), "30:1".to_string());
        fields.insert("bad".to_string(), "x:1000".to_string());
        fields.insert("nan".to_string(), "NaN:1000".to_string());
        assert_eq!(peer_demands(&fields, "me", 2_000), vec![20.0]);
    }

    #[test]
    fn without_redis_the_instance_takes_the_whole_rate_and_reports_it() {
        let status = Arc::new(ClusterStatus::default());
        let mut sync = ClusterSync::new(Arc::clone(&status));
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("ephemeral port");
        sync.set_url(Some(&format!("redis://127.0.0.1:{port}")));
        let rate = super::super::policy::Rate::parse("100/s").expect("valid");
        let policy = RateLimitPolicy::new(
            "p",
            super::super::policy::KeySource::Ip,
            rate,
            10,
            super::super::policy::Scope::Cluster,
            8,
        );
        let capacities = sync.capacities(&policy, &[(1, 50.0)]);
        assert_eq!(capacities.get(&1), Some(&100.0));
        assert!(!status.up());
        assert_eq!(status.errors(), 1);
    }
}
