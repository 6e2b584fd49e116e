//! The request's side of traffic management: choosing the route's upstream group from the
//! request (version rules, sticky key, split) and handing a copy to the mirror.
//!
//! Hot path: reads the head where it lies in the input buffer; allocates only for a request
//! that is actually mirrored (the copy of its bytes and the shadow task).

use std::net::IpAddr;

use super::connection::{find_header, ClientConn};
use super::context::WorkerContext;
use crate::config::{Snapshot, UpstreamId};
use crate::http::{HeaderSpan, RequestHead};
use crate::traffic::{
    cookie_value, versions, DefaultGroup, GroupChoice, MirrorSettings, Reservation, Shadow,
    StickyKey,
};

impl ClientConn {
    /// The upstream group that serves this request. Call while the head is still in `input`.
    pub(super) fn choose_group(&self, ctx: &WorkerContext, choice: &GroupChoice) -> UpstreamId {
        let data = self.input.data();
        let headers = &self.headers[..];
        let header = |name: &str| find_header(data, headers, name);
        let cookies = |name: &str| find_cookie(data, headers, name);
        if let Some(id) = versions::select(&choice.versions, &header, &cookies) {
            return id;
        }
        let split = match &choice.default {
            DefaultGroup::One(id) => return *id,
            DefaultGroup::Split(split) => split,
        };
        let ip;
        let key = match &split.sticky {
            None => None,
            Some(StickyKey::Cookie(name)) => cookies(name),
            Some(StickyKey::Header(name)) => header(name),
            Some(StickyKey::Ip) => {
                ip = ip_bytes(self.peer.ip());
                Some(&ip.0[..ip.1])
            }
        };
        ctx.traffic().pick(split, key)
    }

    /// Samples the request for the route's mirror and, if it is taken, copies the upstream
    /// request in `out` (head and body: `whole` says it is all there). The copy is sent by
    /// [`PendingMirror::start`] once the client has its response.
    pub(super) fn take_mirror(
        &self,
        ctx: &WorkerContext,
        snapshot: &Snapshot,
        settings: &MirrorSettings,
        head: &RequestHead,
        whole: bool,
    ) -> Option<PendingMirror> {
        let place = ctx.traffic().mirrors().decide(settings, whole)?;
        let shadow = snapshot.upstream(settings.upstream);
        let now = std::time::Instant::now();
        let Some(addr) = ctx
            .upstreams()
            .pick_untracked(settings.upstream, shadow, now)
        else {
            place.abandon();
            return None;
        };
        let target = Shadow {
            addr,
            method: head.method_kind,
            timeouts: shadow.timeouts,
            pool: shadow.pool,
            tls: shadow.tls.clone(),
        };
        Some(PendingMirror {
            place,
            target,
            request: self.out.clone(),
        })
    }
}

/// A mirrored request's copy, waiting for the client's exchange to end.
pub(super) struct PendingMirror {
    place: Reservation,
    target: Shadow,
    request: Vec<u8>,
}

impl PendingMirror {
    /// Hands the copy to a shadow task on this worker (fire and forget).
    pub(super) fn start(self) {
        monoio::spawn(self.place.exchange(self.target, self.request));
    }
}

/// The value of cookie `name` in the request's `Cookie` fields (the first one that has it).
fn find_cookie<'a>(data: &'a [u8], headers: &[HeaderSpan], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"cookie"))
        .find_map(|h| cookie_value(h.value.of(data), name))
}

/// An address's bytes on the stack: the buffer and how much of it is used.
fn ip_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut out = [0; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, 4)
        }
        IpAddr::V6(v6) => {
            out.copy_from_slice(&v6.octets());
            (out, 16)
        }
    }
}
