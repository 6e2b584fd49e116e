//! `kind = "basic"`: `realm`, `consumer_header`.

use std::sync::Arc;

use super::{consumer_forwarding, realm, KindCx};
use crate::policy::Basic;

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &["realm", "consumer_header"];

/// Compiles a `basic` table; the consumers' `password_hash` values are its users.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Basic>> {
    Some(Arc::new(Basic {
        name: k.name.to_string(),
        realm: realm(k),
        consumers: Arc::clone(k.consumers),
        forwarding: consumer_forwarding(k),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    #[test]
    fn rejects_a_realm_with_quotes() {
        let text = "[policies.b]\nkind = \"basic\"\nrealm = \"a\\\"b\"\n";
        assert_eq!(
            problems(text),
            vec![("policies.b.realm".to_string(), Some(3))]
        );
    }
}
