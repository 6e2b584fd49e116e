//! `kind = "api_key"`: `header`, `query`, `consumer_header`.

use std::sync::Arc;

use super::{consumer_forwarding, header_name, hide_credentials, KindCx};
use crate::policy::ApiKey;

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &["header", "query", "consumer_header", "hide_credentials"];
/// `header` when neither `header` nor `query` is set.
pub const DEFAULT_HEADER: &str = "X-Api-Key";

/// Compiles an `api_key` table.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<ApiKey>> {
    let raw = k.raw;
    let header = match (&raw.header, &raw.query) {
        (None, None) => Some(DEFAULT_HEADER.to_string()),
        (Some(h), _) => header_name(k, "header", h),
        (None, Some(_)) => None,
    };
    let query = raw.query.as_ref().and_then(|q| {
        let ok = !q.get_ref().is_empty()
            && q.get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
        if !ok {
            let message = "expected a parameter name of letters, digits, `-`, `_`, `.`, `~`".into();
            k.problem("query", q.span(), message);
        }
        ok.then(|| q.get_ref().clone())
    });
    let challenge = match (&header, &query) {
        (Some(h), _) => format!("header=\"{h}\""),
        (None, Some(q)) => format!("query=\"{q}\""),
        (None, None) => String::new(),
    };
    Some(Arc::new(ApiKey {
        name: k.name.to_string(),
        header,
        query,
        consumers: Arc::clone(k.consumers),
        forwarding: consumer_forwarding(k),
        challenge: challenge.into(),
        hide_credentials: hide_credentials(k),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    #[test]
    fn rejects_bad_header_and_query_names() {
        let text = "[policies.k]\nkind = \"api_key\"\nheader = \"X Key\"\nquery = \"a&b\"\n\
                    consumer_header = \"\"\n";
        assert_eq!(
            problems(text),
            vec![
                ("policies.k.header".to_string(), Some(3)),
                ("policies.k.query".to_string(), Some(4)),
                ("policies.k.consumer_header".to_string(), Some(5)),
            ]
        );
    }

    #[test]
    fn refuses_keys_of_other_kinds() {
        let text = "[policies.k]\nkind = \"api_key\"\nrealm = \"r\"\nallow = []\n";
        assert_eq!(
            problems(text),
            vec![
                ("policies.k.realm".to_string(), Some(3)),
                ("policies.k.allow".to_string(), Some(4)),
            ]
        );
    }
}
