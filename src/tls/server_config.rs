//! Assembling a listener's rustls `ServerConfig`: protocol versions, cipher suites, ALPN,
//! certificates by SNI, client verification and session resumption.

use std::sync::{Arc, OnceLock};

use rustls::server::danger::ClientCertVerifier;
use rustls::server::ProducesTickets;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::sni::SniResolver;

/// Everything a listener's configuration is made of, already validated.
#[derive(Debug)]
pub struct ServerTlsSpec {
    /// Certificates by name, with the default.
    pub resolver: SniResolver,
    /// Enabled protocol versions.
    pub versions: &'static [&'static SupportedProtocolVersion],
    /// Enabled suites in preference order; `None` keeps the provider's defaults.
    pub cipher_suites: Option<Vec<SupportedCipherSuite>>,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// Client certificate verification, if configured.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// Builds the configuration. Resumption: stateless tickets (TLS 1.2 and 1.3) from one
/// process-wide, self-rotating ticket key, so a client resumes on any worker and across
/// reloads; rustls' in-memory session cache serves TLS 1.2 clients without ticket support.
pub fn build(spec: ServerTlsSpec) -> Result<Arc<ServerConfig>, String> {
    let mut provider = super::provider();
    if let Some(suites) = spec.cipher_suites {
        provider.cipher_suites = suites;
    }
    let builder = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(spec.versions)
        .map_err(|e| format!("no cipher suite is usable with the enabled versions: {e}"))?;
    let builder = match spec.client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(spec.resolver));
    config.alpn_protocols = spec.alpn;
    config.ticketer = ticketer()?;
    Ok(Arc::new(config))
}

/// The protocol versions from `min_version` up: `"1.2"` or `"1.3"`.
pub fn versions_from(min: &str) -> Option<&'static [&'static SupportedProtocolVersion]> {
    static FROM_12: &[&SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static FROM_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min {
        "1.2" => Some(FROM_12),
        "1.3" => Some(FROM_13),
        _ => None,
    }
}

/// The suite with this IANA name (`TLS13_AES_128_GCM_SHA256`,
/// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, ...), any case.
pub fn cipher_suite(name: &str) -> Option<SupportedCipherSuite> {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .find(|s| suite_name(s).eq_ignore_ascii_case(name))
        .copied()
}

/// Every supported suite's name, for error messages.
pub fn cipher_suite_names() -> Vec<String> {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .map(suite_name)
        .collect()
}

fn suite_name(suite: &SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// The process-wide ticket key (rotated by rustls every 6 hours).
fn ticketer() -> Result<Arc<dyn ProducesTickets>, String> {
    static TICKETER: OnceLock<Option<Arc<dyn ProducesTickets>>> = OnceLock::new();
    TICKETER
        .get_or_init(|| rustls::crypto::ring::Ticketer::new().ok())
        .clone()
        .ok_or_else(|| "cannot create the session ticket key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_suites_and_versions() {
        assert!(cipher_suite("TLS13_AES_128_GCM_SHA256").is_some());
        assert!(cipher_suite("tls_ecdhe_rsa_with_aes_128_gcm_sha256").is_some());
        assert!(cipher_suite("RC4-MD5").is_none());
        assert!(cipher_suite_names().len() >= 9);
        assert_eq!(versions_from("1.2").map(|v| v.len()), Some(2));
        assert_eq!(versions_from("1.3").map(|v| v.len()), Some(1));
        assert!(versions_from("1.1").is_none());
    }
}
