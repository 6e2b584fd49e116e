//! Allocations per request on a route whose `validate` policy checks a ~500-byte JSON body,
//! for a passing request on a warm keep-alive connection: the body is buffered into the
//! connection's reused buffer (`proxy::request_body`), parsed into a `serde_json::Value`
//! (the instance jsonschema validates), checked, and forwarded. Only the parse and the one
//! keyword that allocates (`format: email`, one per checked address) may cost allocations:
//! the test measures both in-process on the same body and requires the gateway to cost no
//! more than their sum per request (buffering, the rest of the check and forwarding add
//! nothing). The plain route stays at 0.00. Same measurement as `allocations.rs`.

mod contract_fixture;
mod counting_alloc;
mod fixed_backend;

use contract_fixture::{BODY, SCHEMA};
use ringgate::policy::validate::Schema;
use serde_json::Value;

fn chain() -> String {
    format!(
        "policies = [\"contract\"]\n[policies.contract]\nkind = \"validate\"\nbody_schema = '''{SCHEMA}'''\n"
    )
}

fn request() -> Vec<u8> {
    format!(
        "POST /users HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// Allocations of one parse of [`BODY`] into a `Value` (averaged, after a warm-up).
fn parse_allocations() -> f64 {
    let runs = 100;
    let _warm: Value = serde_json::from_slice(BODY.as_bytes()).expect("body is JSON");
    let before = counting_alloc::allocations();
    for _ in 0..runs {
        let value: Value = serde_json::from_slice(BODY.as_bytes()).expect("body is JSON");
        drop(value);
    }
    (counting_alloc::allocations() - before) as f64 / runs as f64
}

/// Allocations of one passing `is_valid` of the parsed body against `schema` (warmed up).
fn check_allocations(schema: &Value) -> f64 {
    let schema = Schema::compile(schema, None).expect("schema compiles");
    let instance: Value = serde_json::from_slice(BODY.as_bytes()).expect("body is JSON");
    assert!(schema.is_valid(&instance), "the body must pass the schema");
    let runs = 100;
    let before = counting_alloc::allocations();
    for _ in 0..runs {
        assert!(schema.is_valid(&instance));
    }
    (counting_alloc::allocations() - before) as f64 / runs as f64
}

/// One test for both drivers: the allocation counter is process-wide, so the measurements
/// must not overlap.
#[test]
fn a_passing_validated_body_costs_only_its_parse() {
    assert!((450..=550).contains(&BODY.len()), "{} bytes", BODY.len());
    let parse = parse_allocations();
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    let check = check_allocations(&schema);
    println!(
        "parse of the {}-byte body: {parse:.2} allocations",
        BODY.len()
    );
    println!("is_valid on the parsed body: {check:.2} allocations");
    // `format: email` is checked by parsing the address with the email_address crate, which
    // returns an owned address: one allocation per checked value. Every other keyword of the
    // schema allocates nothing on a passing instance.
    let mut without_email = schema.clone();
    without_email["properties"]["email"] = serde_json::json!({ "type": "string" });
    let rest = check_allocations(&without_email);
    println!("is_valid without `format: email`: {rest:.2} allocations");
    assert!(
        rest <= counting_alloc::BUDGET,
        "is_valid allocates {rest} without email"
    );
    assert!(
        check - rest <= 1.0 + counting_alloc::BUDGET,
        "one email costs {}",
        check - rest
    );
    let (chain, request) = (chain(), request());
    for driver in ["io_uring", "legacy"] {
        let plain = counting_alloc::per_proxied_request(driver, "");
        println!("{driver}, plain route: {plain:.2} allocations per proxied request");
        assert!(plain <= counting_alloc::BUDGET, "plain route: {plain}");
        let validated = counting_alloc::per_proxied_request_sending(driver, &chain, &request);
        println!("{driver}, validated body: {validated:.2} allocations per proxied request");
        assert!(
            validated - parse - check <= counting_alloc::BUDGET,
            "{driver}: {validated} allocations per request; parse {parse} and check {check}"
        );
    }
}
