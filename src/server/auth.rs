//! Who may call what, on which tenants. Every token has a role and a scope (the tenants
//! it may act on). The interceptor of each service checks the role and leaves a
//! [`Caller`] in the request; handlers check the tenant of what the call touches against
//! its scope. A token is compared by its SHA-256 and never logged: a denied call is
//! logged with the token's configured name and counted by reason. With no token
//! configured at all, authentication is off (the embedded default, bound to loopback).

use crate::metrics::Metrics;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tonic::{Request, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Moderator,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "ingest" => Some(Role::Ingest),
            "moderator" => Some(Role::Moderator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The tenants a caller may act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Tenants(Arc<BTreeSet<String>>),
}

impl Scope {
    /// The scope of a `tenants` list (`"*"`: every tenant).
    pub fn of(tenants: &[String]) -> Scope {
        if tenants.iter().any(|t| t == "*") {
            Scope::All
        } else {
            Scope::Tenants(Arc::new(tenants.iter().cloned().collect()))
        }
    }

    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenants(t) => t.contains(tenant),
        }
    }

    fn union(&self, other: &Scope) -> Scope {
        match (self, other) {
            (Scope::Tenants(a), Scope::Tenants(b)) => {
                Scope::Tenants(Arc::new(a.union(b).cloned().collect()))
            }
            _ => Scope::All,
        }
    }
}

/// Why a call was refused: the label of `pairwatch_auth_denied_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `authorization` header, or not `Bearer <token>`.
    MissingToken,
    UnknownToken,
    /// The token's role may not call this service.
    Role,
    /// The call names or touches a tenant outside the token's scope.
    Tenant,
    /// Only an admin of every tenant may call this (ReloadRules).
    GlobalAdmin,
}

impl Denied {
    pub const ALL: [Denied; 5] = [
        Denied::MissingToken,
        Denied::UnknownToken,
        Denied::Role,
        Denied::Tenant,
        Denied::GlobalAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Denied::MissingToken => "missing_token",
            Denied::UnknownToken => "unknown_token",
            Denied::Role => "role_not_allowed",
            Denied::Tenant => "tenant_not_allowed",
            Denied::GlobalAdmin => "global_admin_only",
        }
    }
}

/// The caller of an RPC as its service's interceptor established it, read by handlers
/// from the request's extensions.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's configured name (never the token).
    pub name: Arc<str>,
    pub scope: Scope,
    /// An admin of every tenant: may change what applies to all (ReloadRules).
    pub global_admin: bool,
}

impl Caller {
    /// Anyone, when authentication is off.
    pub fn open() -> Caller {
        Caller {
            name: Arc::from("anonymous"),
            scope: Scope::All,
            global_admin: true,
        }
    }

    /// The caller of `req`. A request the interceptor did not see acts on no tenant.
    pub fn of<T>(req: &Request<T>) -> Caller {
        req.extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller {
                name: Arc::from("unchecked"),
                scope: Scope::Tenants(Arc::default()),
                global_admin: false,
            })
    }

    pub fn allows(&self, tenant: &str) -> bool {
        self.scope.allows(tenant)
    }

    /// Counts and logs a refusal of this caller's call to `rpc`.
    pub fn denied(&self, metrics: &Metrics, rpc: &str, why: Denied) {
        metrics.auth_denied(why.as_str());
        tracing::warn!(token = %self.name, rpc, reason = why.as_str(), "call denied");
    }
}

/// One configured token, resolved.
struct Grant {
    name: Arc<str>,
    role: Role,
    scope: Scope,
}

#[derive(Clone)]
pub struct Tokens {
    by_hash: Arc<HashMap<[u8; 32], Vec<Grant>>>,
    metrics: Arc<Metrics>,
}

impl Tokens {
    /// The configured tokens (files read now). Fails on a token that validation would
    /// have refused, or a file that can no longer be read.
    pub fn new(auth: &crate::config::Auth, metrics: Arc<Metrics>) -> Result<Self, String> {
        let mut by_hash: HashMap<[u8; 32], Vec<Grant>> = HashMap::new();
        for g in auth.grants() {
            let secret = g.secret().map_err(|e| format!("`{}`: {e}", g.name))?;
            let role = Role::parse(&g.role)
                .ok_or_else(|| format!("`{}`: role {:?} is not a role", g.name, g.role))?;
            by_hash
                .entry(Sha256::digest(secret.as_bytes()).into())
                .or_default()
                .push(Grant {
                    name: Arc::from(g.name.as_str()),
                    role,
                    scope: Scope::of(&g.tenants),
                });
        }
        Ok(Tokens {
            by_hash: Arc::new(by_hash),
            metrics,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// Who holds `token` when calling a service open to `roles` (admin always): the
    /// union of the scopes of its grants with one of those roles.
    fn caller(&self, token: &str, roles: &[Role]) -> Result<Caller, Denied> {
        let grants = self
            .by_hash
            .get(&<[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())))
            .ok_or(Denied::UnknownToken)?;
        let mut fit = grants
            .iter()
            .filter(|g| g.role == Role::Admin || roles.contains(&g.role));
        let first = fit.next().ok_or(Denied::Role)?;
        let mut caller = Caller {
            name: first.name.clone(),
            scope: first.scope.clone(),
            global_admin: first.role == Role::Admin && first.scope == Scope::All,
        };
        for g in fit {
            caller.scope = caller.scope.union(&g.scope);
            caller.global_admin |= g.role == Role::Admin && g.scope == Scope::All;
        }
        Ok(caller)
    }

    /// The moderator (or admin) holding `token`, for the console's login; a refusal is
    /// counted.
    pub fn moderator(&self, token: &str) -> Result<Caller, Denied> {
        self.caller(token, &[Role::Moderator]).inspect_err(|why| {
            self.metrics.auth_denied(why.as_str());
            tracing::warn!(reason = why.as_str(), "console login denied");
        })
    }

    /// An interceptor letting through callers holding one of `roles` (admin always),
    /// and leaving the [`Caller`] in the request. The `Status` error is tonic's
    /// interceptor contract.
    #[allow(clippy::result_large_err)]
    pub fn require(
        &self,
        roles: &'static [Role],
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        let tokens = self.clone();
        move |mut req: Request<()>| {
            if !tokens.enabled() {
                req.extensions_mut().insert(Caller::open());
                return Ok(req);
            }
            let token = req
                .metadata()
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "));
            let refuse = |why: Denied| {
                tokens.metrics.auth_denied(why.as_str());
                tracing::warn!(reason = why.as_str(), "call denied");
            };
            let Some(token) = token else {
                refuse(Denied::MissingToken);
                return Err(Status::unauthenticated(
                    "missing `authorization: Bearer <token>`",
                ));
            };
            match tokens.caller(token, roles) {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    Ok(req)
                }
                Err(Denied::UnknownToken) => {
                    refuse(Denied::UnknownToken);
                    Err(Status::unauthenticated("unknown token"))
                }
                Err(why) => {
                    refuse(why);
                    Err(Status::permission_denied(format!(
                        "this token's role may not call this service (needs {roles:?})"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, TokenGrant};

    fn grant(name: &str, token: &str, role: &str, tenants: &[&str]) -> TokenGrant {
        TokenGrant {
            name: name.into(),
            token: token.into(),
            role: role.into(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            ..TokenGrant::default()
        }
    }

    #[test]
    fn a_token_gets_the_union_of_its_grants_for_the_roles_a_service_takes() {
        let auth = Auth {
            ingest_tokens: vec![],
            moderator_tokens: vec![],
            admin_tokens: vec!["root-token-0123456789".into()],
            tokens: vec![
                grant("eu-mods", "shared-token-0123456789", "moderator", &["eu"]),
                grant("us-ingest", "shared-token-0123456789", "ingest", &["us"]),
                grant("eu-admin", "eu-admin-token-0123456", "admin", &["eu"]),
            ],
        };
        let t = Tokens::new(&auth, Arc::new(Metrics::new())).unwrap();
        let mods = t
            .caller("shared-token-0123456789", &[Role::Moderator])
            .unwrap();
        assert_eq!(&*mods.name, "eu-mods");
        assert!(mods.allows("eu") && !mods.allows("us") && !mods.global_admin);
        let ingest = t
            .caller("shared-token-0123456789", &[Role::Ingest])
            .unwrap();
        assert!(ingest.allows("us") && !ingest.allows("eu"));
        assert_eq!(
            t.caller("shared-token-0123456789", &[Role::Admin])
                .unwrap_err(),
            Denied::Role
        );
        // A tenant admin may call the moderators' service, on its tenant only.
        let eu_admin = t
            .caller("eu-admin-token-0123456", &[Role::Moderator])
            .unwrap();
        assert!(eu_admin.allows("eu") && !eu_admin.allows("us") && !eu_admin.global_admin);
        let root = t.caller("root-token-0123456789", &[Role::Ingest]).unwrap();
        assert!(root.allows("anything") && root.global_admin);
        assert_eq!(&*root.name, "auth.admin_tokens[0]");
        assert_eq!(
            t.caller("no-such-token-0123456", &[Role::Admin])
                .unwrap_err(),
            Denied::UnknownToken
        );
    }

    #[test]
    fn a_request_the_interceptor_did_not_see_acts_on_no_tenant() {
        let c = Caller::of(&Request::new(()));
        assert!(!c.allows("default") && !c.global_admin);
    }
}
