//! A proxy route's traffic keys: `upstream` or `split` (with `sticky`), `versions`, `mirror`.
//!
//! Per-worker state of splits and mirrors is indexed by the route's position in the file
//! (its `slot`), so no numbering is kept here.

use toml::Spanned;

use super::matcher::is_token;
use super::Ctx;
use crate::config::file::{RawMirror, RawRoute, RawSplitEntry, RawUpstream, RawVersion};
use crate::config::UpstreamId;
use crate::traffic::mirror::PER_MILLION;
use crate::traffic::{
    DefaultGroup, GroupChoice, MirrorSettings, Selector, Split, StickyKey, VersionRule,
};

/// Default `mirror.max_in_flight`.
pub(super) const DEFAULT_MIRROR_IN_FLIGHT: i64 = 32;
/// Most groups in one `split`.
const MAX_SPLIT: usize = 16;
/// Largest weight in a `split`.
const MAX_WEIGHT: i64 = 1_000_000;

/// The route's group choice; `None` when a referenced group is unknown or the split is empty.
pub(super) fn groups(
    cx: &mut Ctx<'_>,
    key: &str,
    slot: usize,
    raw: &RawRoute,
    upstreams: &[RawUpstream],
) -> Option<GroupChoice> {
    let versions = versions(cx, key, raw.versions.as_deref().unwrap_or(&[]), upstreams);
    let sticky = raw.sticky.as_ref().and_then(|s| sticky(cx, key, s));
    let default = match (&raw.upstream, &raw.split) {
        (Some(upstream), _) => {
            if let Some(s) = &raw.sticky {
                let message = "only allowed with `split`".to_string();
                cx.problem(format!("{key}.sticky"), Some(s.span()), message);
            }
            DefaultGroup::One(resolve(
                cx,
                &format!("{key}.upstream"),
                upstream,
                upstreams,
            )?)
        }
        (None, Some(entries)) => {
            DefaultGroup::Split(split(cx, key, slot, entries, sticky, upstreams)?)
        }
        (None, None) => return None,
    };
    Some(GroupChoice {
        versions: versions?.into_boxed_slice(),
        default,
    })
}

/// The id of upstream `name`, or a problem at `key` listing the defined groups.
pub(super) fn resolve(
    cx: &mut Ctx<'_>,
    key: &str,
    name: &Spanned<String>,
    upstreams: &[RawUpstream],
) -> Option<UpstreamId> {
    let wanted = name.get_ref();
    if let Some(id) = upstreams.iter().position(|u| u.name.get_ref() == wanted) {
        return Some(UpstreamId(id));
    }
    let defined: Vec<&str> = upstreams
        .iter()
        .map(|u| u.name.get_ref().as_str())
        .collect();
    let message = if defined.is_empty() {
        format!("unknown upstream `{wanted}`: no upstreams are defined")
    } else {
        format!(
            "unknown upstream `{wanted}`; defined: {}",
            defined.join(", ")
        )
    };
    cx.problem(key, Some(name.span()), message);
    None
}

fn split(
    cx: &mut Ctx<'_>,
    key: &str,
    slot: usize,
    entries: &Spanned<Vec<RawSplitEntry>>,
    sticky: Option<StickyKey>,
    upstreams: &[RawUpstream],
) -> Option<Split> {
    let list = entries.get_ref();
    if list.is_empty() || list.len() > MAX_SPLIT {
        let message = format!("expected 1 to {MAX_SPLIT} entries, found {}", list.len());
        cx.problem(format!("{key}.split"), Some(entries.span()), message);
        return None;
    }
    let mut groups = Vec::with_capacity(list.len());
    let mut ok = true;
    for (j, entry) in list.iter().enumerate() {
        let entry_key = format!("{key}.split[{j}]");
        let id = resolve(
            cx,
            &format!("{entry_key}.upstream"),
            &entry.upstream,
            upstreams,
        );
        if groups.iter().any(|(g, _)| Some(*g) == id) {
            let message = format!("upstream `{}` is listed twice", entry.upstream.get_ref());
            cx.problem(
                format!("{entry_key}.upstream"),
                Some(entry.upstream.span()),
                message,
            );
            ok = false;
        }
        let weight = *entry.weight.get_ref();
        if !(0..=MAX_WEIGHT).contains(&weight) {
            let message = format!("{weight} is out of range: expected 0 to {MAX_WEIGHT}");
            cx.problem(
                format!("{entry_key}.weight"),
                Some(entry.weight.span()),
                message,
            );
            ok = false;
        }
        match id {
            Some(id) => groups.push((id, u32::try_from(weight).unwrap_or(0))),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let split = Split::new(&groups, sticky, slot);
    if split.is_none() {
        let message = "the weights sum to zero: at least one must be positive".to_string();
        cx.problem(format!("{key}.split"), Some(entries.span()), message);
    }
    split
}

/// `cookie:NAME`, `header:NAME` or `ip`.
fn sticky(cx: &mut Ctx<'_>, key: &str, value: &Spanned<String>) -> Option<StickyKey> {
    let text = value.get_ref();
    let parsed = match text.split_once(':') {
        None if text == "ip" => Some(StickyKey::Ip),
        Some(("cookie", name)) if is_token(name) => Some(StickyKey::Cookie(name.into())),
        Some(("header", name)) if is_token(name) => {
            Some(StickyKey::Header(name.to_ascii_lowercase().into()))
        }
        _ => None,
    };
    if parsed.is_none() {
        let message =
            format!("invalid sticky `{text}`: expected \"cookie:NAME\", \"header:NAME\" or \"ip\"");
        cx.problem(format!("{key}.sticky"), Some(value.span()), message);
    }
    parsed
}

/// The compiled rules; `None` if any rule had a problem.
fn versions(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &[RawVersion],
    upstreams: &[RawUpstream],
) -> Option<Vec<VersionRule>> {
    let mut rules = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (j, rule) in raw.iter().enumerate() {
        let rule_key = format!("{key}.versions[{j}]");
        let upstream = resolve(
            cx,
            &format!("{rule_key}.upstream"),
            &rule.upstream,
            upstreams,
        );
        let selector = selector(cx, &rule_key, rule);
        let value = rule.value.as_ref().and_then(|v| {
            if v.get_ref().bytes().any(|b| b.is_ascii_control()) {
                let message = "value must not contain control characters".to_string();
                cx.problem(format!("{rule_key}.value"), Some(v.span()), message);
                return None;
            }
            Some(v.get_ref().as_bytes().into())
        });
        match (upstream, selector) {
            (Some(upstream), Some(selector)) => rules.push(VersionRule {
                selector,
                value,
                upstream,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(rules)
}

fn selector(cx: &mut Ctx<'_>, rule_key: &str, rule: &RawVersion) -> Option<Selector> {
    match (&rule.header, &rule.cookie) {
        (Some(name), None) if is_token(name.get_ref()) => {
            Some(Selector::Header(name.get_ref().to_ascii_lowercase().into()))
        }
        (None, Some(name)) if is_token(name.get_ref()) => {
            Some(Selector::Cookie(name.get_ref().as_str().into()))
        }
        (Some(name), None) | (None, Some(name)) => {
            let which = if rule.header.is_some() {
                "header"
            } else {
                "cookie"
            };
            let message = format!("invalid {which} name `{}`", name.get_ref());
            cx.problem(format!("{rule_key}.{which}"), Some(name.span()), message);
            None
        }
        (Some(_), Some(cookie)) => {
            let message = "set one of `header` or `cookie`, not both".to_string();
            cx.problem(format!("{rule_key}.cookie"), Some(cookie.span()), message);
            None
        }
        (None, None) => {
            let message = "set one of `header` or `cookie`".to_string();
            cx.problem(rule_key.to_string(), Some(rule.upstream.span()), message);
            None
        }
    }
}

/// The compiled `mirror`; `None` if it had a problem.
pub(super) fn mirror(
    cx: &mut Ctx<'_>,
    key: &str,
    slot: usize,
    raw: &RawMirror,
    upstreams: &[RawUpstream],
) -> Option<MirrorSettings> {
    let key = format!("{key}.mirror");
    let upstream = resolve(cx, &format!("{key}.upstream"), &raw.upstream, upstreams);
    let per_million = match &raw.percent {
        None => Some(PER_MILLION),
        Some(p) => {
            let percent = *p.get_ref();
            // Parts per million: 0.0001 percent is the finest share.
            let ppm = (percent * 10_000.0).round();
            if percent > 0.0 && percent <= 100.0 && ppm >= 1.0 {
                Some(ppm as u32)
            } else {
                let message =
                    format!("{percent} is out of range: expected more than 0 and at most 100");
                cx.problem(format!("{key}.percent"), Some(p.span()), message);
                None
            }
        }
    };
    let max_in_flight = cx.int(
        &format!("{key}.max_in_flight"),
        &raw.max_in_flight,
        1..=65_536,
        DEFAULT_MIRROR_IN_FLIGHT,
    );
    Some(MirrorSettings {
        upstream: upstream?,
        per_million: per_million?,
        max_in_flight: usize::try_from(max_in_flight).unwrap_or(1),
        slot,
    })
}
