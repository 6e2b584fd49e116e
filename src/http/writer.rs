//! Writing heads: the forwarded request, the response to the client, and the gateway's own
//! responses. Every writer appends to a reused `Vec<u8>`.

use std::net::IpAddr;

use super::{HeaderSpan, RequestHead, ResponseHead, Version};

/// What the proxy decided about a request that is being forwarded.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInfo<'a> {
    /// Path and query to send upstream (normalized, rewritten).
    pub path_and_query: &'a [u8],
    /// The `Host` value to send.
    pub host: &'a [u8],
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// `http` or `https`.
    pub proto: &'a str,
    /// The request id: the client's `X-Request-Id` or a generated one.
    pub request_id: &'a [u8],
    /// Whether the client's `X-Request-Id` is being reused (then it is not added twice).
    pub request_id_from_client: bool,
}

/// Appends the upstream request head for `head` (parsed from `buf`).
pub fn write_upstream_request(
    _out: &mut Vec<u8>,
    _buf: &[u8],
    _head: &RequestHead,
    _headers: &[HeaderSpan],
    _fwd: &ForwardInfo<'_>,
) {
    todo!("http helper")
}

/// What the proxy decided about the response going back to the client.
#[derive(Debug, Clone, Copy)]
pub struct DownstreamInfo<'a> {
    /// The client's protocol version.
    pub client_version: Version,
    /// Whether the client connection stays open after this response.
    pub keep_alive: bool,
    /// The request id to echo if the upstream did not send one.
    pub request_id: &'a [u8],
    /// The body will be de-chunked and delimited by closing (HTTP/1.0 client).
    pub dechunk: bool,
}

/// Appends the response head for the client, from the upstream's `head` (parsed from `buf`).
pub fn write_downstream_response(
    _out: &mut Vec<u8>,
    _buf: &[u8],
    _head: &ResponseHead,
    _headers: &[HeaderSpan],
    _info: &DownstreamInfo<'_>,
) {
    todo!("http helper")
}

/// Appends a complete error response with a short plain-text body.
pub fn write_error_response(
    _out: &mut Vec<u8>,
    _status: u16,
    _message: &str,
    _keep_alive: bool,
    _request_id: &[u8],
) {
    todo!("http helper")
}

/// Appends a complete response served by the gateway itself (a `respond` route).
#[allow(clippy::too_many_arguments)]
pub fn write_static_response(
    _out: &mut Vec<u8>,
    _status: u16,
    _headers: &[(String, String)],
    _body: &[u8],
    _head_only: bool,
    _client_version: Version,
    _keep_alive: bool,
    _request_id: &[u8],
) {
    todo!("http helper")
}

/// Appends `HTTP/1.1 100 Continue`.
pub fn write_continue(_out: &mut Vec<u8>) {
    todo!("http helper")
}
