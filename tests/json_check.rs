//! The splice fast path's well-formedness check (`ringgate::json::check`, serde_json
//! `IgnoredAny`) on a table of well-formed and malformed bodies: exactly one JSON value in
//! UTF-8 with nothing but JSON white space around it. The same table chose the check: SIMD
//! candidates that gave another verdict on any of these bodies were ruled out
//! (docs/composition.md, "Performance"), so a replacement must pass it unchanged.

/// `depth` nested arrays around `1`.
fn nested(depth: usize) -> Vec<u8> {
    let mut v = "[".repeat(depth).into_bytes();
    v.push(b'1');
    v.extend("]".repeat(depth).bytes());
    v
}

/// (name, body, the check's verdict).
fn table() -> Vec<(&'static str, Vec<u8>, bool)> {
    let b = |s: &[u8]| s.to_vec();
    vec![
        // Well-formed.
        (
            "object",
            b(br#"{"a": 1, "b": [true, false, null], "c": {"d": "e"}}"#),
            true,
        ),
        ("scalar number", b(b"42"), true),
        ("scalar string", b(br#""x""#), true),
        ("literals", b(b"[true,false,null]"), true),
        (
            "surrounding white space",
            b(b" \t\r\n{\"a\": 1}\n\r\t "),
            true,
        ),
        (
            "numbers",
            b(b"[0, -0, 1.5, -1.5e10, 2E-3, 1e+2, 18446744073709551615, -9223372036854775808]"),
            true,
        ),
        (
            "integer beyond 64 bits",
            b(b"123456789012345678901234567890"),
            true,
        ),
        ("huge exponent", b(b"1e400"), true),
        (
            "escapes",
            b(br#""\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00""#),
            true,
        ),
        ("lone high surrogate escape", b(br#""\ud800""#), true),
        ("lone low surrogate escape", b(br#""\udc00 x""#), true),
        (
            "UTF-8 text",
            b("\"héllo wörld 😀 — ünïcödé long enough to pass a SIMD lane\"".as_bytes()),
            true,
        ),
        ("duplicate keys", b(br#"{"a": 1, "a": 2}"#), true),
        ("depth 100", nested(100), true),
        (
            "long string",
            format!("\"{}\"", "a".repeat(1000)).into_bytes(),
            true,
        ),
        // Empty.
        ("empty", b(b""), false),
        ("white space only", b(b" \n "), false),
        // Truncated.
        ("truncated object", b(br#"{"a": 1"#), false),
        ("truncated array", b(b"[1, 2"), false),
        ("truncated string", b(br#""abc"#), false),
        (
            "truncated long string",
            format!("\"{}", "a".repeat(100)).into_bytes(),
            false,
        ),
        ("truncated literal", b(b"tru"), false),
        ("truncated escape", b(br#""\u00"#), false),
        ("truncated after key", b(br#"{"a""#), false),
        ("truncated after colon", b(br#"{"a":"#), false),
        ("truncated number", b(b"-"), false),
        // Trailing garbage.
        ("two values", b(b"{} {}"), false),
        ("trailing comma text", b(b"{\"a\":1},"), false),
        ("trailing letter", b(b"1 x"), false),
        ("trailing NUL", b(b"{}\0"), false),
        ("trailing form feed", b(b"{}\x0c"), false),
        ("leading form feed", b(b"\x0c{}"), false),
        (
            "trailing non-breaking space",
            b("{}\u{a0}".as_bytes()),
            false,
        ),
        ("html", b(b"<html>"), false),
        // Syntax.
        ("missing value", b(br#"{"a":}"#), false),
        ("trailing comma in array", b(b"[1,]"), false),
        ("trailing comma in object", b(br#"{"a":1,}"#), false),
        ("missing comma", b(b"[1 2]"), false),
        ("missing colon", b(br#"{"a" 1}"#), false),
        ("unquoted key", b(b"{a: 1}"), false),
        ("single quotes", b(b"'a'"), false),
        ("comment", b(b"[1 /* c */]"), false),
        ("NaN", b(b"NaN"), false),
        ("Infinity", b(b"[Infinity]"), false),
        ("leading zero", b(b"01"), false),
        ("leading plus", b(b"+1"), false),
        ("bare dot", b(b".5"), false),
        ("dot without digits", b(b"1."), false),
        ("exponent without digits", b(b"1e"), false),
        ("exponent sign only", b(b"1e+"), false),
        ("minus without digits", b(b"-a"), false),
        ("hex number", b(b"0x10"), false),
        ("wrong literal", b(b"nul"), false),
        ("literal case", b(b"True"), false),
        ("mismatched brackets", b(b"[1}"), false),
        ("extra closing", b(b"[1]]"), false),
        ("object key not a string", b(b"{1: 2}"), false),
        // Strings.
        ("bad escape", b(br#""\x""#), false),
        ("bad unicode escape", b(br#""\u12g4""#), false),
        ("non-hex unicode escape", b(br#""\uzzzz""#), false),
        ("short unicode escape", b(br#""\u12""#), false),
        ("escaped single quote", b(br#""\'""#), false),
        ("raw control character", b(b"\"a\x01b\""), false),
        ("raw newline in string", b(b"\"a\nb\""), false),
        ("raw tab in string", b(b"\"a\tb\""), false),
        (
            "raw control in long string",
            format!("\"{}\x1f{}\"", "a".repeat(40), "b".repeat(40)).into_bytes(),
            false,
        ),
        // UTF-8.
        ("invalid UTF-8 byte", b(b"\xff"), false),
        ("invalid UTF-8 in string", b(b"\"a\xffb\""), false),
        (
            "invalid UTF-8 in long string",
            {
                let mut v = format!("\"{}", "a".repeat(40)).into_bytes();
                v.extend(b"\xc3\x28");
                v.extend(format!("{}\"", "b".repeat(40)).bytes());
                v
            },
            false,
        ),
        ("overlong UTF-8", b(b"\"\xc0\xaf\""), false),
        ("UTF-8 surrogate", b(b"\"\xed\xa0\x80\""), false),
        ("truncated UTF-8", b(b"\"\xe2\x82\""), false),
        ("invalid UTF-8 in key", b(b"{\"\xfe\": 1}"), false),
        ("invalid UTF-8 after value", b(b"{} \xff"), false),
        ("UTF-8 BOM", b(b"\xef\xbb\xbf{}"), false),
        // Deep nesting: serde_json's `IgnoredAny` skips iteratively, without its recursion
        // limit (128), so today's check accepts any depth.
        ("depth 129", nested(129), true),
        ("depth 100000", nested(100_000), true),
        (
            "depth 100000 objects",
            {
                let mut v = r#"{"a":"#.repeat(100_000).into_bytes();
                v.push(b'1');
                v.extend("}".repeat(100_000).bytes());
                v
            },
            true,
        ),
        (
            "depth 100000 unclosed",
            nested(100_000)[..100_001].to_vec(),
            false,
        ),
    ]
}

#[test]
fn the_check_accepts_one_json_value_and_refuses_everything_else() {
    let wrong: Vec<_> = table()
        .into_iter()
        .filter(|(_, body, expected)| ringgate::json::check(body).is_ok() != *expected)
        .map(|(name, _, expected)| (name, expected))
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong verdicts (name, expected): {wrong:?}"
    );
}
