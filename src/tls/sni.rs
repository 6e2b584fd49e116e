//! Choosing the server certificate by the name the client asked for (SNI).

use std::sync::Arc;

use ahash::AHashMap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by exact name and by `*.` wildcard, with a default for every other name
/// (and for clients that send no SNI).
#[derive(Debug)]
pub struct SniResolver {
    exact: AHashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: AHashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver that answers `default` until names are added.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            exact: AHashMap::new(),
            wildcard: AHashMap::new(),
            default,
        }
    }

    /// Serves `key` for `name` (`api.example.com` or `*.example.com`, any case). Returns
    /// `false` if the name was already taken.
    pub fn add(&mut self, name: &str, key: Arc<CertifiedKey>) -> bool {
        let name = name.to_ascii_lowercase();
        let (map, name) = match name.strip_prefix("*.") {
            Some(rest) => (&mut self.wildcard, rest.to_string()),
            None => (&mut self.exact, name),
        };
        if map.contains_key(&name) {
            return false;
        }
        map.insert(name, key);
        true
    }

    /// The certificate for `name`: exact match, else wildcard on the parent, else default.
    pub fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.pick(hello.server_name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;

    fn key(tag: u8) -> Arc<CertifiedKey> {
        let signer = rustls::crypto::ring::sign::any_supported_type(&test_key()).expect("test key");
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![tag])],
            signer,
        ))
    }

    fn test_key() -> rustls::pki_types::PrivateKeyDer<'static> {
        let key = rcgen::KeyPair::generate().expect("keypair");
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into())
    }

    fn tag(key: &CertifiedKey) -> u8 {
        key.cert[0].as_ref()[0]
    }

    #[test]
    fn picks_exact_then_wildcard_then_default() {
        let mut r = SniResolver::new(key(0));
        assert!(r.add("API.example.com", key(1)));
        assert!(r.add("*.example.com", key(2)));
        assert!(!r.add("api.example.com", key(3)));
        assert_eq!(tag(r.pick(Some("api.example.com"))), 1);
        assert_eq!(tag(r.pick(Some("Api.Example.COM"))), 1);
        assert_eq!(tag(r.pick(Some("web.example.com"))), 2);
        assert_eq!(tag(r.pick(Some("a.b.example.com"))), 0);
        assert_eq!(tag(r.pick(Some("example.com"))), 0);
        assert_eq!(tag(r.pick(None)), 0);
    }
}
