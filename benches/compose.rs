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

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

criterion_group!(benches, bench);
criterion_main!(benches);
