//! Purges shared with the other instances of a `[redis]` through pub/sub, off the workers.
//!
//! Every purge this instance makes (an unsafe request's invalidation, an operator's purge)
//! is published on [`CHANNEL`] as `INSTANCE PURGE` (see `Purge::encode`); every purge another
//! instance publishes is handed to this instance's workers like an operator's. Pub/sub keeps
//! no backlog: a purge published while this instance was cut off from Redis never arrives
//! here, and one made here while Redis was down never leaves. Both are said in the metrics
//! ([`CacheSyncStatus`]): `up`, connection errors, and purges that could not be published.
//! The connections retry at most once a second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::worker::Command;
use crate::cache::Purge;

/// The pub/sub channel purges travel on.
pub const CHANNEL: &str = "ringgate:cache:purge";
/// Longest wait to connect, and for one command.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the subscriber looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Least time between two connection attempts.
const RECONNECT_SPACING: Duration = Duration::from_secs(1);
/// Purges queued for publishing.
const BACKLOG: usize = 4096;

/// Health of the purge exchange with Redis, for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheSyncStatus {
    up: AtomicBool,
    errors: AtomicU64,
    published: AtomicU64,
    unpublished: AtomicU64,
    received: AtomicU64,
    subscriptions: AtomicU64,
}

impl CacheSyncStatus {
    /// Whether both the subscription and the last publish worked.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
    /// Failed connections and commands since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Purges published to the other instances.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Purges that could not be published (Redis down): the other instances missed them.
    pub fn unpublished(&self) -> u64 {
        self.unpublished.load(Ordering::Relaxed)
    }
    /// Subscriptions made (1 once connected; more after reconnects).
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Purges received from other instances and applied here.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::Relaxed) {
            log::warn!("cache purges through redis: {what}: {e}; other instances miss purges until it is back");
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running exchange.
#[derive(Debug)]
pub(super) struct CacheSync {
    publish: Option<Sender<Purge>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    status: Arc<CacheSyncStatus>,
}

impl CacheSync {
    /// Where purges made here go to be published.
    pub(super) fn publisher(&self) -> Option<Sender<Purge>> {
        self.publish.clone()
    }

    /// Its health.
    pub(super) fn status(&self) -> Arc<CacheSyncStatus> {
        Arc::clone(&self.status)
    }

    /// Stops both threads.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.publish = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for CacheSync {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts publishing this instance's purges to, and applying the others' from, the Redis
/// at `url`.
pub(super) fn start(url: &str, workers: Vec<flume::Sender<Command>>) -> std::io::Result<CacheSync> {
    let status = Arc::new(CacheSyncStatus::default());
    status.up.store(true, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let instance = instance_id();
    let (tx, rx) = crossbeam_channel::bounded(BACKLOG);
    let publisher = {
        let (url, status, instance) = (url.to_string(), Arc::clone(&status), instance.clone());
        std::thread::Builder::new()
            .name("ringgate-purge-pub".into())
            .spawn(move || publish_loop(&url, &instance, &rx, &status))?
    };
    let subscriber = {
        let (url, status, stop) = (url.to_string(), Arc::clone(&status), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("ringgate-purge-sub".into())
            .spawn(move || subscribe_loop(&url, &instance, &workers, &status, &stop))?
    };
    Ok(CacheSync {
        publish: Some(tx),
        stop,
        threads: vec![publisher, subscriber],
        status,
    })
}

fn connect(url: &str) -> Result<redis::Connection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid redis url: {e}"))?;
    let conn = client
        .get_connection_with_timeout(REDIS_TIMEOUT)
        .map_err(|e| format!("cannot connect to redis at {url}: {e}"))?;
    conn.set_read_timeout(Some(REDIS_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(REDIS_TIMEOUT)))
        .map_err(|e| format!("redis socket: {e}"))?;
    Ok(conn)
}

fn publish_loop(url: &str, instance: &str, purges: &Receiver<Purge>, status: &CacheSyncStatus) {
    let mut conn: Option<redis::Connection> = None;
    let mut last_attempt: Option<Instant> = None;
    for purge in purges {
        if conn.is_none() && last_attempt.is_none_or(|at| at.elapsed() >= RECONNECT_SPACING) {
            last_attempt = Some(Instant::now());
            match connect(url) {
                Ok(c) => conn = Some(c),
                Err(e) => status.failed("publish", &e),
            }
        }
        let Some(c) = conn.as_mut() else {
            status.unpublished.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let message = format!("{instance} {}", purge.encode());
        let sent: redis::RedisResult<i64> =
            redis::cmd("PUBLISH").arg(CHANNEL).arg(message).query(c);
        match sent {
            Ok(_) => {
                status.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                status.failed("publish", &e);
                status.unpublished.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

fn subscribe_loop(
    url: &str,
    instance: &str,
    workers: &[flume::Sender<Command>],
    status: &CacheSyncStatus,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if let Err(e) = subscribed(url, instance, workers, status, stop) {
            status.failed("subscribe", &e);
        }
        // Spaced retries, watching the stop flag.
        while started.elapsed() < RECONNECT_SPACING && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(POLL);
        }
    }
}

/// One subscription, until it fails or the instance stops.
fn subscribed(
    url: &str,
    instance: &str,
    workers: &[flume::Sender<Command>],
    status: &CacheSyncStatus,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut conn = connect(url)?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(CHANNEL).map_err(|e| e.to_string())?;
    pubsub
        .set_read_timeout(Some(POLL))
        .map_err(|e| e.to_string())?;
    status.subscriptions.fetch_add(1, Ordering::Relaxed);
    if !status.up.swap(true, Ordering::Relaxed) {
        log::info!("cache purges through redis: connected again");
    }
    while !stop.load(Ordering::Relaxed) {
        let message = match pubsub.get_message() {
            Ok(message) => message,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e.to_string()),
        };
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        let Some((from, line)) = payload.split_once(' ') else {
            continue;
        };
        if from == instance {
            continue;
        }
        if let Some(purge) = Purge::decode(line) {
            status.received.fetch_add(1, Ordering::Relaxed);
            super::purge_relay::broadcast(workers, &Arc::new(purge), None, None);
        }
    }
    Ok(())
}

/// This process's name on the channel: host, pid and start time.
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}
