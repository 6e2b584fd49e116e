//! WebSocket and HTTP/1.1 Upgrade through the gateway, under both drivers: a real client and
//! a real server (tungstenite) on either side, raw bytes for the handshakes a library would
//! never send, and the tunnel's limits (idle, life, caps, message size, masking), TLS on both
//! hops, reload, shutdown and metrics.
mod common;
#[path = "common/ws.rs"]
mod ws;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::client::Raw;
use common::gateway::GatewayConfig;
use common::tls::{self, toml_path, Kind, Pki};
use common::upstream::{Behavior, Echoed, Upstream};
use common::{wait_until, IO_TIMEOUT};
use tungstenite::Message;
use ws::{close_code, echo, field, next_data, WsUpstream};

/// One direction's buffer in the gateway (`tunnel::relay::TUNNEL_BUF`).
const TUNNEL_BUF: u64 = 16 * 1024;
/// The size of the messages a `flood` sends (the unit its blocked-at count moves in).
const FLOOD_MESSAGE: u64 = 64 * 1024;

/// A route `ws` (path `/ws`) to group `ws` that lets requests upgrade to WebSocket, with
/// `extra` keys; and a plain route `plain` (path `/plain`) to group `plain`.
fn routes(extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"ws\"\nmatch = {{ path_prefix = \"/ws\" }}\nupstream = \"ws\"\n\
         upgrade = [\"websocket\"]\n{extra}\n\n\
         [[routes]]\nname = \"plain\"\nmatch = {{ path_prefix = \"/plain\" }}\nupstream = \"plain\"\n"
    )
}

fn config(driver: &str, ws_up: &WsUpstream, plain: &Upstream, extra: &str) -> GatewayConfig {
    GatewayConfig::new(driver)
        .upstream("ws", &[ws_up.addr()])
        .upstream("plain", &[plain.addr()])
        .merge_interval("100ms")
        .routes(&routes(extra))
}

/// A handshake for `path` with `fields` (each ending in CRLF).
fn handshake(path: &str, fields: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n{fields}\r\n")
}

const GOOD: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [7, 1, 9, 3];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Re-reads `path` until it holds at least `n` lines (bounded by `IO_TIMEOUT`); returns them.
fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until("access log lines", IO_TIMEOUT, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text.lines().map(str::to_owned).collect();
        lines.len() >= n
    });
    lines
}

/// A raw handshake to `/ws` with `fields` that must switch; then one frame echoed.
fn raw_tunnel_echoes(gw: &common::gateway::Gateway, fields: &str) {
    let mut raw = Raw::connect(gw.addr());
    raw.send(handshake("/ws", fields));
    assert_eq!(raw.read_head_only().status, 101, "{fields}");
    raw.send(client_frame(0x1, b"hi"));
    assert_eq!(&raw.read_at_least(4)[..4], &[0x81, 2, b'h', b'i']);
}

/// Sends `flood N` on a client connected to `upstream` (directly or through a gateway) that
/// then reads nothing; returns how many bytes the upstream wrote before a write blocked.
fn flood_until_blocked(
    client: &mut tungstenite::WebSocket<TcpStream>,
    upstream: &WsUpstream,
    total: u64,
) -> u64 {
    client
        .send(Message::text(format!("flood {total}")))
        .expect("send");
    wait_until("the flood to block", IO_TIMEOUT, || {
        upstream.flood_blocked_at() > 0
    });
    upstream.flood_blocked_at()
}

driver_tests! {
    fn echo_large_messages_ping_pong_and_close_handshake(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").start();
        let mut client = ws::connect(gw.addr(), "/ws/chat");
        assert_eq!(echo(&mut client, "hello"), "hello");
        let big: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        client.send(Message::binary(big.clone())).expect("send big");
        assert_eq!(next_data(&mut client).into_data().as_ref(), &big[..]);
        client.send(Message::Ping(vec![1, 2, 3].into())).expect("ping");
        match client.read().expect("pong") {
            Message::Pong(p) => assert_eq!(p.as_ref(), &[1, 2, 3]),
            other => panic!("expected a pong, got {other:?}"),
        }
        client.close(None).expect("close");
        loop {
            match client.read() {
                Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
                Ok(_) => {}
                Err(e) => panic!("close handshake: {e}"),
            }
        }
        wait_until("upstream side closed", IO_TIMEOUT, || ws_up.closed() == 1);
        // The upstream's end of stream reached the client (the gateway passed it on) before
        // the client ends its own: the reason below is then certain.
        let mut rest = [0u8; 64];
        assert_eq!(client.get_mut().read(&mut rest).expect("end of stream"), 0);
        drop(client);
        // The handshake went upstream with the upgrade fields and the gateway's own.
        let fields = &ws_up.fields()[0];
        assert_eq!(field(fields, "upgrade"), Some("websocket"));
        assert_eq!(field(fields, "connection"), Some("upgrade"));
        assert!(field(fields, "sec-websocket-key").is_some());
        assert_eq!(field(fields, "x-forwarded-for"), Some("127.0.0.1"));
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.closed_total() == 1));
        let t = m.tunnels("ws").expect("tunnel stats");
        assert_eq!(t.opened, 1);
        // The server ends the TCP connection first after a close handshake (RFC 6455 §7.1.1).
        assert_eq!(t.closed_for("upstream_closed"), 1, "{t:?}");
        assert!(t.bytes_up > big.len() as u64 && t.bytes_down > big.len() as u64, "{t:?}");
        assert_eq!(t.buckets.iter().sum::<u64>(), 1);
    }

    fn tunnel_bytes_reach_the_metrics_while_the_tunnel_is_open(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").start();
        let mut client = ws::connect(gw.addr(), "/ws");
        let message = "x".repeat(10_000);
        assert_eq!(echo(&mut client, &message), message);
        // The worker's next metrics flush hands over the open tunnel's bytes.
        let m = gw.metrics_until(|m| {
            m.tunnels("ws").is_some_and(|t| t.bytes_up >= 10_000 && t.bytes_down >= 10_000)
        });
        let t = m.tunnels("ws").expect("stats");
        assert_eq!((t.opened, t.closed_total()), (1, 0), "{t:?}");
        // Closing adds only what was not reported yet.
        let (up, down) = (t.bytes_up, t.bytes_down);
        assert_eq!(echo(&mut client, "more"), "more");
        drop(client);
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.closed_total() == 1));
        let t = m.tunnels("ws").expect("stats");
        assert!(t.bytes_up >= up + 4 && t.bytes_up < up + 100, "{t:?}");
        assert!(t.bytes_down >= down + 4 && t.bytes_down < down + 100, "{t:?}");
    }

    fn server_initiated_close_reaches_the_client(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").start();
        let mut client = ws::connect(gw.addr(), "/ws");
        client.send(Message::text("close-me")).expect("send");
        assert_eq!(close_code(&mut client), Some(1000));
        // The server closed its connection after the close handshake: the client sees the
        // end of the stream, then closes its own.
        assert!(matches!(client.read(), Err(tungstenite::Error::ConnectionClosed)));
        drop(client);
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.closed_total() == 1));
        let t = m.tunnels("ws").expect("stats");
        assert_eq!(t.closed_for("upstream_closed"), 1, "{t:?}");
    }

    fn malformed_handshakes_are_refused_and_never_reach_the_upstream(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").start();
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let cases = [
            (handshake("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"), 400),
            (handshake("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n"), 400),
            (handshake("/ws", &format!("Connection: Upgrade\r\nUpgrade: websocket\r\n{key}{key}Sec-WebSocket-Version: 13\r\n")), 400),
            (handshake("/ws", &format!("Connection: keep-alive\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n")), 400),
            (format!("POST /ws HTTP/1.1\r\nHost: gw.test\r\n{GOOD}Content-Length: 0\r\n\r\n"), 400),
            (handshake("/ws", &format!("Connection: Upgrade\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 8\r\n")), 426),
        ];
        for (request, status) in cases {
            let mut raw = Raw::connect(gw.addr());
            raw.send(&request);
            let r = raw.read_response();
            assert_eq!(r.status, status, "{request}");
            if status == 426 {
                assert_eq!(r.header("sec-websocket-version"), Some("13"));
            }
        }
        assert_eq!(ws_up.handshakes(), 0, "a refused handshake reached the upstream");
    }

    fn h2c_upgrades_are_never_tunnelled(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        // The websocket route's group is an HTTP echo here: what reaches it is visible.
        let gw = GatewayConfig::new(driver)
            .upstream("ws", &[plain.addr()])
            .upstream("plain", &[plain.addr()])
            .routes(&routes(""))
            .start();
        drop(ws_up);
        for path in ["/ws", "/plain"] {
            let mut raw = Raw::connect(gw.addr());
            raw.send(handshake(
                path,
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
            ));
            let r = raw.read_response();
            assert_eq!(r.status, 200, "{path}");
            let echoed = Echoed::parse(&r.text());
            assert_eq!(echoed.header("upgrade"), None, "{path}: h2c offer forwarded");
            assert_eq!(echoed.header("http2-settings"), None, "{path}");
        }
        // A WebSocket offer on a route without `upgrade` goes on as a plain request.
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/plain", GOOD));
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.text()).header("upgrade"), None);
    }

    fn an_upstream_101_nobody_asked_for_is_a_502(driver: &str) {
        let switching = Upstream::start(
            "switch",
            Behavior::InterimThenEcho(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"
                    .to_vec(),
            ),
        );
        let gw = GatewayConfig::new(driver)
            .upstream("ws", &[switching.addr()])
            .upstream("plain", &[switching.addr()])
            .routes(&routes(""))
            .start();
        for request in [
            handshake("/plain/x", ""),
            handshake("/ws/x", ""),
            // Asked for websocket, switched to h2c.
            handshake("/ws/x", GOOD),
        ] {
            let mut raw = Raw::connect(gw.addr());
            raw.send(&request);
            assert_eq!(raw.read_response().status, 502, "{request}");
        }
    }

    fn a_refused_handshake_is_relayed_and_the_connection_stays_http(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws/deny", GOOD));
        let r = raw.read_response();
        assert_eq!(r.status, 403);
        assert_eq!(r.text(), "denied");
        raw.send(common::client::get_req("/plain/after"));
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.text()).target, "/plain/after");
        assert_eq!(ws_up.handshakes(), 1);
    }

    fn policies_run_before_the_upgrade(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(
            driver,
            &ws_up,
            &plain,
            "policies = [\"outsiders\"]\n[policies.outsiders]\nkind = \"ip_filter\"\nallow = [\"10.0.0.0/8\"]",
        )
        .start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws", GOOD));
        assert_eq!(raw.read_response().status, 403);
        assert_eq!(ws_up.handshakes(), 0);
    }

    fn cross_origin_handshakes_are_refused_through_the_cors_origins(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(
            driver,
            &ws_up,
            &plain,
            "policies = [\"web\"]\n[policies.web]\nkind = \"cors\"\n\
             origins = [\"https://app.example.com\", \"https://*.example.com\"]",
        )
        .start();
        // Cross-site WebSocket hijacking: a page elsewhere opens a socket with the user's
        // cookies; the browser says where the page is from in `Origin`.
        for evil in ["https://evil.test", "https://evil-example.com", "null"] {
            let mut raw = Raw::connect(gw.addr());
            raw.send(handshake("/ws", &format!("{GOOD}Origin: {evil}\r\n")));
            let r = raw.read_response();
            assert_eq!(r.status, 403, "{evil}");
            assert_eq!(r.header("access-control-allow-origin"), None);
        }
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws", &format!("{GOOD}Origin: https://app.example.com\r\nOrigin: https://evil.test\r\n")));
        assert_eq!(raw.read_response().status, 403, "two Origin fields");
        assert_eq!(ws_up.handshakes(), 0, "a refused handshake never reaches the upstream");
        // An allowed origin and a client without `Origin` (not a browser) tunnel.
        for fields in [format!("{GOOD}Origin: https://chat.example.com\r\n"), GOOD.to_string()] {
            let mut raw = Raw::connect(gw.addr());
            raw.send(handshake("/ws", &fields));
            assert_eq!(raw.read_head_only().status, 101, "{fields}");
            raw.send(client_frame(0x1, b"hi"));
            assert_eq!(&raw.read_at_least(4)[..4], &[0x81, 2, b'h', b'i']);
        }
        assert_eq!(ws_up.handshakes(), 2);
    }

    fn idle_tunnels_are_closed(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "tunnel_idle = \"300ms\"").start();
        let mut client = ws::connect(gw.addr(), "/ws");
        assert_eq!(echo(&mut client, "one"), "one");
        let quiet = Instant::now();
        let end = client.read();
        let waited = quiet.elapsed();
        assert!(end.is_err(), "{end:?}");
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.closed_total() == 1));
        assert_eq!(m.tunnels("ws").expect("stats").closed_for("idle"), 1);
    }

    fn tunnels_end_at_tunnel_max_even_when_busy(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "tunnel_max = \"400ms\"").start();
        // The client's clock starts before the handshake, so before the gateway's tunnel
        // clock (which starts when it relays the 101): the tunnel cannot seem to end early.
        let started = Instant::now();
        let mut client = ws::connect(gw.addr(), "/ws");
        loop {
            if client.send(Message::text("busy")).is_err() {
                break;
            }
            match client.read() {
                Ok(_) => {}
                Err(_) => break,
            }
            assert!(started.elapsed() < Duration::from_secs(5), "tunnel_max never ended it");
        }
        assert!(started.elapsed() >= Duration::from_millis(400));
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.closed_total() == 1));
        assert_eq!(m.tunnels("ws").expect("stats").closed_for("max_duration"), 1);
    }

    fn messages_over_max_message_bytes_are_closed_with_1009(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "max_message_bytes = 1000").start();
        let mut client = ws::connect(gw.addr(), "/ws");
        let fits = "a".repeat(1000);
        assert_eq!(echo(&mut client, &fits), fits);
        client.send(Message::text("b".repeat(1001))).expect("send");
        assert_eq!(close_code(&mut client), Some(1009));
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.closed_total() == 1));
        assert_eq!(m.tunnels("ws").expect("stats").closed_for("message_too_big"), 1);
        // The upstream got the message that fitted, then the gateway's close: never a byte of
        // the one over the limit.
        wait_until("the upstream side to end", IO_TIMEOUT, || ws_up.closed() == 1);
        assert_eq!(ws_up.received(), [fits]);
        assert_eq!(ws_up.close_codes(), [Some(1009)]);
    }

    fn unmasked_client_frames_are_closed_with_1002(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "max_message_bytes = \"64KiB\"").start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws", GOOD));
        let r = raw.read_head_only();
        assert_eq!(r.status, 101);
        assert_eq!(r.header("upgrade"), Some("websocket"));
        raw.send(client_frame(0x1, b"masked"));
        let echoed = raw.read_at_least(8).to_vec();
        assert_eq!(&echoed[..8], &[0x81, 6, b'm', b'a', b's', b'k', b'e', b'd']);
        raw.send([0x81, 0x02, b'h', b'i']);
        let rest = raw.read_until_closed();
        let tail = &rest[8..];
        assert_eq!(&tail[..4], &[0x88, 16, 0x03, 0xEA], "{rest:?}");
        // The unmasked frame never reached the upstream: it got the masked one, then 1002.
        wait_until("the upstream side to end", IO_TIMEOUT, || ws_up.closed() == 1);
        assert_eq!(ws_up.received(), ["masked"]);
        assert_eq!(ws_up.close_codes(), [Some(1002)]);
    }

    fn a_slow_reader_holds_the_upstream_back(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").start();
        let mut client = ws::connect(gw.addr(), "/ws");
        let total: u64 = 256 * 1024 * 1024;
        // What loopback's kernel buffers take on one hop whose reader reads nothing: the
        // same flood straight from the upstream to a client.
        let direct_up = WsUpstream::start();
        let mut direct = ws::connect(direct_up.addr(), "/");
        let one_hop = flood_until_blocked(&mut direct, &direct_up, total);
        let client_rcvbuf = socket2::SockRef::from(direct.get_ref()).recv_buffer_size().expect("SO_RCVBUF");
        drop(direct);
        // Through the gateway the client reads nothing either: the upstream must be stopped
        // by backpressure once the two hops' kernel buffers and the tunnel's buffer of that
        // direction are full, not after the flood.
        let blocked = flood_until_blocked(&mut client, &ws_up, total);
        // Measured on loopback (tcp_wmem max 4 MiB): one hop ~4 MiB (the sender's send
        // buffer grows to tcp_wmem's max, the idle reader's receive buffer stays at 128 KiB),
        // through the gateway ~8.5 MiB. The bound: two hops, the tunnel's buffer, one flood
        // message, and 2 MiB for the gateway's upstream-side receive buffer (it reads, so it
        // may autotune): a gateway that held 8 MiB more would fail.
        let bound = 2 * one_hop + TUNNEL_BUF + FLOOD_MESSAGE + 2 * 1024 * 1024;
        eprintln!("slow reader: one hop {one_hop}, client SO_RCVBUF {client_rcvbuf}, through the gateway {blocked}, bound {bound}");
        assert!(blocked <= bound, "upstream wrote {blocked} bytes into a stalled tunnel (one hop holds {one_hop})");
        let mut received = 0;
        while received < total {
            received += next_data(&mut client).into_data().len() as u64;
        }
        assert_eq!(received, total);
    }

    fn a_thousand_concurrent_tunnels_on_two_workers(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").workers(2).start();
        let mut clients: Vec<_> = (0..1000).map(|_| ws::connect(gw.addr(), "/ws")).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(Message::text(format!("m{i}"))).expect("send");
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(next_data(client).to_text().expect("text"), format!("m{i}"));
        }
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.opened == 1000));
        assert_eq!(m.tunnels("ws").expect("stats").closed_total(), 0);
        assert_eq!(ws_up.open(), 1000);
        drop(clients);
        wait_until("tunnels to close", IO_TIMEOUT, || ws_up.open() == 0);
    }

    fn tunnel_caps_answer_503_until_a_tunnel_closes(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "max_tunnels = 2").start();
        let first = ws::connect(gw.addr(), "/ws");
        let _second = ws::connect(gw.addr(), "/ws");
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws", GOOD));
        assert_eq!(raw.read_response().status, 503);
        assert_eq!(ws_up.handshakes(), 2);
        drop(first);
        wait_until("a slot to free", IO_TIMEOUT, || ws::try_connect(gw.addr(), "/ws").is_ok());
    }

    fn handshakes_are_retried_on_another_target_and_the_worker_cap_holds(driver: &str) {
        let ws_up = WsUpstream::start();
        let dead = common::upstream::refused_addr();
        let gw = GatewayConfig::new(driver)
            .limit("max_tunnels_per_worker", "3")
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"ws\"\ntargets = [ {{ addr = \"{dead}\" }}, {{ addr = \"{}\" }} ]\n\
                 retry = {{ attempts = 2, on = [\"connect_error\"], backoff = \"1ms\", max_backoff = \"2ms\" }}",
                ws_up.addr()
            ))
            .routes("[[routes]]\nname = \"ws\"\nupstream = \"ws\"\nupgrade = [\"websocket\"]\n")
            .start();
        // Round robin sends every other first attempt to the dead target: all switch anyway.
        let mut clients: Vec<_> = (0..3).map(|_| ws::connect(gw.addr(), "/ws")).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(echo(client, &format!("c{i}")), format!("c{i}"));
        }
        assert_eq!(ws_up.handshakes(), 3);
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws", GOOD));
        assert_eq!(raw.read_response().status, 503, "the worker's cap of 3");
    }

    fn wss_to_a_tls_upstream(driver: &str) {
        let pki = Pki::new("wss");
        let server = pki.issue("gateway", Kind::Server(&["gateway.test"]));
        let upstream_id = pki.issue("upstream", Kind::Server(&["upstream.test"]));
        let ws_up = WsUpstream::start_tls(&upstream_id);
        let certs = format!(
            "certificates = [ {{ cert = {}, key = {}, server_names = [], default = true }} ]",
            toml_path(&server.cert),
            toml_path(&server.key)
        );
        let gw = GatewayConfig::new(driver)
            .tls_listener(&certs)
            .upstream_raw(&format!(
                "[[upstreams]]\nname = \"ws\"\ntargets = [ {{ addr = \"{}\" }} ]\n\
                 tls = {{ sni = \"upstream.test\", ca = {} }}",
                ws_up.addr(),
                toml_path(&pki.ca_path())
            ))
            .routes("[[routes]]\nname = \"ws\"\nupstream = \"ws\"\nupgrade = [\"websocket\"]\n")
            .start();
        let config = tls::client_config(&[pki.ca_der()], None);
        let stream = tls::connect(gw.tls_addr(), "gateway.test", &config).expect("tls");
        let (mut client, _) = tungstenite::client("wss://gateway.test/ws", stream).expect("wss handshake");
        assert_eq!(echo(&mut client, "over tls"), "over tls");
        let big = vec![0xC3u8; 1024 * 1024];
        client.send(Message::binary(big.clone())).expect("send");
        assert_eq!(next_data(&mut client).into_data().as_ref(), &big[..]);
        client.send(Message::text("close-me")).expect("send");
        assert_eq!(close_code(&mut client), Some(1000));
    }

    fn a_reload_leaves_open_tunnels_alone(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let cfg = config(driver, &ws_up, &plain, "");
        let gw = cfg.start();
        let mut client = ws::connect(gw.addr(), "/ws");
        assert_eq!(echo(&mut client, "before"), "before");
        // The new configuration no longer has the route at all.
        let reloaded = GatewayConfig::new(driver)
            .upstream("plain", &[plain.addr()])
            .route_all_to("plain");
        gw.store(&reloaded);
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws", GOOD));
        assert_eq!(raw.read_response().status, 200, "new handshakes follow the new config");
        assert_eq!(echo(&mut client, "after"), "after");
    }

    fn shutdown_closes_tunnels_at_graceful_shutdown(driver: &str) {
        let ws_up = WsUpstream::start();
        let gw = GatewayConfig::new(driver)
            .upstream("ws", &[ws_up.addr()])
            .merge_interval("100ms")
            .server("graceful_shutdown", "\"300ms\"")
            .routes(
                "[[routes]]\nname = \"frames\"\nmatch = { path_prefix = \"/frames\" }\nupstream = \"ws\"\n\
                 upgrade = [\"websocket\"]\nmax_message_bytes = \"64KiB\"\n\n\
                 [[routes]]\nname = \"ws\"\nmatch = { path_prefix = \"/ws\" }\nupstream = \"ws\"\n\
                 upgrade = [\"websocket\"]\n",
            )
            .start();
        let mut framed = ws::connect(gw.addr(), "/frames");
        let mut unread = ws::connect(gw.addr(), "/ws");
        assert_eq!(echo(&mut framed, "hi"), "hi");
        assert_eq!(echo(&mut unread, "hi"), "hi");
        let started = Instant::now();
        let done = std::thread::spawn(move || gw.shutdown_with_metrics(Duration::from_secs(10)));
        // The tunnels stay up through the grace period; then a frame-aware one is closed with
        // 1001 (going away) on both sides, one that copies bytes unread just closed.
        assert_eq!(close_code(&mut framed), Some(1001));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(5), "{waited:?}");
        let end = unread.read();
        assert!(end.is_err(), "{end:?}");
        let m = done.join().expect("shutdown");
        for route in ["frames", "ws"] {
            let t = m.tunnels(route).expect("tunnel stats");
            assert_eq!((t.closed_for("shutdown"), t.closed_total()), (1, 1), "{route}: {t:?}");
        }
        wait_until("the upstream's close frame", IO_TIMEOUT, || !ws_up.close_codes().is_empty());
        assert_eq!(ws_up.close_codes(), [Some(1001)]);
    }

    fn a_reload_changing_tunnel_limits_applies_to_new_tunnels_only(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(driver, &ws_up, &plain, "").start();
        let mut old = ws::connect(gw.addr(), "/ws");
        assert_eq!(echo(&mut old, "before"), "before");
        gw.store(&config(driver, &ws_up, &plain, "tunnel_idle = \"300ms\""));
        let mut idle = ws::connect(gw.addr(), "/ws");
        // Taken before the echo: the tunnel's last byte passes the gateway after this.
        let quiet = Instant::now();
        assert_eq!(echo(&mut idle, "new"), "new");
        let end = idle.read();
        assert!(end.is_err() && quiet.elapsed() >= Duration::from_millis(300), "{end:?}");
        // The old tunnel was quiet longer than that, under the limits it opened with.
        assert_eq!(echo(&mut old, "still open"), "still open");
        gw.store(&config(driver, &ws_up, &plain, "tunnel_max = \"300ms\""));
        // Taken before the handshake: the tunnel's life starts at its 101, after this.
        let opened = Instant::now();
        let mut short = ws::connect(gw.addr(), "/ws");
        while short.send(Message::text("busy")).is_ok() && short.read().is_ok() {
            assert!(opened.elapsed() < Duration::from_secs(5), "the new tunnel_max never ended it");
        }
        assert!(opened.elapsed() >= Duration::from_millis(300));
        assert_eq!(echo(&mut old, "still open"), "still open");
        let m = gw.metrics_until(|m| m.tunnels("ws").is_some_and(|t| t.closed_total() == 2));
        let t = m.tunnels("ws").expect("stats");
        assert_eq!((t.opened, t.closed_for("idle"), t.closed_for("max_duration")), (3, 1, 1), "{t:?}");
    }

    fn handshakes_count_against_the_routes_rate_limit(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(
            driver,
            &ws_up,
            &plain,
            "policies = [\"per-client\"]\n[policies.per-client]\nkind = \"rate_limit\"\n\
             key = \"ip\"\nrate = \"2/h\"\nscope = \"worker\"",
        )
        .start();
        let mut tunnels: Vec<_> = (0..2).map(|_| ws::connect(gw.addr(), "/ws")).collect();
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws", GOOD));
        assert_eq!(raw.read_response().status, 429, "the third handshake is over the limit");
        assert_eq!(ws_up.handshakes(), 2, "a limited handshake never reaches the upstream");
        // Messages in an open tunnel are not requests: they are not counted.
        for (i, tunnel) in tunnels.iter_mut().enumerate() {
            for n in 0..5 {
                assert_eq!(echo(tunnel, &format!("{i}.{n}")), format!("{i}.{n}"));
            }
        }
    }

    fn handshakes_without_credentials_are_refused_by_the_auth_policy(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let gw = config(
            driver,
            &ws_up,
            &plain,
            "policies = [\"key\"]\n[policies.key]\nkind = \"api_key\"\n\n\
             [[consumers]]\nname = \"alice\"\napi_keys = [\"alice-key-0123456789\"]",
        )
        .start();
        for fields in [GOOD.to_string(), format!("{GOOD}X-Api-Key: wrong-key-0123456789\r\n")] {
            let mut raw = Raw::connect(gw.addr());
            raw.send(handshake("/ws", &fields));
            assert_eq!(raw.read_response().status, 401, "{fields}");
        }
        assert_eq!(ws_up.handshakes(), 0, "a refused handshake never reaches the upstream");
        raw_tunnel_echoes(&gw, &format!("{GOOD}X-Api-Key: alice-key-0123456789\r\n"));
        assert_eq!(ws_up.handshakes(), 1);
    }

    fn tunnelled_handshakes_are_in_the_access_log(driver: &str) {
        let (ws_up, plain) = (WsUpstream::start(), Upstream::echo("plain"));
        let path = std::env::temp_dir().join(format!("ringgate-ws-log-{driver}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let gw = config(driver, &ws_up, &plain, "")
            .tables(&format!("[access_log]\nformat = \"json\"\npath = \"{}\"\n", path.display()))
            .start();
        let mut client = ws::connect(gw.addr(), "/ws/chat");
        assert_eq!(echo(&mut client, "logged"), "logged");
        // Logged when it switched, while the tunnel is still open.
        let lines = wait_for_lines(&path, 1);
        let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("json line");
        assert_eq!(line["status"], 101, "{line}");
        assert_eq!(line["route"], "ws", "{line}");
        assert_eq!(line["path"], "/ws/chat", "{line}");
        assert_eq!(line["upstream"], "ws", "{line}");
        // A handshake the upstream refused is logged with its status.
        let mut raw = Raw::connect(gw.addr());
        raw.send(handshake("/ws/deny", GOOD));
        assert_eq!(raw.read_response().status, 403);
        let lines = wait_for_lines(&path, 2);
        let line: serde_json::Value = serde_json::from_str(&lines[1]).expect("json line");
        assert_eq!((&line["status"], &line["route"]), (&serde_json::json!(403), &serde_json::json!("ws")), "{line}");
        drop(client);
        drop(gw);
        let _ = std::fs::remove_file(&path);
    }

    /// Raw bytes through a tunnel both ways, and a half-close: the client stops sending, the
    /// upstream still answers, then closes; for any upgrade token a route lists.
    fn a_listed_non_websocket_protocol_tunnels_raw_bytes_with_half_close(driver: &str) {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).expect("head");
                head.push(byte[0]);
            }
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw-echo\r\nConnection: upgrade\r\n\r\n")
                .expect("101");
            let mut all = Vec::new();
            s.read_to_end(&mut all).expect("read until the client's half-close");
            s.write_all(&all).expect("answer after half-close");
            String::from_utf8_lossy(&head).to_string()
        });
        let gw = GatewayConfig::new(driver)
            .upstream("raw", &[addr])
            .routes("[[routes]]\nname = \"raw\"\nupstream = \"raw\"\nupgrade = [\"raw-echo\"]\n")
            .start();
        let mut tcp = TcpStream::connect(gw.addr()).expect("connect");
        tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        tcp.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: raw-echo\r\n\r\n")
            .expect("send");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).expect("101");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        tcp.write_all(b"any bytes at all").expect("send");
        tcp.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut back = Vec::new();
        tcp.read_to_end(&mut back).expect("read");
        assert_eq!(back, b"any bytes at all");
        let upstream_saw = server.join().expect("server");
        assert!(upstream_saw.contains("Upgrade: raw-echo"), "{upstream_saw}");
    }
}
