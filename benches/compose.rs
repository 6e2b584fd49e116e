//! Measures assembling a composite's answer from 3 backend parts of 2 KiB, 16 KiB and
//! 256 KiB each: parse + shape + merge + write (with the exact `Content-Length` computed
//! first), four ways:
//!
//! - `splice`: no field operation; each part is checked for well-formedness and copied
//!   (the fast path);
//! - `lazy_allow`: `allow` of two fields per element of an array, on the lazy tree
//!   (`ringgate::json`, serde_json `RawValue` levels): what composition uses;
//! - `lazy_deny`: `deny` of one nested field, same tree;
//! - `value_deny`: the naive baseline: `serde_json::Value` per part, remove the field,
//!   serialize the merged object.
//!
//! `compose_typical` measures the whole gateway-side cost of a typical composite, loaded from
//! configuration as a route would use it: three calls (a shaped `user` with `allow` and
//! `rename`, `reco` that reads `user.segment`, and a spliced `news`), each answered at once
//! from memory by a stand-in caller: `run` (graph, templates, futures) + `assemble` + write.
//! Everything but the network.
//!
//! `splice_check` measures only the well-formedness check of one part (2 KiB, 16 KiB,
//! 256 KiB; the same documents): `ringgate::json::check`, serde_json `IgnoredAny`
//! (docs/composition.md, "Performance", has the SIMD candidates it was compared with).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringgate::compose::assemble::assemble as assemble_composite;
use ringgate::compose::run::{run, Caller, Inputs, Reason, Reply, Request};
use ringgate::compose::Composite;
use ringgate::config::RouteAction;
use ringgate::json::{check, encoded_len, write, Key, Node, Shape, ShapeSpec};

/// A JSON object of about `size` bytes: `{"items": [{...}, ...], "total": N}`.
fn document(size: usize) -> String {
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < size {
        let item = format!(
            r#"{{"id": {i}, "name": "item number {i}", "email": "user{i}@example.com", "price": {}.5, "tags": ["a", "b"], "meta": {{"created": "2026-01-01", "secret": "s{i}"}}}}"#,
            i * 3
        );
        len += item.len() + 2;
        items.push(item);
        i += 1;
    }
    format!(r#"{{"items": [{}], "total": {i}}}"#, items.join(", "))
}

fn assemble<'a>(parts: &'a [String], shape: Option<&'a Shape>, out: &mut Vec<u8>) {
    let names = ["a", "b", "c"];
    let mut members = Vec::with_capacity(3);
    for (name, part) in names.iter().zip(parts) {
        let text = check(part.as_bytes()).expect("well-formed");
        let node = match shape {
            None => Node::Raw(text),
            Some(shape) => shape.apply(Node::new(text)).expect("shaped"),
        };
        members.push((Key::Raw(name), node));
    }
    let root = Node::Object(members);
    out.clear();
    out.reserve(encoded_len(&root));
    write(&root, out);
}

fn value_baseline(parts: &[String], out: &mut Vec<u8>) {
    let mut root = serde_json::Map::new();
    for (name, part) in ["a", "b", "c"].iter().zip(parts) {
        let mut v: serde_json::Value = serde_json::from_str(part).expect("JSON");
        if let Some(items) = v.get_mut("items").and_then(|i| i.as_array_mut()) {
            for item in items {
                if let Some(meta) = item.get_mut("meta").and_then(|m| m.as_object_mut()) {
                    meta.remove("secret");
                }
            }
        }
        root.insert(name.to_string(), v);
    }
    out.clear();
    serde_json::to_writer(&mut *out, &root).expect("serializable");
}

fn bench(c: &mut Criterion) {
    let allow = vec!["items.id".to_string(), "items.name".to_string()];
    let deny = vec!["items.meta.secret".to_string()];
    let allow_shape = Shape::compile(&ShapeSpec {
        allow: &allow,
        ..Default::default()
    })
    .expect("valid");
    let deny_shape = Shape::compile(&ShapeSpec {
        deny: &deny,
        ..Default::default()
    })
    .expect("valid");
    let mut group = c.benchmark_group("compose_3_parts");
    for size in [2 * 1024, 16 * 1024, 256 * 1024] {
        let parts: Vec<String> = (0..3).map(|_| document(size)).collect();
        let total: usize = parts.iter().map(String::len).sum();
        group.throughput(Throughput::Bytes(total as u64));
        let mut out = Vec::new();
        let label = format!("{}KiB", size / 1024);
        group.bench_with_input(BenchmarkId::new("splice", &label), &parts, |b, p| {
            b.iter(|| assemble(black_box(p), None, &mut out))
        });
        group.bench_with_input(BenchmarkId::new("lazy_allow", &label), &parts, |b, p| {
            b.iter(|| assemble(black_box(p), Some(&allow_shape), &mut out))
        });
        group.bench_with_input(BenchmarkId::new("lazy_deny", &label), &parts, |b, p| {
            b.iter(|| assemble(black_box(p), Some(&deny_shape), &mut out))
        });
        group.bench_with_input(BenchmarkId::new("value_deny", &label), &parts, |b, p| {
            b.iter(|| value_baseline(black_box(p), &mut out))
        });
    }
    group.finish();
}

fn bench_splice_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("splice_check");
    for size in [2 * 1024, 16 * 1024, 256 * 1024] {
        let part = document(size);
        group.throughput(Throughput::Bytes(part.len() as u64));
        let label = format!("{}KiB", size / 1024);
        assert!(ringgate::json::check(part.as_bytes()).is_ok());
        group.bench_with_input(
            BenchmarkId::new("serde_json_ignored_any", &label),
            &part,
            |b, p| b.iter(|| ringgate::json::check(black_box(p.as_bytes())).is_ok()),
        );
    }
    group.finish();
}

const TYPICAL: &str = r#"
[[upstreams]]
name = "u"
targets = [{ addr = "127.0.0.1:1" }]

[[routes]]
name = "home"
match = { path = "/home/{user}" }
compose = "home"

[composites.home]
[[composites.home.calls]]
name = "user"
upstream = "u"
path = "/users/{user}"
required = true
allow = ["id", "name", "segment", "address.city"]
rename = { segment = "tier" }

[[composites.home.calls]]
name = "reco"
upstream = "u"
path = "/reco?tier={user.segment}"

[[composites.home.calls]]
name = "news"
upstream = "u"
path = "/news"
"#;

/// Answers every call at once from memory, by path.
struct Memory {
    user: Bytes,
    reco: Bytes,
    news: Bytes,
}

impl Caller for Memory {
    async fn call(&self, request: Request<'_>) -> Result<Reply, Reason> {
        let body = if request.target.starts_with("/users/") {
            &self.user
        } else if request.target.starts_with("/reco") {
            &self.reco
        } else {
            &self.news
        };
        Ok(Reply {
            status: 200,
            body: body.clone(),
            cache_control: None,
        })
    }
}

fn typical_composite() -> Arc<Composite> {
    let snapshot = ringgate::config::load_str(TYPICAL, "bench.toml").expect("valid config");
    match &snapshot.router.get(0).expect("one route").action {
        RouteAction::Compose(action) => Arc::clone(&action.composite),
        _ => panic!("a compose route"),
    }
}

fn bench_typical(c: &mut Criterion) {
    let plan = typical_composite();
    let mut user = document(2 * 1024);
    // A user document: the fields the shaping reads, then 2 KiB of others.
    user.insert_str(
        1,
        r#""id": 7, "name": "Ada", "segment": "gold", "address": {"city": "Paris", "zip": "75001"}, "#,
    );
    let caller = Memory {
        user: Bytes::from(user),
        reco: Bytes::from(document(2 * 1024)),
        news: Bytes::from(document(2 * 1024)),
    };
    let no_header = |_: &str| -> Option<&[u8]> { None };
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    let mut group = c.benchmark_group("compose_typical");
    group.throughput(Throughput::Elements(1));
    group.bench_function("3_calls_2KiB_run_assemble_write", |b| {
        b.iter(|| {
            let inputs = Inputs {
                params: vec!["7"],
                query: None,
                header: &no_header,
                consumer: None,
                body: Bytes::new(),
            };
            let outcome = rt.block_on(run(&plan, &inputs, &caller, Instant::now()));
            let assembled = assemble_composite(&plan, &outcome).expect("assembled");
            assert!(assembled.missing.is_empty());
            out.clear();
            out.reserve(encoded_len(&assembled.root));
            write(&assembled.root, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_typical, bench_splice_check);
criterion_main!(benches);
