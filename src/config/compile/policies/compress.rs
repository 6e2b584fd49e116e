//! `kind = "compress"`: `algorithms`, `levels`, `min_bytes`, `types`, `decompress_requests`,
//! `max_decompressed_bytes`.
//!
//! Refused with key and line: an unknown or repeated algorithm, a level for an unknown
//! algorithm or outside the algorithm's range, a malformed content-type pattern.

use std::sync::Arc;

use super::KindCx;
use crate::policy::compress::{Coding, Compress, TypePattern, DEFAULT_TYPES};

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &[
    "algorithms",
    "levels",
    "min_bytes",
    "types",
    "decompress_requests",
    "max_decompressed_bytes",
];

/// `min_bytes` when absent: a response smaller than about one packet gains nothing.
const DEFAULT_MIN_BYTES: u64 = 1024;
/// `max_decompressed_bytes` when absent.
const DEFAULT_MAX_DECOMPRESSED: u64 = 8 * 1024 * 1024;
/// Largest `max_decompressed_bytes` (the decoded body is held in memory).
const MAX_DECOMPRESSED: u64 = 64 * 1024 * 1024;

/// Compiles a `compress` table.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Compress>> {
    let raw = k.raw;
    let algorithms = algorithms(k);
    let levels = levels(k);
    let types = types(k);
    let min_bytes = k.cx.size(
        &format!("{}.min_bytes", k.key),
        &raw.min_bytes,
        0..=u64::from(u32::MAX),
        DEFAULT_MIN_BYTES,
    );
    let max_decompressed_bytes = k.cx.size(
        &format!("{}.max_decompressed_bytes", k.key),
        &raw.max_decompressed_bytes,
        1..=MAX_DECOMPRESSED,
        DEFAULT_MAX_DECOMPRESSED,
    );
    Some(Arc::new(Compress {
        name: k.name.to_string(),
        algorithms,
        levels,
        min_bytes,
        types,
        decompress_requests: raw
            .decompress_requests
            .as_ref()
            .is_some_and(|d| *d.get_ref()),
        max_decompressed_bytes,
    }))
}

/// `algorithms`: codings in preference order, each once; all three when absent.
fn algorithms(k: &mut KindCx<'_, '_, '_>) -> Box<[Coding]> {
    let Some(list) = &k.raw.algorithms else {
        return Coding::ALL.into();
    };
    let mut out = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        let sub = format!("algorithms[{i}]");
        match Coding::from_token(entry.get_ref().as_bytes()) {
            Some(c) if out.contains(&c) => {
                k.problem(
                    &sub,
                    entry.span(),
                    format!("`{}` is listed twice", c.token()),
                );
            }
            Some(c) => out.push(c),
            None => {
                let message = format!(
                    "unknown algorithm `{}`; known: gzip, br, zstd",
                    entry.get_ref()
                );
                k.problem(&sub, entry.span(), message);
            }
        }
    }
    if out.is_empty() && list.get_ref().is_empty() {
        k.problem(
            "algorithms",
            list.span(),
            "list at least one algorithm".into(),
        );
    }
    out.into()
}

/// `levels = { gzip = 6, br = 4, zstd = 3 }`: each within its coding's range.
fn levels(k: &mut KindCx<'_, '_, '_>) -> [u32; 3] {
    let mut levels = [Coding::Gzip, Coding::Br, Coding::Zstd].map(Coding::default_level);
    let Some(table) = &k.raw.levels else {
        return levels;
    };
    for (name, value) in &table.get_ref().0 {
        let sub = format!("levels.{}", name.get_ref());
        let Some(coding) = Coding::from_token(name.get_ref().as_bytes()) else {
            let message = format!(
                "unknown algorithm `{}`; known: gzip, br, zstd",
                name.get_ref()
            );
            k.problem(&sub, name.span(), message);
            continue;
        };
        let range = coding.levels();
        match u32::try_from(*value.get_ref()) {
            Ok(level) if range.contains(&level) => levels[coding as usize] = level,
            _ => {
                let message = format!(
                    "level {} is out of range for {}: expected {} to {}",
                    value.get_ref(),
                    coding.token(),
                    range.start(),
                    range.end()
                );
                k.problem(&sub, value.span(), message);
            }
        }
    }
    levels
}

/// `types`: content-type patterns; the defaults when absent.
fn types(k: &mut KindCx<'_, '_, '_>) -> Box<[TypePattern]> {
    let Some(list) = &k.raw.types else {
        return DEFAULT_TYPES
            .iter()
            .filter_map(|t| TypePattern::parse(t))
            .collect();
    };
    let mut out = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        match TypePattern::parse(entry.get_ref()) {
            Some(t) => out.push(t),
            None => {
                let message = format!(
                    "invalid content-type pattern `{}`: expected `type/subtype`, `type/*`, \
                     `type/*+suffix` or `*/*`",
                    entry.get_ref()
                );
                k.problem(&format!("types[{i}]"), entry.span(), message);
            }
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    fn at(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(format!("policies.c.{key}"), Some(line))]
    }

    const HEAD: &str = "[policies.c]\nkind = \"compress\"\n";

    #[test]
    fn a_full_policy_compiles() {
        let text = format!(
            "{HEAD}algorithms = [\"zstd\", \"br\", \"gzip\"]\n\
             levels = {{ gzip = 9, br = 11, zstd = 19 }}\nmin_bytes = \"2KiB\"\n\
             types = [\"text/*\", \"application/*+json\", \"*/*\"]\n\
             decompress_requests = true\nmax_decompressed_bytes = \"1MiB\"\n"
        );
        assert_eq!(problems(&text), vec![]);
    }

    #[test]
    fn unknown_or_repeated_algorithms_are_refused() {
        let text = format!("{HEAD}algorithms = [\"gzip\", \"deflate\"]\n");
        assert_eq!(problems(&text), at("algorithms[1]", 3));
        let text = format!("{HEAD}algorithms = [\"gzip\", \"x-gzip\"]\n");
        assert_eq!(problems(&text), at("algorithms[1]", 3));
        let text = format!("{HEAD}algorithms = []\n");
        assert_eq!(problems(&text), at("algorithms", 3));
    }

    #[test]
    fn bad_levels_are_refused() {
        for (levels, key) in [
            ("{ gzip = 0 }", "levels.gzip"),
            ("{ gzip = 10 }", "levels.gzip"),
            ("{ br = 12 }", "levels.br"),
            ("{ zstd = 22 }", "levels.zstd"),
            ("{ lz4 = 1 }", "levels.lz4"),
        ] {
            let text = format!("{HEAD}levels = {levels}\n");
            assert_eq!(problems(&text), at(key, 3), "{levels}");
        }
    }

    #[test]
    fn bad_type_patterns_are_refused() {
        let text = format!("{HEAD}types = [\"text/*\", \"json\", \"*/xml\"]\n");
        assert_eq!(
            problems(&text),
            vec![
                ("policies.c.types[1]".to_string(), Some(3)),
                ("policies.c.types[2]".to_string(), Some(3)),
            ]
        );
    }

    #[test]
    fn out_of_range_sizes_are_refused() {
        let text = format!("{HEAD}max_decompressed_bytes = \"1GiB\"\n");
        assert_eq!(problems(&text), at("max_decompressed_bytes", 3));
    }
}
