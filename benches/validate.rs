//! The per-request cost of a `validate` policy's body rule on a ~500-byte JSON body against a
//! typical schema (`tests/contract_fixture`): the whole check as the gateway runs it
//! (`Chain::check_body`: media type, parse into a `serde_json::Value`, `is_valid`), its two
//! parts alone, and a failing body (which pays for the violation list).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringgate::config::load_str;
use ringgate::metrics::WorkerMetrics;
use ringgate::policy::validate::Schema;
use serde_json::Value;

#[path = "../tests/contract_fixture/mod.rs"]
mod contract_fixture;

use contract_fixture::{BODY, SCHEMA};

/// The body with four violations (bad uuid, empty name, age out of range, bad zip).
fn failing_body() -> String {
    BODY.replace("3fa85f64-5717", "not-a-uuid")
        .replace("\"Ann Example\"", "\"\"")
        .replace("\"age\":34", "\"age\":340")
        .replace("\"12345\"", "\"1234x\"")
}

fn validate(c: &mut Criterion) {
    let config = format!(
        r#"
[[upstreams]]
name = "u"
targets = [{{ addr = "127.0.0.1:1" }}]
[[routes]]
name = "r"
upstream = "u"
policies = ["contract"]
[policies.contract]
kind = "validate"
body_schema = '''{SCHEMA}'''
"#
    );
    let snapshot = match load_str(&config, "bench") {
        Ok(s) => s,
        Err(e) => panic!("bench config: {e}"),
    };
    let route = snapshot.router.get(0).expect("route");
    let metrics = WorkerMetrics::new(0);
    let json = Some(&b"application/json"[..]);
    let body = BODY.as_bytes();
    let failing = failing_body();

    let mut group = c.benchmark_group("validate_body_500B");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("check_body", |b| {
        b.iter(|| {
            let result = route.policies.check_body(json, black_box(body), &metrics);
            assert!(result.is_ok());
        })
    });
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(body)).expect("JSON");
            value
        })
    });
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema JSON");
    let schema = Schema::compile(&schema, None).expect("schema compiles");
    let instance: Value = serde_json::from_slice(body).expect("JSON");
    group.bench_function("is_valid_only", |b| {
        b.iter(|| assert!(schema.is_valid(black_box(&instance))))
    });
    group.bench_function("check_body_failing", |b| {
        b.iter(|| {
            let result = route
                .policies
                .check_body(json, black_box(failing.as_bytes()), &metrics);
            match result {
                Err(denial) => denial.violations.len(),
                Ok(()) => panic!("the failing body passed"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
