//! `[[consumers]]`: the clients the gateway knows, their groups and their credentials.
//!
//! API keys are kept only as SHA-256 digests. A presented key is hashed (a fixed amount of
//! work whatever the key) and its digest looked up; the lookup is keyed on the digest's first
//! eight bytes and confirmed with a constant-time comparison of all 32. Learning anything from
//! the lookup's timing would need SHA-256 preimages, so the map is no timing oracle, and the
//! key itself is never compared with a data-dependent early exit.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Index of a consumer in [`Consumers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerId(pub usize);

/// One configured consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its name: the `X-Consumer` value, the Basic user name, the rate-limit key.
    pub name: String,
    /// Groups authorization policies allow or deny.
    pub groups: Vec<String>,
    /// Its `password_hash` (argon2 PHC string or bcrypt `$2b$`), for HTTP Basic.
    pub password_hash: Option<String>,
}

/// Every consumer and the index of their API key digests.
#[derive(Debug, Default)]
pub struct Consumers {
    list: Vec<Consumer>,
    /// First 8 bytes of a key digest -> (whole digest, owner). Collisions of the prefix keep
    /// several entries.
    keys: HashMap<u64, Vec<([u8; 32], ConsumerId)>>,
    by_name: HashMap<String, ConsumerId>,
}

/// The SHA-256 digest of a presented API key.
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

fn prefix(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

impl Consumers {
    /// Adds a consumer; returns its id.
    pub fn push(&mut self, consumer: Consumer) -> ConsumerId {
        let id = ConsumerId(self.list.len());
        self.by_name.insert(consumer.name.clone(), id);
        self.list.push(consumer);
        id
    }

    /// Registers an API key digest for `owner`.
    pub fn add_key_digest(&mut self, digest: [u8; 32], owner: ConsumerId) {
        self.keys
            .entry(prefix(&digest))
            .or_default()
            .push((digest, owner));
    }

    /// The consumer `id`.
    pub fn get(&self, id: ConsumerId) -> &Consumer {
        &self.list[id.0]
    }

    /// The consumer named `name`.
    pub fn by_name(&self, name: &str) -> Option<ConsumerId> {
        self.by_name.get(name).copied()
    }

    /// The owner of the presented API `key` (see the module docs for why this is no timing
    /// oracle).
    pub fn by_api_key(&self, key: &[u8]) -> Option<ConsumerId> {
        let digest = key_digest(key);
        let mut found = None;
        for (stored, owner) in self.keys.get(&prefix(&digest))? {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(*owner);
            }
        }
        found
    }

    /// Some consumer's password hash (to spend the same time on an unknown user name).
    pub fn any_password_hash(&self) -> Option<&str> {
        self.list.iter().find_map(|c| c.password_hash.as_deref())
    }

    /// Whether no consumer is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str) -> Consumer {
        Consumer {
            name: name.into(),
            groups: vec![],
            password_hash: None,
        }
    }

    #[test]
    fn finds_the_owner_of_a_key_by_its_digest_only() {
        let mut c = Consumers::default();
        let alice = c.push(consumer("alice"));
        let bob = c.push(consumer("bob"));
        c.add_key_digest(key_digest(b"alice-key"), alice);
        c.add_key_digest(key_digest(b"bob-key"), bob);
        assert_eq!(c.by_api_key(b"alice-key"), Some(alice));
        assert_eq!(c.by_api_key(b"bob-key"), Some(bob));
        assert_eq!(c.by_api_key(b"alice-key "), None);
        assert_eq!(c.by_api_key(b""), None);
        assert_eq!(c.by_name("bob"), Some(bob));
    }
}
