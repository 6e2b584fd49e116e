//! `kind = "authz"`: what an authenticated request may do: consumer groups allowed or denied,
//! JWT scopes and claim values required. Runs after authentication; refuses with 403.
//! Compares configured strings with the identity in place; no allocation.

use std::sync::Arc;

use super::consumers::Consumers;
use super::{Denial, Identity};
use crate::http::problem::cause;

/// A compiled `authz` policy.
#[derive(Debug)]
pub struct Authz {
    /// The policy's name.
    pub name: String,
    /// When non-empty, the consumer must belong to one of these groups.
    pub allow_groups: Vec<String>,
    /// A consumer in any of these groups is refused (wins over `allow_groups`).
    pub deny_groups: Vec<String>,
    /// Scopes the token must carry, every one (`scope` claim, space-separated, or `scp`).
    pub require_scopes: Vec<String>,
    /// Claims the token must carry, each with one of the listed values.
    pub require_claims: Vec<(String, Vec<String>)>,
    /// The consumers whose groups are checked.
    pub consumers: Arc<Consumers>,
}

impl Authz {
    /// 403 unless the identity passes every condition.
    pub fn check(&self, identity: &Identity) -> Result<(), Denial> {
        if !identity.is_authenticated() {
            return Err(Denial::forbidden(
                cause::NOT_AUTHENTICATED,
                "forbidden: not authenticated",
            ));
        }
        let groups = identity
            .consumer()
            .map_or(&[][..], |id| self.consumers.get(id).groups.as_slice());
        let token_groups = identity.token().map_or(&[][..], |t| t.groups.as_slice());
        let member = |list: &[String]| {
            list.iter()
                .any(|g| groups.contains(g) || token_groups.contains(g))
        };
        if member(&self.deny_groups) {
            return Err(Denial::forbidden(
                cause::GROUP_DENIED,
                "forbidden: consumer group denied",
            ));
        }
        if !self.allow_groups.is_empty() && !member(&self.allow_groups) {
            return Err(Denial::forbidden(
                cause::GROUP_NOT_ALLOWED,
                "forbidden: consumer group not allowed",
            ));
        }
        if self.require_scopes.is_empty() && self.require_claims.is_empty() {
            return Ok(());
        }
        let Some(token) = identity.token() else {
            return Err(Denial::forbidden(
                cause::TOKEN_REQUIRED,
                "forbidden: a token with scopes is required",
            ));
        };
        if !self.require_scopes.iter().all(|s| token.has_scope(s)) {
            return Err(Denial::forbidden(
                cause::INSUFFICIENT_SCOPE,
                "forbidden: insufficient scope",
            ));
        }
        let claims_ok = self
            .require_claims
            .iter()
            .all(|(claim, values)| values.iter().any(|v| token.claim_has(claim, v)));
        if claims_ok {
            Ok(())
        } else {
            Err(Denial::forbidden(
                cause::CLAIM_MISMATCH,
                "forbidden: required claim missing or wrong",
            ))
        }
    }
}
