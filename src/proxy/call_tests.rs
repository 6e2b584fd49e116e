//! `call` against real HTTP/1.1 backends on loopback (std threads), on a monoio runtime of
//! each driver.
#![allow(clippy::disallowed_types)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::load_str;
use crate::proxy::WorkerContext;

/// What a test backend answers: a whole response, after a pause.
#[derive(Clone)]
struct Reply {
    delay: Duration,
    bytes: &'static [u8],
}

/// A backend on its own thread: answers every request on every connection with `reply`,
/// counting connections and requests.
struct Backend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Backend {
    fn start(reply: Reply) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let (reply, r) = (reply.clone(), Arc::clone(&r));
                std::thread::spawn(move || serve(stream, &reply, &r));
            }
        });
        Backend {
            addr,
            connections,
            requests,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads request heads (and Content-Length bodies) and answers each with `reply`.
fn serve(mut stream: TcpStream, reply: &Reply, requests: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let body_len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + body_len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + body_len);
        requests.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(reply.delay);
        if stream.write_all(reply.bytes).is_err() {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Answer: yes\r\n\r\nhello";

fn reply(bytes: &'static [u8]) -> Reply {
    Reply {
        delay: Duration::ZERO,
        bytes,
    }
}

/// A snapshot with one group `api` over `targets` and the extra group settings `extra`.
fn context(targets: &[SocketAddr], extra: &str) -> Rc<WorkerContext> {
    let targets = targets
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[[upstreams]]
name = "api"
targets = [{targets}]
{extra}

[[routes]]
name = "r"
match = {{ path_prefix = "/" }}
upstream = "api"
"#
    );
    let snapshot = load_str(&text, "test").expect("config compiles");
    WorkerContext::for_tests(snapshot)
}

/// Runs `test` on an io_uring runtime (where available) and on the epoll runtime.
fn on_both_drivers<F, Fut>(test: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if monoio::utils::detect_uring() {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
            .block_on(test());
    }
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime")
        .block_on(test());
}

async fn get(ctx: &WorkerContext, call: Call<'_>) -> Result<CallResponse, CallError> {
    let snapshot = ctx.snapshot();
    super::call(ctx, &snapshot, &call).await
}

fn api() -> UpstreamId {
    UpstreamId(0)
}

#[test]
fn reads_a_whole_response_and_reuses_the_connection() {
    let backend = Backend::start(reply(OK));
    on_both_drivers(|| async {
        let ctx = context(&[backend.addr], "");
        let before = backend.connections();
        for _ in 0..3 {
            let response = get(&ctx, Call::get(api(), "/x")).await.expect("answer");
            assert_eq!(response.status, 200);
            assert_eq!(&response.body[..], b"hello");
            assert_eq!(response.header("x-answer"), Some(&b"yes"[..]));
            assert_eq!(response.target, backend.addr);
        }
        assert_eq!(backend.connections() - before, 1, "one pooled connection");
    });
}

#[test]
fn decodes_a_chunked_body() {
    let backend = Backend::start(reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n",
    ));
    on_both_drivers(|| async {
        let ctx = context(&[backend.addr], "");
        let response = get(&ctx, Call::get(api(), "/")).await.expect("answer");
        assert_eq!(&response.body[..], b"hello world");
    });
}

#[test]
fn refuses_a_body_over_the_limit() {
    let backend = Backend::start(reply(OK));
    let chunked = Backend::start(reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    on_both_drivers(|| async {
        for addr in [backend.addr, chunked.addr] {
            let ctx = context(&[addr], "");
            let small = Call {
                max_body: 4,
                ..Call::get(api(), "/")
            };
            assert_eq!(get(&ctx, small).await.err(), Some(CallError::TooLarge));
        }
    });
}

/// Sends `call` to a backend that records the bytes it received up to and including
/// `until`, answers 200, and returns them.
fn capture(call: impl FnOnce() -> Call<'static>, until: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let captured = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while find(&got, until).is_none() {
            let n = stream.read(&mut buf).expect("read");
            assert!(
                n > 0,
                "request incomplete: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        stream.write_all(OK).expect("write");
        String::from_utf8(got).expect("utf-8")
    });
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ctx = context(&[addr], "");
        assert_eq!(get(&ctx, call()).await.expect("answer").status, 200);
    });
    captured.join().expect("capture thread")
}

#[test]
fn sends_method_headers_and_body() {
    // The backend echoes nothing, so check what it received through a capture backend.
    let request = capture(
        || Call {
            method: "POST",
            host: Some("users.internal"),
            headers: b"X-Trace: abc\r\n",
            body: b"body!",
            idempotent: false,
            ..Call::get(api(), "/users?x=1")
        },
        b"body!",
    );
    assert_eq!(
        request,
        "POST /users?x=1 HTTP/1.1\r\nHost: users.internal\r\nX-Trace: abc\r\n\
         Content-Length: 5\r\n\r\nbody!"
    );
}

#[test]
fn a_call_without_a_host_names_its_group() {
    // HTTP/1.1 servers (Nginx among them) answer a request without `Host` with 400.
    let request = capture(|| Call::get(api(), "/parts/a"), b"\r\n\r\n");
    assert_eq!(request, "GET /parts/a HTTP/1.1\r\nHost: api\r\n\r\n");
}

#[test]
fn retries_a_retried_status_on_another_target() {
    let failing = Backend::start(reply(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    ));
    let healthy = Backend::start(reply(OK));
    on_both_drivers(|| async {
        let ctx = context(
            &[failing.addr, healthy.addr],
            r#"retry = { attempts = 2, on = ["503"], backoff = "1ms" }"#,
        );
        for _ in 0..4 {
            let response = get(&ctx, Call::get(api(), "/")).await.expect("answer");
            assert_eq!(response.status, 200, "the 503 was retried elsewhere");
            assert_eq!(response.target, healthy.addr);
        }
    });
    assert!(
        failing.requests() > 0,
        "round robin tried the failing target too"
    );
}

#[test]
fn a_connect_error_goes_to_another_target_and_fails_when_none_answer() {
    let healthy = Backend::start(reply(OK));
    // A port nobody listens on: bind, read the address, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("addr");
    on_both_drivers(|| async {
        let ctx = context(
            &[dead, healthy.addr],
            r#"retry = { attempts = 2, on = ["connect_error"], backoff = "1ms" }"#,
        );
        for _ in 0..4 {
            let response = get(&ctx, Call::get(api(), "/")).await.expect("answer");
            assert_eq!(response.target, healthy.addr);
        }
        let ctx = context(&[dead], "");
        assert_eq!(
            get(&ctx, Call::get(api(), "/")).await.err(),
            Some(CallError::Connect)
        );
    });
}

#[test]
fn the_deadline_bounds_the_call() {
    let slow = Backend::start(Reply {
        delay: Duration::from_millis(500),
        bytes: OK,
    });
    on_both_drivers(|| async {
        let ctx = context(&[slow.addr], "");
        let started = Instant::now();
        let call = Call {
            deadline: Some(started + Duration::from_millis(50)),
            ..Call::get(api(), "/")
        };
        assert_eq!(get(&ctx, call).await.err(), Some(CallError::Timeout));
        assert!(started.elapsed() < Duration::from_millis(450));
    });
}

#[test]
fn a_hedge_answers_from_the_fast_target_when_the_first_is_slow() {
    let slow = Backend::start(Reply {
        delay: Duration::from_millis(600),
        bytes: OK,
    });
    let fast = Backend::start(reply(OK));
    on_both_drivers(|| async {
        // Round robin starts at the first target on a fresh worker context.
        let ctx = context(&[slow.addr, fast.addr], "");
        let started = Instant::now();
        let call = Call {
            hedge_after: Some(Duration::from_millis(30)),
            ..Call::get(api(), "/")
        };
        let response = get(&ctx, call).await.expect("answer");
        assert_eq!(response.target, fast.addr, "the hedge won");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "answered before the slow target would have: {:?}",
            started.elapsed()
        );
    });
    assert!(
        slow.requests() >= 1,
        "the first attempt went to the slow target"
    );
}

#[test]
fn an_open_breaker_refuses_without_sending() {
    let failing = Backend::start(reply(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    ));
    on_both_drivers(|| async {
        let ctx = context(
            &[failing.addr],
            r#"breaker = { error_ratio = 0.5, min_requests = 2, open_for = "30s" }"#,
        );
        for _ in 0..2 {
            assert_eq!(
                get(&ctx, Call::get(api(), "/"))
                    .await
                    .expect("answer")
                    .status,
                500
            );
        }
        let sent = failing.requests();
        assert!(matches!(
            get(&ctx, Call::get(api(), "/")).await,
            Err(CallError::Unavailable(_))
        ));
        assert_eq!(
            failing.requests(),
            sent,
            "refused by the breaker, nothing sent"
        );
    });
}

/// An h2c backend (the h2 crate on a tokio runtime of its own thread): answers every stream
/// with `200`, `x-answer: h2` and a body naming the stream's method, `:authority` and
/// request-body length, counting connections.
struct H2Backend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl H2Backend {
    fn start() -> H2Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&connections);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let Ok(mut conn) = h2::server::handshake(tcp).await else {
                            return;
                        };
                        while let Some(Ok((request, respond))) = conn.accept().await {
                            tokio::spawn(answer_h2(request, respond));
                        }
                    });
                }
            });
        });
        H2Backend { addr, connections }
    }
}

async fn answer_h2(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let (parts, mut body) = request.into_parts();
    let mut len = 0;
    while let Some(Ok(chunk)) = body.data().await {
        len += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let text = format!(
        "{} {} {len}",
        parts.method,
        parts.uri.authority().map_or("", |a| a.as_str())
    );
    let response = http::Response::builder()
        .status(200)
        .header("x-answer", "h2")
        .body(())
        .expect("response");
    if let Ok(mut send) = respond.send_response(response, false) {
        let _ = send.send_data(Bytes::from(text), true);
    }
}

#[test]
fn calls_to_an_h2c_group_go_as_streams_of_one_connection() {
    let backend = H2Backend::start();
    on_both_drivers(|| async {
        let ctx = context(&[backend.addr], "protocol = \"h2c\"");
        let before = backend.connections.load(Ordering::SeqCst);
        for _ in 0..3 {
            let response = get(&ctx, Call::get(api(), "/x")).await.expect("answer");
            assert_eq!(response.status, 200);
            assert_eq!(response.header("x-answer"), Some(&b"h2"[..]));
            assert_eq!(
                &response.body[..],
                b"GET api 0",
                "authority: the group's name, as `Host` for HTTP/1.1"
            );
        }
        let mut post = Call::get(api(), "/y");
        post.method = "POST";
        post.host = Some("api.test");
        post.body = b"twelve bytes";
        let response = get(&ctx, post).await.expect("answer");
        assert_eq!(&response.body[..], b"POST api.test 12");
        let opened = backend.connections.load(Ordering::SeqCst) - before;
        assert_eq!(opened, 1, "one multiplexed connection for every call");
    });
}

#[test]
fn the_groups_total_timeout_bounds_a_call_without_a_deadline() {
    let slow = Backend::start(Reply {
        delay: Duration::from_millis(600),
        bytes: OK,
    });
    on_both_drivers(|| async {
        let ctx = context(&[slow.addr], r#"timeouts = { total = "80ms" }"#);
        let started = Instant::now();
        assert_eq!(
            get(&ctx, Call::get(api(), "/")).await.err(),
            Some(CallError::Timeout)
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "bounded by timeouts.total: {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn the_groups_timeout_is_a_failure_for_the_breaker_and_the_callers_deadline_is_not() {
    let slow = Backend::start(Reply {
        delay: Duration::from_millis(600),
        bytes: OK,
    });
    on_both_drivers(|| async {
        let ctx = context(
            &[slow.addr],
            "timeouts = { total = \"80ms\" }\n\
             breaker = { error_ratio = 1.0, min_requests = 1, open_for = \"30s\" }",
        );
        // The caller gives up first (a composite's deadline): cancelled, not a failure.
        for _ in 0..3 {
            let impatient = Call {
                deadline: Some(Instant::now() + Duration::from_millis(20)),
                ..Call::get(api(), "/")
            };
            assert_eq!(get(&ctx, impatient).await.err(), Some(CallError::Timeout));
        }
        // The group's own total timeout: the upstream failed, and one failure opens it.
        assert_eq!(
            get(&ctx, Call::get(api(), "/")).await.err(),
            Some(CallError::Timeout)
        );
        assert!(matches!(
            get(&ctx, Call::get(api(), "/")).await,
            Err(CallError::Unavailable(_))
        ));
    });
}

#[test]
fn a_dropped_call_gives_its_half_open_probe_back() {
    let slow = Backend::start(Reply {
        delay: Duration::from_millis(600),
        bytes: OK,
    });
    on_both_drivers(|| async {
        let ctx = context(
            &[slow.addr],
            r#"breaker = { error_ratio = 1.0, min_requests = 1, open_for = "50ms", half_open_probes = 1 }"#,
        );
        let impatient = || Call {
            deadline: Some(Instant::now() + Duration::from_millis(500)),
            ..Call::get(api(), "/")
        };
        // One failure opens the breaker; after `open_for` (the breaker's own timer) it is
        // half-open with one probe slot.
        let snapshot = ctx.snapshot();
        let upstream = snapshot.upstream(api());
        let now = Instant::now();
        ctx.upstreams()
            .admit(api(), upstream, now)
            .expect("closed")
            .settle(Some(false), now);
        monoio::time::sleep(Duration::from_millis(60)).await;
        // Half-open: each call takes the one probe slot and is dropped (cancelled) by a
        // shorter timeout around it, as a composite's deadline drops it.
        for _ in 0..3 {
            let call = impatient();
            let dropped = monoio::time::timeout(Duration::from_millis(30), get(&ctx, call)).await;
            assert!(dropped.is_err(), "the call was still running");
        }
        // The slot is free: the next call is admitted as the probe (it times out on its
        // own deadline, which is the caller's and so no failure either).
        assert_eq!(
            get(&ctx, impatient()).await.err(),
            Some(CallError::Timeout),
            "admitted as a probe, not refused by the breaker"
        );
    });
}
