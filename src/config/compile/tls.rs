//! `[[server.tls]]` listeners and the `tls` table of upstream groups.
//!
//! Certificates and keys are read and checked here (files exist, parse, key matches
//! certificate, CA bundles usable), so every such problem is a config error with its key
//! and line, and a reload with a bad file changes nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use toml::Spanned;

use super::Ctx;
use crate::config::file::{RawCertificate, RawClientAuth, RawTlsListener, RawUpstreamTls};
use crate::tls::client_auth::{self, ClientAuthMode};
use crate::tls::server_config::{self, ServerTlsSpec};
use crate::tls::sni::SniResolver;
use crate::tls::upstream::{self, Roots};
use crate::tls::{pem, TlsListener, UpstreamTls};

/// `client_auth.subject_header` when absent.
pub const DEFAULT_SUBJECT_HEADER: &str = "X-Client-Cert-Subject";
/// `alpn` when absent.
pub const DEFAULT_ALPN: &str = "http/1.1";
/// ALPN protocols the gateway speaks.
const ALPN_SUPPORTED: [&str; 3] = ["h2", "http/1.1", "http/1.0"];

/// Compiles every `[[server.tls]]` entry; `plain` are the `server.listen` addresses, which a
/// TLS listener may not repeat.
pub(super) fn listeners(
    cx: &mut Ctx<'_>,
    raw: &[RawTlsListener],
    plain: &[SocketAddr],
) -> Vec<TlsListener> {
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        let key = format!("server.tls[{i}]");
        let Some(addr) = address(cx, &key, entry, plain, &mut seen, i) else {
            continue;
        };
        if let Some(listener) = listener(cx, &key, entry, addr) {
            out.push(listener);
        }
    }
    out
}

/// The default subject field and every listener's own, each once.
pub(super) fn identity_headers(listeners: &[TlsListener]) -> Vec<Box<str>> {
    let mut names: Vec<Box<str>> = vec![DEFAULT_SUBJECT_HEADER.into()];
    let configured = listeners
        .iter()
        .filter_map(|l| l.client_subject_header.as_deref());
    for name in configured {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.into());
        }
    }
    names
}

fn address(
    cx: &mut Ctx<'_>,
    key: &str,
    entry: &RawTlsListener,
    plain: &[SocketAddr],
    seen: &mut HashMap<SocketAddr, usize>,
    i: usize,
) -> Option<SocketAddr> {
    let key = format!("{key}.listen");
    let text = entry.listen.get_ref();
    let span = Some(entry.listen.span());
    let Ok(addr) = text.parse::<SocketAddr>() else {
        let message = format!("invalid address `{text}`: expected ip:port, e.g. \"0.0.0.0:8443\"");
        cx.problem(key, span, message);
        return None;
    };
    let reused = addr.port() != 0 && plain.contains(&addr);
    if reused {
        let message = format!("`{addr}` is also in server.listen (plain HTTP)");
        cx.problem(key, span, message);
        return None;
    }
    if let Some(first) = seen.insert(addr, i) {
        let message = format!("duplicate address `{addr}` (also server.tls[{first}])");
        cx.problem(key, span, message);
        return None;
    }
    Some(addr)
}

fn listener(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &RawTlsListener,
    listen: SocketAddr,
) -> Option<TlsListener> {
    let versions = versions(cx, key, raw);
    let cipher_suites = cipher_suites(cx, key, raw);
    let alpn = alpn(cx, key, raw);
    let hsts = hsts(cx, &format!("{key}.hsts"), raw.hsts.as_ref());
    let (client_verifier, client_subject_header) = match &raw.client_auth {
        Some(auth) => client_auth(cx, &format!("{key}.client_auth"), auth)?,
        None => (None, None),
    };
    let resolver = certificates(cx, &format!("{key}.certificates"), &raw.certificates)?;
    let spec = ServerTlsSpec {
        resolver,
        versions,
        cipher_suites,
        alpn,
        client_verifier,
    };
    match server_config::build(spec) {
        Ok(config) => Some(TlsListener {
            listen,
            config,
            hsts,
            client_subject_header,
        }),
        Err(message) => {
            let span = raw
                .cipher_suites
                .as_ref()
                .and_then(|s| s.first())
                .map(|s| s.span());
            let span = span.or(Some(raw.listen.span()));
            cx.problem(format!("{key}.cipher_suites"), span, message);
            None
        }
    }
}

fn versions(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &RawTlsListener,
) -> &'static [&'static rustls::SupportedProtocolVersion] {
    let fallback = server_config::versions_from("1.2").unwrap_or(rustls::DEFAULT_VERSIONS);
    let Some(min) = &raw.min_version else {
        return fallback;
    };
    match server_config::versions_from(min.get_ref()) {
        Some(versions) => versions,
        None => {
            let message = format!(
                "unsupported version `{}`: expected \"1.2\" or \"1.3\"",
                min.get_ref()
            );
            cx.problem(format!("{key}.min_version"), Some(min.span()), message);
            fallback
        }
    }
}

fn cipher_suites(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &RawTlsListener,
) -> Option<Vec<rustls::SupportedCipherSuite>> {
    let names = raw.cipher_suites.as_ref()?;
    let mut suites = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        match server_config::cipher_suite(name.get_ref()) {
            Some(suite) => suites.push(suite),
            None => {
                let message = format!(
                    "unknown cipher suite `{}`: expected one of {}",
                    name.get_ref(),
                    server_config::cipher_suite_names().join(", ")
                );
                cx.problem(
                    format!("{key}.cipher_suites[{j}]"),
                    Some(name.span()),
                    message,
                );
            }
        }
    }
    if names.is_empty() {
        let span = Some(raw.listen.span());
        cx.problem(
            format!("{key}.cipher_suites"),
            span,
            "must name at least one suite (or be left out for the defaults)".into(),
        );
    }
    (!suites.is_empty()).then_some(suites)
}

fn alpn(cx: &mut Ctx<'_>, key: &str, raw: &RawTlsListener) -> Vec<Vec<u8>> {
    let Some(names) = &raw.alpn else {
        return vec![DEFAULT_ALPN.as_bytes().to_vec()];
    };
    let mut out = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        if ALPN_SUPPORTED.contains(&name.get_ref().as_str()) {
            out.push(name.get_ref().as_bytes().to_vec());
        } else {
            let message = format!(
                "unsupported protocol `{}`: the gateway speaks \"h2\", \"http/1.1\" and \"http/1.0\"",
                name.get_ref()
            );
            cx.problem(format!("{key}.alpn[{j}]"), Some(name.span()), message);
        }
    }
    out
}

/// A `Strict-Transport-Security` value: visible ASCII with a `max-age` directive.
pub(super) fn hsts(cx: &mut Ctx<'_>, key: &str, raw: Option<&Spanned<String>>) -> Option<Box<str>> {
    let raw = raw?;
    let value = raw.get_ref().trim();
    let printable = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    let has_max_age = value
        .split(';')
        .any(|d| d.trim().to_ascii_lowercase().starts_with("max-age="));
    if !printable || !has_max_age {
        let message = format!(
            "invalid value `{value}`: expected e.g. \"max-age=31536000; includeSubDomains\""
        );
        cx.problem(key, Some(raw.span()), message);
        return None;
    }
    Some(value.into())
}

type ClientAuthParts = (
    Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    Option<Box<str>>,
);

fn client_auth(cx: &mut Ctx<'_>, key: &str, raw: &RawClientAuth) -> Option<ClientAuthParts> {
    let mode = match raw.mode.get_ref().as_str() {
        "optional" => ClientAuthMode::Optional,
        "required" => ClientAuthMode::Required,
        other => {
            let message = format!("unknown mode `{other}`: expected \"optional\" or \"required\"");
            cx.problem(format!("{key}.mode"), Some(raw.mode.span()), message);
            ClientAuthMode::Required
        }
    };
    let header = match &raw.subject_header {
        Some(name) if is_token(name.get_ref()) => name.get_ref().clone(),
        Some(name) => {
            let message = format!("invalid header name `{}`", name.get_ref());
            cx.problem(format!("{key}.subject_header"), Some(name.span()), message);
            DEFAULT_SUBJECT_HEADER.to_string()
        }
        None => DEFAULT_SUBJECT_HEADER.to_string(),
    };
    let ca_key = format!("{key}.ca");
    let cas = read_certificates(cx, &ca_key, &raw.ca)?;
    match client_auth::verifier(cas, mode) {
        Ok(verifier) => Some((Some(verifier), Some(header.into_boxed_str()))),
        Err(message) => {
            let message = format!("`{}`: {message}", raw.ca.get_ref());
            cx.problem(ca_key, Some(raw.ca.span()), message);
            None
        }
    }
}

/// HTTP field-name characters (RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn certificates(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &Spanned<Vec<RawCertificate>>,
) -> Option<SniResolver> {
    if raw.get_ref().is_empty() {
        let message = "at least one { cert = \"...\", key = \"...\" } is required".to_string();
        cx.problem(key, Some(raw.span()), message);
        return None;
    }
    let defaults: Vec<usize> = raw
        .get_ref()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.default.as_ref().is_some_and(|d| *d.get_ref()))
        .map(|(j, _)| j)
        .collect();
    if let Some(&second) = defaults.get(1) {
        let span = raw.get_ref()[second].default.as_ref().map(|d| d.span());
        let message = format!(
            "only one certificate may be the default (also [{}])",
            defaults[0]
        );
        cx.problem(format!("{key}[{second}].default"), span, message);
    }
    let default = defaults.first().copied().unwrap_or(0);
    let keys: Vec<Option<Arc<CertifiedKey>>> = raw
        .get_ref()
        .iter()
        .enumerate()
        .map(|(j, c)| certified_key(cx, &format!("{key}[{j}]"), c))
        .collect();
    let mut resolver = SniResolver::new(keys.get(default).cloned().flatten()?);
    for (j, (cert, certified)) in raw.get_ref().iter().zip(&keys).enumerate() {
        let names = cert.server_names.as_deref().unwrap_or_default();
        if names.is_empty() && j != default {
            let message =
                "this certificate is never chosen: give it server_names or default = true".into();
            cx.problem(
                format!("{key}[{j}].server_names"),
                Some(cert.cert.span()),
                message,
            );
        }
        for (n, name) in names.iter().enumerate() {
            let name_key = format!("{key}[{j}].server_names[{n}]");
            if !is_server_name(name.get_ref()) {
                let message = format!("invalid server name `{}`", name.get_ref());
                cx.problem(name_key, Some(name.span()), message);
                continue;
            }
            let Some(certified) = certified else { continue };
            if !resolver.add(name.get_ref(), Arc::clone(certified)) {
                let message = format!("`{}` is named by another certificate", name.get_ref());
                cx.problem(name_key, Some(name.span()), message);
            }
        }
    }
    Some(resolver)
}

/// A DNS name, optionally with a leading `*.` label.
fn is_server_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    !bare.contains('*')
        && ServerName::try_from(bare).is_ok_and(|n| matches!(n, ServerName::DnsName(_)))
}

fn certified_key(cx: &mut Ctx<'_>, key: &str, raw: &RawCertificate) -> Option<Arc<CertifiedKey>> {
    let chain = read_certificates(cx, &format!("{key}.cert"), &raw.cert);
    let private = read_key(cx, &format!("{key}.key"), &raw.key);
    let (chain, private) = (chain?, private?);
    match CertifiedKey::from_der(chain, private, &crate::tls::provider()) {
        Ok(certified) => Some(Arc::new(certified)),
        Err(e) => {
            let message = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "`{}` does not belong to the certificate in `{}`",
                    raw.key.get_ref(),
                    raw.cert.get_ref()
                ),
                other => format!("`{}`: unusable key: {other}", raw.key.get_ref()),
            };
            cx.problem(format!("{key}.key"), Some(raw.key.span()), message);
            None
        }
    }
}

fn read_certificates(
    cx: &mut Ctx<'_>,
    key: &str,
    path: &Spanned<String>,
) -> Option<Vec<CertificateDer<'static>>> {
    let resolved = cx.path(path.get_ref());
    match pem::certificates(&resolved) {
        Ok(certs) => Some(certs),
        Err(message) => {
            cx.problem(key, Some(path.span()), message);
            None
        }
    }
}

fn read_key(cx: &mut Ctx<'_>, key: &str, path: &Spanned<String>) -> Option<PrivateKeyDer<'static>> {
    let resolved = cx.path(path.get_ref());
    match pem::private_key(&resolved) {
        Ok(private) => Some(private),
        Err(message) => {
            cx.problem(key, Some(path.span()), message);
            None
        }
    }
}

/// Compiles an upstream group's `tls` table; `None` when TLS is off (or on a problem).
pub(super) fn upstream_tls(
    cx: &mut Ctx<'_>,
    key: &str,
    spanned: &Spanned<RawUpstreamTls>,
) -> Option<UpstreamTls> {
    let raw = spanned.get_ref();
    let server_name =
        raw.sni
            .as_ref()
            .and_then(|sni| match ServerName::try_from(sni.get_ref().as_str()) {
                Ok(name) => Some(name.to_owned()),
                Err(_) => {
                    let message = format!("invalid server name `{}`", sni.get_ref());
                    cx.problem(format!("{key}.sni"), Some(sni.span()), message);
                    None
                }
            });
    let verify = raw.verify.as_ref().is_none_or(|v| *v.get_ref());
    let roots = match (&raw.ca, verify) {
        (Some(ca), false) => {
            let message = "`ca` has no effect with verify = false".to_string();
            cx.problem(format!("{key}.ca"), Some(ca.span()), message);
            Roots::Unverified
        }
        (Some(ca), true) => Roots::Bundle(read_certificates(cx, &format!("{key}.ca"), ca)?),
        (None, true) => Roots::System,
        (None, false) => Roots::Unverified,
    };
    let client_cert = match (&raw.client_cert, &raw.client_key) {
        (Some(cert), Some(private)) => {
            let chain = read_certificates(cx, &format!("{key}.client_cert"), cert);
            let private = read_key(cx, &format!("{key}.client_key"), private);
            Some((chain?, private?))
        }
        (None, None) => None,
        (Some(cert), None) => {
            let message = "client_cert needs client_key".to_string();
            cx.problem(format!("{key}.client_cert"), Some(cert.span()), message);
            return None;
        }
        (None, Some(private)) => {
            let message = "client_key needs client_cert".to_string();
            cx.problem(format!("{key}.client_key"), Some(private.span()), message);
            return None;
        }
    };
    if raw.enabled == Some(false) {
        return None;
    }
    match upstream::client_config(roots, client_cert) {
        Ok(config) => Some(UpstreamTls {
            config,
            server_name,
        }),
        Err(message) => {
            cx.problem(key, Some(spanned.span()), message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::compile::{check_without_router, keys_and_lines};

    /// Two key pairs with certificates for `a.test`, in a fresh temp directory.
    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(tag: &str) -> Files {
            let dir = std::env::temp_dir()
                .join(format!("ringgate-tls-compile-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            for name in ["one", "two"] {
                let key = rcgen::KeyPair::generate().expect("key");
                let params = rcgen::CertificateParams::new(vec!["a.test".into()]).expect("p");
                let cert = params.self_signed(&key).expect("cert");
                std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
                std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())
                    .expect("write");
            }
            std::fs::write(dir.join("garbage.pem"), "not a pem file\n").expect("write");
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            format!(
                "{:?}",
                Path::new(&self.dir).join(name).display().to_string()
            )
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn problems(text: &str) -> Vec<(String, Option<usize>)> {
        keys_and_lines(&check_without_router(text))
    }

    #[test]
    fn a_valid_listener_and_upstream_compile() {
        let f = Files::new("valid");
        let text = format!(
            r#"
[[server.tls]]
listen = "127.0.0.1:0"
certificates = [ {{ cert = {c}, key = {k}, server_names = ["a.test", "*.b.test"] }} ]
min_version = "1.3"
cipher_suites = ["TLS13_AES_256_GCM_SHA384"]
alpn = ["http/1.1"]
client_auth = {{ mode = "optional", ca = {c}, subject_header = "X-Peer" }}
hsts = "max-age=63072000; includeSubDomains"

[[upstreams]]
name = "u"
targets = [ {{ addr = "127.0.0.1:9" }} ]
tls = {{ sni = "a.test", ca = {c}, client_cert = {c}, client_key = {k} }}
"#,
            c = f.path("one.pem"),
            k = f.path("one.key"),
        );
        assert_eq!(problems(&text), vec![]);
    }

    #[test]
    fn file_problems_name_the_key_and_line() {
        let f = Files::new("files");
        let text = format!(
            r#"
[[server.tls]]
listen = "127.0.0.1:8443"
certificates = [
  {{ cert = {missing}, key = {k1}, default = true }},
  {{ cert = {garbage}, key = {k1}, server_names = ["x.test"] }},
  {{ cert = {c1}, key = {k2}, server_names = ["y.test"] }},
]
"#,
            missing = f.path("missing.pem"),
            garbage = f.path("garbage.pem"),
            c1 = f.path("one.pem"),
            k1 = f.path("one.key"),
            k2 = f.path("two.key"),
        );
        let found = check_without_router(&text);
        assert_eq!(
            keys_and_lines(&found),
            vec![
                ("server.tls[0].certificates[0].cert".to_string(), Some(5)),
                ("server.tls[0].certificates[1].cert".to_string(), Some(6)),
                ("server.tls[0].certificates[2].key".to_string(), Some(7)),
            ]
        );
        assert!(
            found[0].message.contains("cannot read"),
            "{}",
            found[0].message
        );
        assert!(
            found[1].message.contains("no PEM certificate"),
            "{}",
            found[1].message
        );
        assert!(
            found[2].message.contains("does not belong"),
            "{}",
            found[2].message
        );
    }

    #[test]
    fn setting_problems_name_the_key_and_line() {
        let f = Files::new("settings");
        let text = format!(
            r#"
[server]
listen = ["127.0.0.1:8080"]

[[server.tls]]
listen = "127.0.0.1:8080"
certificates = [ {{ cert = {c}, key = {k} }} ]

[[server.tls]]
listen = "127.0.0.1:8443"
certificates = [ {{ cert = {c}, key = {k}, server_names = ["a.test", "bad name"] }} ]
min_version = "1.1"
cipher_suites = ["RC4-MD5"]
alpn = ["h3"]
client_auth = {{ mode = "sometimes", ca = {c} }}
hsts = "includeSubDomains"

[[server.tls]]
listen = "127.0.0.1:8444"
certificates = []
"#,
            c = f.path("one.pem"),
            k = f.path("one.key"),
        );
        assert_eq!(
            problems(&text),
            vec![
                ("server.tls[0].listen".to_string(), Some(6)),
                ("server.tls[1].min_version".to_string(), Some(12)),
                ("server.tls[1].cipher_suites[0]".to_string(), Some(13)),
                ("server.tls[1].alpn[0]".to_string(), Some(14)),
                ("server.tls[1].hsts".to_string(), Some(16)),
                ("server.tls[1].client_auth.mode".to_string(), Some(15)),
                (
                    "server.tls[1].certificates[0].server_names[1]".to_string(),
                    Some(11)
                ),
                ("server.tls[2].certificates".to_string(), Some(20)),
            ]
        );
    }

    #[test]
    fn upstream_tls_problems_name_the_key_and_line() {
        let f = Files::new("upstream");
        let text = format!(
            r#"
[[upstreams]]
name = "u"
targets = [ {{ addr = "127.0.0.1:9" }} ]
tls = {{ sni = "not a name!", client_cert = {c} }}

[[upstreams]]
name = "v"
targets = [ {{ addr = "127.0.0.1:9" }} ]
tls = {{ verify = false, ca = {c} }}

[[upstreams]]
name = "w"
targets = [ {{ addr = "127.0.0.1:9" }} ]
tls = {{ ca = {garbage} }}
"#,
            c = f.path("one.pem"),
            garbage = f.path("garbage.pem"),
        );
        assert_eq!(
            problems(&text),
            vec![
                ("upstreams[0].tls.sni".to_string(), Some(5)),
                ("upstreams[0].tls.client_cert".to_string(), Some(5)),
                ("upstreams[1].tls.ca".to_string(), Some(10)),
                ("upstreams[2].tls.ca".to_string(), Some(15)),
            ]
        );
    }

    #[test]
    fn redirect_https_takes_true_or_a_port() {
        let text = r#"
[[routes]]
name = "a"
respond = { status = 200 }
redirect_https = 70000
"#;
        assert_eq!(
            problems(text),
            vec![("routes[0].redirect_https".to_string(), Some(5))]
        );
    }
}
