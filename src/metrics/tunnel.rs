//! Tunnel metrics (upgraded connections, e.g. WebSocket): per route, tunnels opened, closed
//! by reason, bytes each way and a duration histogram; open tunnels are opened minus closed.
//!
//! Recorded per worker when a tunnel opens and when it closes (no locks: a `RefCell` in the
//! worker's recorder, touched twice per tunnel, never per byte), handed over in the delta,
//! summed by the aggregator. Bytes are counted while a tunnel is open: at each metrics flush
//! of its worker the bytes it moved since the last flush are added (`tunnel::LiveTunnels`),
//! and its remainder when it closes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::prometheus::Writer;

/// Upper bounds of the duration buckets, in seconds: tunnels live from a moment to days,
/// past the latency histograms' 60 s bound.
pub const DURATION_BUCKETS: [f64; 10] = [
    0.1,
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    12.0 * 3600.0,
    24.0 * 3600.0,
];

/// What one route's tunnels did, since the last delta (or since start, once summed).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TunnelStats {
    /// Tunnels opened (upstream answered 101 and the tunnel started).
    pub opened: u64,
    /// Tunnels closed, by reason label.
    pub closed: Vec<(&'static str, u64)>,
    /// Bytes from client to upstream.
    pub bytes_up: u64,
    /// Bytes from upstream to client.
    pub bytes_down: u64,
    /// Closed tunnels per duration bucket (the last counts those past every bound).
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of closed tunnels' durations, in seconds.
    pub duration_sum: f64,
}

impl TunnelStats {
    /// Counts one closed tunnel.
    pub fn close(&mut self, reason: &'static str, lived: Duration, up: u64, down: u64) {
        bump(&mut self.closed, reason, 1);
        self.bytes_up = self.bytes_up.saturating_add(up);
        self.bytes_down = self.bytes_down.saturating_add(down);
        let secs = lived.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket] += 1;
        self.duration_sum += secs;
    }

    /// Closed tunnels in all.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().map(|(_, n)| n).sum()
    }

    /// Tunnels closed for `reason`.
    pub fn closed_for(&self, reason: &str) -> u64 {
        self.closed
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Whether nothing was recorded.
    pub fn is_idle(&self) -> bool {
        self.opened == 0 && self.closed.is_empty() && self.bytes_up == 0 && self.bytes_down == 0
    }

    /// Adds `other` into this.
    pub fn add(&mut self, other: &TunnelStats) {
        self.opened = self.opened.saturating_add(other.opened);
        for &(reason, n) in &other.closed {
            bump(&mut self.closed, reason, n);
        }
        self.closed.sort_by_key(|(r, _)| *r);
        self.bytes_up = self.bytes_up.saturating_add(other.bytes_up);
        self.bytes_down = self.bytes_down.saturating_add(other.bytes_down);
        for (into, from) in self.buckets.iter_mut().zip(&other.buckets) {
            *into = into.saturating_add(*from);
        }
        self.duration_sum += other.duration_sum;
    }
}

fn bump(counts: &mut Vec<(&'static str, u64)>, label: &'static str, n: u64) {
    match counts.iter_mut().find(|(l, _)| *l == label) {
        Some((_, m)) => *m = m.saturating_add(n),
        None => counts.push((label, n)),
    }
}

/// Tunnel stats by route name, as handed over and as summed.
pub type TunnelTable = BTreeMap<String, TunnelStats>;

/// Writes the tunnel families.
pub(super) fn write(w: &mut Writer, tunnels: &TunnelTable) -> fmt::Result {
    w.family(
        "ringgate_tunnels_open",
        "Tunnels (upgraded connections) open now, by route.",
        "gauge",
    )?;
    for (route, s) in tunnels {
        let open = s.opened.saturating_sub(s.closed_total());
        w.sample("ringgate_tunnels_open", &[("route", route)], open)?;
    }
    w.family(
        "ringgate_tunnels_opened_total",
        "Tunnels opened (upstream switched protocols), by route.",
        "counter",
    )?;
    for (route, s) in tunnels {
        w.sample(
            "ringgate_tunnels_opened_total",
            &[("route", route)],
            s.opened,
        )?;
    }
    w.family(
        "ringgate_tunnels_closed_total",
        "Tunnels closed, by route and reason.",
        "counter",
    )?;
    for (route, s) in tunnels {
        for (reason, n) in &s.closed {
            let labels = [("route", route.as_str()), ("reason", *reason)];
            w.sample("ringgate_tunnels_closed_total", &labels, n)?;
        }
    }
    w.family(
        "ringgate_tunnel_bytes_total",
        "Bytes carried by tunnels, by route and direction (up: client to upstream).",
        "counter",
    )?;
    for (route, s) in tunnels {
        for (direction, n) in [("up", s.bytes_up), ("down", s.bytes_down)] {
            let labels = [("route", route.as_str()), ("direction", direction)];
            w.sample("ringgate_tunnel_bytes_total", &labels, n)?;
        }
    }
    w.family(
        "ringgate_tunnel_duration_seconds",
        "Lifetime of closed tunnels, by route.",
        "histogram",
    )?;
    for (route, s) in tunnels {
        let mut cumulative = 0;
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += s.buckets[i];
            let le = bound.to_string();
            let labels = [("route", route.as_str()), ("le", le.as_str())];
            w.sample(
                "ringgate_tunnel_duration_seconds_bucket",
                &labels,
                cumulative,
            )?;
        }
        let count = s.closed_total();
        let labels = [("route", route.as_str()), ("le", "+Inf")];
        w.sample("ringgate_tunnel_duration_seconds_bucket", &labels, count)?;
        let labels = [("route", route.as_str())];
        w.sample(
            "ringgate_tunnel_duration_seconds_sum",
            &labels,
            s.duration_sum,
        )?;
        w.sample("ringgate_tunnel_duration_seconds_count", &labels, count)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_counts_reason_bytes_and_duration_bucket() {
        let mut s = TunnelStats {
            opened: 2,
            ..Default::default()
        };
        s.close("idle", Duration::from_secs(30), 10, 20);
        s.close("client_closed", Duration::from_millis(50), 1, 2);
        assert_eq!(s.closed_for("idle"), 1);
        assert_eq!(s.closed_total(), 2);
        assert_eq!((s.bytes_up, s.bytes_down), (11, 22));
        assert_eq!(s.buckets[0], 1, "50 ms is under the 0.1 s bound");
        assert_eq!(s.buckets[3], 1, "30 s is under the 60 s bound");
        let mut sum = TunnelStats::default();
        sum.add(&s);
        sum.add(&s);
        assert_eq!(
            (sum.opened, sum.closed_for("idle"), sum.buckets[3]),
            (4, 2, 2)
        );
    }
}
