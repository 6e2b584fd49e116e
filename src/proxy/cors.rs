//! The CORS step of a request on a route with a `cors` policy (see `crate::policy::cors`).
//! It runs right after routing (and the HTTPS redirect), before the route's other policies:
//!
//! ```text
//! preflight? ─▶ 204 with the allow fields, or 403 without CORS fields (answered here)
//! WebSocket handshake from an origin not allowed? ─▶ 403 (never reaches the upstream)
//! otherwise  ─▶ `Vary: Origin` and, for an allowed origin, the CORS fields go into the
//!               response fields every answer carries (the upstream's response, and the
//!               gateway's own 401/403/429/5xx alike); a proxied response drops the
//!               upstream's `Access-Control-*` fields and gets `Origin` merged into its `Vary`
//! ```
//!
//! On a warm connection nothing here allocates: the fields are written into the
//! connection's reused buffers.

use super::connection::{ClientConn, Next};
use super::context::WorkerContext;
use crate::config::{Route, RouteAction, Snapshot};
use crate::http::upgrade::offered;
use crate::http::RequestHead;
use crate::policy::cors::{OriginCheck, RESPONSE_FIELDS, VARY_ORIGIN};
use crate::policy::{Cors, Denial, Outcome, RequestView};

impl ClientConn {
    /// Applies the route's `cors` policy; returns how the connection goes on when the request
    /// was answered here (a preflight, a refused WebSocket handshake), `None` when it goes on
    /// through the other policies.
    pub(super) async fn apply_cors(
        &mut self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        route: &Route,
        cors: &Cors,
        head: &RequestHead,
    ) -> Option<Next> {
        let data = self.input.data();
        let view = RequestView {
            data,
            headers: &self.headers,
            query: None,
            peer: self.peer.ip(),
            trusted_proxies: &snapshot.server.trusted_proxies,
            route: &route.name,
            path_params: None,
        };
        let origin = cors.origin(&view);
        if Cors::is_preflight(head.method.of(data), &view) {
            let result = cors.preflight(&view, origin, &mut self.response_headers);
            let outcome = match &result {
                Ok(()) => Outcome::Allowed,
                Err(denial) => denial.outcome(),
            };
            ctx.metrics().policy_decision(&cors.name, outcome);
            return Some(match result {
                Ok(()) => self.reply_preflight(ctx, head).await,
                Err(denial) => self.reply_denied(ctx, &denial, head).await,
            });
        }
        // The `Vary` line goes first, where a relayed response can leave it out.
        let vary_line = if cors.varies() {
            let line = VARY_ORIGIN.iter().copied();
            drop(self.response_headers.splice(0..0, line));
            VARY_ORIGIN.len()
        } else {
            0
        };
        if origin == OriginCheck::Refused && is_websocket_handshake(route, data, head, view) {
            let denial = Denial::forbidden(
                crate::http::problem::cause::CROSS_ORIGIN_HANDSHAKE,
                "forbidden: WebSocket handshake from an origin not allowed",
            );
            ctx.metrics().policy_decision(&cors.name, denial.outcome());
            return Some(self.reply_denied(ctx, &denial, head).await);
        }
        cors.write_actual(origin, &mut self.response_headers);
        if let RouteAction::Proxy(_) = &route.action {
            let stages = &mut self.stages;
            stages.activate();
            for name in RESPONSE_FIELDS {
                stages.edits.remove(name);
            }
            if vary_line > 0 {
                stages.edits.merge_vary(b"Origin");
            }
            stages.vary_line = vary_line;
        }
        None
    }
}

/// Whether the request offers a WebSocket upgrade its route accepts.
fn is_websocket_handshake(
    route: &Route,
    data: &[u8],
    head: &RequestHead,
    view: RequestView<'_>,
) -> bool {
    let RouteAction::Proxy(action) = &route.action else {
        return false;
    };
    let Some(rules) = &action.upgrade else {
        return false;
    };
    offered(data, head, view.headers, &rules.protocols)
        .is_some_and(|offer| rules.is_websocket(offer.protocol))
}
