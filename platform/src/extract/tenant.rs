//! Tenant context. The tenant comes from the `Host` (subdomain of the base domain or a custom
//! domain) and/or the credential (a tenant API key names its tenant). When both name a tenant they
//! must agree, else the request is refused the same way whether or not the other tenant exists.
//! The host only selects the tenant; it never grants access: the tenant API needs a credential.
//!
//! A credential is a tenant API key (`plt_{tenant}_{secret}`) or a user's access token (an EdDSA
//! JWT whose `tid` names the tenant and whose session must still be live).
//!
//! [`TenantDb`] is the only door to tenant data: a connection that carries the tenant.
//!
//! Failed tenant context (unknown host or tenant, bad token, made-up key) is limited here, the
//! one place every tenant route passes through: before any lookup the request takes a place in
//! the failure budget of its client address (and, for an API key, of the tenant it claims);
//! success gives the place back, so only failures count, and a client over budget is answered
//! 429 without database work ([`limits::RateLimits::begin_authentication`]).

use std::sync::Arc;

use audit::Actor;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::request::Parts;
use identity::credentials::{ApiKeys, PresentedKey};
use identity::{Auth, Permission, PermissionSet};
use limits::{Decision, RateLimits, Scope};
use tenancy::catalog::{Tenant, TenantStatus};
use tenancy::dataplane::{DataPlane, TenantTx};
use tenancy::ids::{ApiKeyId, DomainName, RoleId, SessionId, TenantId, UserId};
use tenancy::resolve::{HostTenant, Resolver};

use super::admin::bearer;
use crate::audit::ClientIp;
use crate::error::ApiError;

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

/// The request was refused by a failed-authentication budget (kept in the request, so the rate
/// limit layer renders its `RateLimit-*` headers and a second extraction refuses alike).
#[derive(Clone, Copy, Debug)]
pub struct AuthRefused(pub Decision);

impl AuthRefused {
    fn error(self) -> ApiError {
        let detail = match self.0.scope {
            Scope::AuthTenant => {
                "too many failed authentication attempts for this tenant; retry later"
            }
            _ => "too many failed authentication attempts from this address; retry later",
        };
        ApiError::too_many_requests(detail, self.0.reset_secs)
    }
}

impl<S> FromRequestParts<S> for TenantContext
where
    Resolver: FromRef<S>,
    DataPlane: FromRef<S>,
    ApiKeys: FromRef<S>,
    Auth: FromRef<S>,
    RateLimits: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ctx) = parts.extensions.get::<Self>() {
            return Ok(ctx.clone());
        }
        if let Some(refused) = parts.extensions.get::<AuthRefused>() {
            return Err(refused.error());
        }
        // Before any lookup: a place in the failure budgets, from what the request claims.
        let limits = RateLimits::from_ref(state);
        let ip = parts.extensions.get::<ClientIp>().and_then(|c| c.0);
        let host = parts.headers.get(HOST).map_or(&[][..], |h| h.as_bytes());
        let token = bearer(parts);
        // Only an API key costs its claimed tenant's database to check; a token's signature is
        // checked without any lookup. A key verified moments ago costs nothing: it passes, so a
        // flood against its tenant does not lock it out.
        let presented = token.and_then(PresentedKey::parse);
        if let Some(k) = &presented
            && ApiKeys::from_ref(state).known_live(k).await
        {
            return Self::resolve(parts, state).await;
        }
        let claimed = presented.map(|k| k.tenant);
        let fingerprint = limits.fingerprint(&[host, token.unwrap_or_default().as_bytes()]);
        let attempt = match limits.begin_authentication(ip, claimed, fingerprint) {
            Ok(a) => a,
            Err(d) => {
                let refused = AuthRefused(d);
                parts.extensions.insert(refused);
                return Err(refused.error());
            }
        };
        let result = Self::resolve(parts, state).await;
        match &result {
            Ok(_) => attempt.succeeded(),
            // The database failed, not the client.
            Err(e) if e.status().is_server_error() => attempt.not_counted(),
            Err(_) => drop(attempt),
        }
        result
    }
}

impl TenantContext {
    async fn resolve<S>(parts: &mut Parts, state: &S) -> Result<Self, ApiError>
    where
        Resolver: FromRef<S>,
        DataPlane: FromRef<S>,
        ApiKeys: FromRef<S>,
        Auth: FromRef<S>,
        S: Send + Sync,
    {
        let resolver = Resolver::from_ref(state);
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
        let key = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(_) => {
                let token = bearer(parts).ok_or_else(|| {
                    ApiError::unauthorized("expected `Authorization: Bearer <token>`")
                })?;
                if let Some(k) = PresentedKey::parse(token) {
                    Some(Credential::ApiKey(k))
                } else {
                    // Signature, algorithm, key, issuer, audience and expiry; then the ids.
                    let claims = Auth::from_ref(state)
                        .jwt
                        .verify(token)
                        .await
                        .map_err(|_| ApiError::unauthorized("the credential is not valid"))?;
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
        let dp = DataPlane::from_ref(state);
        let auth = Auth::from_ref(state);
        let principal = match &key {
            None => None,
            Some(Credential::ApiKey(k)) => {
                let keys = ApiKeys::from_ref(state);
                let (id, role) = keys
                    .verify(&dp, &tenant, k)
                    .await?
                    .ok_or_else(|| ApiError::unauthorized("the credential is not valid"))?;
                let grants = auth.role(&dp, &tenant, role).await?;
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
                    .session_principal(&dp, &tenant, *user, *session)
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
        let ctx = Self { tenant, principal };
        parts.extensions.insert(ctx.clone());
        Ok(ctx)
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

impl<S> FromRequestParts<S> for Authenticated
where
    Resolver: FromRef<S>,
    DataPlane: FromRef<S>,
    ApiKeys: FromRef<S>,
    Auth: FromRef<S>,
    RateLimits: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = TenantContext::from_request_parts(parts, state).await?;
        match ctx.principal {
            Some((principal, grants)) => Ok(Self {
                tenant: ctx.tenant,
                principal,
                grants,
            }),
            None => Err(ApiError::unauthorized(
                "this API needs a credential (an access token or a tenant API key)",
            )),
        }
    }
}

/// Data-plane access for the authenticated tenant of the request. The connection is checked out
/// by [`TenantDb::begin`], not by extraction, so none is held while a request body is read.
#[derive(Clone, Debug)]
pub struct TenantDb {
    tenant: Arc<Tenant>,
    dataplane: DataPlane,
}

impl TenantDb {
    /// The tenant this request serves.
    #[must_use]
    pub fn tenant_id(&self) -> tenancy::ids::TenantId {
        self.tenant.id
    }

    /// Checks out a connection and starts a transaction scoped to the tenant.
    pub async fn begin(&self) -> Result<TenantTx, ApiError> {
        Ok(self.dataplane.connect(&self.tenant).await?.begin())
    }
}

impl<S> FromRequestParts<S> for TenantDb
where
    Resolver: FromRef<S>,
    DataPlane: FromRef<S>,
    ApiKeys: FromRef<S>,
    Auth: FromRef<S>,
    RateLimits: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Authenticated::from_request_parts(parts, state).await?;
        Ok(Self {
            tenant: auth.tenant,
            dataplane: DataPlane::from_ref(state),
        })
    }
}
