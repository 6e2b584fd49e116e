//! The config loader, TOML text to snapshot: never a panic; a refused config always says
//! what is wrong, each problem with its key or its line.
//!
//! Inputs that would make the loader touch the machine are skipped: a string naming a file
//! under `/dev`, `/proc` or `/sys` (`/dev/zero` as a key file never ends), and a target
//! `name:port` that is not an address (it would be resolved through DNS).

use ringgate::config::load_str;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if touches_the_machine(text) {
        return;
    }
    match load_str(text, "fuzz.toml") {
        Ok(_) => {}
        Err(err) => {
            assert!(!err.problems.is_empty(), "an error without a problem");
            for p in &err.problems {
                assert!(
                    !p.key.is_empty() || p.line.is_some(),
                    "a problem with neither key nor line: {p:?}"
                );
                assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
            }
            // What `--check` prints.
            let _ = err.to_string();
        }
    }
}

/// Whether any string in the document would make the loader read a device or resolve a name.
fn touches_the_machine(text: &str) -> bool {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return false;
    };
    let doc = toml::Value::Table(doc);
    let mut strings = Vec::new();
    collect(&doc, &mut strings);
    strings
        .iter()
        .any(|s| ["/dev", "/proc", "/sys"].iter().any(|d| s.contains(d)) || resolves_a_name(s))
}

fn collect<'a>(value: &'a toml::Value, out: &mut Vec<&'a str>) {
    match value {
        toml::Value::String(s) => out.push(s),
        toml::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| {
            out.push(k);
            collect(v, out);
        }),
        _ => {}
    }
}

/// `host:port` where the host is not an IP address: what `ToSocketAddrs` would send to the
/// resolver. The port is read as the standard library reads it (`u16::from_str`, which takes
/// a leading `+`): `845.0.0.1:+80` went to DNS and waited out its timeout.
fn resolves_a_name(s: &str) -> bool {
    let Some((_, port)) = s.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok() && s.parse::<std::net::SocketAddr>().is_err()
}
