//! A route's `upgrade`, `tunnel_idle`, `tunnel_max`, `max_message_bytes` and `max_tunnels`:
//! which protocols its requests may switch to, and the limits of the tunnels that follow.

use toml::Spanned;

use super::matcher::is_token;
use super::Ctx;
use crate::config::file::RawRoute;
use crate::config::UpgradeRules;
use crate::http::upgrade::WEBSOCKET;

/// Most tunnels `max_tunnels` may allow per worker.
const MAX_TUNNEL_CAP: i64 = 1 << 24;

/// The route's upgrade rules, or `None` without `upgrade`; the tunnel keys without
/// `upgrade` (or on a static route, `proxy` false) are problems, since they would do nothing.
pub(super) fn rules(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &RawRoute,
    proxy: bool,
) -> Option<UpgradeRules> {
    let Some(list) = &raw.upgrade else {
        refuse_tunnel_keys(cx, key, raw, "without `upgrade`");
        return None;
    };
    if !proxy {
        let message = "only allowed on proxy routes (with `upstream` or `split`)".to_string();
        cx.problem(format!("{key}.upgrade"), Some(list.span()), message);
        return None;
    }
    let protocols = protocols(cx, key, list);
    if protocols.is_empty() {
        let message = "list at least one protocol, e.g. [\"websocket\"]".to_string();
        cx.problem(format!("{key}.upgrade"), Some(list.span()), message);
    }
    let websocket = protocols.iter().any(|p| &**p == WEBSOCKET);
    let max_message_bytes = raw.max_message_bytes.as_ref().and_then(|v| {
        let problem = match v.get_ref().0 {
            0 => "must be greater than zero (leave it out for no limit)",
            _ if !websocket => "only allowed when `upgrade` lists \"websocket\"",
            n => return Some(n),
        };
        cx.problem(
            format!("{key}.max_message_bytes"),
            Some(v.span()),
            problem.into(),
        );
        None
    });
    let max_tunnels = raw.max_tunnels.as_ref().map(|_| {
        let n = cx.int(
            &format!("{key}.max_tunnels"),
            &raw.max_tunnels,
            1..=MAX_TUNNEL_CAP,
            1,
        );
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    let duration = |cx: &mut Ctx<'_>, name: &str, v| {
        Some(cx.timeout(&format!("{key}.{name}"), v, std::time::Duration::MAX))
            .filter(|_| v.is_some())
    };
    Some(UpgradeRules {
        protocols,
        idle: duration(cx, "tunnel_idle", &raw.tunnel_idle),
        max: duration(cx, "tunnel_max", &raw.tunnel_max),
        max_message_bytes,
        max_tunnels,
    })
}

/// The protocol tokens of `upgrade`, lower-cased; `h2c`, duplicates and non-tokens are
/// problems.
fn protocols(cx: &mut Ctx<'_>, key: &str, list: &Spanned<Vec<Spanned<String>>>) -> Vec<Box<str>> {
    let mut out: Vec<Box<str>> = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        let token = entry.get_ref().to_ascii_lowercase();
        let problem = if !is_token(&token) {
            Some(format!(
                "invalid protocol `{}`: expected a token such as \"websocket\"",
                entry.get_ref()
            ))
        } else if token == "h2c" {
            Some(
                "`h2c` is never tunnelled (an h2c upgrade through a proxy bypasses its routes \
                 and policies); HTTP/2 is served on the listener itself"
                    .to_string(),
            )
        } else if out.iter().any(|p| **p == *token) {
            Some(format!("`{token}` is listed twice"))
        } else {
            None
        };
        match problem {
            Some(message) => cx.problem(format!("{key}.upgrade[{i}]"), Some(entry.span()), message),
            None => out.push(token.into()),
        }
    }
    out
}

/// The tunnel keys are problems on a route that tunnels nothing.
fn refuse_tunnel_keys(cx: &mut Ctx<'_>, key: &str, raw: &RawRoute, why: &str) {
    let set = [
        ("tunnel_idle", raw.tunnel_idle.as_ref().map(Spanned::span)),
        ("tunnel_max", raw.tunnel_max.as_ref().map(Spanned::span)),
        (
            "max_message_bytes",
            raw.max_message_bytes.as_ref().map(Spanned::span),
        ),
        ("max_tunnels", raw.max_tunnels.as_ref().map(Spanned::span)),
    ];
    for (name, span) in set {
        if let Some(span) = span {
            let message = format!("has no effect {why}: set `upgrade = [\"websocket\"]` too");
            cx.problem(format!("{key}.{name}"), Some(span), message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::compile::routes::tests::{problems, routes};
    use crate::config::compile::{check_without_router, keys_and_lines};
    use crate::config::RouteAction;

    fn rules(route: &str) -> crate::config::UpgradeRules {
        let out = routes(route);
        let RouteAction::Proxy(action) = &out[0].1.action else {
            panic!("expected a proxy route")
        };
        *action.upgrade.clone().expect("upgrade rules")
    }

    #[test]
    fn compiles_protocols_and_tunnel_limits() {
        let r = rules(
            "[[routes]]\nname = \"ws\"\nupstream = \"users\"\nupgrade = [\"WebSocket\", \"tcp\"]\n\
             tunnel_idle = \"30s\"\ntunnel_max = \"1h\"\nmax_message_bytes = \"1MiB\"\nmax_tunnels = 500\n",
        );
        assert_eq!(r.protocols, vec![Box::from("websocket"), Box::from("tcp")]);
        assert!(r.is_websocket(0) && !r.is_websocket(1));
        assert_eq!(r.idle, Some(Duration::from_secs(30)));
        assert_eq!(r.max, Some(Duration::from_secs(3600)));
        assert_eq!(r.max_message_bytes, Some(1 << 20));
        assert_eq!(r.max_tunnels, Some(500));
    }

    #[test]
    fn a_route_without_upgrade_has_no_rules_and_defaults_stay_unset() {
        let out = routes("[[routes]]\nname = \"r\"\nupstream = \"users\"\n");
        let RouteAction::Proxy(action) = &out[0].1.action else {
            panic!("expected a proxy route")
        };
        assert_eq!(action.upgrade, None);
        let r =
            rules("[[routes]]\nname = \"ws\"\nupstream = \"users\"\nupgrade = [\"websocket\"]\n");
        assert_eq!(
            (r.idle, r.max, r.max_message_bytes, r.max_tunnels),
            (None, None, None, None)
        );
    }

    #[test]
    fn refuses_h2c_duplicates_and_non_tokens_with_their_lines() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\n\
                    upgrade = [\"websocket\", \"H2C\", \"WebSocket\", \"a b\"]\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].upgrade[1]".to_string(), Some(4)),
                ("routes[0].upgrade[2]".to_string(), Some(4)),
                ("routes[0].upgrade[3]".to_string(), Some(4)),
            ]
        );
        assert_eq!(
            problems("[[routes]]\nname = \"r\"\nupstream = \"users\"\nupgrade = []\n"),
            vec![("routes[0].upgrade".to_string(), Some(4))]
        );
    }

    #[test]
    fn refuses_tunnel_keys_that_would_do_nothing() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\ntunnel_idle = \"1s\"\n\
                    max_message_bytes = 10\n\
                    [[routes]]\nname = \"t\"\nupstream = \"users\"\nupgrade = [\"tcp\"]\n\
                    max_message_bytes = 10\n\
                    [[routes]]\nname = \"s\"\nrespond = { status = 200 }\nupgrade = [\"websocket\"]\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].tunnel_idle".to_string(), Some(4)),
                ("routes[0].max_message_bytes".to_string(), Some(5)),
                ("routes[1].max_message_bytes".to_string(), Some(10)),
                ("routes[2].upgrade".to_string(), Some(14)),
            ]
        );
    }

    #[test]
    fn refuses_zero_limits() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\nupgrade = [\"websocket\"]\n\
                    tunnel_idle = \"0s\"\nmax_message_bytes = 0\nmax_tunnels = 0\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].max_message_bytes".to_string(), Some(6)),
                ("routes[0].max_tunnels".to_string(), Some(7)),
                ("routes[0].tunnel_idle".to_string(), Some(5)),
            ]
        );
    }

    #[test]
    fn server_tunnel_keys_have_defaults_and_are_checked() {
        let text = "[server.limits]\nmax_tunnels_per_worker = 0\n\
                    [server.timeouts]\ntunnel_idle = \"0s\"\ntunnel_max = \"0s\"\n";
        assert_eq!(
            keys_and_lines(&check_without_router(text)),
            vec![
                ("server.limits.max_tunnels_per_worker".to_string(), Some(2)),
                ("server.timeouts.tunnel_idle".to_string(), Some(4)),
                ("server.timeouts.tunnel_max".to_string(), Some(5)),
            ]
        );
    }
}
