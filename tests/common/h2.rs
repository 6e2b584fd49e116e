//! HTTP/2 peers for tests, on the h2 crate over tokio: a client (a current-thread runtime in
//! the test's thread) and an h2c upstream server (its own thread and runtime). Upstream
//! bodies use the `Echoed` format of `upstream.rs`, so the same parser reads them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Request, Response};

use super::body::sum_of;

/// A current-thread tokio runtime for a test's client side.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An h2c connection to `addr` (prior knowledge); the connection runs on the runtime.
pub async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// What an h2 exchange returned.
#[derive(Debug)]
pub struct Exchange {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
}

impl Exchange {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` with `body` (none: END_STREAM on the headers) and reads the whole answer.
pub async fn exchange(
    sender: &SendRequest<Bytes>,
    request: Request<()>,
    body: Option<Vec<u8>>,
) -> Result<Exchange, h2::Error> {
    let mut sender = sender.clone().ready().await?;
    let (response, mut send) = sender.send_request(request, body.is_none())?;
    if let Some(body) = body {
        send.send_data(Bytes::from(body), true)?;
    }
    let response = response.await?;
    read_response(response).await
}

/// Reads a response's body and trailers.
pub async fn read_response(response: Response<h2::RecvStream>) -> Result<Exchange, h2::Error> {
    let (parts, mut recv) = response.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await?;
    Ok(Exchange {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        trailers,
    })
}

/// A GET for `path` on `authority`.
pub fn get(authority: &str, path: &str) -> Request<()> {
    Request::builder()
        .uri(format!("http://{authority}{path}"))
        .body(())
        .expect("request")
}

/// How the h2c upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read the whole request, answer an echo body and the trailer `x-upstream-trailer`.
    Echo,
    /// gRPC-like: `content-type: application/grpc`, every DATA frame sent back as it
    /// arrives (streaming both ways), then `grpc-status: 0` in the trailers.
    StreamEcho,
}

/// An h2c upstream on its own thread.
pub struct H2Upstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl H2Upstream {
    pub fn start(name: &str, mode: Mode) -> H2Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (r, c, f, name) = (
            Arc::clone(&requests),
            Arc::clone(&connections),
            Arc::clone(&failed),
            name.to_string(),
        );
        std::thread::Builder::new()
            .name(format!("h2-upstream-{name}"))
            .spawn(move || {
                runtime().block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            return;
                        };
                        let conn_no = c.fetch_add(1, Ordering::SeqCst) + 1;
                        let (r, f, name) = (Arc::clone(&r), Arc::clone(&f), name.clone());
                        tokio::spawn(async move {
                            let Ok(mut conn) = h2::server::handshake(tcp).await else {
                                return;
                            };
                            while let Some(Ok((req, respond))) = conn.accept().await {
                                r.fetch_add(1, Ordering::SeqCst);
                                let (name, f) = (name.clone(), Arc::clone(&f));
                                tokio::spawn(async move {
                                    if serve(req, respond, mode, &name, conn_no).await.is_err() {
                                        f.fetch_add(1, Ordering::SeqCst);
                                    }
                                });
                            }
                        });
                    }
                });
            })
            .expect("spawn upstream");
        H2Upstream {
            addr,
            requests,
            connections,
            failed,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Streams that ended in an error (reset by the gateway, for one).
    pub fn failed_streams(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

async fn serve(
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    mode: Mode,
    name: &str,
    conn: usize,
) -> Result<(), h2::Error> {
    let (parts, mut body) = req.into_parts();
    match mode {
        Mode::Echo => {
            let mut data = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            let mut text = format!(
                "upstream {name}\nmethod {}\ntarget {}\nversion HTTP/2.0\nconn {conn}\nbody-length {}\nbody-sum {}\n",
                parts.method,
                parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                data.len(),
                sum_of(&data).hex()
            );
            if let Some(authority) = parts.uri.authority() {
                text.push_str(&format!("header :authority: {authority}\n"));
            }
            for (n, v) in &parts.headers {
                text.push_str(&format!("header {n}: {}\n", v.to_str().unwrap_or("")));
            }
            let response = Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(())
                .expect("response");
            let mut send = respond.send_response(response, false)?;
            send.send_data(Bytes::from(text), false)?;
            let mut trailers = HeaderMap::new();
            trailers.insert("x-upstream-trailer", "done".parse().expect("value"));
            send.send_trailers(trailers)?;
        }
        Mode::StreamEcho => {
            let response = Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .expect("response");
            let mut send = respond.send_response(response, false)?;
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                send.send_data(chunk, false)?;
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().expect("value"));
            trailers.insert("grpc-message", "ok".parse().expect("value"));
            send.send_trailers(trailers)?;
        }
    }
    Ok(())
}
