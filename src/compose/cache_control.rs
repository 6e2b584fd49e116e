//! The composite's `Cache-Control`: the most restrictive of its parts'.
//!
//! `no-store` anywhere (or a partial answer) makes `no-store`; otherwise `no-cache` and
//! `private` if any part has them, the smallest `max-age` and `s-maxage`, and
//! `must-revalidate` if any part asks for it; `public` only if no part is `private`. A part
//! without `Cache-Control` imposes nothing; with none on any part, the composite has none.

/// The directives read from the parts so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Combined {
    seen: bool,
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    must_revalidate: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

impl Combined {
    /// Adds one part's `Cache-Control` value.
    pub fn add(&mut self, value: &str) {
        self.seen = true;
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            let seconds = arg.and_then(|a| a.parse::<u64>().ok());
            match name.to_ascii_lowercase().as_str() {
                "no-store" => self.no_store = true,
                "no-cache" => self.no_cache = true,
                "private" => self.private = true,
                "public" => self.public = true,
                "must-revalidate" | "proxy-revalidate" => self.must_revalidate = true,
                "max-age" => self.max_age = min(self.max_age, seconds.unwrap_or(0)),
                "s-maxage" => self.s_maxage = min(self.s_maxage, seconds.unwrap_or(0)),
                _ => {}
            }
        }
    }

    /// The composite's value; `incomplete` answers are never stored.
    pub fn value(&self, incomplete: bool) -> Option<String> {
        if incomplete || self.no_store {
            return Some("no-store".into());
        }
        if !self.seen {
            return None;
        }
        let mut parts: Vec<String> = Vec::new();
        if self.no_cache {
            parts.push("no-cache".into());
        }
        if self.private {
            parts.push("private".into());
        } else if self.public {
            parts.push("public".into());
        }
        if let Some(n) = self.max_age {
            parts.push(format!("max-age={n}"));
        }
        if let Some(n) = self.s_maxage {
            parts.push(format!("s-maxage={n}"));
        }
        if self.must_revalidate {
            parts.push("must-revalidate".into());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

fn min(current: Option<u64>, new: u64) -> Option<u64> {
    Some(current.map_or(new, |c| c.min(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combined(values: &[&str]) -> Combined {
        let mut c = Combined::default();
        for v in values {
            c.add(v);
        }
        c
    }

    #[test]
    fn takes_the_most_restrictive_of_the_parts() {
        let c = combined(&[
            "public, max-age=60",
            "private, max-age=30, s-maxage=10",
            "max-age=\"45\"",
        ]);
        assert_eq!(
            c.value(false).as_deref(),
            Some("private, max-age=30, s-maxage=10")
        );
        let c = combined(&["max-age=60", "no-cache"]);
        assert_eq!(c.value(false).as_deref(), Some("no-cache, max-age=60"));
        assert_eq!(
            combined(&["max-age=60", "No-Store"])
                .value(false)
                .as_deref(),
            Some("no-store")
        );
    }

    #[test]
    fn partial_answers_are_not_stored_and_no_headers_give_none() {
        assert_eq!(
            combined(&["max-age=60"]).value(true).as_deref(),
            Some("no-store")
        );
        assert_eq!(combined(&[]).value(false), None);
        assert_eq!(combined(&[]).value(true).as_deref(), Some("no-store"));
        assert_eq!(
            combined(&["public", "must-revalidate"])
                .value(false)
                .as_deref(),
            Some("public, must-revalidate")
        );
    }
}
