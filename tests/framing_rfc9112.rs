//! Differential check of the HTTP/1.1 framing decisions against RFC 9112.
//!
//! A generated set of request heads (every combination of version, `Host` fields,
//! `Content-Length` fields and `Transfer-Encoding` fields from the lists below, plus the
//! whitespace and line-ending cases) and of chunked bodies (size spellings, chunk extensions,
//! line endings, trailers) goes through the gateway's parser; a model written from the RFC's
//! text decides, for each, what the RFC requires or permits: a required answer (accept with
//! this body length, or reject with this status), or a choice (accept or reject). The
//! gateway must land inside what the RFC allows, and wherever it takes the stricter side of a
//! choice (or accepts what the grammar does not have), the case must fall into one of the
//! documented categories below, each listed with its reason in docs/security.md
//! ("HTTP/1.1 framing"). A new divergence fails the test until it is documented.

use std::collections::BTreeMap;

use ringgate::http::{parse_request, BodyFraming, ChunkedDecoder, HeadLimits};

/// Where the gateway is deliberately stricter than RFC 9112 requires (it rejects what the
/// RFC lets a recipient accept), or deliberately lenient (it accepts, ignoring them, bytes the
/// grammar does not have). The reasons are in docs/security.md.
const DOCUMENTED: &[&str] = &[
    // Heads.
    "cl-and-te: Content-Length beside Transfer-Encoding is rejected (RFC 9112 §6.1 MAY)",
    "cl-list: a Content-Length list of identical values is rejected (RFC 9110 §8.6 MAY)",
    "te-chunked-twice: chunked applied twice is rejected (RFC 9112 §6.1 MUST NOT send)",
    "te-parameters: chunked with parameters is rejected (no parameters are defined for it)",
    "obs-fold: a folded field line is rejected, not unfolded (RFC 9112 §5.2 permits both)",
    "bare-lf: a bare LF line end is rejected (RFC 9112 §2.2 MAY accept)",
    // Chunked bodies.
    "chunk-bws: whitespace around ; or = in chunk extensions is rejected (RFC 9112 §7.1.1 BWS)",
    "chunk-size-digits: chunk sizes of more than 16 hex digits are rejected",
    "chunk-ext-syntax: chunk extension bytes outside the grammar are accepted and ignored",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accept(BodyFraming),
    Reject(u16),
}

/// What the RFC says about one message.
#[derive(Debug, Clone, Copy)]
enum Rfc {
    /// Exactly this.
    Requires(Outcome),
    /// Either, the recipient's choice; the gateway's choice when it rejects is the category.
    Permits {
        accept: Outcome,
        reject: u16,
        category: &'static str,
    },
}

/// Records and checks divergences.
#[derive(Default)]
struct Check {
    cases: usize,
    divergences: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Check {
    fn compare(&mut self, what: &str, rfc: Rfc, got: Outcome) {
        self.cases += 1;
        match rfc {
            Rfc::Requires(want) if want == got => {}
            Rfc::Requires(want) => self.failures.push(format!(
                "{what}: RFC 9112 requires {want:?}, the gateway gave {got:?}"
            )),
            Rfc::Permits { accept, .. } if got == accept => {}
            Rfc::Permits {
                reject, category, ..
            } if got == Outcome::Reject(reject) => self.diverge(what, category),
            Rfc::Permits { accept, reject, .. } => self.failures.push(format!(
                "{what}: RFC 9112 permits {accept:?} or Reject({reject}), the gateway gave {got:?}"
            )),
        }
    }

    fn diverge(&mut self, what: &str, category: &'static str) {
        if DOCUMENTED.iter().any(|d| d.starts_with(category)) {
            *self.divergences.entry(category).or_default() += 1;
        } else {
            self.failures
                .push(format!("{what}: undocumented divergence {category}"));
        }
    }

    fn finish(self, name: &str) {
        eprintln!("{name}: {} cases, divergences by category:", self.cases);
        for (category, n) in &self.divergences {
            eprintln!("  {category}: {n}");
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} cases outside RFC 9112:\n{}",
            self.failures.len(),
            self.cases,
            self.failures.join("\n")
        );
    }
}

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 16 * 1024,
    max_headers: 64,
    max_uri_bytes: 4096,
};

fn outcome(raw: &[u8]) -> Outcome {
    let mut headers = Vec::new();
    match parse_request(raw, &LIMITS, &mut headers) {
        Ok(Some(head)) => Outcome::Accept(head.framing),
        Ok(None) => panic!("incomplete head: {:?}", String::from_utf8_lossy(raw)),
        Err(e) => Outcome::Reject(e.status()),
    }
}

/// Content-Length field sets: the values, one field each.
const CONTENT_LENGTHS: &[&[&str]] = &[
    &[],
    &["5"],
    &["0"],
    &["05"],
    &["5", "5"],
    &["5", "05"],
    &["5", "6"],
    &["5, 5"],
    &["5,6"],
    &["+5"],
    &["-1"],
    &["0x5"],
    &[""],
    &["five"],
    &["5 5"],
    &["18446744073709551615"],
    &["18446744073709551616"],
];

/// Transfer-Encoding field sets: the values, one field each.
const TRANSFER_ENCODINGS: &[&[&str]] = &[
    &[],
    &["chunked"],
    &["CHUNKED"],
    &["\tchunked"],
    &["gzip, chunked"],
    &["gzip", "chunked"],
    &["chunked, gzip"],
    &["chunked, chunked"],
    &["chunked", "chunked"],
    &["identity"],
    &[""],
    &[", chunked"],
    &["chunked;q=1"],
    &["gzip"],
];

/// RFC 9110 §8.6 / RFC 9112 §6.3 rules 5 and 6 on the Content-Length fields alone.
fn content_length_rule(values: &[&str]) -> Rfc {
    if values.is_empty() {
        return Rfc::Requires(Outcome::Accept(BodyFraming::None));
    }
    // The fields form one list; each element 1*DIGIT.
    let elements: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !elements
        .iter()
        .all(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
    {
        return Rfc::Requires(Outcome::Reject(400));
    }
    let numbers: Vec<Option<u64>> = elements.iter().map(|e| e.parse().ok()).collect();
    let Some(n) = numbers[0] else {
        // Larger than the gateway can count: the RFC expects recipients to guard.
        return Rfc::Permits {
            accept: Outcome::Reject(400),
            reject: 400,
            category: "cl-overflow",
        };
    };
    if numbers.iter().any(|m| *m != Some(n)) {
        return Rfc::Requires(Outcome::Reject(400));
    }
    let framing = if n == 0 {
        BodyFraming::None
    } else {
        BodyFraming::Length(n)
    };
    if values.iter().any(|v| v.contains(',')) {
        // "a recipient MAY either reject the message as invalid or replace the duplicated
        // field values with a single valid Content-Length field".
        return Rfc::Permits {
            accept: Outcome::Accept(framing),
            reject: 400,
            category: "cl-list",
        };
    }
    Rfc::Requires(Outcome::Accept(framing))
}

/// RFC 9112 §6.1 and §6.3 rule 4 on a request with Transfer-Encoding.
fn transfer_encoding_rule(http10: bool, values: &[&str], with_cl: bool) -> Rfc {
    if http10 {
        // "MUST treat the message as if the framing is faulty".
        return Rfc::Requires(Outcome::Reject(400));
    }
    let codings: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let last_chunked = codings.last().is_some_and(|c| c == "chunked");
    if !last_chunked {
        let with_params = codings.last().is_some_and(|c| c.starts_with("chunked;"));
        if with_params {
            return Rfc::Permits {
                accept: Outcome::Accept(BodyFraming::Chunked),
                reject: 400,
                category: "te-parameters",
            };
        }
        // "the server MUST respond with the 400 (Bad Request) status code".
        return Rfc::Requires(Outcome::Reject(400));
    }
    let (accept, reject, category) = if codings.iter().filter(|c| *c == "chunked").count() > 1 {
        (
            Outcome::Accept(BodyFraming::Chunked),
            400,
            "te-chunked-twice",
        )
    } else if codings.len() > 1 {
        // Codings the gateway does not implement: "SHOULD respond with 501".
        (Outcome::Reject(501), 501, "te-codings")
    } else {
        (Outcome::Accept(BodyFraming::Chunked), 400, "")
    };
    if with_cl {
        // "MAY reject ... or process such a request in accordance with the
        // Transfer-Encoding alone".
        return Rfc::Permits {
            accept,
            reject: 400,
            category: "cl-and-te",
        };
    }
    if category.is_empty() || accept == Outcome::Reject(reject) {
        return Rfc::Requires(accept);
    }
    Rfc::Permits {
        accept,
        reject,
        category,
    }
}

fn head(version: &str, hosts: usize, cl: &[&str], te: &[&str]) -> String {
    let mut raw = format!("POST /upload HTTP/{version}\r\n");
    for _ in 0..hosts {
        raw.push_str("Host: example.com\r\n");
    }
    for v in cl {
        raw.push_str(&format!("Content-Length: {v}\r\n"));
    }
    for v in te {
        raw.push_str(&format!("Transfer-Encoding: {v}\r\n"));
    }
    raw.push_str("\r\n");
    raw
}

#[test]
fn request_framing_agrees_with_rfc_9112() {
    let mut check = Check::default();
    for version in ["1.0", "1.1"] {
        for hosts in 0..=2 {
            for cl in CONTENT_LENGTHS {
                for te in TRANSFER_ENCODINGS {
                    let raw = head(version, hosts, cl, te);
                    let http10 = version == "1.0";
                    // RFC 9112 §3.2: no Host on HTTP/1.1, or several on any version: 400.
                    let rfc = if (!http10 && hosts == 0) || hosts > 1 {
                        Rfc::Requires(Outcome::Reject(400))
                    } else if te.is_empty() {
                        content_length_rule(cl)
                    } else {
                        // With Transfer-Encoding, Content-Length is ignored or refused; a
                        // malformed one is refused either way (rule 6 is about its framing).
                        match (content_length_rule(cl), cl.is_empty()) {
                            (Rfc::Requires(Outcome::Reject(_)), false) => {
                                Rfc::Requires(Outcome::Reject(400))
                            }
                            _ => transfer_encoding_rule(http10, te, !cl.is_empty()),
                        }
                    };
                    check.compare(&format!("{raw:?}"), rfc, outcome(raw.as_bytes()));
                }
            }
        }
    }
    // Whitespace and line endings.
    let cases: &[(&str, Rfc)] = &[
        // §5.1: "No whitespace is allowed between the field name and colon ... MUST reject".
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            Rfc::Requires(Outcome::Reject(400)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            Rfc::Requires(Outcome::Reject(400)),
        ),
        // OWS around the value is not part of it.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:   5  \r\n\r\n",
            Rfc::Requires(Outcome::Accept(BodyFraming::Length(5))),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:chunked\t\r\n\r\n",
            Rfc::Requires(Outcome::Accept(BodyFraming::Chunked)),
        ),
        // Field names are case-insensitive.
        (
            "POST / HTTP/1.1\r\nHost: a\r\ntRANSFER-eNCODING: chunked\r\n\r\n",
            Rfc::Requires(Outcome::Accept(BodyFraming::Chunked)),
        ),
        // A look-alike name is another field.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n",
            Rfc::Requires(Outcome::Accept(BodyFraming::None)),
        ),
        // §5.2: obs-fold: reject, or replace with SP.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n",
            Rfc::Permits {
                accept: Outcome::Reject(501),
                reject: 400,
                category: "obs-fold",
            },
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\nContent-Length: 5\r\n\r\n",
            Rfc::Permits {
                accept: Outcome::Accept(BodyFraming::Length(5)),
                reject: 400,
                category: "obs-fold",
            },
        ),
        // §2.2: a bare LF MAY be taken as a line end.
        (
            "POST / HTTP/1.1\nHost: a\nContent-Length: 5\n\n",
            Rfc::Permits {
                accept: Outcome::Accept(BodyFraming::Length(5)),
                reject: 400,
                category: "bare-lf",
            },
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\n\r\n",
            Rfc::Permits {
                accept: Outcome::Accept(BodyFraming::Length(5)),
                reject: 400,
                category: "bare-lf",
            },
        ),
    ];
    for (raw, rfc) in cases {
        check.compare(&format!("{raw:?}"), *rfc, outcome(raw.as_bytes()));
    }
    check.finish("request heads");
}

/// Chunk size spellings: (text, value when 1*HEXDIG, whether it has more than 16 digits).
const SIZES: &[(&str, Option<u64>)] = &[
    ("5", Some(5)),
    ("05", Some(5)),
    ("0000000000000005", Some(5)),
    ("00000000000000005", Some(5)),
    ("a", Some(10)),
    ("A", Some(10)),
    ("5 ", None),
    ("+5", None),
    ("0x5", None),
    ("", None),
    ("g", None),
];

/// Chunk extensions: (text, valid per the grammar without BWS, valid with BWS removed).
const EXTENSIONS: &[(&str, bool, bool)] = &[
    ("", true, true),
    (";a", true, true),
    (";a=b", true, true),
    (";a=\"q d\"", true, true),
    (";a;b=c", true, true),
    (" ;a", false, true),
    (";a =b", false, true),
    ("; a", false, true),
    (";a=", false, false),
    (";=b", false, false),
    (";a=\"open", false, false),
    (";a=b c", false, false),
];

const LINE_ENDS: &[&str] = &["\r\n", "\n"];
const DATA_ENDS: &[&str] = &["\r\n", "\n", ""];
/// Trailer sections: (text, valid, valid only if a bare LF may end a line).
const TRAILERS: &[(&str, bool)] = &[
    ("", true),
    ("T: v\r\n", true),
    ("T : v\r\n", false),
    (" x\r\n", false),
];
const FINAL_ENDS: &[&str] = &["\r\n", "\n"];

/// The model's verdict on one generated chunked body: `Some(payload length)` when RFC 9112
/// §7.1 accepts it, with the category the gateway may reject it under.
fn chunked_rule(
    size: (&str, Option<u64>),
    ext: (&str, bool, bool),
    line_end: &str,
    data_end: &str,
    trailer: (&str, bool),
    final_end: &str,
) -> Rfc {
    let reject = Rfc::Requires(Outcome::Reject(400));
    let Some(n) = size.1 else { return reject };
    // Chunk lines end in CRLF (the bare-LF allowance of §2.2 is for the start-line and
    // fields); chunk data is followed by CRLF.
    if line_end != "\r\n" || data_end != "\r\n" || !trailer.1 {
        return reject;
    }
    let accept = Outcome::Accept(BodyFraming::Length(n));
    if final_end != "\r\n" {
        // The end of the trailer section is a field-section line end: a bare LF MAY be one.
        return Rfc::Permits {
            accept,
            reject: 400,
            category: "bare-lf",
        };
    }
    if size.0.len() > 16 {
        return Rfc::Permits {
            accept,
            reject: 400,
            category: "chunk-size-digits",
        };
    }
    match (ext.1, ext.2) {
        (true, _) => Rfc::Requires(accept),
        (false, true) => Rfc::Permits {
            accept,
            reject: 400,
            category: "chunk-bws",
        },
        // Not in the grammar: reject, or (the gateway) ignore like any extension.
        (false, false) => Rfc::Permits {
            accept: Outcome::Reject(400),
            reject: 400,
            category: "",
        },
    }
}

/// The gateway's decoder on `body`: the payload length, or a rejection.
fn decode(body: &[u8]) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut payload = 0u64;
    match decoder.advance(body, &mut |r| payload += r.len() as u64) {
        Ok(p) if p.done && p.consumed == body.len() => {
            Outcome::Accept(BodyFraming::Length(payload))
        }
        Ok(p) => panic!(
            "decoder stopped early ({p:?}) on {:?}",
            String::from_utf8_lossy(body)
        ),
        Err(e) => Outcome::Reject(e.status()),
    }
}

#[test]
fn chunked_decoding_agrees_with_rfc_9112() {
    let mut check = Check::default();
    for &size in SIZES {
        for &ext in EXTENSIONS {
            for &line_end in LINE_ENDS {
                for &data_end in DATA_ENDS {
                    for &trailer in TRAILERS {
                        for &final_end in FINAL_ENDS {
                            let data = "x".repeat(size.1.unwrap_or(5) as usize);
                            let body = format!(
                                "{}{}{line_end}{data}{data_end}0{}{line_end}{}{final_end}",
                                size.0, ext.0, ext.0, trailer.0
                            );
                            let rfc =
                                chunked_rule(size, ext, line_end, data_end, trailer, final_end);
                            let got = decode(body.as_bytes());
                            let rfc = match rfc {
                                // Extensions outside the grammar: the gateway ignores them.
                                Rfc::Permits { category: "", .. }
                                    if matches!(got, Outcome::Accept(_)) =>
                                {
                                    check.diverge(&format!("{body:?}"), "chunk-ext-syntax");
                                    continue;
                                }
                                Rfc::Permits { category: "", .. } => {
                                    Rfc::Requires(Outcome::Reject(400))
                                }
                                other => other,
                            };
                            check.compare(&format!("{body:?}"), rfc, got);
                        }
                    }
                }
            }
        }
    }
    check.finish("chunked bodies");
}
