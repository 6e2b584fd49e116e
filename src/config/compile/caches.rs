//! `[caches.NAME]`: response caches, and `cache = "NAME"` on routes.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::matcher::is_token;
use super::{check_name, Ctx};
use crate::cache::{CacheId, CacheSettings, KeyShape, QueryKey};
use crate::config::file::{Ordered, RawCache, RawCacheKey, RawQueryKey};

/// Default `max_bytes`.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default `max_object_bytes`.
const DEFAULT_MAX_OBJECT: u64 = 1024 * 1024;
/// Default `coalesce_wait`.
const DEFAULT_COALESCE_WAIT: Duration = Duration::from_secs(5);
/// Smallest `max_bytes`.
const MIN_MAX_BYTES: u64 = 4 * 1024;

/// The compiled caches, by name; `None` for a cache with problems.
#[derive(Debug, Default)]
pub(super) struct CacheTable {
    entries: Vec<(String, Option<Arc<CacheSettings>>)>,
}

impl CacheTable {
    /// Every compiled cache, in file order (a cache with problems leaves no hole: the
    /// snapshot is not built then).
    pub(super) fn settings(&self) -> Vec<Arc<CacheSettings>> {
        self.entries.iter().filter_map(|(_, s)| s.clone()).collect()
    }

    /// `cache = "NAME"` on route `key`: the cache's id, or a problem naming the key.
    pub(super) fn resolve(
        &self,
        cx: &mut Ctx<'_>,
        key: &str,
        name: &Spanned<String>,
    ) -> Option<CacheId> {
        match self.entries.iter().position(|(n, _)| n == name.get_ref()) {
            Some(i) => self.entries[i].1.as_ref().map(|_| CacheId(i)),
            None => {
                let defined: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
                let message = if defined.is_empty() {
                    format!(
                        "unknown cache `{}`: no `[caches.NAME]` is defined",
                        name.get_ref()
                    )
                } else {
                    format!(
                        "unknown cache `{}`; defined: {}",
                        name.get_ref(),
                        defined.join(", ")
                    )
                };
                cx.problem(format!("{key}.cache"), Some(name.span()), message);
                None
            }
        }
    }
}

/// Compiles every `[caches.NAME]`.
pub(super) fn compile(cx: &mut Ctx<'_>, raw: Option<&Ordered<RawCache>>) -> CacheTable {
    let mut table = CacheTable::default();
    for (name, cache) in raw.map(|o| o.0.as_slice()).unwrap_or_default() {
        let key = format!("caches.{}", name.get_ref());
        if let Err(message) = check_name(name.get_ref()) {
            cx.problem(key.clone(), Some(name.span()), message);
        }
        let settings = one(cx, &key, name.get_ref(), cache.get_ref());
        table
            .entries
            .push((name.get_ref().clone(), settings.map(Arc::new)));
    }
    table
}

fn one(cx: &mut Ctx<'_>, key: &str, name: &str, raw: &RawCache) -> Option<CacheSettings> {
    let before = cx.problems.len();
    let max_bytes = cx.size(
        &format!("{key}.max_bytes"),
        &raw.max_bytes,
        MIN_MAX_BYTES..=(usize::MAX as u64),
        DEFAULT_MAX_BYTES,
    );
    let max_object_bytes = cx.size(
        &format!("{key}.max_object_bytes"),
        &raw.max_object_bytes,
        1..=max_bytes,
        DEFAULT_MAX_OBJECT.min(max_bytes),
    );
    let default_ttl = raw
        .default_ttl
        .as_ref()
        .map_or(0, |d| d.get_ref().0.as_secs());
    let coalesce_wait = cx.timeout(
        &format!("{key}.coalesce_wait"),
        &raw.coalesce_wait,
        DEFAULT_COALESCE_WAIT,
    );
    let tag_header = raw.tag_header.as_ref().and_then(|t| {
        if is_token(t.get_ref()) {
            return Some(t.get_ref().to_ascii_lowercase());
        }
        let message = format!("invalid header name `{}`", t.get_ref());
        cx.problem(format!("{key}.tag_header"), Some(t.span()), message);
        None
    });
    let shape = raw
        .key
        .as_ref()
        .map(|k| key_shape(cx, &format!("{key}.key"), k.get_ref()))
        .unwrap_or_default();
    (cx.problems.len() == before).then(|| CacheSettings {
        name: name.to_string(),
        max_bytes: max_bytes as usize,
        max_object_bytes: max_object_bytes as usize,
        key: shape,
        default_ttl,
        tag_header,
        coalesce_wait,
    })
}

fn key_shape(cx: &mut Ctx<'_>, key: &str, raw: &RawCacheKey) -> KeyShape {
    let query = match raw.query.as_ref() {
        None => QueryKey::All,
        Some(q) => match q.get_ref() {
            RawQueryKey::Word(w) if w == "all" => QueryKey::All,
            RawQueryKey::Word(w) if w == "none" => QueryKey::None,
            RawQueryKey::Names(names) if names.iter().all(|n| !n.is_empty()) => {
                QueryKey::Names(names.clone())
            }
            other => {
                let message = match other {
                    RawQueryKey::Word(w) => format!(
                        "unknown query key `{w}`: expected \"all\", \"none\" or a list of parameter names"
                    ),
                    RawQueryKey::Names(_) => "parameter names must not be empty".to_string(),
                };
                cx.problem(format!("{key}.query"), Some(q.span()), message);
                QueryKey::All
            }
        },
    };
    let mut names = |field: &str, list: &Option<Vec<Spanned<String>>>, header: bool| {
        let mut out = Vec::new();
        for (i, n) in list.as_deref().unwrap_or_default().iter().enumerate() {
            let ok = if header {
                is_token(n.get_ref())
            } else {
                !n.get_ref().is_empty() && !n.get_ref().contains([';', '=', ' ', ','])
            };
            if ok {
                out.push(if header {
                    n.get_ref().to_ascii_lowercase()
                } else {
                    n.get_ref().clone()
                });
            } else {
                let what = if header { "header" } else { "cookie" };
                let message = format!("invalid {what} name `{}`", n.get_ref());
                cx.problem(format!("{key}.{field}[{i}]"), Some(n.span()), message);
            }
        }
        out
    };
    let headers = names("headers", &raw.headers, true);
    let cookies = names("cookies", &raw.cookies, false);
    KeyShape {
        query,
        headers,
        cookies,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::compile::{check_without_router, keys_and_lines};

    const UPSTREAM: &str = "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:9\" }]\n";

    #[test]
    fn compiles_a_cache_and_a_route_that_uses_it() {
        let text = format!(
            "{UPSTREAM}[caches.api]\nmax_bytes = \"1MiB\"\nmax_object_bytes = \"64KiB\"\n\
             key = {{ query = [\"page\"], headers = [\"Accept-Language\"], cookies = [\"t\"] }}\n\
             default_ttl = \"30s\"\ntag_header = \"Surrogate-Key\"\n\
             [[routes]]\nname = \"r\"\nupstream = \"u\"\ncache = \"api\"\n"
        );
        let snapshot = crate::config::load_str(&text, "t.toml").expect("compiles");
        let cache = &snapshot.caches[0];
        assert_eq!(cache.name, "api");
        assert_eq!(
            (cache.max_bytes, cache.max_object_bytes),
            (1 << 20, 64 << 10)
        );
        assert_eq!(cache.default_ttl, 30);
        assert_eq!(cache.tag_header.as_deref(), Some("surrogate-key"));
        assert_eq!(cache.key.headers, vec!["accept-language".to_string()]);
        let route = snapshot.router.get(0).expect("route");
        match &route.action {
            crate::config::RouteAction::Proxy(p) => {
                assert_eq!(p.cache, Some(crate::cache::CacheId(0)))
            }
            _ => panic!("proxy route"),
        }
    }

    #[test]
    fn bad_cache_config_names_key_and_line() {
        let text = format!(
            "{UPSTREAM}[caches.api]\nmax_bytes = \"1MiB\"\nmax_object_bytes = \"2MiB\"\n\
             key = {{ query = \"some\", headers = [\"bad header\"] }}\ntag_header = \"a b\"\n\
             [[routes]]\nname = \"r\"\nupstream = \"u\"\ncache = \"nope\"\n\
             [[routes]]\nname = \"s\"\nrespond = {{ status = 200 }}\ncache = \"api\"\n"
        );
        assert_eq!(
            keys_and_lines(&check_without_router(&text)),
            vec![
                ("caches.api.max_object_bytes".to_string(), Some(6)),
                ("caches.api.tag_header".to_string(), Some(8)),
                ("caches.api.key.query".to_string(), Some(7)),
                ("caches.api.key.headers[0]".to_string(), Some(7)),
                ("routes[0].cache".to_string(), Some(12)),
                ("routes[1].cache".to_string(), Some(16)),
            ]
        );
    }

    #[test]
    fn unknown_cache_keys_are_refused() {
        let text = "[caches.api]\nmax_bytes = \"1MiB\"\nttl = \"5s\"\n";
        let problems = check_without_router(text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(3));
    }
}
