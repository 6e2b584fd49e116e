//! `[server.http2]`, `server.h2c`, and an upstream group's `protocol` and `http2` table.

use toml::Spanned;

use super::Ctx;
use crate::config::file::{RawHttp2, RawUpstream};
use crate::http2::settings::{DEFAULT_SERVER, DEFAULT_UPSTREAM};
use crate::http2::{Http2Settings, UpstreamHttp2, UpstreamProtocol};
use crate::tls::UpstreamTls;

/// RFC 9113 §6.5.2: frame sizes between 16 KiB and 16 MiB - 1.
const FRAME_SIZE: std::ops::RangeInclusive<u64> = 16_384..=16_777_215;
/// Windows up to 2^31 - 1 (RFC 9113 §6.9.1).
const WINDOW: std::ops::RangeInclusive<u64> = 65_535..=2_147_483_647;

/// Compiles `[server.http2]` (absent: the defaults).
pub(super) fn server(cx: &mut Ctx<'_>, raw: Option<&RawHttp2>) -> Http2Settings {
    let none = RawHttp2::default();
    let raw = raw.unwrap_or(&none);
    let d = DEFAULT_SERVER;
    let k = |name: &str| format!("server.http2.{name}");
    Http2Settings {
        max_concurrent_streams: cx.int(
            &k("max_concurrent_streams"),
            &raw.max_concurrent_streams,
            1..=10_000,
            i64::from(d.max_concurrent_streams),
        ) as u32,
        initial_stream_window: window(
            cx,
            &k("initial_stream_window"),
            &raw.initial_stream_window,
            d.initial_stream_window,
        ),
        initial_connection_window: window(
            cx,
            &k("initial_connection_window"),
            &raw.initial_connection_window,
            d.initial_connection_window,
        ),
        max_frame_size: cx.size(
            &k("max_frame_size"),
            &raw.max_frame_size,
            FRAME_SIZE,
            u64::from(d.max_frame_size),
        ) as u32,
        max_header_list_size: cx.size(
            &k("max_header_list_size"),
            &raw.max_header_list_size,
            1024..=1024 * 1024,
            u64::from(d.max_header_list_size),
        ) as u32,
        header_table_size: cx.size(
            &k("header_table_size"),
            &raw.header_table_size,
            0..=65_536,
            u64::from(d.header_table_size),
        ) as u32,
        max_resets_per_second: cx.int(
            &k("max_resets_per_second"),
            &raw.max_resets_per_second,
            1..=100_000,
            i64::from(d.max_resets_per_second),
        ) as u32,
        max_send_buffer: cx.size(
            &k("max_send_buffer"),
            &raw.max_send_buffer,
            16_384..=16 * 1024 * 1024,
            u64::from(d.max_send_buffer),
        ) as u32,
    }
}

fn window(
    cx: &mut Ctx<'_>,
    key: &str,
    value: &Option<Spanned<crate::config::units::SizeValue>>,
    default: u32,
) -> u32 {
    cx.size(key, value, WINDOW, u64::from(default)) as u32
}

/// An upstream group's `protocol`; an h2 group's TLS configuration offers ALPN `h2`.
pub(super) fn protocol(
    cx: &mut Ctx<'_>,
    key: &str,
    up: &RawUpstream,
    tls: Option<UpstreamTls>,
) -> (UpstreamProtocol, Option<UpstreamTls>) {
    let Some(raw) = &up.protocol else {
        return (UpstreamProtocol::Http1, tls);
    };
    let protocol = match raw.get_ref().as_str() {
        "http1" | "http/1.1" => UpstreamProtocol::Http1,
        "h2" => UpstreamProtocol::H2,
        "h2c" => UpstreamProtocol::H2c,
        other => {
            let message =
                format!("unknown protocol `{other}`: expected \"http1\", \"h2\" or \"h2c\"");
            cx.problem(format!("{key}.protocol"), Some(raw.span()), message);
            return (UpstreamProtocol::Http1, tls);
        }
    };
    match (protocol, tls) {
        (UpstreamProtocol::H2, None) if up.tls.is_none() => {
            let message = "\"h2\" is HTTP/2 over TLS: add a `tls` table, or use \"h2c\" for \
                           HTTP/2 over plain TCP"
                .to_string();
            cx.problem(format!("{key}.protocol"), Some(raw.span()), message);
            (protocol, None)
        }
        (UpstreamProtocol::H2, Some(mut tls)) => {
            let mut config = (*tls.config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            tls.config = std::sync::Arc::new(config);
            (protocol, Some(tls))
        }
        (UpstreamProtocol::H2c, Some(_)) => {
            let message = "\"h2c\" is HTTP/2 over plain TCP: remove the `tls` table, or use \
                           \"h2\""
                .to_string();
            cx.problem(format!("{key}.protocol"), Some(raw.span()), message);
            (protocol, None)
        }
        (protocol, tls) => (protocol, tls),
    }
}

/// An upstream group's `http2` table (absent: the defaults).
pub(super) fn upstream(cx: &mut Ctx<'_>, key: &str, up: &RawUpstream) -> UpstreamHttp2 {
    let d = DEFAULT_UPSTREAM;
    let Some(raw) = &up.http2 else { return d };
    let raw = raw.get_ref();
    let k = |name: &str| format!("{key}.http2.{name}");
    UpstreamHttp2 {
        max_connections_per_target: cx.int(
            &k("max_connections_per_target"),
            &raw.max_connections_per_target,
            1..=1024,
            d.max_connections_per_target as i64,
        ) as usize,
        max_streams_per_connection: cx.int(
            &k("max_streams_per_connection"),
            &raw.max_streams_per_connection,
            1..=10_000,
            d.max_streams_per_connection as i64,
        ) as usize,
        ping_interval: cx.timeout(&k("ping_interval"), &raw.ping_interval, d.ping_interval),
        ping_timeout: cx.timeout(&k("ping_timeout"), &raw.ping_timeout, d.ping_timeout),
        initial_stream_window: window(
            cx,
            &k("initial_stream_window"),
            &raw.initial_stream_window,
            d.initial_stream_window,
        ),
        initial_connection_window: window(
            cx,
            &k("initial_connection_window"),
            &raw.initial_connection_window,
            d.initial_connection_window,
        ),
    }
}
