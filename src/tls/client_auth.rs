//! Client certificates (mutual TLS): the verifier a listener uses, and the identity taken
//! from a verified certificate.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// Whether a listener asks for or insists on a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// Clients without a certificate are served; a certificate that is sent must verify.
    Optional,
    /// The handshake fails without a certificate that verifies.
    Required,
}

/// A verifier for certificates chaining to one of `cas`.
pub fn verifier(
    cas: Vec<CertificateDer<'static>>,
    mode: ClientAuthMode,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for (i, ca) in cas.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| format!("certificate #{} is not a usable CA: {e}", i + 1))?;
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(super::provider()));
    let builder = match mode {
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
        ClientAuthMode::Required => builder,
    };
    builder.build().map_err(|e| e.to_string())
}

/// The subject of the first (end-entity) certificate, as an RFC 4514 style string
/// (`CN=client, O=Example`), made safe for a header value: bytes outside visible ASCII and
/// space become `?`. `None` without a certificate or when it cannot be parsed (rustls has
/// verified it, so that does not happen in practice).
pub fn peer_subject(certs: Option<&[CertificateDer<'_>]>) -> Option<Box<str>> {
    let leaf = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert
        .subject()
        .to_string_with_registry(x509_parser::objects::oid_registry());
    let subject = subject.ok()?;
    let safe: String = subject
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    Some(safe.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".into()]).expect("p");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client one");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme\u{1}");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let der = cert.der().clone();
        let subject = peer_subject(Some(&[der])).expect("subject");
        assert!(subject.contains("CN=client one"), "{subject}");
        assert!(subject.contains("O=Acme?"), "{subject}");
        assert_eq!(peer_subject(None), None);
    }
}
