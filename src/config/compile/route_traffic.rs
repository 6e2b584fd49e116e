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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::routes::tests::{problems, routes};
    use crate::config::{ProxyAction, Route, RouteAction};

    fn proxy_action(route: &Route) -> &ProxyAction {
        match &route.action {
            RouteAction::Proxy(p) => p,
            RouteAction::Respond(_) | RouteAction::Compose(_) => panic!("expected a proxy route"),
        }
    }

    #[test]
    fn compiles_a_sticky_split_with_versions_and_a_mirror() {
        let out = routes(
            r#"[[routes]]
name = "users"
split = [ { upstream = "users", weight = 95 }, { upstream = "orders", weight = 5 } ]
sticky = "header:X-User"
versions = [ { header = "X-Api-Version", value = "2", upstream = "orders" }, { cookie = "canary", upstream = "orders" } ]
mirror = { upstream = "users", percent = 2.5, max_in_flight = 4 }
"#,
        );
        let p = proxy_action(&out[0].1);
        let DefaultGroup::Split(split) = &p.groups.default else {
            panic!("expected a split")
        };
        assert_eq!(
            split.groups().collect::<Vec<_>>(),
            [UpstreamId(0), UpstreamId(1)]
        );
        assert_eq!(split.sticky, Some(StickyKey::Header("x-user".into())));
        assert_eq!(
            p.groups.versions[..],
            [
                VersionRule {
                    selector: Selector::Header("x-api-version".into()),
                    value: Some(b"2"[..].into()),
                    upstream: UpstreamId(1),
                },
                VersionRule {
                    selector: Selector::Cookie("canary".into()),
                    value: None,
                    upstream: UpstreamId(1),
                },
            ]
        );
        let mirror = p.mirror.as_ref().expect("mirror");
        assert_eq!(
            (
                mirror.upstream,
                mirror.per_million,
                mirror.max_in_flight,
                mirror.slot
            ),
            (UpstreamId(0), 25_000, 4, 0)
        );
    }

    #[test]
    fn mirror_defaults_to_every_request_and_32_in_flight() {
        let out = routes(
            "[[routes]]\nname = \"r\"\nupstream = \"users\"\nmirror = { upstream = \"orders\" }\n",
        );
        let mirror = proxy_action(&out[0].1).mirror.clone().expect("mirror");
        assert_eq!((mirror.per_million, mirror.max_in_flight), (1_000_000, 32));
    }

    #[test]
    fn rejects_upstream_with_split_and_split_with_respond() {
        let text = "[[routes]]\nname = \"a\"\nupstream = \"users\"\n\
                    split = [{ upstream = \"users\", weight = 1 }]\n\
                    [[routes]]\nname = \"b\"\nrespond = { status = 200 }\n\
                    split = [{ upstream = \"users\", weight = 1 }]\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].split".to_string(), Some(4)),
                ("routes[1].respond".to_string(), Some(8)),
            ]
        );
    }

    #[test]
    fn rejects_bad_split_entries() {
        let text = "[[routes]]\nname = \"a\"\nsplit = [\n\
                    { upstream = \"ghost\", weight = 1 },\n\
                    { upstream = \"users\", weight = -1 },\n\
                    { upstream = \"users\", weight = 2 },\n]\n\
                    [[routes]]\nname = \"b\"\nsplit = [{ upstream = \"users\", weight = 0 }]\n\
                    [[routes]]\nname = \"c\"\nsplit = []\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].split[0].upstream".to_string(), Some(4)),
                ("routes[0].split[1].weight".to_string(), Some(5)),
                ("routes[0].split[2].upstream".to_string(), Some(6)),
                ("routes[1].split".to_string(), Some(10)),
                ("routes[2].split".to_string(), Some(13)),
            ]
        );
    }

    #[test]
    fn rejects_bad_sticky_and_sticky_without_split() {
        let text = "[[routes]]\nname = \"a\"\nsplit = [{ upstream = \"users\", weight = 1 }]\n\
                    sticky = \"cookie:\"\n\
                    [[routes]]\nname = \"b\"\nupstream = \"users\"\nsticky = \"ip\"\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].sticky".to_string(), Some(4)),
                ("routes[1].sticky".to_string(), Some(8)),
            ]
        );
    }

    #[test]
    fn rejects_bad_version_rules() {
        let text = "[[routes]]\nname = \"a\"\nupstream = \"users\"\nversions = [\n\
                    { header = \"x-v\", cookie = \"c\", upstream = \"users\" },\n\
                    { upstream = \"users\" },\n\
                    { header = \"a b\", upstream = \"users\" },\n\
                    { cookie = \"c\", upstream = \"ghost\" },\n]\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].versions[0].cookie".to_string(), Some(5)),
                ("routes[0].versions[1]".to_string(), Some(6)),
                ("routes[0].versions[2].header".to_string(), Some(7)),
                ("routes[0].versions[3].upstream".to_string(), Some(8)),
            ]
        );
    }

    #[test]
    fn rejects_bad_mirror_settings() {
        let text = "[[routes]]\nname = \"a\"\nupstream = \"users\"\n\
                    mirror = { upstream = \"ghost\", percent = 0, max_in_flight = 0 }\n\
                    [[routes]]\nname = \"b\"\nupstream = \"users\"\n\
                    mirror = { upstream = \"orders\", percent = 101 }\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].mirror.upstream".to_string(), Some(4)),
                ("routes[0].mirror.percent".to_string(), Some(4)),
                ("routes[0].mirror.max_in_flight".to_string(), Some(4)),
                ("routes[1].mirror.percent".to_string(), Some(8)),
            ]
        );
    }
}
