//! What became of a handshake, in the terms the metrics count: the version and resumption of
//! a completed one, the cause of a failed one.

use std::io;

use rustls::{AlertDescription, CommonState, HandshakeKind, ProtocolVersion};

use crate::metrics::{TlsFailure, TlsVersion};

/// The negotiated version of a completed handshake and whether it resumed a session;
/// `None` before completion (or for a version this build does not enable).
pub fn completed(session: &CommonState) -> Option<(TlsVersion, bool)> {
    let version = match session.protocol_version()? {
        ProtocolVersion::TLSv1_3 => TlsVersion::Tls13,
        ProtocolVersion::TLSv1_2 => TlsVersion::Tls12,
        _ => return None,
    };
    let resumed = session.handshake_kind() == Some(HandshakeKind::Resumed);
    Some((version, resumed))
}

/// Why the handshake failed with `error` (as `TlsStream::handshake` returns it: a rustls
/// error wrapped as `InvalidData`, or the socket's own error).
pub fn failure_cause(error: &io::Error) -> TlsFailure {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(error) => rustls_cause(error),
        None => match error.kind() {
            io::ErrorKind::TimedOut => TlsFailure::Timeout,
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => TlsFailure::Protocol,
            // Closed, reset, broken pipe: the peer went away.
            _ => TlsFailure::Eof,
        },
    }
}

fn rustls_cause(error: &rustls::Error) -> TlsFailure {
    use AlertDescription as A;
    match error {
        rustls::Error::NoCertificatesPresented
        | rustls::Error::AlertReceived(A::CertificateRequired) => TlsFailure::NoCertificate,
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA,
        ) => TlsFailure::BadCertificate,
        _ => TlsFailure::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    fn wrapped(error: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn causes_of_failed_handshakes() {
        let cases = [
            (
                wrapped(rustls::Error::NoCertificatesPresented),
                TlsFailure::NoCertificate,
            ),
            (
                wrapped(rustls::Error::AlertReceived(
                    AlertDescription::CertificateRequired,
                )),
                TlsFailure::NoCertificate,
            ),
            (
                wrapped(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                )),
                TlsFailure::BadCertificate,
            ),
            (
                wrapped(rustls::Error::AlertReceived(
                    AlertDescription::CertificateExpired,
                )),
                TlsFailure::BadCertificate,
            ),
            (
                wrapped(rustls::Error::AlertReceived(
                    AlertDescription::ProtocolVersion,
                )),
                TlsFailure::Protocol,
            ),
            (
                io::Error::new(io::ErrorKind::InvalidData, "TLS handshake stalled"),
                TlsFailure::Protocol,
            ),
            (
                io::Error::from(io::ErrorKind::UnexpectedEof),
                TlsFailure::Eof,
            ),
            (
                io::Error::from(io::ErrorKind::ConnectionReset),
                TlsFailure::Eof,
            ),
            (
                io::Error::from(io::ErrorKind::TimedOut),
                TlsFailure::Timeout,
            ),
        ];
        for (error, cause) in cases {
            assert_eq!(failure_cause(&error), cause, "{error}");
        }
    }
}
