//! TLS: termination on client listeners (SNI, client certificates, resumption) and TLS to
//! upstreams, on rustls with the `ring` provider, driven by the worker's own runtime.
//!
//! The config compiler builds every rustls configuration (certificates read, keys checked)
//! into the [`Snapshot`](crate::config::Snapshot); a reload builds new ones, so new
//! handshakes use the new certificates while established connections keep their sessions.

pub mod client_auth;
pub mod outcome;
pub mod pem;
pub mod server_config;
pub mod sni;
pub mod split;
pub mod stream;
pub mod transport;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

pub use client_auth::peer_subject;
pub use transport::{ClientStream, UpstreamStream};

/// A TLS listener as compiled from `[[server.tls]]`.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Configured address (the key the worker's accept loop looks the listener up by).
    pub listen: SocketAddr,
    /// Certificates, versions, suites, ALPN, client verification, resumption.
    pub config: Arc<rustls::ServerConfig>,
    /// `Strict-Transport-Security` value added to every response on this listener.
    pub hsts: Option<Box<str>>,
    /// The header that carries a verified client certificate's subject upstream.
    pub client_subject_header: Option<Box<str>>,
}

/// TLS to an upstream group's targets, compiled from its `tls` table.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// Roots, verification, client certificate.
    pub config: Arc<rustls::ClientConfig>,
    /// The name sent in SNI and verified; `None` verifies the target's IP address.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// The crypto provider every TLS configuration is built on.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
