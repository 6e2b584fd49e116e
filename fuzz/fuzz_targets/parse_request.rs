//! Fuzzes `parse_request`: no panic on any input; an accepted head's spans lie inside the
//! head, its framing is consistent, and the upstream writer accepts whatever was parsed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use ringgate::http::writer::{write_upstream_request, ForwardInfo};
use ringgate::http::{parse_request, parse_response, HeadLimits, Method};

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
        max_uri_bytes: 2048,
    };
    let mut headers = Vec::new();
    if let Ok(Some(head)) = parse_request(data, &limits, &mut headers) {
        assert!(head.head_len <= data.len() && head.head_len <= limits.max_head_bytes);
        assert!(headers.len() <= limits.max_headers);
        for h in &headers {
            assert!((h.value.end as usize) <= head.head_len);
            assert!(!h.name.is_empty());
        }
        let fwd = ForwardInfo {
            path_and_query: head.target.of(data),
            host: b"upstream",
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            proto: "http",
            request_id: b"fuzz",
            request_id_from_client: false,
            traceparent: b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            forward_tracestate: true,
        };
        let mut out = Vec::new();
        write_upstream_request(&mut out, data, &head, &headers, &fwd);
        // What we forward must itself be a valid head that frames the body the same way.
        let mut again = Vec::new();
        let reparsed = parse_request(
            &out,
            &HeadLimits {
                max_head_bytes: 1 << 20,
                max_headers: 256,
                max_uri_bytes: 1 << 20,
            },
            &mut again,
        );
        if let Ok(Some(h2)) = reparsed {
            assert_eq!(h2.framing, head.framing);
        }
    }
    let _ = parse_response(data, Method::Get, 8192, 64, &mut headers);
});
