//! Formatting one access-log line into a reused byte buffer, without allocating beyond the
//! buffer's growth: numbers go through `write!` into the `Vec`, strings are escaped by hand.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Line layout, from `access_log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// The Apache/Nginx combined layout with ringgate's fields appended.
    Combined,
}

/// Everything one line says about a finished request. Byte strings are as received.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// When the response finished.
    pub time: SystemTime,
    /// The request id (the client's `x-request-id` or a generated one).
    pub request_id: &'a [u8],
    /// The client's address.
    pub client: SocketAddr,
    /// Request method; empty when no head could be parsed.
    pub method: &'a [u8],
    /// Request target as received (path and query).
    pub path: &'a [u8],
    /// `HTTP/1.1` or `HTTP/1.0`; empty when no head could be parsed.
    pub protocol: &'a [u8],
    /// Response status.
    pub status: u16,
    /// Bytes read from the client (head and body).
    pub bytes_in: u64,
    /// Bytes written to the client (head and body).
    pub bytes_out: u64,
    /// From the head's arrival to the end of the response.
    pub duration: Duration,
    /// The upstream exchange, if there was one.
    pub upstream_duration: Option<Duration>,
    /// The matched route's name; empty when none.
    pub route: &'a str,
    /// The upstream target actually used, if any.
    pub upstream_addr: Option<SocketAddr>,
    /// The upstream group that served the request (the one a split or version rule chose);
    /// empty when none.
    pub upstream: &'a str,
    /// Worker index.
    pub worker: usize,
    /// The W3C trace id (32 hex digits), if a head was parsed.
    pub trace_id: Option<&'a [u8; 32]>,
    /// The `Referer` header (combined format only).
    pub referer: &'a [u8],
    /// The `User-Agent` header (combined format only).
    pub user_agent: &'a [u8],
    /// The consumer a policy authenticated; empty when none.
    pub consumer: &'a [u8],
    /// A composite route's calls that failed, comma-separated; empty (and not written) for
    /// every other request.
    pub failed_calls: &'a [u8],
    /// What the route's cache did (`hit`, `miss`, `stale`, `revalidated`, `bypass`); empty
    /// (and not written) on routes without a cache.
    pub cache: &'a [u8],
}

/// Appends `entry` as one line (ending in `\n`) in `format`.
pub fn write_line(out: &mut Vec<u8>, format: Format, entry: &Entry<'_>) {
    match format {
        Format::Json => write_json(out, entry),
        Format::Combined => write_combined(out, entry),
    }
}

/// `{"time":...,"request_id":...,...}` — see docs/configuration.md for the keys.
pub fn write_json(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339(out, e.time);
    out.extend_from_slice(b"\",\"request_id\":\"");
    json_escape(out, e.request_id);
    let _ = write!(out, "\",\"client\":\"{}\",\"method\":\"", e.client);
    json_escape(out, e.method);
    out.extend_from_slice(b"\",\"path\":\"");
    json_escape(out, e.path);
    let _ = write!(
        out,
        "\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":",
        e.status, e.bytes_in, e.bytes_out
    );
    write_ms(out, e.duration);
    out.extend_from_slice(b",\"upstream_ms\":");
    match e.upstream_duration {
        Some(d) => write_ms(out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"route\":\"");
    json_escape(out, e.route.as_bytes());
    out.extend_from_slice(b"\",\"upstream_addr\":\"");
    write_addr(out, e.upstream_addr);
    out.extend_from_slice(b"\",\"upstream\":\"");
    json_escape(out, e.upstream.as_bytes());
    let _ = write!(out, "\",\"worker\":{},\"consumer\":", e.worker);
    if e.consumer.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        json_escape(out, e.consumer);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"trace_id\":");
    match e.trace_id {
        Some(id) => {
            out.push(b'"');
            out.extend_from_slice(id);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    if !e.failed_calls.is_empty() {
        out.extend_from_slice(b",\"failed_calls\":\"");
        json_escape(out, e.failed_calls);
        out.push(b'"');
    }
    if !e.cache.is_empty() {
        out.extend_from_slice(b",\"cache\":\"");
        json_escape(out, e.cache);
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// `client - consumer [time] "METHOD path PROTO" status bytes "referer" "user-agent"` followed by
/// `request_id="…" duration_ms=… upstream_ms=… route="…" upstream_addr=… upstream="…" worker=…
/// trace_id=…`; a missing value is `-`.
pub fn write_combined(out: &mut Vec<u8>, e: &Entry<'_>) {
    // The authenticated user stands in CLF's third field.
    let _ = write!(out, "{} - ", e.client.ip());
    clf_field(out, e.consumer);
    out.extend_from_slice(b" [");
    write_clf_time(out, e.time);
    out.extend_from_slice(b"] \"");
    if e.method.is_empty() {
        out.push(b'-');
    } else {
        clf_escape(out, e.method);
        out.push(b' ');
        clf_escape(out, e.path);
        out.push(b' ');
        clf_escape(out, e.protocol);
    }
    let _ = write!(out, "\" {} {} \"", e.status, e.bytes_out);
    clf_field(out, e.referer);
    out.extend_from_slice(b"\" \"");
    clf_field(out, e.user_agent);
    out.extend_from_slice(b"\" request_id=\"");
    clf_field(out, e.request_id);
    let _ = write!(out, "\" bytes_in={} duration_ms=", e.bytes_in);
    write_ms(out, e.duration);
    out.extend_from_slice(b" upstream_ms=");
    match e.upstream_duration {
        Some(d) => write_ms(out, d),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" route=\"");
    clf_field(out, e.route.as_bytes());
    out.extend_from_slice(b"\" upstream_addr=");
    write_addr(out, e.upstream_addr);
    out.extend_from_slice(b" upstream=\"");
    clf_field(out, e.upstream.as_bytes());
    let _ = write!(out, "\" worker={} trace_id=", e.worker);
    match e.trace_id {
        Some(id) => out.extend_from_slice(id),
        None => out.push(b'-'),
    }
    if !e.failed_calls.is_empty() {
        out.extend_from_slice(b" failed_calls=\"");
        clf_field(out, e.failed_calls);
        out.push(b'"');
    }
    if !e.cache.is_empty() {
        out.extend_from_slice(b" cache=");
        clf_field(out, e.cache);
    }
    out.push(b'\n');
}

fn write_addr(out: &mut Vec<u8>, addr: Option<SocketAddr>) {
    match addr {
        Some(addr) => {
            let _ = write!(out, "{addr}");
        }
        None => out.push(b'-'),
    }
}

/// Milliseconds with microsecond precision: `12.345`.
fn write_ms(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

/// JSON string contents: `"` and `\` escaped, control bytes as `\u00XX`, other bytes as
/// they are (invalid UTF-8 is kept byte for byte rather than lost).
pub fn json_escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

/// A quoted combined-format field: `-` when empty, else escaped as Nginx does.
fn clf_field(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        out.push(b'-');
    } else {
        clf_escape(out, bytes);
    }
}

/// Nginx-style escaping: `"`, `\`, control bytes and bytes ≥ 0x7f as `\xHH`.
pub fn clf_escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(b"\\x");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A UTC calendar time broken down from the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

fn civil(time: SystemTime) -> Civil {
    // Before the epoch (a badly set clock) is written as the epoch.
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
        millis: since.subsec_millis(),
    }
}

/// RFC 3339 UTC with milliseconds: `2026-11-23T16:32:26.123Z`.
pub fn write_rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    let c = civil(time);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    );
}

/// Common Log Format time: `23/Nov/2026:16:32:26 +0000`.
pub fn write_clf_time(out: &mut Vec<u8>, time: SystemTime) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(time);
    let month = MONTHS[(c.month as usize).saturating_sub(1) % 12];
    let _ = write!(
        out,
        "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day, c.year, c.hour, c.minute, c.second
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(
            text(|o| write_rfc3339(o, at(0, 0))),
            "1970-01-01T00:00:00.000Z"
        );
        // 2000-02-29 (leap day) 12:34:56.789
        assert_eq!(
            text(|o| write_rfc3339(o, at(951_827_696, 789))),
            "2000-02-29T12:34:56.789Z"
        );
        assert_eq!(
            text(|o| write_rfc3339(o, at(1_798_761_599, 999))),
            "2026-12-31T23:59:59.999Z"
        );
        assert_eq!(
            text(|o| write_clf_time(o, at(1_798_761_599, 999))),
            "31/Dec/2026:23:59:59 +0000"
        );
        assert_eq!(
            text(|o| write_rfc3339(o, UNIX_EPOCH - Duration::from_secs(5))),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn json_escaping() {
        assert_eq!(
            text(|o| json_escape(o, b"/a\"b\\c\n\x01\x7f\xc3\xa9")),
            "/a\\\"b\\\\c\\n\\u0001\\u007Fé"
        );
    }

    #[test]
    fn clf_escaping() {
        assert_eq!(
            text(|o| clf_escape(o, b"a\"b\\c\x01\xff")),
            "a\\x22b\\x5Cc\\x01\\xFF"
        );
    }

    fn entry() -> Entry<'static> {
        Entry {
            time: at(1_798_761_599, 5),
            request_id: b"rid-1",
            client: "127.0.0.1:5555".parse().expect("addr"),
            method: b"GET",
            path: b"/p?q=\"1\"",
            protocol: b"HTTP/1.1",
            status: 200,
            bytes_in: 40,
            bytes_out: 120,
            duration: Duration::from_micros(1_234_567),
            upstream_duration: Some(Duration::from_micros(987)),
            route: "all",
            upstream_addr: Some("10.0.0.1:80".parse().expect("addr")),
            upstream: "users-v2",
            worker: 3,
            trace_id: Some(b"0123456789abcdef0123456789abcdef"),
            referer: b"",
            user_agent: b"curl/8",
            consumer: b"alice",
            failed_calls: b"",
            cache: b"",
        }
    }

    #[test]
    fn json_line() {
        let line = text(|o| write_line(o, Format::Json, &entry()));
        assert_eq!(
            line,
            "{\"time\":\"2026-12-31T23:59:59.005Z\",\"request_id\":\"rid-1\",\
             \"client\":\"127.0.0.1:5555\",\"method\":\"GET\",\"path\":\"/p?q=\\\"1\\\"\",\
             \"status\":200,\"bytes_in\":40,\"bytes_out\":120,\"duration_ms\":1234.567,\
             \"upstream_ms\":0.987,\"route\":\"all\",\"upstream_addr\":\"10.0.0.1:80\",\
             \"upstream\":\"users-v2\",\"worker\":3,\"consumer\":\"alice\",\"trace_id\":\"0123456789abcdef0123456789abcdef\"}\n"
        );
        let mut none = entry();
        none.upstream_duration = None;
        none.upstream_addr = None;
        none.upstream = "";
        none.trace_id = None;
        none.consumer = b"";
        let line = text(|o| write_line(o, Format::Json, &none));
        assert!(line.contains("\"consumer\":null,"), "{line}");
        assert!(line.contains("\"upstream_ms\":null,"), "{line}");
        assert!(
            line.contains("\"upstream_addr\":\"-\",\"upstream\":\"\","),
            "{line}"
        );
        assert!(line.ends_with("\"trace_id\":null}\n"), "{line}");
    }

    #[test]
    fn combined_line() {
        let line = text(|o| write_line(o, Format::Combined, &entry()));
        assert_eq!(
            line,
            "127.0.0.1 - alice [31/Dec/2026:23:59:59 +0000] \"GET /p?q=\\x221\\x22 HTTP/1.1\" 200 120 \
             \"-\" \"curl/8\" request_id=\"rid-1\" bytes_in=40 duration_ms=1234.567 \
             upstream_ms=0.987 route=\"all\" upstream_addr=10.0.0.1:80 upstream=\"users-v2\" worker=3 \
             trace_id=0123456789abcdef0123456789abcdef\n"
        );
        let mut bad = entry();
        bad.method = b"";
        bad.upstream_duration = None;
        bad.upstream_addr = None;
        bad.upstream = "";
        bad.trace_id = None;
        bad.route = "";
        bad.consumer = b"";
        let line = text(|o| write_line(o, Format::Combined, &bad));
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(line.contains("] \"-\" 200 120 "), "{line}");
        assert!(
            line.ends_with(
                "upstream_ms=- route=\"-\" upstream_addr=- upstream=\"-\" worker=3 trace_id=-\n"
            ),
            "{line}"
        );
    }
}
