//! Fetches a JWKS URL off the hot path: one thread per `jwt` policy with `jwks_url`, doing a
//! blocking HTTP GET, publishing each good key set through the policy's [`KeyStore`].
//!
//! Compiling a config makes the store only: the thread starts when a server publishes the
//! snapshot that holds it ([`KeyStore::start_refresher`], from
//! `Snapshot::start_background`), so `--check` and a refused reload never touch the network.
//! It fetches at start, then every `interval`, and early when a worker met an unknown `kid`
//! (at most once per `cooldown`, so unknown kids cannot make it hammer the issuer). A failed
//! fetch keeps the keys in force. The thread ends when its policy is dropped (a reload
//! replaced it): the store's end of the channel goes away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use jsonwebtoken::Algorithm;

use super::keys::{jwks_keys, KeySet, KeyStore};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Time limit of one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a refresher fetches.
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// The JWKS URL, or with `issuer` the OpenID Connect discovery document's URL.
    pub url: String,
    /// OpenID Connect discovery: the issuer the discovery document must name; its
    /// `jwks_uri` is fetched (both re-read on every refresh).
    pub issuer: Option<String>,
    /// Time between scheduled fetches.
    pub interval: Duration,
    /// Least time between two fetches.
    pub cooldown: Duration,
    /// The policy's algorithms.
    pub algorithms: Vec<Algorithm>,
}

/// A refresher that has not necessarily run yet: what its thread needs, and whether it was
/// started (at most once).
#[derive(Debug)]
pub struct Refresher {
    settings: RefreshSettings,
    /// Early-refresh requests (a clone; the thread takes its own).
    requests: Receiver<()>,
    started: AtomicBool,
}

impl Refresher {
    /// Starts the thread that fills `store`, unless it was started before.
    pub(super) fn start(&self, store: &Arc<KeyStore>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (settings, requests) = (self.settings.clone(), self.requests.clone());
        let weak = Arc::downgrade(store);
        let spawned = std::thread::Builder::new()
            .name("ringgate-jwks".into())
            .spawn(move || run(settings, weak, requests));
        if let Err(e) = spawned {
            log::error!("cannot start the JWKS refresher: {e}");
        }
    }

    /// Whether [`Refresher::start`] was called.
    pub(super) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
}

/// A store with no keys yet, filled by a refresher once [`KeyStore::start_refresher`] is
/// called; no thread runs and nothing is fetched before.
pub fn store(settings: RefreshSettings) -> Arc<KeyStore> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let refresher = Refresher {
        settings,
        requests: rx,
        started: AtomicBool::new(false),
    };
    Arc::new(KeyStore::refreshed(KeySet::new(Vec::new()), tx, refresher))
}

fn run(settings: RefreshSettings, store: Weak<KeyStore>, rx: Receiver<()>) {
    let agent = ureq::AgentBuilder::new().timeout(FETCH_TIMEOUT).build();
    loop {
        let fetched_at = Instant::now();
        let result = fetch(&agent, &settings);
        let Some(live) = store.upgrade() else { return };
        match result {
            Ok(keys) => live.store(KeySet::new(keys)),
            Err(e) => log::warn!("JWKS {}: {e}; keeping the keys in force", settings.url),
        }
        drop(live);
        match rx.recv_timeout(settings.interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let next = fetched_at + settings.cooldown;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn fetch(agent: &ureq::Agent, settings: &RefreshSettings) -> Result<Vec<super::keys::Key>, String> {
    let jwks_url = match &settings.issuer {
        None => settings.url.clone(),
        Some(issuer) => discovered_jwks_uri(&get(agent, &settings.url)?, issuer)?,
    };
    let body = get(agent, &jwks_url)?;
    let keys = jwks_keys(&body, &settings.algorithms)?;
    if keys.is_empty() {
        return Err("no usable keys".into());
    }
    Ok(keys)
}

/// The body of a GET of `url` (bounded).
fn get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let response = agent
        .get(url)
        .call()
        .map_err(|e| format!("fetch of {url} failed: {e}"))?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(response.into_reader(), MAX_JWKS_BYTES),
        &mut body,
    )
    .map_err(|e| format!("read of {url} failed: {e}"))?;
    Ok(body)
}

/// The `jwks_uri` of an OpenID Connect discovery document, which must name `issuer`
/// exactly (OpenID Connect Discovery 1.0 §4.3).
pub fn discovered_jwks_uri(document: &[u8], issuer: &str) -> Result<String, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(document).map_err(|e| format!("invalid discovery document: {e}"))?;
    if doc.get("issuer").and_then(|i| i.as_str()) != Some(issuer) {
        return Err(format!(
            "the discovery document's `issuer` is not `{issuer}`"
        ));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(|u| u.as_str())
        .ok_or("the discovery document has no `jwks_uri`")?;
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        return Err(format!("`jwks_uri` `{uri}` is not an http(s) URL"));
    }
    Ok(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::discovered_jwks_uri;

    #[test]
    fn discovery_needs_the_same_issuer_and_a_jwks_uri() {
        let doc = br#"{"issuer":"https://id.test","jwks_uri":"https://id.test/keys"}"#;
        assert_eq!(
            discovered_jwks_uri(doc, "https://id.test").as_deref(),
            Ok("https://id.test/keys")
        );
        assert!(discovered_jwks_uri(doc, "https://other.test").is_err());
        assert!(
            discovered_jwks_uri(br#"{"issuer":"https://id.test"}"#, "https://id.test").is_err()
        );
        assert!(discovered_jwks_uri(b"nope", "https://id.test").is_err());
    }
}
