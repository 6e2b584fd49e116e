//! `kind = "introspect"`: the authorization server's group and endpoint, the client
//! credentials, the cache bounds and the identity it establishes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::{consumer_forwarding, header_name, hide_credentials, realm, KindCx};
use crate::config::units::DurationValue;
use crate::config::UpstreamId;
use crate::policy::Introspect;

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &[
    "upstream",
    "path",
    "client_id",
    "client_secret",
    "client_secret_file",
    "token_type_hint",
    "token_url",
    "timeout",
    "cache_ttl",
    "negative_cache_ttl",
    "max_cache_entries",
    "consumer_claim",
    "groups_claim",
    "forward_claims",
    "consumer_header",
    "hide_credentials",
    "realm",
];
/// `timeout` when absent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// `cache_ttl` when absent.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Longest `negative_cache_ttl`: an inactive result must not linger.
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// `max_cache_entries` when absent.
pub const DEFAULT_MAX_ENTRIES: i64 = 10_000;

/// Compiles an `introspect` table.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Introspect>> {
    let raw = k.raw;
    let Some(upstream) = &raw.upstream else {
        k.problem_at_kind(
            "`upstream` is required: the group the authorization server is in".into(),
        );
        return None;
    };
    let group = match k
        .upstreams
        .iter()
        .position(|u| u.name.get_ref() == upstream.get_ref())
    {
        Some(i) => UpstreamId(i),
        None => {
            let defined: Vec<&str> = k
                .upstreams
                .iter()
                .map(|u| u.name.get_ref().as_str())
                .collect();
            let message = format!(
                "unknown upstream `{}`; defined: {}",
                upstream.get_ref(),
                defined.join(", ")
            );
            k.problem("upstream", upstream.span(), message);
            return None;
        }
    };
    let Some(path) = &raw.path else {
        k.problem_at_kind(
            "`path` is required: the introspection endpoint, e.g. \"/oauth2/introspect\"".into(),
        );
        return None;
    };
    if !path.get_ref().starts_with('/') || path.get_ref().bytes().any(|b| b <= b' ' || b == 0x7f) {
        k.problem(
            "path",
            path.span(),
            "expected an origin-form path such as \"/introspect\"".into(),
        );
        return None;
    }
    let headers = credentials(k)?;
    let duration = |v: &Option<toml::Spanned<DurationValue>>, default| {
        v.as_ref().map_or(default, |d| d.get_ref().0)
    };
    let timeout =
        k.cx.timeout(&format!("{}.timeout", k.key), &raw.timeout, DEFAULT_TIMEOUT);
    let cache_ttl = duration(&raw.cache_ttl, DEFAULT_CACHE_TTL);
    let negative_cache_ttl = duration(&raw.negative_cache_ttl, Duration::ZERO);
    if negative_cache_ttl > MAX_NEGATIVE_TTL {
        let span = raw
            .negative_cache_ttl
            .as_ref()
            .map(|d| d.span())
            .unwrap_or_default();
        let message = format!(
            "at most {}s: an inactive result must not linger",
            MAX_NEGATIVE_TTL.as_secs()
        );
        k.problem("negative_cache_ttl", span, message);
        return None;
    }
    let max_cache_entries = k.cx.int(
        &format!("{}.max_cache_entries", k.key),
        &raw.max_cache_entries,
        1..=10_000_000,
        DEFAULT_MAX_ENTRIES,
    ) as usize;
    let mut forward_claims = Vec::new();
    for (claim, header) in raw.forward_claims.iter().flat_map(|f| &f.get_ref().0) {
        let key = format!("forward_claims.{}", claim.get_ref());
        if let Some(h) = header_name(k, &key, header) {
            forward_claims.push((claim.get_ref().clone(), h));
        }
    }
    Some(Arc::new(Introspect {
        name: k.name.to_string(),
        realm: realm(k),
        group,
        path: path.get_ref().clone(),
        headers,
        token_type_hint: Some(
            raw.token_type_hint
                .as_ref()
                .map_or_else(|| "access_token".to_string(), |h| h.get_ref().clone()),
        )
        .filter(|h| !h.is_empty()),
        timeout,
        cache_ttl,
        negative_cache_ttl,
        max_cache_entries,
        consumer_claim: raw
            .consumer_claim
            .as_ref()
            .map_or_else(|| "sub".to_string(), |c| c.get_ref().clone()),
        groups_claim: raw.groups_claim.as_ref().map(|c| c.get_ref().clone()),
        forward_claims,
        forwarding: consumer_forwarding(k),
        consumers: Arc::clone(k.consumers),
        hide_credentials: hide_credentials(k),
        token_url: raw.token_url.as_ref().map(|u| u.get_ref().clone()),
    }))
}

/// The fixed header lines of every introspection request: `Authorization: Basic` with the
/// client credentials (RFC 7662 §2.1, client_secret_basic; id and secret form-encoded
/// first, RFC 6749 §2.3.1), the content type, `Accept`.
fn credentials(k: &mut KindCx<'_, '_, '_>) -> Option<Vec<u8>> {
    let raw = k.raw;
    let secret = match (&raw.client_secret, &raw.client_secret_file) {
        (Some(_), Some(file)) => {
            let message = "set `client_secret` or `client_secret_file`, not both".to_string();
            k.problem("client_secret_file", file.span(), message);
            return None;
        }
        (Some(secret), None) => Some(secret.get_ref().clone()),
        (None, Some(file)) => match std::fs::read_to_string(k.cx.path(file.get_ref())) {
            Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => {
                k.problem(
                    "client_secret_file",
                    file.span(),
                    format!("cannot read `{}`: {e}", file.get_ref()),
                );
                return None;
            }
        },
        (None, None) => None,
    };
    let mut headers =
        b"Content-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n".to_vec();
    match (&raw.client_id, secret) {
        (Some(id), Some(secret)) => {
            let pair = format!("{}:{}", encode(id.get_ref()), encode(&secret));
            headers.extend_from_slice(b"Authorization: Basic ");
            headers.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(pair)
                    .as_bytes(),
            );
            headers.extend_from_slice(b"\r\n");
        }
        (None, None) => {}
        (Some(id), None) => {
            k.problem(
                "client_id",
                id.span(),
                "needs `client_secret` or `client_secret_file`".into(),
            );
            return None;
        }
        (None, Some(_)) => {
            k.problem_at_kind("`client_id` is required with a client secret".into());
            return None;
        }
    }
    Some(headers)
}

/// Form-encodes a client id or secret for the Basic credentials.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    fn one(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(key.to_string(), Some(line))]
    }

    #[test]
    fn needs_a_known_upstream_and_a_path() {
        let text = "[policies.i]\nkind = \"introspect\"\npath = \"/introspect\"\n";
        assert_eq!(problems(text), one("policies.i", 2));
        let text = "[policies.i]\nkind = \"introspect\"\nupstream = \"idp\"\npath = \"/i\"\n";
        assert_eq!(problems(text), one("policies.i.upstream", 3));
        let text = "[policies.i]\nkind = \"introspect\"\nupstream = \"u\"\npath = \"i\"\n";
        assert_eq!(problems(text), one("policies.i.path", 4));
    }

    #[test]
    fn credentials_come_in_pairs_and_negative_caching_is_bounded() {
        let text = "[policies.i]\nkind = \"introspect\"\nupstream = \"u\"\npath = \"/i\"\n\
                    client_id = \"gw\"\n";
        assert_eq!(problems(text), one("policies.i.client_id", 5));
        let text = "[policies.i]\nkind = \"introspect\"\nupstream = \"u\"\npath = \"/i\"\n\
                    negative_cache_ttl = \"5m\"\n";
        assert_eq!(problems(text), one("policies.i.negative_cache_ttl", 5));
    }

    #[test]
    fn form_encodes_credentials() {
        assert_eq!(super::encode("a b:c"), "a%20b%3Ac");
    }
}
