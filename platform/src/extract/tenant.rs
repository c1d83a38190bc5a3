//! Tenant context. The tenant comes from the `Host` (subdomain of the base domain or a custom
//! domain) and/or the credential (a tenant API key names its tenant). When both name a tenant they
//! must agree, else the request is refused the same way whether or not the other tenant exists.
//! The host only selects the tenant; it never grants access: the tenant API needs a credential.
//!
//! A credential is a tenant API key (`plt_{tenant}_{secret}`) or a user's access token (an EdDSA
//! JWT whose `tid` names the tenant and whose session must still be live).
//!
//! [`TenantContext::authenticate`] is the one authentication step, run by a route layer of the
//! tenant routers (`crate::authn`) that
//! builds the [`TenantContext`] once (tenant, principal, grants), sets the audit actor and keeps
//! the context in the request. Rate limiting, authorization and the extractors here read it from
//! there; nothing parses the credential again. [`TenantDb`] is the only door to tenant data: a
//! connection that carries the tenant.
//!
//! Failed tenant context (unknown host or tenant, bad token, made-up key) is limited in that
//! step: before any lookup the request takes a place in the failure budget of its client address
//! (and, for an API key, of the tenant it claims); success gives the place back, so only
//! failures count, and a client over budget is answered 429 without database work
//! ([`limits::RateLimits::begin_authentication`]).

use std::sync::Arc;

use audit::Actor;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::request::Parts;
use identity::credentials::PresentedKey;
use identity::{Permission, PermissionSet};
use limits::{Decision, Scope};
use tenancy::catalog::{Tenant, TenantStatus};
use tenancy::dataplane::{DataPlane, TenantTx};
use tenancy::ids::{ApiKeyId, DomainName, RoleId, SessionId, TenantId, UserId};
use tenancy::resolve::HostTenant;

use super::admin::bearer;
use crate::audit::ClientIp;
use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling, within the tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A tenant API key, acting with its role (`None`: `admin`, keys made before roles).
    ApiKey { id: ApiKeyId, role: Option<RoleId> },
    /// A signed-in user, through one of their sessions.
    User {
        id: UserId,
        session: SessionId,
        /// Whether the user has a second factor (a tenant policy may require one).
        mfa_enabled: bool,
    },
}

/// What the principal may do: its role's name and permissions (checked against the database,
/// cached for a few seconds).
#[derive(Clone, Debug)]
pub struct Grants {
    pub role: String,
    pub permissions: PermissionSet,
}

/// The resolved tenant of a request and the authenticated principal, if any.
#[derive(Clone, Debug)]
pub struct TenantContext {
    pub tenant: Arc<Tenant>,
    pub principal: Option<(Principal, Arc<Grants>)>,
}

/// A presented credential, parsed.
enum Credential {
    ApiKey(PresentedKey),
    Jwt(TenantId, UserId, SessionId),
}

impl Credential {
    fn tenant(&self) -> TenantId {
        match self {
            Self::ApiKey(k) => k.tenant,
            Self::Jwt(t, _, _) => *t,
        }
    }
}

const MISMATCH: &str = "the credential is not valid for this tenant's host";

/// Why authentication failed: the problem to answer, and the failed-authentication budget's
/// decision when that budget refused the request (its `RateLimit-*` headers go on the answer).
#[derive(Debug)]
pub struct AuthFailure {
    pub error: ApiError,
    pub refused: Option<Decision>,
}

impl From<ApiError> for AuthFailure {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            refused: None,
        }
    }
}

fn refused(d: Decision) -> AuthFailure {
    let detail = match d.scope {
        Scope::AuthTenant => "too many failed authentication attempts for this tenant; retry later",
        _ => "too many failed authentication attempts from this address; retry later",
    };
    AuthFailure {
        error: ApiError::too_many_requests(detail, d.reset_secs),
        refused: Some(d),
    }
}

/// Refusal of a request that reached a tenant handler without passing the tenant router's
/// authentication and its route's declared access (fail closed: nobody may use such a route).
/// The request's tenant context, only once `authorize` has checked the route's declared access:
/// the one fail-closed rule every tenant extractor goes through.
fn authorized(parts: &Parts) -> Result<&TenantContext, ApiError> {
    if parts.extensions.get::<Authorized>().is_none() {
        return Err(undeclared());
    }
    parts
        .extensions
        .get::<TenantContext>()
        .ok_or_else(undeclared)
}

fn undeclared() -> ApiError {
    ApiError::forbidden("this route declares no permission, so nobody may use it")
}

/// Marks a request whose route's declared access was enforced (`crate::authz::authorize`);
/// [`Authenticated`] and [`TenantDb`] exist only for such requests.
#[derive(Clone, Copy, Debug)]
pub struct Authorized;

/// The context the tenant router's authentication put in the request. A handler outside the
/// tenant routers finds none and is refused.
impl<S: Send + Sync> FromRequestParts<S> for TenantContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(undeclared)
    }
}

impl TenantContext {
    /// The one authentication step of a tenant request (the route layer `crate::authn`): the
    /// tenant from the host and/or the credential, the principal and its grants, the audit
    /// actor. Failed attempts are limited here, before any lookup: the request takes a place in
    /// the failure budget of its client address (and, for an API key, of the tenant it claims);
    /// success gives the place back.
    pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Self, AuthFailure> {
        let limits = &state.limits;
        let ip = parts.extensions.get::<ClientIp>().and_then(|c| c.0);
        let host = parts.headers.get(HOST).map_or(&[][..], |h| h.as_bytes());
        let token = bearer(parts);
        // Only an API key costs its claimed tenant's database to check; a token's signature is
        // checked without any lookup. A key verified moments ago costs nothing: it passes, so a
        // flood against its tenant does not lock it out.
        let presented = token.and_then(PresentedKey::parse);
        if let Some(k) = &presented
            && state.identity.api_keys.known_live(k).await
        {
            return Ok(Self::resolve(parts, state).await?);
        }
        let claimed = presented.map(|k| k.tenant);
        let fingerprint = limits.fingerprint(&[host, token.unwrap_or_default().as_bytes()]);
        let attempt = limits
            .begin_authentication(ip, claimed, fingerprint)
            .map_err(refused)?;
        let result = Self::resolve(parts, state).await;
        match &result {
            Ok(_) => attempt.succeeded(),
            // The database failed, not the client.
            Err(e) if e.status().is_server_error() => attempt.not_counted(),
            Err(_) => drop(attempt),
        }
        Ok(result?)
    }

    async fn resolve(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let resolver = &state.tenancy.resolver;
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .and_then(DomainName::from_host_header);
        let from_host = match &host {
            Some(h) => resolver.host(h).await?,
            None => HostTenant::None,
        };
        let key =
            match parts.headers.get(AUTHORIZATION) {
                None => None,
                Some(_) => {
                    let token = bearer(parts).ok_or_else(|| {
                        ApiError::unauthorized("expected `Authorization: Bearer <token>`")
                    })?;
                    if let Some(k) = PresentedKey::parse(token) {
                        Some(Credential::ApiKey(k))
                    } else {
                        // Signature, algorithm, key, issuer, audience and expiry; then the ids.
                        let claims =
                            state.identity.auth.jwt.verify(token).await.map_err(|_| {
                                ApiError::unauthorized("the credential is not valid")
                            })?;
                        let ids = (
                            TenantId::parse(&claims.tid),
                            UserId::parse(&claims.sub),
                            SessionId::parse(&claims.sid),
                        );
                        let (Some(t), Some(u), Some(s)) = ids else {
                            return Err(ApiError::unauthorized("the credential is not valid"));
                        };
                        Some(Credential::Jwt(t, u, s))
                    }
                }
            };
        let id = match (&key, from_host) {
            (Some(k), HostTenant::Tenant(h)) if k.tenant() == h => h,
            (Some(_), HostTenant::Tenant(_) | HostTenant::Unknown) => {
                return Err(ApiError::forbidden(MISMATCH));
            }
            (Some(k), HostTenant::None) => k.tenant(),
            (None, HostTenant::Tenant(h)) => h,
            (None, HostTenant::Unknown | HostTenant::None) => {
                return Err(ApiError::not_found("no tenant is known at this host"));
            }
        };
        let tenant = resolver.tenant(id).await?;
        let tenant = match tenant {
            Some(t) if matches!(t.status, TenantStatus::Active | TenantStatus::Suspended) => t,
            _ if key.is_some() => {
                return Err(ApiError::unauthorized("the credential is not valid"));
            }
            _ => return Err(ApiError::not_found("no tenant is known at this host")),
        };
        // The credential is checked before the status, so a stranger learns nothing about it.
        let dp = &state.tenancy.dataplane;
        let auth = &state.identity.auth;
        let principal = match &key {
            None => None,
            Some(Credential::ApiKey(k)) => {
                let (id, role) = state
                    .identity
                    .api_keys
                    .verify(dp, &tenant, k)
                    .await?
                    .ok_or_else(|| ApiError::unauthorized("the credential is not valid"))?;
                let grants = auth.role(dp, &tenant, role).await?;
                Some((
                    Principal::ApiKey { id, role },
                    Arc::new(Grants {
                        role: grants.0.clone(),
                        permissions: grants.1.clone(),
                    }),
                ))
            }
            Some(Credential::Jwt(_, user, session)) => {
                let p = auth
                    .session_principal(dp, &tenant, *user, *session)
                    .await?
                    .ok_or_else(|| ApiError::unauthorized("the session has ended"))?;
                Some((
                    Principal::User {
                        id: p.user,
                        session: p.session,
                        mfa_enabled: p.mfa_enabled,
                    },
                    Arc::new(Grants {
                        role: p.role.clone(),
                        permissions: p.permissions.clone(),
                    }),
                ))
            }
        };
        if tenant.status == TenantStatus::Suspended {
            return Err(ApiError::tenant_suspended());
        }
        tracing::Span::current().record("tenant.id", tracing::field::display(tenant.id));
        crate::errors::tag_tenant(tenant.id);
        if let Some(slot) = parts.extensions.get::<crate::metrics::TenantSlot>() {
            slot.set(&tenant);
        }
        match &principal {
            Some((Principal::User { id, .. }, _)) => tenancy::context::set_actor(Actor::user(id)),
            Some((Principal::ApiKey { id, .. }, _)) => {
                tenancy::context::set_actor(Actor::api_key(id))
            }
            None => {}
        }
        Ok(Self { tenant, principal })
    }
}

/// An authenticated tenant request (a valid credential of the resolved tenant).
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub tenant: Arc<Tenant>,
    pub principal: Principal,
    pub grants: Arc<Grants>,
}

impl Authenticated {
    /// The signed-in user, or 403 for an API key (self-service routes).
    pub fn user(&self) -> Result<(UserId, SessionId), ApiError> {
        match self.principal {
            Principal::User { id, session, .. } => Ok((id, session)),
            Principal::ApiKey { .. } => Err(ApiError::forbidden(
                "this route is for signed-in users, not API keys",
            )),
        }
    }

    /// Whether the principal holds `permission`.
    #[must_use]
    pub fn can(&self, permission: Permission) -> bool {
        self.grants.permissions.contains(permission)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ctx = authorized(parts)?;
        match &ctx.principal {
            Some((principal, grants)) => Ok(Self {
                tenant: Arc::clone(&ctx.tenant),
                principal: principal.clone(),
                grants: Arc::clone(grants),
            }),
            None => Err(ApiError::unauthorized(
                "this API needs a credential (an access token or a tenant API key)",
            )),
        }
    }
}

/// The one way a tenant handler reaches its tenant's data: a transaction scoped to the tenant of
/// the request (authenticated, its route's access enforced). The connection is checked out by
/// [`TenantDb::begin`], not by extraction, so none is held while a request body is read.
#[derive(Clone, Debug)]
pub struct TenantDb {
    tenant: Arc<Tenant>,
    dataplane: DataPlane,
}

impl TenantDb {
    /// The tenant this request serves.
    #[must_use]
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    /// The tenant this request serves, whole.
    #[must_use]
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }

    /// The data plane (for what opens its own transactions: sessions, audit attempts).
    #[must_use]
    pub fn dataplane(&self) -> &DataPlane {
        &self.dataplane
    }

    /// Checks out a connection and starts a transaction scoped to the tenant.
    pub async fn begin(&self) -> Result<TenantTx, ApiError> {
        Ok(self.dataplane.connect(&self.tenant).await?.begin())
    }
}

impl<S> FromRequestParts<S> for TenantDb
where
    DataPlane: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = authorized(parts)?;
        Ok(Self {
            tenant: Arc::clone(&ctx.tenant),
            dataplane: DataPlane::from_ref(state),
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tenancy::catalog::{Placement, SignupPolicy};
    use tenancy::ids::TenantSlug;
    use tower::ServiceExt as _;

    use super::*;

    fn context() -> TenantContext {
        let now = time::OffsetDateTime::now_utc();
        let tenant = Tenant {
            id: TenantId::new(),
            slug: TenantSlug::parse("acme").expect("slug"),
            name: "Acme".into(),
            plan: "free".into(),
            status: TenantStatus::Active,
            placement: Placement::Shared,
            epoch: 1,
            db_url_sealed: None,
            signup: SignupPolicy::InviteOnly,
            mfa_required: false,
            created_at: now,
            updated_at: now,
            schema_version: None,
            rate_limit: None,
            rate_limit_override: None,
            audit_retention_days: None,
        };
        let grants = Grants {
            role: "owner".into(),
            permissions: [Permission::ProjectsRead].into_iter().collect(),
        };
        TenantContext {
            tenant: Arc::new(tenant),
            principal: Some((
                Principal::ApiKey {
                    id: ApiKeyId::new(),
                    role: None,
                },
                Arc::new(grants),
            )),
        }
    }

    async fn status(router: Router) -> StatusCode {
        let req = axum::http::Request::get("/api/v1/undeclared")
            .body(Body::empty())
            .expect("request");
        router.oneshot(req).await.expect("response").status()
    }

    /// A tenant handler reached without its route's declared access being enforced (a route
    /// added outside `TenantRoutes::at`) is refused, even for an authenticated request: the
    /// extractors fail closed.
    #[tokio::test]
    async fn a_handler_without_a_declared_access_is_refused() {
        async fn handler(auth: Authenticated) -> String {
            auth.grants.role.clone()
        }
        let route = || Router::new().route("/api/v1/undeclared", get(handler));
        // Never authenticated.
        assert_eq!(status(route()).await, StatusCode::FORBIDDEN);
        // Authenticated (as the authentication step leaves it), never authorized.
        let authenticated = route().layer(axum::Extension(context()));
        assert_eq!(status(authenticated).await, StatusCode::FORBIDDEN);
        // Authorized: the same handler serves (so the refusals above are the missing marks).
        let authorized = route()
            .layer(axum::Extension(Authorized))
            .layer(axum::Extension(context()));
        assert_eq!(status(authorized).await, StatusCode::OK);
    }
}
