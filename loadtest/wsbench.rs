//! WebSocket echo load for `loadtest/compare.sh` (scenario s13).
//!
//! ```text
//! wsbench server ADDR                      echo every message on every connection
//! wsbench client URL CONNS SECONDS BYTES   CONNS connections, each sending a BYTES-byte
//!                                          binary message and waiting for its echo, in a
//!                                          loop for SECONDS; prints one `LTJSON {...}` line
//! ```
//!
//! The client's line has the shape of `lib/wrk.lua`'s, so `report.py` reads both alike:
//! `requests` are echoed messages (round trips), latencies are round-trip times. One thread
//! per connection, blocking sockets: the same cost for every contender it measures.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tungstenite::{Message, WebSocket};

/// Percentiles reported, as `lib/wrk.lua` reports them.
const PERCENTILES: [f64; 13] = [
    1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("server") if args.len() == 2 => server(&args[1]),
        Some("client") if args.len() == 5 => client(&args[1..]),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: wsbench server ADDR | wsbench client URL CONNS SECONDS BYTES",
        )),
    };
    if let Err(e) = result {
        eprintln!("wsbench: {e}");
        std::process::exit(1);
    }
}

/// Accepts connections on `addr` and echoes each one's messages on a thread of its own.
fn server(addr: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        thread::spawn(move || {
            if let Ok(mut ws) = tungstenite::accept(stream) {
                echo(&mut ws);
            }
        });
    }
    Ok(())
}

/// Sends every data message back until the peer closes.
fn echo(ws: &mut WebSocket<TcpStream>) {
    loop {
        match ws.read() {
            Ok(message @ (Message::Binary(_) | Message::Text(_))) => {
                if ws.send(message).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// What one client connection did.
struct Tally {
    latency_us: Histogram<u64>,
    messages: u64,
    errors: u64,
}

fn client(args: &[String]) -> io::Result<()> {
    let url = args[0].clone();
    let conns: usize = parse(&args[1], "CONNS")?;
    let seconds: u64 = parse(&args[2], "SECONDS")?;
    let bytes: usize = parse(&args[3], "BYTES")?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (url, stop) = (url.clone(), Arc::clone(&stop));
            thread::spawn(move || run_connection(&url, bytes, &stop))
        })
        .collect();
    thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut total = new_histogram();
    let (mut messages, mut errors) = (0, 0);
    for t in threads {
        match t.join() {
            Ok(tally) => {
                let _ = total.add(&tally.latency_us);
                messages += tally.messages;
                errors += tally.errors;
            }
            Err(_) => errors += 1,
        }
    }
    println!("{}", ltjson(&total, messages, errors, elapsed, bytes));
    Ok(())
}

/// One connection's loop: send, wait for the echo, record the round trip.
fn run_connection(url: &str, bytes: usize, stop: &AtomicBool) -> Tally {
    let mut tally = Tally {
        latency_us: new_histogram(),
        messages: 0,
        errors: 0,
    };
    let mut ws = match connect(url) {
        Ok(ws) => ws,
        Err(_) => {
            tally.errors += 1;
            return tally;
        }
    };
    let payload = vec![b'x'; bytes];
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        if ws.send(Message::Binary(payload.clone().into())).is_err() {
            tally.errors += 1;
            return tally;
        }
        if !read_data(&mut ws) {
            tally.errors += 1;
            return tally;
        }
        let us = sent.elapsed().as_micros() as u64;
        let _ = tally.latency_us.record(us.max(1));
        tally.messages += 1;
    }
    let _ = ws.close(None);
    tally
}

fn connect(url: &str) -> Result<WebSocket<TcpStream>, Box<dyn std::error::Error>> {
    let authority = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or("the URL must be ws://HOST:PORT/PATH")?;
    let stream = TcpStream::connect(authority)?;
    stream.set_nodelay(true)?;
    let (ws, _) = tungstenite::client(url, stream)?;
    Ok(ws)
}

/// Reads until the next data message (the echo); `false` when the connection ended.
fn read_data(ws: &mut WebSocket<TcpStream>) -> bool {
    loop {
        match ws.read() {
            Ok(Message::Binary(_) | Message::Text(_)) => return true,
            Ok(Message::Close(_)) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits; the bounds are constants, valid by construction.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn parse<T: std::str::FromStr>(value: &str, name: &str) -> io::Result<T> {
    value.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} must be a number, got '{value}'"),
        )
    })
}

/// The result line, in `lib/wrk.lua`'s format.
fn ltjson(
    h: &Histogram<u64>,
    messages: u64,
    errors: u64,
    elapsed: Duration,
    bytes: usize,
) -> String {
    let percentiles: Vec<String> = PERCENTILES
        .iter()
        .map(|p| format!("\"{p}\": {}", h.value_at_quantile(p / 100.0)))
        .collect();
    format!(
        "LTJSON {{\"tool\": \"wsbench\", \"duration_us\": {}, \"requests\": {messages}, \
         \"bytes\": {}, \"errors\": {{\"connect\": 0, \"read\": {errors}, \"write\": 0, \
         \"status\": 0, \"timeout\": 0}}, \"latency_us\": {{\"min\": {}, \"max\": {}, \
         \"mean\": {:.1}, \"stdev\": {:.1}}}, \"percentiles_us\": {{{}}}}}",
        elapsed.as_micros(),
        messages * bytes as u64 * 2,
        h.min(),
        h.max(),
        h.mean(),
        h.stdev(),
        percentiles.join(", ")
    )
}
