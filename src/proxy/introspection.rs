//! Token introspection requests (`introspect` policies) sent through the worker's own
//! upstream machinery: [`proxy::call`](super::call), never a blocking client.

use std::time::Instant;

use super::call::{call, Call};
use super::context::WorkerContext;
use crate::config::Snapshot;
use crate::policy::introspect::MAX_RESPONSE;
use crate::policy::{Introspect, Transport};

/// The worker's calls, for a suspended policy chain.
pub(super) struct WorkerCalls<'a> {
    pub(super) ctx: &'a WorkerContext,
    pub(super) snapshot: &'a Snapshot,
}

impl Transport for WorkerCalls<'_> {
    async fn post(
        &self,
        policy: &Introspect,
        body: &[u8],
        deadline: Instant,
    ) -> Option<(u16, bytes::Bytes)> {
        let request = Call {
            method: "POST",
            headers: &policy.headers,
            body,
            // Introspection has no side effect: a failed attempt may go to another target.
            idempotent: true,
            deadline: Some(deadline),
            max_body: MAX_RESPONSE,
            ..Call::get(policy.group, &policy.path)
        };
        match call(self.ctx, self.snapshot, &request).await {
            Ok(response) => Some((response.status, response.body)),
            Err(e) => {
                log::warn!("introspection `{}`: {e}", policy.name);
                None
            }
        }
    }
}
