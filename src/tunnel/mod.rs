//! Tunnels: connections that switched protocols (HTTP/1.1 Upgrade, e.g. WebSocket) and are
//! from then on copied byte for byte between client and upstream, on the worker that owns
//! the client connection.
//!
//! - `rules`: what a route lets switch (`upgrade = [...]`) and the limits a tunnel runs under;
//! - `slots`: the caps on open tunnels per worker and per route;
//! - `halves`: client and upstream streams split into read and write halves (plain or TLS);
//! - `relay`: both directions copied at once through bounded buffers, with the idle, life
//!   and shutdown watchdogs;
//! - `frames`: WebSocket frame headers, for `max_message_bytes` and the masking rule;
//! - `live`: the byte counts of open tunnels, handed to the metrics at each flush.
//!
//! The handshake itself (validation, forwarding, the 101) is the request pipeline's work
//! (`proxy::upgrade`); nothing here touches a request that did not switch.

pub mod frames;
pub mod halves;
pub mod live;
pub mod relay;
pub mod rules;
pub mod slots;

pub use live::LiveTunnels;
pub use rules::{TunnelLimits, UpgradeRules};
pub use slots::{Slot, TunnelSlots};
