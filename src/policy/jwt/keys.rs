//! The verification keys of a `jwt` policy: an HMAC secret, a PEM public key, a JWKS file, or
//! a JWKS URL refreshed in the background (see `refresh`).
//!
//! A key knows which algorithms it may verify; a token is verified only with a key that
//! allows the token's `alg` (and jsonwebtoken checks the key's family again), so an HS256
//! token can never be checked against an RSA public key used as an HMAC secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::refresh::Refresher;

/// Every key set ever built gets a new number, so a cached verification can tell whether the
/// keys it was made with are still in force.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// One verification key.
pub struct Key {
    /// `kid`, when the source names it.
    pub kid: Option<String>,
    /// The algorithms this key may verify (a subset of the policy's).
    pub algorithms: Vec<Algorithm>,
    /// The key material.
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The keys in force at one time.
#[derive(Debug)]
pub struct KeySet {
    /// Distinguishes this set from every other (see [`GENERATION`]).
    pub generation: u64,
    /// The keys.
    pub keys: Vec<Key>,
}

impl KeySet {
    /// A set of `keys` with a fresh generation.
    pub fn new(keys: Vec<Key>) -> Self {
        KeySet {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            keys,
        }
    }

    /// The key for a token's `kid` and `alg`: by `kid` when the token names one, else the
    /// first key allowing `alg`. `Err(true)` when the token names a `kid` we do not know.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, bool> {
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or(true)?;
                if key.algorithms.contains(&alg) {
                    Ok(key)
                } else {
                    Err(false)
                }
            }
            None => self
                .keys
                .iter()
                .find(|k| k.algorithms.contains(&alg))
                .ok_or(false),
        }
    }
}

/// Where workers read a policy's keys; swapped whole by the refresher.
#[derive(Debug)]
pub struct KeyStore {
    current: ArcSwap<KeySet>,
    refresh: Option<crossbeam_channel::Sender<()>>,
    /// The JWKS URL refresher, started on publication.
    refresher: Option<Refresher>,
}

impl KeyStore {
    /// Keys that never change.
    pub fn fixed(set: KeySet) -> Self {
        KeyStore {
            current: ArcSwap::from_pointee(set),
            refresh: None,
            refresher: None,
        }
    }

    /// Keys replaced by `refresher`, which listens on the other end of `refresh` once
    /// started.
    pub(super) fn refreshed(
        set: KeySet,
        refresh: crossbeam_channel::Sender<()>,
        refresher: Refresher,
    ) -> Self {
        KeyStore {
            current: ArcSwap::from_pointee(set),
            refresh: Some(refresh),
            refresher: Some(refresher),
        }
    }

    /// Starts fetching the JWKS URL in the background (once; later calls and stores with
    /// fixed keys do nothing). Called when a server publishes the snapshot holding this
    /// store, never by compiling a config.
    pub fn start_refresher(self: &Arc<Self>) {
        if let Some(refresher) = &self.refresher {
            refresher.start(self);
        }
    }

    /// Whether this store's keys come from a JWKS URL.
    pub fn is_refreshed(&self) -> bool {
        self.refresher.is_some()
    }

    /// Whether its JWKS refresher was started.
    pub fn refresher_started(&self) -> bool {
        self.refresher.as_ref().is_some_and(Refresher::started)
    }

    /// The keys in force.
    pub fn load(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// Replaces the keys.
    pub fn store(&self, set: KeySet) {
        self.current.store(Arc::new(set));
    }

    /// Asks the refresher for an early refresh (an unknown `kid` arrived). Never blocks: a
    /// request already pending absorbs this one; the refresher enforces its cool-down.
    pub fn request_refresh(&self) {
        if let Some(tx) = &self.refresh {
            let _ = tx.try_send(());
        }
    }
}

/// Which of `allowed` a key of this family may verify.
fn family_algorithms(allowed: &[Algorithm], family: &[Algorithm]) -> Vec<Algorithm> {
    allowed
        .iter()
        .copied()
        .filter(|a| family.contains(a))
        .collect()
}

/// HMAC algorithms.
pub const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// RSA algorithms (PKCS#1 v1.5 and PSS).
pub const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// An HMAC secret for the policy's HS algorithms.
pub fn secret_key(secret: &[u8], allowed: &[Algorithm]) -> Option<Key> {
    let algorithms = family_algorithms(allowed, HMAC);
    (!algorithms.is_empty()).then(|| Key {
        kid: None,
        algorithms,
        decoding: DecodingKey::from_secret(secret),
    })
}

/// A jsonwebtoken PEM reader for one key family.
type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// A PEM public key (RSA, EC or Ed25519), for the policy's algorithms of its family.
pub fn pem_key(pem: &[u8], allowed: &[Algorithm]) -> Result<Key, String> {
    let tries: [(&[Algorithm], PemParser); 4] = [
        (RSA, DecodingKey::from_rsa_pem),
        (&[Algorithm::ES256], DecodingKey::from_ec_pem),
        (&[Algorithm::ES384], DecodingKey::from_ec_pem),
        (&[Algorithm::EdDSA], DecodingKey::from_ed_pem),
    ];
    let mut algorithms = Vec::new();
    let mut decoding = None;
    for (family, parse) in tries {
        if let Ok(key) = parse(pem) {
            algorithms.extend(family_algorithms(allowed, family));
            decoding.get_or_insert(key);
        }
    }
    match decoding {
        None => Err("not a PEM public key (RSA, EC or Ed25519)".into()),
        Some(_) if algorithms.is_empty() => {
            Err("the key fits none of the policy's `algorithms`".into())
        }
        Some(decoding) => Ok(Key {
            kid: None,
            algorithms,
            decoding,
        }),
    }
}

/// The keys of a JWKS document usable with the policy's algorithms. Keys the document marks
/// with an `alg` may verify only that one.
pub fn jwks_keys(json: &[u8], allowed: &[Algorithm]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("invalid JWKS: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA.to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
        };
        let mut algorithms = family_algorithms(allowed, &family);
        if let Some(marked) = jwk.common.key_algorithm {
            let marked = marked.to_string();
            algorithms.retain(|a| format!("{a:?}") == marked);
        }
        let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if !algorithms.is_empty() {
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithms,
                decoding,
            });
        }
    }
    Ok(keys)
}
