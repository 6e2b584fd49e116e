//! `kind = "basic"`: `realm`, `consumer_header`, `hide_credentials`.

use std::sync::Arc;

use super::{consumer_forwarding, hide_credentials, realm, KindCx};
use crate::policy::Basic;

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &["realm", "consumer_header", "hide_credentials"];

/// Compiles a `basic` table; the consumers' `password_hash` values are its users.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Basic>> {
    Some(Arc::new(Basic {
        name: k.name.to_string(),
        realm: realm(k),
        consumers: Arc::clone(k.consumers),
        forwarding: consumer_forwarding(k),
        hide_credentials: hide_credentials(k),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;
    use crate::config::load_str;
    use crate::policy::Stage;

    fn hides(text: &str) -> bool {
        let text = format!(
            "{text}[[routes]]\nname = \"r\"\npolicies = [\"b\"]\nrespond = {{ status = 200 }}\n"
        );
        let snapshot = load_str(&text, "t").expect("valid");
        let route = snapshot.router.get(0).expect("route");
        match &route.policies.stages()[0] {
            Stage::Basic(p) => p.hide_credentials,
            other => panic!("not basic: {other:?}"),
        }
    }

    #[test]
    fn hide_credentials_defaults_to_false() {
        assert!(!hides("[policies.b]\nkind = \"basic\"\n"));
        assert!(hides(
            "[policies.b]\nkind = \"basic\"\nhide_credentials = true\n"
        ));
    }

    #[test]
    fn hide_credentials_is_refused_on_kinds_without_a_credential() {
        let text =
            "[policies.b]\nkind = \"authz\"\nallow_groups = [\"a\"]\nhide_credentials = true\n";
        assert_eq!(
            problems(text),
            vec![("policies.b.hide_credentials".to_string(), Some(4))]
        );
    }

    #[test]
    fn rejects_a_realm_with_quotes() {
        let text = "[policies.b]\nkind = \"basic\"\nrealm = \"a\\\"b\"\n";
        assert_eq!(
            problems(text),
            vec![("policies.b.realm".to_string(), Some(3))]
        );
    }
}
