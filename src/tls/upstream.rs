//! TLS to upstream targets: the client configuration and the handshake on a fresh
//! connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use super::stream::TlsStream;
use super::UpstreamTls;

/// Where the trusted roots come from.
#[derive(Debug)]
pub enum Roots {
    /// This PEM bundle.
    Bundle(Vec<CertificateDer<'static>>),
    /// The operating system's store.
    System,
    /// None: certificates are not verified (`verify = false`).
    Unverified,
}

/// Builds the client configuration for one upstream group.
pub fn client_config(
    roots: Roots,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(super::provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match roots {
        Roots::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        Roots::Bundle(cas) => builder.with_root_certificates(root_store(cas)?),
        Roots::System => builder.with_root_certificates(system_roots()?),
    };
    let mut config = match client_cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Runs the TLS handshake on a fresh connection to `addr`.
pub async fn handshake(
    tcp: TcpStream,
    tls: &UpstreamTls,
    addr: SocketAddr,
) -> io::Result<TlsStream<ClientConnection>> {
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
    let session = ClientConnection::new(Arc::clone(&tls.config), name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stream = TlsStream::new(tcp, session);
    stream.handshake().await?;
    Ok(stream)
}

fn root_store(cas: Vec<CertificateDer<'static>>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for (i, ca) in cas.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| format!("certificate #{} is not a usable CA: {e}", i + 1))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no system CA certificates were found; set `ca` to a PEM bundle".into());
    }
    Ok(roots)
}

/// `verify = false`: any certificate is accepted, signatures are still checked (so the
/// session is encrypted, but not authenticated).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
