//! gRPC-Web (grpc/grpc PROTOCOL-WEB.md) for browser clients, over HTTP/1.1 and HTTP/2, to
//! an h2/h2c upstream group that speaks gRPC:
//!
//! - **Request.** `application/grpc-web[+proto]` and `application/grpc-web-text[+proto]`
//!   go upstream as `application/grpc[+proto]` with `te: trailers` (request head edits). A
//!   text body is read whole (bounded by the route's body limit) and base64-decoded before it
//!   is sent; a binary body is already gRPC's framing and streams as it is.
//! - **Response.** A gRPC response passes the rewriting relay of `stages` with [`WebStage`]:
//!   messages go through unchanged, the upstream's trailers become a trailer frame (flag
//!   `0x80`, `name: value\r\n` lines) at the end of the body, and a text response is
//!   base64-encoded as one stream; output is sent as it comes (server streaming). A
//!   trailers-only response passes as headers, as gRPC-Web allows.
//! - **The gateway's own errors** on such a request are trailers-only gRPC-Web answers
//!   (`proxy::answer`): HTTP 200, `grpc-status` and `grpc-message` as headers.
//!
//! A request is recognised when its route chose an h2/h2c group (one branch on the group's
//! protocol): an HTTP/1.1 route pays nothing. The gateway's own answers before a group is
//! chosen (no route, a policy's refusal, a rate limit) are gRPC-Web answers too when the
//! request's `content-type` is gRPC-Web: only those error paths look at it.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::connection::{find_header, ClientConn, Next};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::request_body::Buffered;
use super::stages::{Exchange, Rewrite, RewriteError, Unobserved};
use crate::config::Snapshot;
use crate::http::{HttpError, RequestHead, ResponseFraming};

/// The gRPC-Web flavour of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrpcWeb {
    /// `application/grpc-web`: the body is gRPC's framing.
    Binary,
    /// `application/grpc-web-text`: the body is that framing in base64.
    Text,
}

const GRPC: &[u8] = b"application/grpc";
const WEB: &[u8] = b"application/grpc-web";
const WEB_TEXT: &[u8] = b"application/grpc-web-text";

/// Flag of the frame that carries the trailers in a gRPC-Web body.
const TRAILER_FRAME: u8 = 0x80;

impl GrpcWeb {
    /// The flavour of a request `content-type` and what follows its media type (`+proto`,
    /// parameters); `None` when it is not gRPC-Web.
    pub(super) fn of(content_type: &[u8]) -> Option<(GrpcWeb, &[u8])> {
        [(WEB_TEXT, GrpcWeb::Text), (WEB, GrpcWeb::Binary)]
            .into_iter()
            .find_map(|(name, web)| Some((web, suffix_after(content_type, name)?)))
    }

    /// The media type of this flavour.
    fn media_type(self) -> &'static [u8] {
        match self {
            GrpcWeb::Binary => WEB,
            GrpcWeb::Text => WEB_TEXT,
        }
    }

    /// The `content-type` of the gateway's own answers.
    pub(super) fn answer_content_type(self) -> &'static str {
        match self {
            GrpcWeb::Binary => "application/grpc-web+proto",
            GrpcWeb::Text => "application/grpc-web-text+proto",
        }
    }
}

/// What follows `name` in `value` (ASCII case-insensitive), if `value` is that media type.
fn suffix_after<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..name.len())?;
    let rest = &value[name.len()..];
    let ends = matches!(rest.first(), None | Some(b'+') | Some(b';'));
    (head.eq_ignore_ascii_case(name) && ends).then_some(rest)
}

/// The `content-type` of the gateway's own gRPC answer to a request (gRPC-Web or not).
pub(super) fn answer_content_type(web: Option<GrpcWeb>) -> &'static str {
    web.map_or("application/grpc", GrpcWeb::answer_content_type)
}

impl ClientConn {
    /// Recognises a gRPC-Web request to an h2/h2c group.
    pub(super) fn detect_grpc_web(&mut self) {
        self.grpc_web = self.grpc_web_content_type();
    }

    /// A gRPC-Web call's deadline (`grpc-timeout`), which bounds the whole call as it does a
    /// gRPC call over HTTP/2 (`proxy::h2`).
    pub(super) fn grpc_web_deadline(&self) -> Option<std::time::Duration> {
        self.grpc_web?;
        find_header(self.input.data(), &self.headers, "grpc-timeout")
            .and_then(crate::http2::grpc::parse_timeout)
    }

    /// The gRPC-Web flavour the current request's `content-type` names, whatever its route.
    pub(super) fn grpc_web_content_type(&self) -> Option<GrpcWeb> {
        find_header(self.input.data(), &self.headers, "content-type")
            .and_then(GrpcWeb::of)
            .map(|(web, _)| web)
    }

    /// How the gateway's own answer to the current request is shaped: gRPC-Web when its
    /// group is gRPC and the request gRPC-Web, and also before a group is chosen (no route, a
    /// policy's refusal) when the request says it is gRPC-Web, so that a browser client gets
    /// `grpc-status` (e.g. `UNAUTHENTICATED`) rather than an HTTP status its library maps
    /// coarsely. Only error answers ask; a served request pays nothing.
    pub(super) fn grpc_web_answer(&self, head: Option<&RequestHead>) -> Option<GrpcWeb> {
        self.grpc_web
            .or_else(|| head.and_then(|_| self.grpc_web_content_type()))
    }

    /// Turns the gRPC-Web request into a gRPC one: its head edits and, for text, its body
    /// decoded. The response then goes through [`ClientConn::relay_grpc_web`].
    pub(super) async fn grpc_web_request(
        &mut self,
        snapshot: &Snapshot,
        head: &RequestHead,
        web: GrpcWeb,
    ) -> Result<(), ProxyError> {
        let data = self.input.data();
        let suffix = find_header(data, &self.headers, "content-type")
            .and_then(GrpcWeb::of)
            .map_or(&b""[..], |(_, suffix)| suffix);
        let mut content_type = GRPC.to_vec();
        content_type.extend_from_slice(suffix);
        let edits = &mut self.cache.request_edits;
        edits.remove(b"content-type");
        edits.add(b"content-type", &content_type);
        edits.remove(b"te");
        edits.add(b"te", b"trailers");
        self.takes_trailers = true;
        self.stages.activate();
        if web == GrpcWeb::Binary {
            return Ok(());
        }
        let limit = self.body_rules.max_bytes;
        if self.buffer_request_body(snapshot, head, limit).await? == Buffered::TooLarge {
            return Err(ProxyError::BodyTooLarge);
        }
        let mut decoded = Vec::with_capacity(self.body.bytes().len() / 4 * 3);
        decode_text(self.body.bytes(), &mut decoded)
            .map_err(|()| ProxyError::BadRequest(HttpError::BadRequest))?;
        self.body.replace(&mut decoded, false);
        Ok(())
    }

    /// Relays a gRPC response to a gRPC-Web client (see the module docs); a response that is
    /// not gRPC (an upstream's error page) is relayed as it is.
    pub(super) async fn relay_grpc_web(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        exchange: Exchange<'_>,
        head: &RequestHead,
        web: GrpcWeb,
    ) -> Result<Next, ProxyError> {
        let data = exchange.conn.buf.data();
        let suffix = find_header(data, &self.headers, "content-type")
            .and_then(|value| suffix_after(value, GRPC));
        let Some(suffix) = suffix else {
            let Exchange {
                conn,
                upstream,
                response,
            } = exchange;
            return self
                .relay_response(
                    ctx,
                    snapshot,
                    conn,
                    upstream,
                    head,
                    response,
                    None,
                    &mut Unobserved,
                )
                .await;
        };
        let mut content_type = web.media_type().to_vec();
        content_type.extend_from_slice(suffix);
        let mut edits = std::mem::take(&mut self.stages.edits);
        edits.remove(b"content-type");
        edits.add(b"content-type", &content_type);
        let result = if exchange.response.framing == ResponseFraming::None {
            let Exchange {
                conn,
                upstream,
                response,
            } = exchange;
            self.relay_response(
                ctx,
                snapshot,
                conn,
                upstream,
                head,
                response,
                Some(&edits),
                &mut Unobserved,
            )
            .await
        } else {
            let mut stage = WebStage::new(web);
            self.relay_rewriting(
                ctx,
                snapshot,
                exchange,
                head,
                &edits,
                &mut stage,
                true,
                &mut Unobserved,
            )
            .await
        };
        self.stages.edits = edits;
        result
    }
}

/// Decodes a gRPC-Web text body: base64 in groups of four characters, where a group with
/// padding may end one encoded piece and another piece follow.
fn decode_text(input: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut group = [0u8; 3];
    for quad in input.chunks(4) {
        let n = engine.decode_slice(quad, &mut group).map_err(|_| ())?;
        out.extend_from_slice(&group[..n]);
    }
    Ok(())
}

/// The response stage of a gRPC-Web exchange: messages as they are, trailers as the last
/// frame, all in base64 for text clients.
pub(super) struct WebStage {
    text: bool,
    /// Bytes of a text body not yet encoded (base64 encodes groups of three).
    carry: [u8; 3],
    carried: usize,
}

impl WebStage {
    fn new(web: GrpcWeb) -> Self {
        Self {
            text: web == GrpcWeb::Text,
            carry: [0; 3],
            carried: 0,
        }
    }

    /// Appends `input`, encoded for text clients.
    fn emit(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if !self.text {
            out.extend_from_slice(input);
            return;
        }
        if self.carried > 0 {
            let take = (3 - self.carried).min(input.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&input[..take]);
            self.carried += take;
            input = &input[take..];
            if self.carried < 3 {
                return;
            }
            let carry = self.carry;
            encode_into(&carry, out);
            self.carried = 0;
        }
        let whole = input.len() / 3 * 3;
        encode_into(&input[..whole], out);
        let rest = &input[whole..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
    }
}

/// Appends the padded base64 of `input`.
fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    if input.is_empty() {
        return;
    }
    let start = out.len();
    out.resize(start + input.len().div_ceil(3) * 4, 0);
    let written = STANDARD.encode_slice(input, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

impl Rewrite for WebStage {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.emit(input, out);
        Ok(())
    }

    fn trailers(&mut self, section: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let len = u32::try_from(section.len())
            .map_err(|_| RewriteError("trailer section too large".to_string()))?;
        let mut frame_head = [TRAILER_FRAME, 0, 0, 0, 0];
        frame_head[1..].copy_from_slice(&len.to_be_bytes());
        self.emit(&frame_head, out);
        self.emit(section, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if self.text && self.carried > 0 {
            let carry = self.carry;
            encode_into(&carry[..self.carried], out);
            self.carried = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_recognised_with_their_suffix() {
        assert_eq!(
            GrpcWeb::of(b"application/grpc-web+proto"),
            Some((GrpcWeb::Binary, &b"+proto"[..]))
        );
        assert_eq!(
            GrpcWeb::of(b"Application/gRPC-Web-Text"),
            Some((GrpcWeb::Text, &b""[..]))
        );
        assert_eq!(GrpcWeb::of(b"application/grpc"), None);
        assert_eq!(GrpcWeb::of(b"application/grpc-webx"), None);
    }

    #[test]
    fn text_is_encoded_as_one_stream_whatever_the_pieces() {
        let body = b"\x00\x00\x00\x00\x05hello";
        let trailers = b"grpc-status: 0\r\n";
        let mut whole = body.to_vec();
        whole.extend_from_slice(&[0x80, 0, 0, 0, trailers.len() as u8]);
        whole.extend_from_slice(trailers);
        let mut stage = WebStage::new(GrpcWeb::Text);
        let mut out = Vec::new();
        for piece in body.chunks(4) {
            stage.data(piece, &mut out).expect("data");
        }
        stage.trailers(trailers, &mut out).expect("trailers");
        stage.finish(&mut out).expect("finish");
        assert_eq!(out, STANDARD.encode(&whole).into_bytes());
    }

    #[test]
    fn text_requests_decode_across_padded_pieces() {
        let mut out = Vec::new();
        let input = [STANDARD.encode(b"ab"), STANDARD.encode(b"cde")].concat();
        decode_text(input.as_bytes(), &mut out).expect("decodes");
        assert_eq!(out, b"abcde");
        assert!(decode_text(b"!!!!", &mut out).is_err());
    }
}
