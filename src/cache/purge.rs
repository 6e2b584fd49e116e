//! Purges: what leaves every worker's caches when an unsafe request changed a resource
//! (RFC 9111 §4.4) or an operator asked (admin API, or another instance through Redis).
//!
//! A purge travels as a value: from the worker that saw the unsafe request (or from the admin
//! API, or Redis) to the control side, which hands it to every worker as a command. Each
//! worker applies it to its own caches; nothing is shared.

use super::{WorkerCache, WorkerCaches};
use crate::router::normalize::{normalize_path, split_target};

/// What a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every variant of one URL (host without port, lower case; normalized path; query).
    Url {
        /// Host.
        host: String,
        /// Normalized path.
        path: String,
        /// Query, without `?`.
        query: Option<String>,
    },
    /// Every entry whose path starts with `prefix` (on `host` only, if given).
    Prefix {
        /// Host, if the purge is limited to one.
        host: Option<String>,
        /// Normalized path prefix.
        prefix: String,
    },
    /// Every entry carrying this tag (the upstream's `tag_header`).
    Tag(String),
}

impl Purge {
    /// The purge of an absolute URL (`http://host[:port]/path[?query]`).
    pub fn url(url: &str) -> Result<Purge, String> {
        let target =
            split_target(url.as_bytes()).map_err(|e| format!("invalid url `{url}`: {e}"))?;
        let Some(authority) = target.authority.filter(|a| !a.is_empty()) else {
            return Err(format!(
                "invalid url `{url}`: expected an absolute URL such as http://api.example.com/items/1"
            ));
        };
        let mut path = String::new();
        normalize_path(target.path, &mut path).map_err(|e| format!("invalid url `{url}`: {e}"))?;
        Ok(Purge::Url {
            host: host_of(authority),
            path,
            query: target
                .query
                .map(|q| String::from_utf8_lossy(q).into_owned()),
        })
    }

    /// The purge of a path prefix, on one host or all.
    pub fn prefix(prefix: &str, host: Option<&str>) -> Result<Purge, String> {
        if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
            return Err(format!(
                "invalid prefix `{prefix}`: expected a path such as /catalog/ (no query)"
            ));
        }
        let mut normalized = String::new();
        normalize_path(prefix.as_bytes(), &mut normalized)
            .map_err(|e| format!("invalid prefix `{prefix}`: {e}"))?;
        // Normalization drops a trailing slash's meaning only for "/"; keep the caller's.
        if prefix.ends_with('/') && !normalized.ends_with('/') {
            normalized.push('/');
        }
        let host = match host {
            None => None,
            Some(h) if !h.is_empty() && !h.contains(['/', ' ']) => Some(host_of(h.as_bytes())),
            Some(h) => return Err(format!("invalid host `{h}`")),
        };
        Ok(Purge::Prefix {
            host,
            prefix: normalized,
        })
    }

    /// The purge of a tag.
    pub fn tag(tag: &str) -> Result<Purge, String> {
        if tag.is_empty()
            || tag
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("invalid tag `{tag}`: one token without spaces"));
        }
        Ok(Purge::Tag(tag.to_string()))
    }

    /// One line for other instances (Redis): `url HOST PATH[?QUERY]`, `prefix HOST|* PREFIX`
    /// or `tag TAG`.
    pub fn encode(&self) -> String {
        match self {
            Purge::Url { host, path, query } => match query {
                Some(q) => format!("url {host} {path}?{q}"),
                None => format!("url {host} {path}"),
            },
            Purge::Prefix { host, prefix } => {
                format!("prefix {} {prefix}", host.as_deref().unwrap_or("*"))
            }
            Purge::Tag(tag) => format!("tag {tag}"),
        }
    }

    /// Reads [`Purge::encode`]'s line; `None` for anything else.
    pub fn decode(line: &str) -> Option<Purge> {
        let mut parts = line.splitn(3, ' ');
        match (parts.next()?, parts.next()?, parts.next()) {
            ("url", host, Some(rest)) => {
                let (path, query) = match rest.split_once('?') {
                    Some((p, q)) => (p, Some(q.to_string())),
                    None => (rest, None),
                };
                path.starts_with('/').then(|| Purge::Url {
                    host: host.to_string(),
                    path: path.to_string(),
                    query,
                })
            }
            ("prefix", host, Some(prefix)) => prefix.starts_with('/').then(|| Purge::Prefix {
                host: (host != "*").then(|| host.to_string()),
                prefix: prefix.to_string(),
            }),
            ("tag", tag, None) => Purge::tag(tag).ok(),
            _ => None,
        }
    }

    /// Removes what this purge names from one cache; returns how many entries went.
    fn apply(&self, cache: &mut WorkerCache, url: &mut Vec<u8>) -> usize {
        let gone = match self {
            Purge::Url { host, path, query } => {
                cache.settings.key.url_key(
                    host.as_bytes(),
                    path.as_bytes(),
                    query.as_deref().map(str::as_bytes),
                    url,
                );
                let hash = cache.store.hash(url);
                cache.store.remove_url(hash, url)
            }
            Purge::Prefix { host, prefix } => cache.store.remove_where(|e| {
                e.path().starts_with(prefix.as_bytes())
                    && host.as_ref().is_none_or(|h| e.host() == h.as_bytes())
            }),
            Purge::Tag(tag) => cache.store.remove_where(|e| e.has_tag(tag.as_bytes())),
        };
        cache.counts.purged += gone as u64;
        gone
    }
}

impl WorkerCaches {
    /// Applies `purge` to every cache of the worker; returns how many entries went.
    pub fn purge(&mut self, purge: &Purge) -> usize {
        let mut url = Vec::new();
        self.iter_mut().map(|c| purge.apply(c, &mut url)).sum()
    }
}

/// `authority` as cache keys hold hosts: lower case, without the port.
pub fn host_of(authority: &[u8]) -> String {
    let host = if authority.first() == Some(&b'[') {
        match authority.iter().position(|&b| b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => &authority[..colon],
            None => authority,
        }
    };
    String::from_utf8_lossy(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_urls_prefixes_and_tags_and_names_bad_ones() {
        assert_eq!(
            Purge::url("http://API.example:8080/a/../b?x=1"),
            Ok(Purge::Url {
                host: "api.example".into(),
                path: "/b".into(),
                query: Some("x=1".into()),
            })
        );
        assert!(Purge::url("/relative").unwrap_err().contains("absolute"));
        assert!(Purge::url("http://h/a#frag").is_err());
        assert_eq!(
            Purge::prefix("/catalog/", None),
            Ok(Purge::Prefix {
                host: None,
                prefix: "/catalog/".into()
            })
        );
        assert!(Purge::prefix("catalog", None)
            .unwrap_err()
            .contains("invalid prefix"));
        assert!(Purge::prefix("/a?b", None).is_err());
        assert!(Purge::tag("a b").is_err());
        assert!(Purge::tag("").is_err());
    }

    #[test]
    fn encodes_for_other_instances_and_back() {
        for purge in [
            Purge::url("http://h/a?x=1").expect("url"),
            Purge::url("http://h/a").expect("url"),
            Purge::prefix("/c/", Some("H")).expect("prefix"),
            Purge::prefix("/c", None).expect("prefix"),
            Purge::tag("t-1").expect("tag"),
        ] {
            assert_eq!(
                Purge::decode(&purge.encode()),
                Some(purge.clone()),
                "{purge:?}"
            );
        }
        assert_eq!(Purge::decode("nonsense"), None);
        assert_eq!(Purge::decode("url h relative"), None);
    }
}
