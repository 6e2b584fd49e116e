//! HTTP/2: the glue between the h2 crate and the pipeline.
//!
//! The h2 crate (hyperium, the codec and stream state machines hyper, tonic and Pingora run
//! on) does the protocol: HPACK, flow control, stream states, and its defences (reset
//! counting, CONTINUATION and header-list limits). This module does only what connects it to
//! a monoio worker and to the one pipeline every request runs through:
//!
//! - `wire`: the buffered duplex adapter between monoio's owned-buffer I/O (plain or TLS) and
//!   the poll-based traits h2 reads and writes through;
//! - `head`: an h2 header block as the HTTP/1.1 head the pipeline's codec parses, and back;
//! - `downstream`: a client's stream as the pipeline's client byte stream (request body in,
//!   response out with flow control and trailers);
//! - `upstream` and `pool`: an h2/h2c upstream group's multiplexed connections per target,
//!   and one request on them as the pipeline's upstream byte stream;
//! - `pump`: the request body relay of a full-duplex exchange, driven by both streams;
//! - `settings`: `[server.http2]` and `[upstreams.http2]`.
//!
//! The connection driver that accepts a client's streams and runs each in its own task is
//! `proxy::h2`; docs/http2.md describes the design and what it costs.

pub mod downstream;
pub mod grpc;
pub mod head;
pub mod pool;
pub mod pump;
pub mod settings;
pub mod upstream;
pub mod wire;

pub use settings::{Http2Settings, UpstreamHttp2, UpstreamProtocol};

/// The client connection preface (RFC 9113 §3.4) that starts h2c with prior knowledge.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
