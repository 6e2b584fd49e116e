//! Executor helpers; the executor itself runs against real sockets in tests/compose.rs.

use super::*;

#[test]
fn distinct_keeps_first_appearance_and_skips_non_scalars() {
    let raw: Vec<Box<str>> = ["\"p1\"", "2", "\"p1\"", "null", "{}", "\"2\"", "true"]
        .into_iter()
        .map(Box::from)
        .collect();
    let found = distinct(&raw);
    let got: Vec<&str> = found.iter().map(|b| &**b).collect();
    assert_eq!(got, ["p1", "2", "true"]);
}

#[test]
fn batch_targets_append_an_encoded_list() {
    let values: Vec<Box<str>> = ["a b", "c,d", "3"].into_iter().map(Box::from).collect();
    assert_eq!(batch_target("/p", "ids", &values), "/p?ids=a%20b,c%2Cd,3");
    assert_eq!(batch_target("/p?x=1", "ids", &values[2..]), "/p?x=1&ids=3");
}

#[test]
fn query_values_are_found_by_exact_name() {
    assert_eq!(query_value("a=1&ab=2&b", "ab"), Some("2"));
    assert_eq!(query_value("a=1&ab=2&b", "b"), Some(""));
    assert_eq!(query_value("a=1", "c"), None);
}

#[test]
fn reasons_have_fixed_labels() {
    assert_eq!(Reason::Status(503).label(), "bad_status");
    assert_eq!(Reason::Timeout.label(), "timeout");
}
