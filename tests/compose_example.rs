//! The BFF example of docs/composition.md, run as written: `config/examples/bff.toml` in
//! front of backends that answer like `config/examples/bff-backends/serve.py` (from the same
//! files), with only the backend addresses changed. The answers asserted here are the ones the
//! guide shows.
mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::client::{agent, call, Reply};
use common::gateway::GatewayConfig;
use common::upstream::{Behavior, Handled, Recorded, Upstream};
use serde_json::value::RawValue;

const KEY: &str = "demo-key-change-me-0001";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/bff-backends")
}

/// A fixture's text as it is on disk (key order kept: `serve.py` keeps it too).
fn fixture(name: &str) -> Option<String> {
    std::fs::read_to_string(fixtures().join(name)).ok()
}

/// A fixture that is an array, element by element, each as written.
fn elements(name: &str) -> Option<Vec<Box<RawValue>>> {
    serde_json::from_str(&fixture(name)?).ok()
}

fn join(items: &[&RawValue]) -> String {
    let texts: Vec<&str> = items.iter().map(|i| i.get()).collect();
    format!("[{}]", texts.join(", "))
}

/// Splits `/path?a=1&b=2` into the path and its parameters (the fixtures need no decoding).
fn split(target: &str) -> (&str, Vec<(&str, &str)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    (path, params)
}

fn param<'a>(params: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// What `serve.py` answers for `target` on the backend `service`.
fn answer(service: &str, target: &str) -> Option<String> {
    let (path, params) = split(target);
    match service {
        "users" => fixture(&format!("user-{}.json", path.strip_prefix("/users/")?)),
        "orders" if path == "/orders" => {
            fixture(&format!("orders-{}.json", param(&params, "user")?))
        }
        "catalog" if path == "/products" => {
            let wanted: Vec<&str> = param(&params, "ids")?.split(',').collect();
            let all = elements("products.json")?;
            let listed: Vec<&RawValue> = all
                .iter()
                .filter(|p| {
                    let v: serde_json::Value = serde_json::from_str(p.get()).unwrap_or_default();
                    v["id"].as_str().is_some_and(|id| wanted.contains(&id))
                })
                .map(|p| &**p)
                .collect();
            Some(join(&listed))
        }
        "reco" if path == "/reco" => {
            let found = elements(&format!("reco-{}.json", param(&params, "tier")?))?;
            let n: usize = param(&params, "n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(10);
            let first: Vec<&RawValue> = found.iter().take(n).map(|p| &**p).collect();
            Some(join(&first))
        }
        _ => None,
    }
}

fn service(name: &'static str) -> Upstream {
    Upstream::start(
        name,
        Behavior::Handler(Arc::new(move |r: &Recorded| {
            match answer(name, &r.target) {
                Some(text) => Handled::json(0, &text),
                None => Handled::Respond {
                    delay: std::time::Duration::ZERO,
                    status: 404,
                    headers: vec![],
                    body: br#"{"error": "not found"}"#.to_vec(),
                },
            }
        })),
    )
}

struct Example {
    gw: common::gateway::Gateway,
    _backends: Vec<Upstream>,
}

fn start(driver: &str) -> Example {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/bff.toml");
    let mut text = std::fs::read_to_string(path).expect("the example exists");
    let names = ["users", "orders", "catalog", "reco"];
    let backends: Vec<Upstream> = names.iter().map(|n| service(n)).collect();
    for (port, backend) in (9101..).zip(&backends) {
        let from = format!("127.0.0.1:{port}");
        assert!(text.contains(&from), "the example names {from}");
        text = text.replace(&from, &backend.addr().to_string());
    }
    Example {
        gw: GatewayConfig::new(driver).routes(&text).start(),
        _backends: backends,
    }
}

fn home(ex: &Example, client: Option<&str>) -> Reply {
    let mut req = agent()
        .get(&ex.gw.url("/bff/home/u1"))
        .set("x-api-key", KEY);
    if let Some(client) = client {
        req = req.set("x-client", client);
    }
    call(req)
}

driver_tests! {
    fn the_mobile_app_gets_the_small_home_screen(driver: &str) {
        let ex = start(driver);
        let reply = home(&ex, Some("mobile"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.header("composite-missing").is_none());
        assert_eq!(
            reply.text(),
            concat!(
                r#"{"user":{"name":"Ada Lovelace","tier":"gold"},"#,
                r#""orders":{"orders":["#,
                r#"{"id":"o-1001","status":"shipped","product_id":"p-7","product":{"title":"Mechanical keyboard","thumb":"/img/p-7-64.jpg"}},"#,
                r#"{"id":"o-1002","status":"open","product_id":"p-3","product":{"title":"Notebook","thumb":"/img/p-3-64.jpg"}},"#,
                r#"{"id":"o-1003","status":"delivered","product_id":"p-7","product":{"title":"Mechanical keyboard","thumb":"/img/p-7-64.jpg"}}]},"#,
                r#""reco":{"items":[{"id":"p-9","title":"Desk lamp"},{"id":"p-3","title":"Notebook"}]}}"#,
            )
        );
    }

    fn the_web_site_gets_the_full_home_screen(driver: &str) {
        let ex = start(driver);
        let reply = home(&ex, None);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let v: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(
            v["user"],
            serde_json::json!({"id": "u1", "name": "Ada Lovelace", "email": "ada@example.com",
                               "tier": "gold", "address": {"city": "London"}})
        );
        let orders = v["orders"]["orders"].as_array().expect("orders");
        assert_eq!(orders.len(), 3);
        assert_eq!(v["orders"]["total"], 3);
        for order in orders {
            assert!(order.get("internal_note").is_none(), "{order}");
            let product = &order["product"];
            assert!(product["description"].is_string() && product["price"].is_number(), "{order}");
            assert!(product.get("cost").is_none() && product.get("id").is_none(), "{order}");
        }
        assert_eq!(v["reco"]["items"][0], serde_json::json!({"id": "p-9", "title": "Desk lamp"}));
    }

    fn without_the_key_nothing_is_called(driver: &str) {
        let ex = start(driver);
        let reply = call(agent().get(&ex.gw.url("/bff/home/u1")).set("x-client", "mobile"));
        assert_eq!(reply.status, 401);
        assert!(ex._backends.iter().all(|b| b.requests() == 0));
    }

    fn an_unknown_user_is_a_problem_naming_the_call(driver: &str) {
        let ex = start(driver);
        let reply = call(
            agent()
                .get(&ex.gw.url("/bff/home/nobody"))
                .set("x-api-key", KEY)
                .set("x-client", "mobile"),
        );
        assert_eq!(reply.status, 502);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        let v: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(v["call"], "user");
        assert_eq!(v["reason"], "bad_status");
    }
}
