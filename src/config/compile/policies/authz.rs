//! `kind = "authz"`: `allow_groups`, `deny_groups`, `require_scopes`, `require_claims`.

use std::sync::Arc;

use toml::Spanned;

use super::KindCx;
use crate::policy::Authz;

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &[
    "allow_groups",
    "deny_groups",
    "require_scopes",
    "require_claims",
];

/// Compiles an `authz` table; at least one condition is required.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Authz>> {
    let raw = k.raw;
    if raw.present_keys().is_empty() {
        let message = "set at least one of `allow_groups`, `deny_groups`, `require_scopes`, \
                       `require_claims`"
            .to_string();
        k.problem_at_kind(message);
    }
    let strings = |v: &Option<Spanned<Vec<Spanned<String>>>>| -> Vec<String> {
        v.iter()
            .flat_map(|v| v.get_ref())
            .map(|s| s.get_ref().clone())
            .collect()
    };
    let require_claims = raw
        .require_claims
        .iter()
        .flat_map(|c| &c.get_ref().0)
        .map(|(claim, values)| (claim.get_ref().clone(), values.get_ref().to_vec()))
        .collect();
    Some(Arc::new(Authz {
        name: k.name.to_string(),
        allow_groups: strings(&raw.allow_groups),
        deny_groups: strings(&raw.deny_groups),
        require_scopes: strings(&raw.require_scopes),
        require_claims,
        consumers: Arc::clone(k.consumers),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    #[test]
    fn requires_a_condition() {
        let text = "[policies.a]\nkind = \"authz\"\n";
        assert_eq!(problems(text), vec![("policies.a".to_string(), Some(2))]);
    }
}
