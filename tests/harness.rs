//! Self-tests of the harness against the test upstream directly (no gateway): they prove the
//! upstream, the clients and the checksum before any gateway test relies on them.
mod common;

use common::body;
use common::client::{self, Raw};
use common::upstream::{Behavior, Echoed, Upstream};

#[test]
fn checksum_does_not_depend_on_buffer_boundaries() {
    let data = body::pattern(100_003);
    let whole = body::sum_of(&data).hex();
    for split in [1usize, 3, 7, 8, 9, 4096, 65_521] {
        let mut sum = body::Checksum::new();
        for chunk in data.chunks(split) {
            sum.update(chunk);
        }
        assert_eq!(sum.hex(), whole, "split {split}");
    }
    assert_eq!(body::pattern_sum(100_003).hex(), whole);
    let mut swapped = data.clone();
    swapped.swap(10, 20_000);
    assert_ne!(body::sum_of(&swapped).hex(), whole);
    assert_ne!(body::sum_of(&data[..100_002]).hex(), whole);
}

#[test]
fn upstream_echoes_over_keep_alive_and_counts() {
    let up = Upstream::echo("u");
    let agent = client::agent();
    for i in 0..3 {
        let r = client::send(
            agent
                .post(&format!("http://{}/p/{i}?q=1", up.addr()))
                .set("X-Test", "yes"),
            &body::pattern(1000),
        );
        assert_eq!(r.status, 200);
        let e = Echoed::parse(&r.text());
        assert_eq!(e.method, "POST");
        assert_eq!(e.target, format!("/p/{i}?q=1"));
        assert_eq!(e.header("x-test"), Some("yes"));
        assert_eq!(e.body_len, 1000);
        assert_eq!(e.body_sum, body::pattern_sum(1000).hex());
    }
    assert_eq!(up.requests(), 3);
    assert_eq!(up.connections(), 1);
    assert_eq!(up.last_request().unwrap().target, "/p/2?q=1");
}

#[test]
fn upstream_reads_chunked_and_answers_100_continue() {
    let up = Upstream::echo("u");
    let mut raw = Raw::connect(up.addr());
    raw.send(
        "POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(raw.read_head_only().status, 100);
    let data = body::pattern(70_000);
    for chunk in data.chunks(30_000) {
        raw.send(format!("{:x}\r\n", chunk.len()));
        raw.send(chunk);
        raw.send("\r\n");
    }
    raw.send("0\r\n\r\n");
    let r = raw.read_response();
    assert_eq!(r.status, 200);
    let e = Echoed::parse(&r.text());
    assert_eq!(e.body_len, 70_000);
    assert_eq!(e.body_sum, body::sum_of(&data).hex());
}

#[test]
fn upstream_fixed_bodies_and_statuses() {
    let up = Upstream::start(
        "u",
        Behavior::Fixed {
            len: 200_000,
            chunked: true,
        },
    );
    let mut raw = Raw::connect(up.addr());
    raw.send(client::get_req("/"));
    let r = raw.read_response();
    assert_eq!(r.body.len(), 200_000);
    assert_eq!(body::sum_of(&r.body), body::pattern_sum(200_000));
    up.set_behavior(Behavior::Status(204));
    raw.send(client::get_req("/"));
    assert_eq!(raw.read_response().status, 204);
    up.set_behavior(Behavior::CloseAfterResponse);
    raw.send(client::get_req("/"));
    assert!(raw.read_response().connection_has("close"));
    raw.expect_closed();
}

#[test]
fn upstream_close_mid_body_and_never_answer() {
    let up = Upstream::start("u", Behavior::CloseMidBody);
    let mut raw = Raw::connect(up.addr());
    raw.send(client::get_req("/"));
    assert!(raw.try_read_response_to("GET").is_err());
    up.set_behavior(Behavior::NeverAnswer);
    let mut raw = Raw::connect(up.addr());
    raw.set_read_timeout(std::time::Duration::from_millis(200));
    raw.send(client::get_req("/"));
    up.wait_for_requests(2);
    let err = raw.try_read_response_to("GET").unwrap_err();
    assert!(client::is_timeout(&err), "{err}");
    drop(up); // must not hang
}

#[test]
fn upstream_gate_holds_until_opened() {
    let gate = common::upstream::Gate::new();
    let up = Upstream::start("u", Behavior::Gate(gate.clone()));
    let mut raw = Raw::connect(up.addr());
    raw.send(client::get_req("/g"));
    up.wait_for_requests(1);
    gate.open();
    assert_eq!(raw.read_response().status, 200);
}

#[test]
fn refused_addr_refuses() {
    let addr = common::upstream::refused_addr();
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn hanging_addr_connects_time_out() {
    let hanging = common::upstream::hanging_addr();
    // Not just the probe inside `hanging_addr`: every further connect hangs as well.
    for _ in 0..3 {
        let err = std::net::TcpStream::connect_timeout(
            &hanging.addr(),
            std::time::Duration::from_millis(200),
        )
        .expect_err("a connect to the hanging address completed");
        assert!(
            client::is_timeout(&err),
            "connect failed instead of hanging: {err}"
        );
    }
}

#[test]
fn upstream_sends_interim_responses_before_the_echo() {
    let interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\n";
    let up = Upstream::start("u", Behavior::InterimThenEcho(interim.to_vec()));
    let mut raw = Raw::connect(up.addr());
    raw.send(client::get_req("/i"));
    let (interims, r) = raw.read_response_and_interims("GET");
    let statuses: Vec<u16> = interims.iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![103, 100]);
    assert_eq!(interims[0].header("link"), Some("</a.css>; rel=preload"));
    assert_eq!(Echoed::parse(&r.text()).target, "/i");
    assert_eq!(up.open_connections(), 1);
}
