//! `kind = "ip_filter"`: `allow`, `deny`, `trusted_proxies`.

use super::super::{nets, Ctx};
use crate::config::file::RawPolicy;
use crate::policy::IpFilter;
use std::sync::Arc;

use toml::Spanned;

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &["allow", "deny", "trusted_proxies"];

/// Compiles an `ip_filter` table; at least one of `allow` or `deny` is required.
pub(super) fn compile(
    cx: &mut Ctx<'_>,
    key: &str,
    name: &str,
    raw: &RawPolicy,
) -> Option<Arc<IpFilter>> {
    if raw.allow.is_none() && raw.deny.is_none() {
        let message = "set `allow`, `deny` or both".to_string();
        cx.problem(key.to_string(), Some(raw.kind.span()), message);
    }
    let allow = nets(cx, &format!("{key}.allow"), list(&raw.allow));
    let deny = nets(cx, &format!("{key}.deny"), list(&raw.deny));
    let trusted_proxies = raw
        .trusted_proxies
        .as_ref()
        .map(|t| nets(cx, &format!("{key}.trusted_proxies"), Some(t.get_ref())));
    Some(Arc::new(IpFilter {
        name: name.to_string(),
        allow,
        deny,
        trusted_proxies,
    }))
}

/// The entries of an optional list key.
fn list(v: &Option<Spanned<Vec<Spanned<String>>>>) -> Option<&[Spanned<String>]> {
    v.as_ref().map(|v| v.get_ref().as_slice())
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    #[test]
    fn requires_allow_or_deny() {
        let text = "[policies.f]\nkind = \"ip_filter\"\n";
        assert_eq!(problems(text), vec![("policies.f".to_string(), Some(2))]);
    }

    #[test]
    fn rejects_bad_ranges_with_their_index_and_line() {
        let text =
            "[policies.f]\nkind = \"ip_filter\"\nallow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n\
                    deny = [\"::1\"]\ntrusted_proxies = [\"x\"]\n";
        assert_eq!(
            problems(text),
            vec![
                ("policies.f.allow[1]".to_string(), Some(3)),
                ("policies.f.trusted_proxies[0]".to_string(), Some(5)),
            ]
        );
    }
}
