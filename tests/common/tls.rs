//! TLS for the tests: a throw-away PKI generated at test time (rcgen; no key is ever
//! committed), a blocking rustls client, and a TLS upstream server on a std thread.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::IO_TIMEOUT;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A certificate authority and the files of the certificates it issued, in a fresh
/// directory under the system's temp dir.
pub struct Pki {
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// Paths of an issued certificate and its key, and the certificate's DER.
#[derive(Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

/// What kind of certificate to issue.
pub enum Kind<'a> {
    /// For a server, valid for these DNS names and 127.0.0.1.
    Server(&'a [&'a str]),
    /// For a server, expired a year ago.
    ExpiredServer(&'a [&'a str]),
    /// For a client, with this common name.
    Client(&'a str),
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "ringgate-tls-{}-{}-{tag}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create pki dir");
        let mut params = CertificateParams::new(Vec::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ringgate test CA {tag}"));
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&ca_key).expect("ca cert");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
        Pki { dir, ca, ca_key }
    }

    /// The CA certificate's PEM file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Issues an ECDSA P-256 certificate; files are `NAME.pem` and `NAME.key`.
    pub fn issue(&self, name: &str, kind: Kind<'_>) -> Issued {
        self.issue_with(name, kind, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// [`Pki::issue`] with the key algorithm given (e.g. `rcgen::PKCS_ED25519`).
    pub fn issue_with(
        &self,
        name: &str,
        kind: Kind<'_>,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> Issued {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        match kind {
            Kind::Server(names) | Kind::ExpiredServer(names) => {
                for n in names {
                    let san = SanType::DnsName((*n).try_into().expect("dns name"));
                    params.subject_alt_names.push(san);
                }
                let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
                params.subject_alt_names.push(SanType::IpAddress(localhost));
                params.distinguished_name.push(
                    DnType::CommonName,
                    names.first().copied().unwrap_or("server"),
                );
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Kind::Client(cn) => {
                params.distinguished_name.push(DnType::CommonName, cn);
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, "ringgate tests");
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        if let Kind::ExpiredServer(_) = kind {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate_for(alg).expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Issued {
            cert: cert_path,
            key: key_path,
            der: cert.der().clone(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A client configuration trusting `roots`, presenting `identity` if given.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<&Issued>,
) -> Arc<ClientConfig> {
    client_config_for(roots, identity, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] offering only `versions` (e.g. `&[&rustls::version::TLS12]`).
pub fn client_config_for(
    roots: &[CertificateDer<'static>],
    identity: Option<&Issued>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(store);
    let mut config = match identity {
        Some(id) => {
            let (chain, key) = load_identity(id);
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn load_identity(id: &Issued) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_file_iter(&id.cert)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_file(&id.key).expect("key pem");
    (chain, key)
}

/// A blocking TLS client connection.
pub type Tls = rustls::StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` with SNI `name` and completes the handshake.
pub fn connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> io::Result<Tls> {
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let conn = ClientConnection::new(Arc::clone(config), server_name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The certificate the server presented.
pub fn presented(tls: &Tls) -> CertificateDer<'static> {
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server certificate")
        .clone()
        .into_owned()
}

/// A response read from a stream: the head (status line and fields) and the body.
#[derive(Debug)]
pub struct Response {
    pub head: String,
    pub body: String,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code")
    }

    /// The first value of field `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `GET path` (keep-alive) with `extra` header lines and reads the response.
pub fn get(stream: &mut impl ReadWrite, path: &str, extra: &str) -> io::Result<Response> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n{extra}\r\n");
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    read_response(stream)
}

/// Read + Write, for `get` on plain and TLS streams alike.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Reads one response with a `Content-Length` body.
pub fn read_response(stream: &mut impl Read) -> io::Result<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a response",
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf[..buf.len() - 4]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(Response {
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An HTTPS upstream: answers every request with `200` and the body `tls upstream PATH`,
/// keeping connections alive. Counts accepted connections.
pub struct TlsUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TlsUpstream {
    pub fn start(identity: &Issued) -> TlsUpstream {
        Self::start_requiring(identity, None)
    }

    /// With `client_ca`, the upstream requires a client certificate issued by it.
    pub fn start_requiring(
        identity: &Issued,
        client_ca: Option<CertificateDer<'static>>,
    ) -> TlsUpstream {
        let (chain, key) = load_identity(identity);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca).expect("client ca");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).expect("upstream cert");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tls upstream");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (Arc::clone(&connections), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let config = Arc::clone(&config);
                std::thread::spawn(move || serve_tls(stream, config));
            }
        });
        TlsUpstream {
            addr,
            connections,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve_tls(tcp: TcpStream, config: Arc<ServerConfig>) {
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tls.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head);
        let path = text.split(' ').nth(1).unwrap_or("?").to_string();
        let body = format!("tls upstream {path}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
            return;
        }
    }
}
