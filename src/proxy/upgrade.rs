//! HTTP/1.1 Upgrade through the pipeline: a route with `upgrade = [...]` takes a request's
//! offer to switch protocols, the handshake goes upstream like any request (policies, group
//! choice, balancing, retries, access log all ran or run as usual), and an upstream `101`
//! turns the connection into a tunnel (`crate::tunnel`).
//!
//! ```text
//! forward ─▶ offer accepted? (route lists it, HTTP/1.1, not an h2 stream or h2 group)
//!         ─▶ WebSocket: handshake checked (400/426, never forwarded)
//!         ─▶ tunnel slot (503 when the worker or route is full)
//!         ─▶ head written with Connection: upgrade + Upgrade ─▶ attempts
//!         ─▶ 101 naming the protocol: relayed, request recorded ─▶ Next::Upgraded
//!            (any other answer: relayed as a normal response, the slot given back)
//! serve   ─▶ the client connection taken apart ─▶ a task of its own copies both ways
//! ```
//!
//! A request on a route without `upgrade` pays one `Option` check; its `Upgrade` field stays
//! hop-by-hop and is dropped, and an upstream 101 to it is a 502.

use std::rc::Rc;
use std::time::Instant;

use super::connection::{ClientConn, Next};
use super::context::WorkerContext;
use super::error::ProxyError;
use super::exchange::Open;
use crate::config::{Snapshot, UpgradeRules, Upstream};
use crate::http::upgrade::{check_websocket, offered, switched_to};
use crate::http::writer::{write_downstream_response, DownstreamInfo};
use crate::http::{RequestHead, ResponseHead};
use crate::io_buf::{write_all_reuse, ReadBuf};
use crate::tls::ClientStream;
use crate::tunnel::relay::{self, Ends, Traffic};
use crate::tunnel::{halves, Slot, TunnelLimits};
use crate::upstream::UpstreamConn;

/// A request whose offer to switch protocols its route accepted: what the tunnel needs once
/// the upstream agrees (boxed in the connection: one allocation per handshake, none for
/// other requests).
#[derive(Debug)]
pub(super) struct Upgrading {
    /// The protocol token (lower case), as the route lists it.
    protocol: Box<str>,
    /// The limits, resolved when the handshake arrived (a reload does not change them).
    limits: TunnelLimits,
    /// The tunnel's place under the caps (it also names the route).
    slot: Slot,
    /// The upstream connection, once it answered 101.
    upstream: Option<UpstreamConn>,
}

impl Upgrading {
    /// The protocol switched to.
    pub(super) fn protocol(&self) -> &str {
        &self.protocol
    }
}

impl ClientConn {
    /// Decides whether the request switches protocols on this route (`rules` its route's
    /// `upgrade`), checking a WebSocket handshake and taking a tunnel slot; sets
    /// `self.upgrading`. A request that offers nothing the route accepts goes on as a plain
    /// request (its `Upgrade` field dropped as hop-by-hop).
    pub(super) fn accept_upgrade(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        rules: &UpgradeRules,
        upstream: &Upstream,
        head: &RequestHead,
    ) -> Result<(), ProxyError> {
        if self.http2 || upstream.protocol.is_h2() {
            // No hop-by-hop upgrade on an HTTP/2 stream, nor towards an HTTP/2 group.
            return Ok(());
        }
        let data = self.input.data();
        let Some(offer) = offered(data, head, &self.headers, &rules.protocols) else {
            return Ok(());
        };
        if rules.is_websocket(offer.protocol) {
            if let Err(fault) = check_websocket(data, head, &self.headers, offer) {
                if fault.status() == 426 {
                    self.response_headers
                        .extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
                }
                return Err(ProxyError::BadHandshake(fault));
            }
        }
        let route = self
            .params
            .route_index()
            .and_then(|i| snapshot.router.get(i))
            .map_or("", |r| r.name.as_str());
        let worker_cap = snapshot.server.limits.max_tunnels_per_worker;
        let slot = ctx
            .tunnels()
            .reserve(route, worker_cap, rules.max_tunnels)
            .ok_or(ProxyError::TunnelsFull)?;
        let timeouts = &snapshot.server.timeouts;
        self.upgrading = Some(Box::new(Upgrading {
            protocol: rules.protocols[offer.protocol].clone(),
            limits: TunnelLimits::resolve(rules, timeouts.tunnel_idle, timeouts.tunnel_max),
            slot,
            upstream: None,
        }));
        Ok(())
    }

    /// Relays the upstream's `101` and keeps its connection for the tunnel; a 101 that does
    /// not name the protocol asked for is a 502.
    pub(super) async fn switch_protocols(
        &mut self,
        snapshot: &Snapshot,
        mut conn: UpstreamConn,
        head: &RequestHead,
        response: ResponseHead,
    ) -> Result<Next, ProxyError> {
        let Some(upgrading) = self.upgrading.as_ref() else {
            return Err(ProxyError::UnexpectedUpgrade);
        };
        let data = conn.buf.data();
        if !switched_to(data, &self.headers, &upgrading.protocol) {
            return Err(ProxyError::UnexpectedUpgrade);
        }
        let info = DownstreamInfo {
            client_version: head.version,
            keep_alive: false,
            request_id: &self.request_id,
            extra_headers: &self.response_headers,
            edits: None,
            upgrade: Some(&upgrading.protocol),
        };
        self.out.clear();
        write_downstream_response(&mut self.out, data, &response, &self.headers, &info);
        if self.tls.is_some() {
            self.finish_secure_head(snapshot, 0);
        }
        conn.buf.consume(response.head_len);
        if let Some(upgrading) = self.upgrading.as_mut() {
            upgrading.upstream = Some(conn);
        }
        self.response_started = true;
        self.exchange.status = 101;
        self.exchange.bytes_out += self.out.len() as u64;
        write_all_reuse(&mut self.stream, &mut self.out)
            .await
            .map_err(ProxyError::ClientGone)?;
        Ok(Next::Upgraded)
    }
}

/// Runs the tunnel of a connection whose upstream switched protocols, in a task of its own
/// (the request task's future stays the size it was), until either side closes or a limit
/// ends it; records it in the metrics. `open` keeps the connection counted (the drain waits
/// for it) until then.
pub(super) fn spawn_tunnel(
    ctx: Rc<WorkerContext>,
    stream: ClientStream,
    input: ReadBuf,
    upgrading: Option<Box<Upgrading>>,
    open: Open,
) {
    let Some(upgrading) = upgrading else { return };
    let Upgrading {
        limits,
        slot,
        upstream,
        ..
    } = *upgrading;
    let Some(upstream) = upstream else { return };
    let (Ok((client_read, client_write)), Ok((upstream_read, upstream_write))) =
        (halves::client(stream), halves::upstream(upstream.stream))
    else {
        return;
    };
    let ends = Ends {
        client_read,
        client_write,
        upstream_read,
        upstream_write,
        from_client: input,
        from_upstream: upstream.buf,
    };
    monoio::spawn(async move {
        let metrics = ctx.metrics();
        metrics.tunnel_opened(slot.route());
        let started = Instant::now();
        let traffic = Rc::new(Traffic::new(slot.route()));
        ctx.live_tunnels().track(&traffic);
        let reason = relay::run(ends, limits, ctx.drain(), &traffic).await;
        // Bytes the worker's metrics flushes did not hand over yet.
        let (rest_up, rest_down) = traffic.unreported();
        let lived = started.elapsed();
        metrics.tunnel_closed(slot.route(), reason.label(), lived, rest_up, rest_down);
        let (up, down) = (traffic.up.get(), traffic.down.get());
        log::debug!(
            "{}: tunnel on route {} closed ({}), {up} bytes up, {down} down",
            open.peer(),
            slot.route(),
            reason.label()
        );
        drop((slot, open));
    });
}
