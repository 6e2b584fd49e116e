//! HTTP dates (RFC 9110 §5.6.7): the three formats a recipient must accept, as Unix seconds.

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), an RFC 850 date
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) or an asctime date (`Sun Nov  6 08:49:37 1994`);
/// `None` for anything else.
pub fn parse_http_date(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let mut parts = text.split_ascii_whitespace();
    let first = parts.next()?;
    if first.ends_with(',') {
        let second = parts.next()?;
        if second.contains('-') {
            // RFC 850: 06-Nov-94 08:49:37 GMT
            let mut dmy = second.split('-');
            let day = number(dmy.next()?)?;
            let month = month(dmy.next()?)?;
            // Two digits exactly (`date2` in RFC 9110 §5.6.7): a longer year is no RFC 850
            // date, and must not become 1900 + it.
            let year = dmy.next().filter(|y| y.len() == 2).and_then(number)?;
            // Two-digit years: RFC 9110 says a year more than 50 years ahead is in the past.
            let year = if year < 70 { 2000 + year } else { 1900 + year };
            let time = parts.next()?;
            (parts.next()? == "GMT").then_some(())?;
            return unix(year, month, day, time);
        }
        let day = number(second)?;
        let month = month(parts.next()?)?;
        let year = number(parts.next()?)?;
        let time = parts.next()?;
        (parts.next()? == "GMT" && parts.next().is_none()).then_some(())?;
        return unix(year, month, day, time);
    }
    // asctime: Sun Nov  6 08:49:37 1994
    let month = month(parts.next()?)?;
    let day = number(parts.next()?)?;
    let time = parts.next()?;
    let year = number(parts.next()?)?;
    unix(year, month, day, time)
}

/// Writes `unix` as an IMF-fixdate.
pub fn format_http_date(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        std::str::from_utf8(MONTHS[(m - 1) as usize]).unwrap_or("Jan"),
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 4 {
        return None;
    }
    s.parse().ok()
}

fn month(s: &str) -> Option<u64> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s.as_bytes()))
        .map(|i| i as u64 + 1)
}

fn unix(year: u64, month: u64, day: u64, time: &str) -> Option<u64> {
    let mut hms = time.split(':');
    let h = number(hms.next()?)?;
    let m = number(hms.next()?)?;
    let s = number(hms.next()?)?;
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 || !(1..=31).contains(&day) {
        return None;
    }
    if year < 1970 {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    Some(days as u64 * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_formats() {
        let t = 784_111_777;
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
    }

    #[test]
    fn refuses_what_is_no_date() {
        for bad in [
            // An RFC 850 date with a four-digit year (found by the cache_control fuzz target:
            // it was read as the year 11159).
            &b"Sda, 31-Feb-9259 9:3:60 GMT"[..],
            b"Sunday, 06-Nov-1994 08:49:37 GMT",
            b"0",
            b"-1",
            b"tomorrow",
            b"Sun, 06 Nov 1994 08:49:37 CET",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_what_it_reads() {
        for t in [0, 784_111_777, 1_700_000_000, 4_102_444_800] {
            let text = format_http_date(t);
            assert_eq!(parse_http_date(text.as_bytes()), Some(t), "{text}");
        }
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
