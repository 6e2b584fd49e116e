//! Counters by protocol: requests by the protocol that carried them, and HTTP/2's own
//! connections, streams, resets and GOAWAYs. Recorded per worker in `Cell`s, merged by the
//! aggregator like every other counter.

use std::cell::Cell;
use std::fmt;

/// The client protocol of a request (`protocol` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 (TLS with ALPN `h2`, or h2c with prior knowledge).
    H2,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::H2];

    /// Index into per-protocol arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `protocol` label value.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
        }
    }
}

/// One interval's protocol counters (gauges as current values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocolCounts {
    /// Requests answered, by [`Protocol::index`].
    pub requests: [u64; 2],
    /// HTTP/2 client connections open now (gauge).
    pub h2_connections_open: u64,
    /// HTTP/2 client streams open now (gauge).
    pub h2_streams_open: u64,
    /// HTTP/2 client streams accepted.
    pub h2_streams: u64,
    /// Streams reset: by the client (0), by the gateway (1).
    pub h2_resets: [u64; 2],
    /// GOAWAYs: sent by the gateway (0), received from the client (1).
    pub h2_goaways: [u64; 2],
}

impl ProtocolCounts {
    /// Whether no counter moved (gauges aside).
    pub fn is_quiet(&self) -> bool {
        self.requests == [0; 2]
            && self.h2_streams == 0
            && self.h2_resets == [0; 2]
            && self.h2_goaways == [0; 2]
    }

    /// Adds `other`'s counters; gauges are summed by the caller per worker.
    pub fn add(&mut self, other: &ProtocolCounts) {
        for (a, b) in self.requests.iter_mut().zip(&other.requests) {
            *a = a.saturating_add(*b);
        }
        self.h2_streams = self.h2_streams.saturating_add(other.h2_streams);
        for (a, b) in self.h2_resets.iter_mut().zip(&other.h2_resets) {
            *a = a.saturating_add(*b);
        }
        for (a, b) in self.h2_goaways.iter_mut().zip(&other.h2_goaways) {
            *a = a.saturating_add(*b);
        }
    }
}

/// The worker-side recorder of [`ProtocolCounts`].
#[derive(Debug, Default)]
pub struct ProtocolRecorder {
    requests: [Cell<u64>; 2],
    h2_connections_open: Cell<u64>,
    h2_streams_open: Cell<u64>,
    h2_streams: Cell<u64>,
    h2_resets: [Cell<u64>; 2],
    h2_goaways: [Cell<u64>; 2],
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().saturating_add(1));
}

impl ProtocolRecorder {
    /// One request answered over `protocol`.
    pub fn request(&self, protocol: Protocol) {
        bump(&self.requests[protocol.index()]);
    }

    /// An HTTP/2 client connection opened (`true`) or closed.
    pub fn h2_connection(&self, opened: bool) {
        let c = &self.h2_connections_open;
        c.set(if opened {
            c.get() + 1
        } else {
            c.get().saturating_sub(1)
        });
    }

    /// An HTTP/2 stream was accepted (`true`) or ended.
    pub fn h2_stream(&self, opened: bool) {
        if opened {
            bump(&self.h2_streams);
        }
        let c = &self.h2_streams_open;
        c.set(if opened {
            c.get() + 1
        } else {
            c.get().saturating_sub(1)
        });
    }

    /// A stream was reset, by the gateway (`true`) or the client.
    pub fn h2_reset(&self, by_gateway: bool) {
        bump(&self.h2_resets[usize::from(by_gateway)]);
    }

    /// A GOAWAY was sent (`true`) or received.
    pub fn h2_goaway(&self, sent: bool) {
        bump(&self.h2_goaways[usize::from(!sent)]);
    }

    /// The interval's counts, resetting the counters (not the gauges).
    pub fn take(&self) -> ProtocolCounts {
        ProtocolCounts {
            requests: std::array::from_fn(|i| self.requests[i].replace(0)),
            h2_connections_open: self.h2_connections_open.get(),
            h2_streams_open: self.h2_streams_open.get(),
            h2_streams: self.h2_streams.replace(0),
            h2_resets: std::array::from_fn(|i| self.h2_resets[i].replace(0)),
            h2_goaways: std::array::from_fn(|i| self.h2_goaways[i].replace(0)),
        }
    }
}

/// Writes the protocol families; `gauges` are the summed per-worker gauges.
pub(super) fn write(
    w: &mut super::prometheus::Writer,
    totals: &ProtocolCounts,
    gauges: (u64, u64),
) -> fmt::Result {
    w.family(
        "ringgate_requests_by_protocol_total",
        "Requests answered, by the client protocol that carried them.",
        "counter",
    )?;
    for p in Protocol::ALL {
        w.sample(
            "ringgate_requests_by_protocol_total",
            &[("protocol", p.label())],
            totals.requests[p.index()],
        )?;
    }
    w.family(
        "ringgate_http2_connections_open",
        "HTTP/2 client connections open now.",
        "gauge",
    )?;
    w.sample(
        "ringgate_http2_connections_open",
        &[("protocol", "h2")],
        gauges.0,
    )?;
    w.family(
        "ringgate_http2_streams_open",
        "HTTP/2 client streams being served now.",
        "gauge",
    )?;
    w.sample(
        "ringgate_http2_streams_open",
        &[("protocol", "h2")],
        gauges.1,
    )?;
    w.family(
        "ringgate_http2_streams_total",
        "HTTP/2 client streams accepted.",
        "counter",
    )?;
    w.sample(
        "ringgate_http2_streams_total",
        &[("protocol", "h2")],
        totals.h2_streams,
    )?;
    w.family(
        "ringgate_http2_resets_total",
        "HTTP/2 client streams reset, by who reset them.",
        "counter",
    )?;
    for (i, by) in ["client", "gateway"].iter().enumerate() {
        w.sample(
            "ringgate_http2_resets_total",
            &[("protocol", "h2"), ("by", by)],
            totals.h2_resets[i],
        )?;
    }
    w.family(
        "ringgate_http2_goaways_total",
        "HTTP/2 GOAWAY frames on client connections, sent or received.",
        "counter",
    )?;
    for (i, dir) in ["sent", "received"].iter().enumerate() {
        w.sample(
            "ringgate_http2_goaways_total",
            &[("protocol", "h2"), ("direction", dir)],
            totals.h2_goaways[i],
        )?;
    }
    Ok(())
}
