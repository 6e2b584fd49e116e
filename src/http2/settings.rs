//! The HTTP/2 settings the gateway runs with, compiled from `[server.http2]` and an upstream
//! group's `[upstreams.http2]`, and how they become h2 builders.

use std::time::Duration;

/// `[server.http2]`: what a client connection is held to. Every value has a safe default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: streams a client may have open at once; more are
    /// refused with `REFUSED_STREAM`.
    pub max_concurrent_streams: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: bytes of a request body a client may send ahead on one
    /// stream before the gateway read them.
    pub initial_stream_window: u32,
    /// The connection's receive window: request-body bytes of all streams together.
    pub initial_connection_window: u32,
    /// `SETTINGS_MAX_FRAME_SIZE`: the largest frame payload the gateway accepts.
    pub max_frame_size: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`: the decoded size of one header block (HPACK bombs and
    /// CONTINUATION floods end here).
    pub max_header_list_size: u32,
    /// `SETTINGS_HEADER_TABLE_SIZE`: the HPACK dynamic table the client's encoder may use.
    pub header_table_size: u32,
    /// Streams a client may reset (or have reset by protocol errors) per second before the
    /// connection is closed with `GOAWAY(ENHANCE_YOUR_CALM)` (rapid reset, CVE-2023-44487).
    pub max_resets_per_second: u32,
    /// Bytes queued for one stream's response beyond what the client's window lets out.
    pub max_send_buffer: u32,
}

/// `server.http2.*` defaults.
pub const DEFAULT_SERVER: Http2Settings = Http2Settings {
    max_concurrent_streams: 128,
    initial_stream_window: 256 * 1024,
    initial_connection_window: 1024 * 1024,
    max_frame_size: 16 * 1024,
    max_header_list_size: 16 * 1024,
    header_table_size: 4096,
    max_resets_per_second: 100,
    max_send_buffer: 64 * 1024,
};

/// Streams a client may reset before the gateway accepted them (h2's own counter; beyond it
/// the connection gets `GOAWAY(ENHANCE_YOUR_CALM)`).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Stream errors the gateway's side may cause on one connection (malformed requests) before
/// it closes the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

impl Default for Http2Settings {
    fn default() -> Self {
        DEFAULT_SERVER
    }
}

impl Http2Settings {
    /// An h2 server builder with these settings.
    pub fn server_builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.max_concurrent_streams(self.max_concurrent_streams)
            .initial_window_size(self.initial_stream_window)
            .initial_connection_window_size(self.initial_connection_window)
            .max_frame_size(self.max_frame_size)
            .max_header_list_size(self.max_header_list_size)
            .header_table_size(self.header_table_size)
            .max_send_buffer_size(self.max_send_buffer as usize)
            .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
        b
    }
}

/// Which protocol an upstream group speaks (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (default), plain or TLS.
    #[default]
    Http1,
    /// HTTP/2 over TLS, negotiated with ALPN `h2`.
    H2,
    /// HTTP/2 over plain TCP, prior knowledge.
    H2c,
}

impl UpstreamProtocol {
    /// Whether the group speaks HTTP/2.
    pub fn is_h2(self) -> bool {
        !matches!(self, UpstreamProtocol::Http1)
    }
}

/// `[upstreams.http2]`: the multiplexed connections of an h2/h2c group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamHttp2 {
    /// Connections per target per worker; a request waits for a stream when all are full.
    pub max_connections_per_target: usize,
    /// Streams the gateway opens on one connection at most (the target's own
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it).
    pub max_streams_per_connection: usize,
    /// How often an idle-looking connection is pinged.
    pub ping_interval: Duration,
    /// A ping unanswered this long closes the connection.
    pub ping_timeout: Duration,
    /// Receive window per stream (response bodies).
    pub initial_stream_window: u32,
    /// Receive window of the connection.
    pub initial_connection_window: u32,
}

/// `upstreams.http2.*` defaults.
pub const DEFAULT_UPSTREAM: UpstreamHttp2 = UpstreamHttp2 {
    max_connections_per_target: 4,
    max_streams_per_connection: 100,
    ping_interval: Duration::from_secs(30),
    ping_timeout: Duration::from_secs(10),
    initial_stream_window: 1024 * 1024,
    initial_connection_window: 4 * 1024 * 1024,
};

impl Default for UpstreamHttp2 {
    fn default() -> Self {
        DEFAULT_UPSTREAM
    }
}

impl UpstreamHttp2 {
    /// An h2 client builder with these settings.
    pub fn client_builder(&self) -> h2::client::Builder {
        let mut b = h2::client::Builder::new();
        b.initial_window_size(self.initial_stream_window)
            .initial_connection_window_size(self.initial_connection_window)
            .max_header_list_size(64 * 1024)
            .max_send_buffer_size(64 * 1024)
            .enable_push(false);
        b
    }
}
