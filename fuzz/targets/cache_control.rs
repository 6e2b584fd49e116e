//! The response cache's readers of untrusted fields: `Cache-Control` on requests and
//! responses, HTTP dates, and the freshness rules fed by them (RFC 9111). No panic, and:
//! - a directive repeated in a second field never loosens what the first said (the
//!   smallest lifetime wins, flags stay set);
//! - a date that parses is written back (IMF-fixdate) to the same instant;
//! - `no-cache` on either side always means revalidation; a stored response is only ever
//!   `Fresh` while its age is under its lifetime.

use ringgate::cache::control::{RequestDirectives, ResponseDirectives};
use ringgate::cache::date::{format_http_date, parse_http_date};
use ringgate::cache::rules::{freshness_lifetime, usable, Dates, Freshness, Use};

pub fn run(data: &[u8]) {
    // First byte: where the request's field ends; second: the status; the rest: the fields.
    let [cut, status, rest @ ..] = data else {
        return;
    };
    let cut = usize::from(*cut).min(rest.len());
    let (request_field, response_field) = rest.split_at(cut);

    let mut request = RequestDirectives::default();
    request.add(request_field);
    let mut response = ResponseDirectives::default();
    response.add(response_field);
    repeated_fields_never_loosen(&response, response_field);

    let date = parse_http_date(response_field);
    if let Some(t) = date {
        let written = format_http_date(t);
        assert_eq!(parse_http_date(written.as_bytes()), Some(t), "{written}");
    }
    let dates = Dates {
        date,
        expires: Some(parse_http_date(request_field)),
        last_modified: date.map(|t| t / 2),
        response_time: date.unwrap_or(0),
    };
    let status =
        [200, 203, 204, 206, 301, 404, 405, 410, 414, 500, 501, 502][usize::from(*status % 12)];
    let lifetime = freshness_lifetime(status, &response, &dates, 0);
    let freshness = Freshness::of(&response, lifetime);
    for age in [
        0,
        lifetime / 2,
        lifetime,
        lifetime.saturating_add(1),
        u64::MAX,
    ] {
        let decision = usable(&freshness, age, &request);
        if request.no_cache || response.no_cache {
            assert_eq!(decision, Use::Revalidate);
        }
        if decision == Use::Fresh {
            assert!(age < lifetime, "fresh at age {age} of lifetime {lifetime}");
        }
        let _ = freshness.serves_on_error(age);
    }
}

fn repeated_fields_never_loosen(once: &ResponseDirectives, field: &[u8]) {
    let mut twice = *once;
    twice.add(field);
    assert_eq!(twice.no_store, once.no_store);
    assert_eq!(twice.private, once.private);
    assert_eq!(twice.max_age, once.max_age);
    assert_eq!(twice.s_maxage, once.s_maxage);
    let mut more = *once;
    more.add(b"max-age=0");
    assert_eq!(more.max_age, Some(0));
    assert!(more.no_store == once.no_store && more.no_cache == once.no_cache);
}
