//! `[[consumers]]`: names, groups, API keys (kept as SHA-256 digests) and password hashes.

use std::collections::HashMap;

use super::{check_name, Ctx};
use crate::config::file::RawConsumer;
use crate::policy::basic::is_password_hash;
use crate::policy::consumers::key_digest;
use crate::policy::{Consumer, Consumers};

/// Prefix of an API key stored as a digest.
const SHA256_PREFIX: &str = "sha256:";
/// Shortest plain API key accepted.
const MIN_PLAIN_KEY: usize = 16;

/// Compiles every consumer.
pub(super) fn compile(cx: &mut Ctx<'_>, raw: &[RawConsumer]) -> Consumers {
    let mut consumers = Consumers::default();
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    let mut key_owner: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, c) in raw.iter().enumerate() {
        let key = format!("consumers[{i}]");
        let name = c.name.get_ref();
        if let Err(message) = check_name(name) {
            cx.problem(format!("{key}.name"), Some(c.name.span()), message);
        } else if let Some(line) = first_line.get(name.as_str()) {
            let message =
                format!("duplicate consumer name `{name}` (first defined on line {line})");
            cx.problem(format!("{key}.name"), Some(c.name.span()), message);
        } else {
            first_line.insert(name, cx.line(c.name.span()));
        }
        let groups = c
            .groups
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(g, group)| match check_name(group.get_ref()) {
                Ok(()) => Some(group.get_ref().clone()),
                Err(message) => {
                    cx.problem(format!("{key}.groups[{g}]"), Some(group.span()), message);
                    None
                }
            })
            .collect();
        let password_hash = c.password_hash.as_ref().and_then(|h| {
            if is_password_hash(h.get_ref()) {
                return Some(h.get_ref().clone());
            }
            let message = "expected an argon2 PHC string (`$argon2id$...`) or a bcrypt hash \
                           (`$2b$...`); plain passwords are not accepted"
                .to_string();
            cx.problem(format!("{key}.password_hash"), Some(h.span()), message);
            None
        });
        let id = consumers.push(Consumer {
            name: name.clone(),
            groups,
            password_hash,
        });
        for (k, api_key) in c.api_keys.iter().flatten().enumerate() {
            let entry = format!("{key}.api_keys[{k}]");
            let Some(digest) = api_key_digest(api_key.get_ref()) else {
                let message = format!(
                    "expected `sha256:` and 64 hex digits, or a plain key of at least \
                     {MIN_PLAIN_KEY} characters"
                );
                cx.problem(entry, Some(api_key.span()), message);
                continue;
            };
            if let Some(other) = key_owner.insert(digest, i) {
                let message = format!("this key is also consumers[{other}]'s");
                cx.problem(entry, Some(api_key.span()), message);
                continue;
            }
            consumers.add_key_digest(digest, id);
        }
    }
    consumers
}

/// The digest of a configured key: `sha256:<hex>` as given, a plain key hashed.
fn api_key_digest(text: &str) -> Option<[u8; 32]> {
    let Some(hex) = text.strip_prefix(SHA256_PREFIX) else {
        return (text.len() >= MIN_PLAIN_KEY).then(|| key_digest(text.as_bytes()));
    };
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::policies::tests::problems;

    #[test]
    fn reads_hex_digests_and_hashes_plain_keys() {
        let hex = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(api_key_digest(hex), Some(key_digest(b"test")));
        assert_eq!(
            api_key_digest("a-long-plain-api-key"),
            Some(key_digest(b"a-long-plain-api-key"))
        );
        assert_eq!(api_key_digest("short"), None);
        assert_eq!(api_key_digest("sha256:zz"), None);
    }

    #[test]
    fn rejects_bad_consumers_with_their_lines() {
        let text = "[[consumers]]\nname = \"a\"\ngroups = [\"ok\", \"b d\"]\n\
                    api_keys = [\"short\", \"a-long-plain-api-key\"]\npassword_hash = \"hunter2\"\n\
                    [[consumers]]\nname = \"a\"\napi_keys = [\"a-long-plain-api-key\"]\n";
        assert_eq!(
            problems(text),
            vec![
                ("consumers[0].groups[1]".to_string(), Some(3)),
                ("consumers[0].password_hash".to_string(), Some(5)),
                ("consumers[0].api_keys[0]".to_string(), Some(4)),
                ("consumers[1].name".to_string(), Some(7)),
                ("consumers[1].api_keys[0]".to_string(), Some(8)),
            ]
        );
    }
}
