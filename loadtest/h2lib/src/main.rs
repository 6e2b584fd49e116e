//! Three minimal HTTP/2 (h2c) servers on one monoio thread, one per way of speaking HTTP/2 on
//! monoio, so that the libraries can be measured against each other with the same load
//! (`loadtest/h2lib.sh`):
//!
//! - `wire`: the h2 crate through ringgate's own adapter (`ringgate::http2::wire`: two pumps
//!   with owned-buffer socket I/O, h2 reading and writing bounded buffers), as the gateway
//!   serves HTTP/2;
//! - `compat`: the h2 crate through monoio-compat's `StreamWrapper`, the monoio project's
//!   general adapter to tokio's I/O traits;
//! - `monoio-http`: monoio-http's fork of h2, written against monoio's I/O traits.
//!
//! Each answers every request with the same 200 and a 13-byte body, from the connection's
//! task (no per-stream task), and reads nothing else of the request.
//!
//! Usage: `ringgate-h2lib MODE PORT` (serves until killed).

use std::net::SocketAddr;

use bytes::Bytes;
use monoio::net::{TcpListener, TcpStream};

/// The answer's body.
const BODY: &[u8] = b"hello, world\n";

#[derive(Clone, Copy)]
enum Mode {
    Wire,
    Compat,
    MonoioHttp,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("wire") => Mode::Wire,
        Some("compat") => Mode::Compat,
        Some("monoio-http") => Mode::MonoioHttp,
        _ => usage(),
    };
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        usage()
    };
    let mut runtime = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(serve(mode, SocketAddr::from(([127, 0, 0, 1], port))));
}

fn usage() -> ! {
    fail("usage: ringgate-h2lib wire|compat|monoio-http PORT")
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

async fn serve(mode: Mode, addr: SocketAddr) {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => fail(&format!("cannot listen on {addr}: {e}")),
    };
    // The gateway's workers run the fairness helper; the adapter's pumps may yield to it.
    monoio::spawn(ringgate::server::fairness::run_helper());
    println!("listening on {addr}");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        monoio::spawn(async move {
            let result = match mode {
                Mode::Wire => serve_wire(tcp).await,
                Mode::Compat => serve_h2(monoio_compat::StreamWrapper::new(tcp)).await,
                Mode::MonoioHttp => serve_monoio_http(tcp).await,
            };
            if let Err(e) = result {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// The 200 every request gets.
fn response() -> http::Response<()> {
    let mut response = http::Response::new(());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(BODY.len()),
    );
    response
}

async fn serve_wire(tcp: TcpStream) -> Result<(), String> {
    use ringgate::http2::wire::{wire, Transport};
    let (io, pumps) = wire(Transport::Plain(tcp));
    pumps.run_with(serve_h2(io)).await
}

/// The h2 crate over any tokio-I/O adapter.
async fn serve_h2<T>(io: T) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut conn = h2::server::handshake(io).await.map_err(|e| e.to_string())?;
    while let Some(next) = conn.accept().await {
        let (_request, mut respond) = next.map_err(|e| e.to_string())?;
        let mut send = respond
            .send_response(response(), false)
            .map_err(|e| e.to_string())?;
        send.send_data(Bytes::from_static(BODY), true)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// monoio-http's h2 fork, on the socket itself.
async fn serve_monoio_http(tcp: TcpStream) -> Result<(), String> {
    let mut conn = monoio_http::h2::server::handshake(tcp)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(next) = conn.accept().await {
        let (_request, mut respond) = next.map_err(|e| e.to_string())?;
        let mut send = respond
            .send_response(response(), false)
            .map_err(|e| e.to_string())?;
        send.send_data(Bytes::from_static(BODY), true)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
