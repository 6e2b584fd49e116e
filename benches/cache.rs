//! Measures the response cache's hot pieces on one worker: a lookup (URL key built into a
//! reused buffer, hashed, the chain walked with byte comparison, the entry moved to the
//! front of the recency list, its age and usability judged) in a store of 1 and 50,000
//! entries, and a store (an entry published, evicting the least recently used one when the
//! budget is full).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::cache::control::{RequestDirectives, ResponseDirectives};
use ringgate::cache::rules::{self, Freshness};
use ringgate::cache::{Entry, KeyShape, Store};

fn entry(url: &[u8], body: &Bytes) -> Entry {
    let mut directives = ResponseDirectives::default();
    directives.add(b"max-age=600");
    Entry {
        url: url.into(),
        variant: Box::default(),
        vary: Box::default(),
        status: 200,
        fields: b"Content-Type: application/json\r\nCache-Control: max-age=600\r\n"
            .to_vec()
            .into(),
        body: body.clone(),
        freshness: Freshness::of(&directives, 600),
        initial_age: 0,
        stored_at: Instant::now(),
        etag: None,
        last_modified: None,
        tags: Box::default(),
    }
}

fn url_of(shape: &KeyShape, i: u32, out: &mut Vec<u8>) {
    let path = format!("/catalog/items/{i}");
    shape.url_key(b"api.example.com", path.as_bytes(), Some(b"page=1"), out);
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_lookup");
    let shape = KeyShape::default();
    let body = Bytes::from(vec![b'x'; 1024]);
    for entries in [1u32, 50_000] {
        let mut store = Store::new(1 << 30);
        let mut url = Vec::new();
        for i in 0..entries {
            url_of(&shape, i, &mut url);
            let hash = store.hash(&url);
            store.insert(hash, entry(&url, &body)).expect("fits");
        }
        let path = format!("/catalog/items/{}", entries / 2);
        let request = RequestDirectives::default();
        group.bench_with_input(BenchmarkId::from_parameter(entries), &path, |b, path| {
            b.iter(|| {
                shape.url_key(
                    b"api.example.com",
                    path.as_bytes(),
                    Some(b"page=1"),
                    &mut url,
                );
                let hash = store.hash(&url);
                let slot = store.find(hash, &url, b"", |_| true).expect("hit");
                let e = store.get(slot).expect("entry");
                black_box(rules::usable(&e.freshness, e.age(Instant::now()), &request))
            })
        });
    }
    group.finish();
}

fn store(c: &mut Criterion) {
    let shape = KeyShape::default();
    let body = Bytes::from(vec![b'x'; 1024]);
    let one = entry(b"GET\0api.example.com\0/catalog/items/0?page=1", &body).charge();
    // Full at 10,000 entries: every store evicts one.
    let mut store = Store::new(one * 10_000);
    let mut url = Vec::new();
    let mut i = 0u32;
    c.bench_function("cache_store_with_eviction", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            url_of(&shape, i, &mut url);
            let hash = store.hash(&url);
            black_box(store.insert(hash, entry(&url, &body)).is_ok())
        })
    });
}

criterion_group!(benches, lookup, store);
criterion_main!(benches);
