//! What a request's policies established: its client address, its consumer, and the header
//! fields that tell the upstream about them.
//!
//! Owned by the client connection and reused for every request on it: clearing keeps the
//! buffers, so filling them again allocates nothing once they have grown.

use std::net::IpAddr;
use std::rc::Rc;

use super::consumers::ConsumerId;
use super::jwt::VerifiedToken;

/// What one authentication policy sends upstream on success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Header carrying the consumer's name (`X-Consumer` by default); `None` sends none.
    pub consumer_header: Option<String>,
}

/// The identity of the request being served.
#[derive(Debug)]
pub struct Identity {
    /// The client's address: the peer, or the address a trusted proxy forwarded for.
    pub client_ip: IpAddr,
    authenticated: bool,
    /// Index in the route's chain of the authentication stage that accepted the request.
    accepted_by: Option<usize>,
    consumer: Option<ConsumerId>,
    /// The consumer's name (a configured consumer, or a token's subject); empty if none.
    name: String,
    token: Option<Rc<VerifiedToken>>,
    /// Header fields (`Name: value\r\n`) added to the upstream request.
    upstream_fields: Vec<u8>,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            client_ip: IpAddr::from([0, 0, 0, 0]),
            authenticated: false,
            accepted_by: None,
            consumer: None,
            name: String::new(),
            token: None,
            upstream_fields: Vec::new(),
        }
    }
}

impl Identity {
    /// Forgets the previous request, keeping the buffers.
    pub fn clear(&mut self) {
        self.client_ip = IpAddr::from([0, 0, 0, 0]);
        self.authenticated = false;
        self.accepted_by = None;
        self.consumer = None;
        self.name.clear();
        self.token = None;
        self.upstream_fields.clear();
    }

    /// Whether an authentication policy accepted the request.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Index in the route's chain of the authentication stage that accepted the request.
    pub fn accepted_by(&self) -> Option<usize> {
        self.accepted_by
    }

    /// Records which stage of the chain accepted the request.
    pub fn set_accepted_by(&mut self, stage: usize) {
        self.accepted_by = Some(stage);
    }

    /// The configured consumer, if the credential belonged to one.
    pub fn consumer(&self) -> Option<ConsumerId> {
        self.consumer
    }

    /// The consumer's name (the rate-limit key for `key = "consumer"`), if authenticated.
    pub fn consumer_name(&self) -> Option<&str> {
        (self.authenticated && !self.name.is_empty()).then_some(self.name.as_str())
    }

    /// The verified JWT, if a `jwt` policy authenticated the request.
    pub fn token(&self) -> Option<&VerifiedToken> {
        self.token.as_deref()
    }

    /// Header fields to add to the upstream request (`Name: value\r\n` each).
    pub fn upstream_fields(&self) -> &[u8] {
        &self.upstream_fields
    }

    /// Records an authenticated configured consumer and its forwarded header.
    pub fn set_consumer(&mut self, id: ConsumerId, name: &str, forwarding: &Forwarding) {
        self.authenticated = true;
        self.consumer = Some(id);
        self.set_name(name, forwarding);
    }

    /// Records a verified token: `consumer` when its subject names a configured consumer,
    /// `name` (possibly empty) as the consumer's name, and the token's forwarded claims.
    pub fn set_token(
        &mut self,
        token: Rc<VerifiedToken>,
        consumer: Option<ConsumerId>,
        name: &str,
        forwarding: &Forwarding,
    ) {
        self.authenticated = true;
        self.consumer = consumer;
        self.set_name(name, forwarding);
        self.upstream_fields
            .extend_from_slice(token.forwarded_fields());
        self.token = Some(token);
    }

    fn set_name(&mut self, name: &str, forwarding: &Forwarding) {
        self.name.clear();
        self.name.push_str(name);
        if let Some(header) = &forwarding.consumer_header {
            if !name.is_empty() && is_field_value(name.as_bytes()) {
                push_field(
                    &mut self.upstream_fields,
                    header.as_bytes(),
                    name.as_bytes(),
                );
            }
        }
    }
}

/// Whether `value` may be written as a header value as is: visible ASCII, spaces and tabs,
/// not empty at either end.
pub fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        && value.first().is_some_and(|&b| b != b' ' && b != b'\t')
        && value.last().is_some_and(|&b| b != b' ' && b != b'\t')
}

/// Appends `name: value\r\n`.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_refuse_control_bytes_and_outer_blanks() {
        assert!(is_field_value(b"alice"));
        assert!(is_field_value(b"a b"));
        assert!(!is_field_value(b"a\r\nX-Evil: 1"));
        assert!(!is_field_value(b" a"));
        assert!(!is_field_value(b""));
        assert!(!is_field_value("é".as_bytes()));
    }
}
