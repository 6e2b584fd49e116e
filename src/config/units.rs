//! Durations (`"10s"`, `"250ms"`, `"1m30s"`) and sizes (`"16KiB"`, `"10MB"`, `512`) as they
//! are written in the file.
//!
//! Both types implement `Deserialize`, so a malformed value fails inside toml's deserializer,
//! which attaches the value's position; the caller turns that into a problem with its line.
//! Range checks (minimums, maximums) belong to `compile`, where every problem is collected.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration written as one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

/// A byte count written as an integer or a string with an optional unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeValue(pub u64);

/// Parses `"10s"`, `"250ms"`, `"1m30s"`, `"2h"`; every part needs a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration `{text}`: expected e.g. \"250ms\", \"10s\", \"1m30s\", \"2h\"")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let units = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || units == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let per_unit = match &rest[digits..digits + units] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| per_unit.checked_mul(n))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        rest = &rest[digits + units..];
    }
    Ok(total)
}

/// Parses `"512"`, `"16KiB"`, `"10MiB"`, `"1GiB"` (binary) or `"10kB"`, `"10MB"`, `"1GB"`
/// (decimal); `B` is bytes. A space between number and unit is allowed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size `{text}`: expected bytes as an integer, or e.g. \"16KiB\", \"10MiB\", \
             \"1GiB\", \"10kB\", \"10MB\""
        )
    };
    let trimmed = text.trim();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let number: u64 = trimmed[..digits].parse().map_err(|_| bad())?;
    let multiplier: u64 = match trimmed[digits..].trim_start() {
        "" | "B" => 1,
        "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = DurationValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"10s\", \"250ms\" or \"1m30s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration(v).map(DurationValue).map_err(E::custom)
    }

    // A bare number is ambiguous (seconds? milliseconds?), so it is refused with a hint.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "a duration needs a unit: write e.g. \"{v}s\" or \"{v}ms\""
        )))
    }
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = SizeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size: an integer number of bytes or a string such as \"16KiB\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_size(v).map(SizeValue).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(SizeValue)
            .map_err(|_| E::custom(format!("size must not be negative, got {v}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(SizeValue(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_unit_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h1m1s500ms"),
            Ok(Duration::from_millis(3_661_500))
        );
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "", "10", "s", "10 s", "1.5s", "10sec", "10S", "-1s", "1m30", "10d",
        ] {
            assert!(parse_duration(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn rejects_overflowing_durations() {
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("4294967296h").is_err());
    }

    #[test]
    fn parses_sizes_in_every_unit() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("10 MiB"), Ok(10 * 1024 * 1024));
    }

    #[test]
    fn rejects_malformed_sizes() {
        for bad in ["", "MiB", "10mib", "10KB", "1.5MiB", "-1", "10 M", "ten"] {
            assert!(parse_size(bad).is_err(), "accepted {bad:?}");
        }
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        d: Option<DurationValue>,
        s: Option<SizeValue>,
    }

    #[test]
    fn deserializes_from_toml_strings_and_integers() {
        let doc: Doc = toml::from_str("d = \"1m30s\"\ns = 4096").expect("valid");
        assert_eq!(doc.d, Some(DurationValue(Duration::from_secs(90))));
        assert_eq!(doc.s, Some(SizeValue(4096)));
        let doc: Doc = toml::from_str("s = \"1KiB\"").expect("valid");
        assert_eq!(doc.s, Some(SizeValue(1024)));
    }

    #[test]
    fn refuses_a_bare_integer_duration_with_a_hint() {
        let err = toml::from_str::<Doc>("d = 10").expect_err("unitless");
        assert!(err.message().contains("\"10s\""), "{}", err.message());
        assert!(err.span().is_some());
    }

    #[test]
    fn refuses_a_negative_size() {
        let err = toml::from_str::<Doc>("s = -5").expect_err("negative");
        assert!(err.message().contains("negative"), "{}", err.message());
    }
}
