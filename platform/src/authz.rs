//! Authorization of the tenant API. Every tenant route declares what it needs in [`TABLE`]; a
//! route layer looks the matched route up and refuses the request before the handler runs if the
//! principal lacks the permission. A tenant route missing from the table is refused (fail
//! closed), and a test compares the table with the OpenAPI document, so a route cannot be added
//! without a declaration. Object-level rules (project membership) live in the handlers.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use audit::Outcome;

use crate::error::ApiError;
use crate::extract::tenant::{Authenticated, Principal};
use crate::state::AppState;

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credential (sign-up, login, token refresh: they carry their own proof).
    Public,
    /// A signed-in user acting on their own account (no permission; API keys are refused).
    SelfService,
    /// A credential whose role holds this permission.
    Permission(&'static str),
}

use Access::{Permission as P, Public, SelfService};

/// Every tenant route: method, path (as registered), and what it needs.
pub const TABLE: &[(&str, &str, Access)] = &[
    // auth
    ("POST", "/api/v1/auth/signup", Public),
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/mfa/verify", Public),
    ("POST", "/api/v1/auth/token/refresh", Public),
    ("POST", "/api/v1/auth/logout", Public),
    ("POST", "/api/v1/auth/invitations/accept", Public),
    ("POST", "/api/v1/auth/email/verify", Public),
    ("POST", "/api/v1/auth/password/forgot", Public),
    ("POST", "/api/v1/auth/password/reset", Public),
    // the signed-in user
    ("GET", "/api/v1/me", SelfService),
    ("GET", "/api/v1/me/sessions", SelfService),
    ("DELETE", "/api/v1/me/sessions/{session_id}", SelfService),
    ("POST", "/api/v1/me/sessions/revoke-others", SelfService),
    ("POST", "/api/v1/me/email/verification", SelfService),
    ("POST", "/api/v1/me/mfa/totp", SelfService),
    ("POST", "/api/v1/me/mfa/totp/confirm", SelfService),
    ("DELETE", "/api/v1/me/mfa/totp", SelfService),
    // members, roles, keys
    ("GET", "/api/v1/users", P("users:read")),
    ("PATCH", "/api/v1/users/{user_id}", P("members:manage")),
    (
        "DELETE",
        "/api/v1/users/{user_id}/sessions",
        P("members:manage"),
    ),
    ("POST", "/api/v1/invitations", P("members:manage")),
    ("GET", "/api/v1/roles", P("users:read")),
    ("POST", "/api/v1/roles", P("roles:manage")),
    ("PATCH", "/api/v1/roles/{role_id}", P("roles:manage")),
    ("DELETE", "/api/v1/roles/{role_id}", P("roles:manage")),
    ("GET", "/api/v1/api-keys", P("api_keys:manage")),
    ("POST", "/api/v1/api-keys", P("api_keys:manage")),
    ("DELETE", "/api/v1/api-keys/{key_id}", P("api_keys:manage")),
    // the audit log
    ("GET", "/api/v1/audit-events", P("audit:read")),
    ("GET", "/api/v1/audit-events/export", P("audit:read")),
    // SSO connections and policy
    ("GET", "/api/v1/sso/connections", P("sso:manage")),
    ("POST", "/api/v1/sso/connections", P("sso:manage")),
    (
        "GET",
        "/api/v1/sso/connections/{connection_id}",
        P("sso:manage"),
    ),
    (
        "PATCH",
        "/api/v1/sso/connections/{connection_id}",
        P("sso:manage"),
    ),
    (
        "DELETE",
        "/api/v1/sso/connections/{connection_id}",
        P("sso:manage"),
    ),
    ("GET", "/api/v1/sso/settings", P("sso:manage")),
    ("PUT", "/api/v1/sso/settings", P("sso:manage")),
    // the reference domain
    ("GET", "/api/v1/projects", P("projects:read")),
    ("POST", "/api/v1/projects", P("projects:write")),
    ("GET", "/api/v1/projects/{project_id}", P("projects:read")),
    (
        "PATCH",
        "/api/v1/projects/{project_id}",
        P("projects:write"),
    ),
    (
        "DELETE",
        "/api/v1/projects/{project_id}",
        P("projects:write"),
    ),
    (
        "GET",
        "/api/v1/projects/{project_id}/members",
        P("projects:read"),
    ),
    (
        "POST",
        "/api/v1/projects/{project_id}/members",
        P("projects:write"),
    ),
    (
        "PATCH",
        "/api/v1/projects/{project_id}/members/{user_id}",
        P("projects:write"),
    ),
    (
        "DELETE",
        "/api/v1/projects/{project_id}/members/{user_id}",
        P("projects:write"),
    ),
    (
        "GET",
        "/api/v1/projects/{project_id}/tasks",
        P("tasks:read"),
    ),
    (
        "POST",
        "/api/v1/projects/{project_id}/tasks",
        P("tasks:write"),
    ),
    (
        "GET",
        "/api/v1/projects/{project_id}/tasks/{task_id}",
        P("tasks:read"),
    ),
    (
        "PATCH",
        "/api/v1/projects/{project_id}/tasks/{task_id}",
        P("tasks:write"),
    ),
    (
        "DELETE",
        "/api/v1/projects/{project_id}/tasks/{task_id}",
        P("tasks:write"),
    ),
];

/// What `method path` requires, if it is declared.
#[must_use]
pub fn access(method: &Method, path: &str) -> Option<Access> {
    TABLE
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, a)| *a)
}

/// Route layer: enforces [`TABLE`] on every `/api/v1` route.
pub async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    if !path.starts_with("/api/") {
        return next.run(req).await;
    }
    let Some(needs) = access(req.method(), &path) else {
        return ApiError::forbidden("this route declares no permission, so nobody may use it")
            .into_response();
    };
    if needs == Access::Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let auth = match Authenticated::from_request_parts(&mut parts, &state).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check(&auth, needs) {
        // A refusal changes nothing, so it is recorded in a transaction of its own.
        let needs = match needs {
            Access::Permission(p) => p,
            Access::SelfService => "self-service",
            Access::Public => "public",
        };
        crate::audit::attempt(
            &state.tenancy.dataplane,
            &auth.tenant,
            "authz.denied",
            Outcome::Denied,
            &serde_json::json!({ "needs": needs, "role": auth.grants.role }),
        )
        .await;
        return e.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
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
