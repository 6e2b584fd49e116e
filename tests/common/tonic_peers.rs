//! tonic as a real gRPC client and server for the tests, without protoc or generated code:
//! messages are raw bytes (a hand-written [`RawCodec`]) and the server dispatches on the
//! method path by hand, as generated code would. Only `tests/grpc_library.rs` includes this
//! file (through `#[path]`), so the other test binaries do not link tonic.
//!
//! The server (`test.Echo`, on its own thread and tokio runtime, h2c) has these methods:
//! - `Unary`: answers `echo: MESSAGE`, with the request's `x-client-meta` copied into the
//!   response header `x-echo-meta`. A message `fail` is answered with `NOT_FOUND`, details
//!   [`FAIL_DETAILS`] and the metadata `x-error-detail: missing`.
//! - `ServerStream`: the message is a count N; answers N messages `reply I`. A count followed
//!   by `fail` (`2 fail`) ends the stream with `ABORTED` and the trailer
//!   `x-trailer-meta: after-data` after the messages; `1 stall` sends one message and then
//!   nothing until the call is cancelled.
//! - `ClientStream`: answers one message, the received messages joined with `+`.
//! - `Bidi`: sends each received message back as it arrives.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::tokio_stream::{self, Stream, StreamExt};
use tonic::codegen::{BoxFuture, Service};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

/// The `grpc-status-details-bin` the server's `Unary` failure carries (binary, not UTF-8).
pub const FAIL_DETAILS: &[u8] = &[0x08, 0x05, 0xff, 0x00, 0x7f];

/// A codec whose messages are the payload bytes themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Writes a message's bytes as they are.
#[derive(Debug)]
pub struct RawEncoder;

/// Reads a message's bytes as they are.
#[derive(Debug)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// A current-thread tokio runtime for a test's client side.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What the server counted.
#[derive(Default)]
struct Counters {
    calls: AtomicUsize,
    cancelled: AtomicUsize,
}

/// The tonic server on its own thread; it runs until the test process ends.
pub struct TonicServer {
    addr: SocketAddr,
    counters: Arc<Counters>,
}

impl TonicServer {
    /// Listens on an ephemeral port (h2c).
    pub fn start() -> TonicServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let counters = Arc::new(Counters::default());
        let service = EchoService {
            counters: Arc::clone(&counters),
        };
        std::thread::Builder::new()
            .name("tonic-server".into())
            .spawn(move || {
                runtime().block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let _ = tonic::transport::Server::builder()
                        .serve_with_incoming(service, incoming)
                        .await;
                });
            })
            .expect("spawn tonic server");
        TonicServer { addr, counters }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls that reached a method so far.
    pub fn calls(&self) -> usize {
        self.counters.calls.load(Ordering::SeqCst)
    }

    /// Response streams dropped before they ended (the call was cancelled).
    pub fn cancelled(&self) -> usize {
        self.counters.cancelled.load(Ordering::SeqCst)
    }
}

/// The server's one service, dispatching on the path as generated code does.
#[derive(Clone)]
struct EchoService {
    counters: Arc<Counters>,
}

type HttpRequest = http::Request<tonic::body::Body>;
type HttpResponse = http::Response<tonic::body::Body>;

impl Service<HttpRequest> for EchoService {
    type Response = HttpResponse;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<HttpResponse, std::convert::Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let counters = Arc::clone(&self.counters);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            let path = request.uri().path().to_string();
            counters.calls.fetch_add(1, Ordering::SeqCst);
            let response = match path.as_str() {
                "/test.Echo/Unary" => grpc.unary(Handler(unary), request).await,
                "/test.Echo/ServerStream" => {
                    let handler = Handler(move |r| server_stream(r, Arc::clone(&counters)));
                    grpc.server_streaming(handler, request).await
                }
                "/test.Echo/ClientStream" => {
                    grpc.client_streaming(Handler(client_stream), request).await
                }
                "/test.Echo/Bidi" => grpc.streaming(Handler(bidi), request).await,
                _ => Status::unimplemented(path).into_http(),
            };
            Ok(response)
        })
    }
}

/// A method handler: a function from the tonic request to its answer.
struct Handler<F>(F);

impl<F, Fut, M1, M2> Service<Request<M1>> for Handler<F>
where
    F: FnMut(Request<M1>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<M2>, Status>>,
{
    type Response = Response<M2>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<M1>) -> Fut {
        (self.0)(request)
    }
}

async fn unary(request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
    let client_meta = request.metadata().get("x-client-meta").cloned();
    let message = request.into_inner();
    if message.as_ref() == b"fail" {
        let mut metadata = MetadataMap::new();
        metadata.insert("x-error-detail", "missing".parse().expect("value"));
        return Err(Status::with_details_and_metadata(
            Code::NotFound,
            "no such thing",
            Bytes::from_static(FAIL_DETAILS),
            metadata,
        ));
    }
    let mut text = b"echo: ".to_vec();
    text.extend_from_slice(&message);
    let mut response = Response::new(Bytes::from(text));
    if let Some(value) = client_meta {
        response.metadata_mut().insert("x-echo-meta", value);
    }
    Ok(response)
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

async fn server_stream(
    request: Request<Bytes>,
    counters: Arc<Counters>,
) -> Result<Response<MessageStream>, Status> {
    let text = String::from_utf8_lossy(request.get_ref()).into_owned();
    let mut words = text.split(' ');
    let count: usize = words
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Status::invalid_argument("expected a count"))?;
    let replies: Vec<Result<Bytes, Status>> = (0..count)
        .map(|i| Ok(Bytes::from(format!("reply {i}"))))
        .collect();
    let replies = tokio_stream::iter(replies);
    let stream: MessageStream = match words.next() {
        Some("fail") => {
            let mut metadata = MetadataMap::new();
            metadata.insert("x-trailer-meta", "after-data".parse().expect("value"));
            let end = Status::with_metadata(Code::Aborted, "stopped on purpose", metadata);
            Box::pin(replies.chain(tokio_stream::once(Err(end))))
        }
        Some("stall") => Box::pin(Guarded {
            inner: replies.chain(tokio_stream::pending()),
            counters,
        }),
        _ => Box::pin(replies),
    };
    Ok(Response::new(stream))
}

async fn client_stream(request: Request<Streaming<Bytes>>) -> Result<Response<Bytes>, Status> {
    let mut stream = request.into_inner();
    let mut parts = Vec::new();
    while let Some(message) = stream.message().await? {
        parts.push(String::from_utf8_lossy(&message).into_owned());
    }
    Ok(Response::new(Bytes::from(parts.join("+"))))
}

async fn bidi(request: Request<Streaming<Bytes>>) -> Result<Response<Streaming<Bytes>>, Status> {
    Ok(Response::new(request.into_inner()))
}

/// A response stream that counts being dropped: a stalled stream is only dropped when its
/// call is cancelled.
struct Guarded<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S: Stream + Unpin> Stream for Guarded<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

/// A tonic client on an h2c channel to `addr`.
pub struct Client {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Client {
    /// Connects (prior knowledge) to `addr`.
    pub async fn connect(addr: SocketAddr) -> Client {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("tonic connects");
        Client {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    async fn ready(&mut self) {
        self.grpc.ready().await.expect("channel ready");
    }

    /// A unary call of `method` (under `test.Echo` unless it starts with `/`).
    pub async fn unary(
        &mut self,
        method: &str,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        self.ready().await;
        self.grpc.unary(request, path(method), RawCodec).await
    }

    /// A server-streaming call.
    pub async fn server_streaming(
        &mut self,
        method: &str,
        request: Request<Bytes>,
    ) -> Result<Response<Streaming<Bytes>>, Status> {
        self.ready().await;
        self.grpc
            .server_streaming(request, path(method), RawCodec)
            .await
    }

    /// A client-streaming call sending `messages`.
    pub async fn client_streaming(
        &mut self,
        method: &str,
        messages: Vec<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        self.ready().await;
        let request = Request::new(tokio_stream::iter(messages));
        self.grpc
            .client_streaming(request, path(method), RawCodec)
            .await
    }

    /// A bidi call sending `messages` (all of them, without waiting for answers).
    pub async fn streaming(
        &mut self,
        method: &str,
        messages: Vec<Bytes>,
    ) -> Result<Response<Streaming<Bytes>>, Status> {
        self.ready().await;
        let request = Request::new(tokio_stream::iter(messages));
        self.grpc.streaming(request, path(method), RawCodec).await
    }
}

fn path(method: &str) -> http::uri::PathAndQuery {
    let full = if method.starts_with('/') {
        method.to_string()
    } else {
        format!("/test.Echo/{method}")
    };
    full.parse().expect("method path")
}

/// Reads a response stream to its end: the messages, and the status it ended with
/// (`Code::Ok` for a clean end).
pub async fn drain(stream: &mut Streaming<Bytes>) -> (Vec<String>, Status) {
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => messages.push(String::from_utf8_lossy(&m).into_owned()),
            Ok(None) => return (messages, Status::ok("")),
            Err(status) => return (messages, status),
        }
    }
}

/// The messages of a response stream as text, for assertions.
pub fn texts(messages: &[&str]) -> Vec<String> {
    messages.iter().map(|m| m.to_string()).collect()
}
