//! Bearer-token authentication with roles, checked on every RPC. A token is compared by
//! its SHA-256, never logged. With no token configured at all, authentication is off
//! (the embedded default, bound to loopback).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Moderator,
    Admin,
}

#[derive(Clone, Default)]
pub struct Tokens {
    by_hash: Arc<HashMap<[u8; 32], Vec<Role>>>,
}

impl Tokens {
    pub fn new(auth: &crate::config::Auth) -> Self {
        let mut by_hash: HashMap<[u8; 32], Vec<Role>> = HashMap::new();
        for (tokens, role) in [
            (&auth.ingest_tokens, Role::Ingest),
            (&auth.moderator_tokens, Role::Moderator),
            (&auth.admin_tokens, Role::Admin),
        ] {
            for t in tokens {
                by_hash
                    .entry(Sha256::digest(t.as_bytes()).into())
                    .or_default()
                    .push(role);
            }
        }
        Tokens {
            by_hash: Arc::new(by_hash),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// An interceptor letting through callers holding one of `roles` (admin always).
    /// The `Status` error is tonic's interceptor contract.
    #[allow(clippy::result_large_err)]
    pub fn require(
        &self,
        roles: &'static [Role],
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        let tokens = self.clone();
        move |req: Request<()>| {
            if !tokens.enabled() {
                return Ok(req);
            }
            let header = req.metadata().get("authorization").ok_or_else(|| {
                Status::unauthenticated("missing `authorization: Bearer <token>`")
            })?;
            let token = header
                .to_str()
                .ok()
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
            let held = tokens
                .by_hash
                .get(&<[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())))
                .ok_or_else(|| Status::unauthenticated("unknown token"))?;
            if held.iter().any(|r| *r == Role::Admin || roles.contains(r)) {
                Ok(req)
            } else {
                Err(Status::permission_denied(format!(
                    "this token's role may not call this service (needs {roles:?})"
                )))
            }
        }
    }
}
