//! `kind = "jwt"`: algorithms, one key source, and the claim checks.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::config::units::DurationValue;

use super::{consumer_forwarding, header_name, hide_credentials, realm, KindCx};
use crate::policy::jwt::{self, Jwt, KeySet, KeyStore, RefreshSettings};

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &[
    "algorithms",
    "secret",
    "public_key_file",
    "jwks_file",
    "jwks_url",
    "jwks_refresh",
    "jwks_cooldown",
    "issuer",
    "audience",
    "leeway",
    "required_claims",
    "consumer_claim",
    "forward_claims",
    "consumer_header",
    "hide_credentials",
    "realm",
    "groups_claim",
];
/// `leeway` when absent.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// `jwks_refresh` when absent.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// `jwks_cooldown` when absent.
pub const DEFAULT_JWKS_COOLDOWN: Duration = Duration::from_secs(10);
/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size; 32 bytes for HS256).
const MIN_SECRET: usize = 32;

/// Compiles a `jwt` table.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Jwt>> {
    let raw = k.raw;
    let algorithms = algorithms(k)?;
    let (keys, discovery) = key_store(k, &algorithms)?;
    let strings = |v: &Option<toml::Spanned<Vec<toml::Spanned<String>>>>| -> Vec<String> {
        v.iter()
            .flat_map(|v| v.get_ref())
            .map(|s| s.get_ref().clone())
            .collect()
    };
    let mut forward_claims = Vec::new();
    for (claim, header) in raw.forward_claims.iter().flat_map(|f| &f.get_ref().0) {
        let key = format!("forward_claims.{}", claim.get_ref());
        if let Some(h) = header_name(k, &key, header) {
            forward_claims.push((claim.get_ref().clone(), h));
        }
    }
    let leeway = raw
        .leeway
        .as_ref()
        .map_or(DEFAULT_LEEWAY, |l| l.get_ref().0);
    Some(Arc::new(Jwt {
        name: k.name.to_string(),
        realm: realm(k),
        algorithms,
        keys,
        issuer: raw
            .issuer
            .as_ref()
            .map(|i| i.get_ref().to_vec())
            .unwrap_or_default(),
        audience: raw
            .audience
            .as_ref()
            .map(|a| a.get_ref().to_vec())
            .unwrap_or_default(),
        leeway: leeway.as_secs(),
        required_claims: raw.required_claims.as_ref().map_or_else(
            || vec!["exp".to_string()],
            |_| strings(&raw.required_claims),
        ),
        consumer_claim: raw
            .consumer_claim
            .as_ref()
            .map_or_else(|| "sub".to_string(), |c| c.get_ref().clone()),
        forward_claims,
        forwarding: consumer_forwarding(k),
        consumers: Arc::clone(k.consumers),
        hide_credentials: hide_credentials(k),
        discovery,
        groups_claim: raw.groups_claim.as_ref().map(|c| c.get_ref().clone()),
    }))
}

fn algorithms(k: &mut KindCx<'_, '_, '_>) -> Option<Vec<Algorithm>> {
    let Some(list) = &k.raw.algorithms else {
        k.problem_at_kind("`algorithms` is required, e.g. [\"RS256\"]".into());
        return None;
    };
    let mut out = Vec::new();
    for (i, a) in list.get_ref().iter().enumerate() {
        match Algorithm::from_str(a.get_ref()) {
            Ok(alg) => out.push(alg),
            Err(_) => {
                let message = format!(
                    "unknown algorithm `{}`: expected HS256/384/512, RS256/384/512, \
                     PS256/384/512, ES256/384 or EdDSA (`none` is never accepted)",
                    a.get_ref()
                );
                k.problem(&format!("algorithms[{i}]"), a.span(), message);
            }
        }
    }
    if out.is_empty() && !list.get_ref().is_empty() {
        return None;
    }
    if out.is_empty() {
        k.problem(
            "algorithms",
            list.span(),
            "at least one algorithm is required".into(),
        );
        return None;
    }
    Some(out)
}

/// The one key source the table names, loaded (files) or started (URL, or OpenID Connect
/// discovery from `issuer` when no other source is set), with the discovery URL if any.
fn key_store(
    k: &mut KindCx<'_, '_, '_>,
    algorithms: &[Algorithm],
) -> Option<(Arc<KeyStore>, Option<String>)> {
    let raw = k.raw;
    let sources = [
        ("secret", &raw.secret),
        ("public_key_file", &raw.public_key_file),
        ("jwks_file", &raw.jwks_file),
        ("jwks_url", &raw.jwks_url),
    ];
    let set: Vec<_> = sources.iter().filter(|(_, v)| v.is_some()).collect();
    if set.is_empty() {
        if let Some(issuer) = &raw.issuer {
            return discovery(k, issuer, algorithms);
        }
    }
    let [(source, Some(value))] = set.as_slice() else {
        let message = "set exactly one of `secret`, `public_key_file`, `jwks_file`, `jwks_url` \
                       (or only `issuer`, for OpenID Connect discovery)";
        k.problem_at_kind(message.into());
        return None;
    };
    let (text, span) = (value.get_ref().as_str(), value.span());
    let hmac = algorithms.iter().any(|a| jwt::HMAC.contains(a));
    if hmac && *source != "secret" && *source != "jwks_file" {
        let at = raw.algorithms.as_ref().map_or(span, |a| a.span());
        let message = "HS algorithms need `secret` (or `oct` keys in `jwks_file`)";
        k.problem("algorithms", at, message.into());
        return None;
    }
    let keys = match *source {
        "secret" => {
            if text.len() < MIN_SECRET {
                let message = format!("at least {MIN_SECRET} bytes are required");
                k.problem(source, span, message);
                return None;
            }
            match jwt::secret_key(text.as_bytes(), algorithms) {
                Some(key) => vec![key],
                None => {
                    k.problem(
                        source,
                        span,
                        "`algorithms` has no HS algorithm for a secret".into(),
                    );
                    return None;
                }
            }
        }
        "public_key_file" => match read(&k.cx.path(text))
            .and_then(|pem| jwt::pem_key(&pem, algorithms).map_err(|e| format!("{text}: {e}")))
        {
            Ok(key) => vec![key],
            Err(message) => {
                k.problem(source, span, message);
                return None;
            }
        },
        "jwks_file" => match read(&k.cx.path(text))
            .and_then(|json| jwt::jwks_keys(&json, algorithms).map_err(|e| format!("{text}: {e}")))
        {
            Ok(keys) if !keys.is_empty() => keys,
            Ok(_) => {
                let message = format!("{text}: no key fits the policy's `algorithms`");
                k.problem(source, span, message);
                return None;
            }
            Err(message) => {
                k.problem(source, span, message);
                return None;
            }
        },
        _ => return jwks_url(k, text, span, algorithms, None).map(|s| (s, None)),
    };
    Some((Arc::new(KeyStore::fixed(KeySet::new(keys))), None))
}

/// OpenID Connect discovery: `issuer` names one issuer; its
/// `/.well-known/openid-configuration` gives the JWKS URL.
fn discovery(
    k: &mut KindCx<'_, '_, '_>,
    issuer: &toml::Spanned<crate::config::file::OneOrMany>,
    algorithms: &[Algorithm],
) -> Option<(Arc<KeyStore>, Option<String>)> {
    let issuers = issuer.get_ref().to_vec();
    let [issuer_url] = issuers.as_slice() else {
        let message = "discovery needs exactly one `issuer` (or set a key source)".to_string();
        k.problem("issuer", issuer.span(), message);
        return None;
    };
    if algorithms.iter().any(|a| jwt::HMAC.contains(a)) {
        let message = "HS algorithms need `secret`; discovered keys are public keys".to_string();
        let at = k
            .raw
            .algorithms
            .as_ref()
            .map_or(issuer.span(), |a| a.span());
        k.problem("algorithms", at, message);
        return None;
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer_url.trim_end_matches('/')
    );
    let store = jwks_url(k, &url, issuer.span(), algorithms, Some(issuer_url.clone()))?;
    Some((store, Some(url)))
}

fn jwks_url(
    k: &mut KindCx<'_, '_, '_>,
    url: &str,
    span: std::ops::Range<usize>,
    algorithms: &[Algorithm],
    issuer: Option<String>,
) -> Option<Arc<KeyStore>> {
    let key = if issuer.is_some() {
        "issuer"
    } else {
        "jwks_url"
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        k.problem(key, span, "expected an http:// or https:// URL".into());
        return None;
    }
    let duration = |v: &Option<toml::Spanned<DurationValue>>, default| {
        v.as_ref().map_or(default, |d| d.get_ref().0)
    };
    let interval = duration(&k.raw.jwks_refresh, DEFAULT_JWKS_REFRESH);
    let cooldown = duration(&k.raw.jwks_cooldown, DEFAULT_JWKS_COOLDOWN);
    if interval.is_zero() {
        let span = k.raw.jwks_refresh.as_ref().map_or(span, |d| d.span());
        k.problem("jwks_refresh", span, "must be greater than zero".into());
        return None;
    }
    Some(jwt::refreshed_store(RefreshSettings {
        url: url.to_string(),
        issuer,
        interval,
        cooldown,
        algorithms: algorithms.to_vec(),
    }))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    #[test]
    fn requires_algorithms_and_exactly_one_key_source() {
        let text = "[policies.j]\nkind = \"jwt\"\nalgorithms = [\"none\", \"RS256\"]\n\
                    jwks_file = \"a.json\"\njwks_url = \"http://127.0.0.1:1/\"\n";
        assert_eq!(
            problems(text),
            vec![
                ("policies.j.algorithms[0]".to_string(), Some(3)),
                ("policies.j".to_string(), Some(2)),
            ]
        );
    }

    #[test]
    fn rejects_short_secrets_and_unreadable_files() {
        let text = "[policies.a]\nkind = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret = \"short\"\n\
                    [policies.b]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\npublic_key_file = \"/nonexistent.pem\"\n";
        assert_eq!(
            problems(text),
            vec![
                ("policies.a.secret".to_string(), Some(4)),
                ("policies.b.public_key_file".to_string(), Some(8)),
            ]
        );
    }

    #[test]
    fn rejects_hs_algorithms_without_a_secret() {
        let text = "[policies.a]\nkind = \"jwt\"\nalgorithms = [\"HS256\", \"RS256\"]\n\
                    jwks_url = \"https://issuer.test/jwks\"\n";
        assert_eq!(
            problems(text),
            vec![("policies.a.algorithms".to_string(), Some(3))]
        );
    }

    /// Compiling starts no fetcher (so `--check` and refused reloads stay off the network);
    /// publishing the snapshot does, once.
    #[test]
    fn a_jwks_url_is_fetched_only_once_the_snapshot_is_published() {
        let issuer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        issuer.set_nonblocking(true).expect("nonblocking");
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\
             [[routes]]\nname = \"r\"\npolicies = [\"j\"]\nrespond = {{ status = 200 }}\n\
             [policies.j]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\n\
             jwks_url = \"http://{}/jwks\"\n",
            issuer.local_addr().expect("addr")
        );
        let snapshot = crate::config::load_str(&text, "jwt.toml").expect("compiles");
        assert_eq!(snapshot.jwks_stores.len(), 1);
        let store = &snapshot.jwks_stores[0];
        assert!(!store.refresher_started(), "compiling started a fetcher");
        // No thread was started, so nothing can have connected yet (no wait needed).
        assert!(
            matches!(issuer.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "compiling fetched the JWKS URL"
        );
        snapshot.start_background();
        snapshot.start_background();
        assert!(store.refresher_started());
        issuer.set_nonblocking(false).expect("blocking");
        let (conn, _) = issuer.accept().expect("the fetcher connects");
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let mut head = [0u8; 16];
        let n = std::io::Read::read(&mut &conn, &mut head).expect("request");
        assert!(head[..n].starts_with(b"GET /jwks"), "{:?}", &head[..n]);
    }

    #[test]
    fn rejects_a_secret_for_asymmetric_algorithms_only() {
        let text = "[policies.a]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\n\
                    secret = \"0123456789abcdef0123456789abcdef\"\n";
        assert_eq!(
            problems(text),
            vec![("policies.a.secret".to_string(), Some(4))]
        );
    }
}
