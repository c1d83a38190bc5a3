//! Authorization of the tenant API. Every tenant route is registered with what it requires
//! ([`Access`]), next to its handler in the route table: [`TenantRoutes::at`] is the only way
//! to add a route to the tenant API, and it wraps the route in [`authorize`] with that access.
//! So a route cannot be added without a declaration, and nothing looks a path up in a second
//! table. The request's [`TenantContext`] comes from the tenant router's one authentication step;
//! the extractors that reach tenant data ([`Authenticated`], [`crate::extract::tenant::TenantDb`])
//! exist only once [`authorize`] has passed, so a handler that somehow escaped it is refused
//! (fail closed). Object-level rules (project membership) live in the handlers.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use audit::Outcome;
use identity::Permission;

use crate::error::ApiError;
use crate::extract::tenant::{Authenticated, Authorized, Principal, TenantContext};
use crate::state::AppState;

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credential (sign-up, login, token refresh: they carry their own proof).
    Public,
    /// A signed-in user acting on their own account (no permission; API keys are refused).
    SelfService,
    /// A credential whose role holds this permission.
    Permission(Permission),
}

/// Shorthand for the route table.
#[must_use]
pub const fn needs(p: Permission) -> Access {
    Access::Permission(p)
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Self::Permission(p) => p.as_str(),
            Self::SelfService => "self-service",
            Self::Public => "public",
        }
    }
}

/// Registrations of tenant API routes, each with what it requires (see [`TenantRoutes::at`]).
#[derive(Default)]
pub struct TenantRoutes(Vec<(Access, UtoipaMethodRouter<AppState>)>);

impl TenantRoutes {
    /// Registers `routes` (one path, one or more methods: `routes!(..)`), each requiring `access`.
    #[must_use]
    pub fn at(mut self, access: Access, routes: UtoipaMethodRouter<AppState>) -> Self {
        self.0.push((access, routes));
        self
    }

    /// Every registered operation: method (upper case), path and what it requires.
    #[must_use]
    pub fn declared(&self) -> Vec<(String, String, Access)> {
        let mut out = Vec::new();
        for (access, (_, paths, _)) in &self.0 {
            for (path, item) in &paths.paths {
                let ops = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ];
                for (m, _) in ops.into_iter().filter(|(_, on)| *on) {
                    out.push((m.to_owned(), path.clone(), *access));
                }
            }
        }
        out
    }

    /// The routes, each wrapped in [`authorize`] with its access, as one router (OpenAPI
    /// document included).
    #[must_use]
    pub fn into_router(self, state: &Arc<AppState>) -> OpenApiRouter<AppState> {
        self.0
            .into_iter()
            .fold(OpenApiRouter::new(), |router, (access, (s, p, m))| {
                let m = m.route_layer(middleware::from_fn_with_state(
                    (Arc::clone(state), access),
                    authorize,
                ));
                router.routes((s, p, m))
            })
    }
}

/// Per-route layer of the tenant API, inside authentication and the tenant's rate limits:
/// enforces the route's declared access (a refusal is an audited `authz.denied` attempt; the
/// MFA-required rule; the billing gate on routes under a permission), then marks the request
/// [`Authorized`] for the handler's extractors.
pub async fn authorize(
    State((state, needs)): State<(Arc<AppState>, Access)>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Err(refused) = enforce(&state, needs, &parts).await {
        return refused;
    }
    parts.extensions.insert(Authorized);
    next.run(Request::from_parts(parts, body)).await
}

async fn enforce(state: &AppState, needs: Access, req: &Parts) -> Result<(), Response> {
    let Some(ctx) = req.extensions.get::<TenantContext>() else {
        return Err(
            ApiError::forbidden("this route declares no permission, so nobody may use it")
                .into_response(),
        );
    };
    if needs == Access::Public {
        return Ok(());
    }
    let Some((principal, grants)) = &ctx.principal else {
        return Err(ApiError::unauthorized(
            "this API needs a credential (an access token or a tenant API key)",
        )
        .into_response());
    };
    let auth = Authenticated {
        tenant: Arc::clone(&ctx.tenant),
        principal: principal.clone(),
        grants: Arc::clone(grants),
    };
    if let Err(e) = check(&auth, needs) {
        // A refusal changes nothing, so it is recorded in a transaction of its own.
        crate::audit::attempt(
            &state.tenancy.dataplane,
            &auth.tenant,
            "authz.denied",
            Outcome::Denied,
            &serde_json::json!({ "needs": needs.as_str(), "role": auth.grants.role }),
        )
        .await;
        return Err(e.into_response());
    }
    // Routes under a permission are where billing may refuse (self-service routes never).
    if matches!(needs, Access::Permission(_)) {
        let path = req
            .extensions
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str);
        if let Some(refused) =
            crate::billing_gate::refuse(state, auth.tenant.id, &req.method, path).await
        {
            return Err(refused);
        }
    }
    Ok(())
}

fn check(auth: &Authenticated, needs: Access) -> Result<(), ApiError> {
    match (needs, &auth.principal) {
        (Access::Public, _) => Ok(()),
        (Access::SelfService, Principal::User { .. }) => Ok(()),
        (Access::SelfService, Principal::ApiKey { .. }) => Err(ApiError::forbidden(
            "this route is for signed-in users, not API keys",
        )),
        (Access::Permission(p), principal) => {
            if let Principal::User {
                mfa_enabled: false, ..
            } = principal
                && auth.tenant.mfa_required
            {
                return Err(ApiError::forbidden(
                    "this tenant requires a second factor: enrol at /api/v1/me/mfa/totp first",
                ));
            }
            if auth.can(p) {
                Ok(())
            } else {
                Err(ApiError::forbidden(format!(
                    "this needs the `{p}` permission, which the `{}` role does not have",
                    auth.grants.role
                )))
            }
        }
    }
}
