//! What a route allows to be tunnelled, and the limits a tunnel is held to: the compiled
//! form of a route's `upgrade`, `tunnel_idle`, `tunnel_max`, `max_message_bytes` and
//! `max_tunnels` keys (validated in `config::compile::upgrade`).

use std::time::Duration;

use crate::http::upgrade::WEBSOCKET;

/// A route's upgrade rules (present only on routes with `upgrade = [...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRules {
    /// Protocol tokens, lower case, in configured order; never `h2c`.
    pub protocols: Vec<Box<str>>,
    /// Longest time with no byte in either direction (`None`: the server's `tunnel_idle`).
    pub idle: Option<Duration>,
    /// Longest life of a tunnel (`None`: the server's `tunnel_max`, if any).
    pub max: Option<Duration>,
    /// Largest WebSocket message a client may send, payload bytes over all its frames;
    /// setting it turns on the frame checks of client frames (`None`: bytes pass unread).
    pub max_message_bytes: Option<u64>,
    /// Open tunnels of this route per worker at most (`None`: only the server's cap).
    pub max_tunnels: Option<usize>,
}

impl UpgradeRules {
    /// Whether protocol `index` is WebSocket (whose handshake and frames the gateway checks).
    pub fn is_websocket(&self, index: usize) -> bool {
        self.protocols.get(index).is_some_and(|p| &**p == WEBSOCKET)
    }
}

/// The limits one open tunnel runs under, resolved from its route and the server when the
/// tunnel opened (a reload does not change them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelLimits {
    /// Closed after this long with no byte either way.
    pub idle: Duration,
    /// Closed after this long in any case.
    pub max: Option<Duration>,
    /// WebSocket client frames are checked, and messages held to this size.
    pub max_message_bytes: Option<u64>,
}

impl TunnelLimits {
    /// The limits of a tunnel opened now on a route with `rules`: the route's own, else the
    /// server's (`server.timeouts.tunnel_idle`, `tunnel_max`).
    pub fn resolve(rules: &UpgradeRules, idle: Duration, max: Option<Duration>) -> Self {
        Self {
            idle: rules.idle.unwrap_or(idle),
            max: rules.max.or(max),
            max_message_bytes: rules.max_message_bytes,
        }
    }
}
