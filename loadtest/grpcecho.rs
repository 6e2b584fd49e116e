//! gRPC unary echo backend for `loadtest/compare.sh` (scenario s17).
//!
//! ```text
//! grpcecho server ADDR    serve h2c (HTTP/2 with prior knowledge) on ADDR
//! ```
//!
//! Every request whose `content-type` is `application/grpc` (or `application/grpc+...`) and
//! whose body is exactly one well-formed, uncompressed gRPC message (a 5-byte prefix: flag 0
//! and the big-endian length, then that many bytes) is answered as a unary gRPC call: status
//! 200, `content-type: application/grpc`, the same message back as one DATA frame, and the
//! trailers `grpc-status: 0`. A body that is not one such message gets `grpc-status: 3`
//! (INVALID_ARGUMENT) with no message; any other content type gets HTTP 415. The method path
//! is not looked at: every path is the echo method.
//!
//! One thread, one current-thread tokio runtime, every connection and stream a task on it: the
//! same cost for every contender that forwards to it.

use std::io;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

/// Largest request body accepted (a unary message of the load test is a few dozen bytes).
const MAX_BODY: usize = 1 << 20;

/// Listen backlog, as the backend nginx's `listen ... backlog=4096`. Nginx's gRPC proxy opens
/// one upstream connection per concurrent stream, hundreds at once when a run starts; the
/// standard library's (and tokio's) 128 would drop SYNs and time out its 1 s connects.
const BACKLOG: i32 = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("server") if args.len() == 2 => server(&args[1]),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: grpcecho server ADDR",
        )),
    };
    if let Err(e) = result {
        eprintln!("grpcecho: {e}");
        std::process::exit(1);
    }
}

/// Accepts h2c connections on `addr` and serves each on a task of its own.
fn server(addr: &str) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let listener = listen(addr)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("grpcecho: accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                if let Err(e) = connection(stream).await {
                    if !e.is_go_away() && !e.is_io() {
                        eprintln!("grpcecho: connection: {e}");
                    }
                }
            });
        }
    })
}

/// A non-blocking listening socket on `addr` with a [`BACKLOG`]-deep accept queue.
fn listen(addr: &str) -> io::Result<std::net::TcpListener> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ADDR must be ip:port"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves the streams of one connection until the client closes it.
async fn connection(stream: tokio::net::TcpStream) -> Result<(), h2::Error> {
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(1024)
        .handshake::<_, Bytes>(stream)
        .await?;
    while let Some(accepted) = conn.accept().await {
        let (request, respond) = accepted?;
        tokio::spawn(async move {
            let _ = unary(request, respond).await;
        });
    }
    Ok(())
}

/// Answers one request: the echoed message and `grpc-status: 0`, or the error above.
async fn unary(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Result<(), h2::Error> {
    let is_grpc = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+"));
    let body = read_body(request.into_body()).await?;
    if !is_grpc {
        let response = Response::builder()
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .body(())
            .map_err(|_| h2::Reason::INTERNAL_ERROR)?;
        respond.send_response(response, true)?;
        return Ok(());
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/grpc")
        .body(())
        .map_err(|_| h2::Reason::INTERNAL_ERROR)?;
    let mut send = respond.send_response(response, false)?;
    let status = match body {
        Some(message) if one_message(&message) => {
            send.send_data(message, false)?;
            "0"
        }
        _ => "3",
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    send.send_trailers(trailers)
}

/// The whole request body, or `None` when it is larger than [`MAX_BODY`].
async fn read_body(mut body: RecvStream) -> Result<Option<Bytes>, h2::Error> {
    let mut data = BytesMut::new();
    let mut too_big = false;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > MAX_BODY {
            too_big = true;
        } else {
            data.extend_from_slice(&chunk);
        }
    }
    Ok((!too_big).then(|| data.freeze()))
}

/// True when `body` is exactly one uncompressed length-prefixed gRPC message.
fn one_message(body: &[u8]) -> bool {
    match body {
        [0, a, b, c, d, rest @ ..] => u32::from_be_bytes([*a, *b, *c, *d]) as usize == rest.len(),
        _ => false,
    }
}
