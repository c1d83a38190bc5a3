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
use identity::Permission;

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
    Permission(Permission),
}

use Access::{Public, SelfService};
use Permission::*;

/// Shorthand for the table.
const fn needs(p: Permission) -> Access {
    Access::Permission(p)
}

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
    ("PATCH", "/api/v1/me", SelfService),
    ("GET", "/api/v1/me/sessions", SelfService),
    ("DELETE", "/api/v1/me/sessions/{session_id}", SelfService),
    ("POST", "/api/v1/me/sessions/revoke-others", SelfService),
    ("POST", "/api/v1/me/email/verification", SelfService),
    ("POST", "/api/v1/me/mfa/totp", SelfService),
    ("POST", "/api/v1/me/mfa/totp/confirm", SelfService),
    ("DELETE", "/api/v1/me/mfa/totp", SelfService),
    // members, roles, keys
    ("GET", "/api/v1/users", needs(UsersRead)),
    ("PATCH", "/api/v1/users/{user_id}", needs(MembersManage)),
    (
        "DELETE",
        "/api/v1/users/{user_id}/sessions",
        needs(MembersManage),
    ),
    ("POST", "/api/v1/invitations", needs(MembersManage)),
    ("GET", "/api/v1/roles", needs(UsersRead)),
    ("POST", "/api/v1/roles", needs(RolesManage)),
    ("PATCH", "/api/v1/roles/{role_id}", needs(RolesManage)),
    ("DELETE", "/api/v1/roles/{role_id}", needs(RolesManage)),
    ("GET", "/api/v1/api-keys", needs(ApiKeysManage)),
    ("POST", "/api/v1/api-keys", needs(ApiKeysManage)),
    ("DELETE", "/api/v1/api-keys/{key_id}", needs(ApiKeysManage)),
    // feature flags
    ("GET", "/api/v1/flags", SelfService),
    ("PUT", "/api/v1/flags/{name}/choice", needs(FlagsManage)),
    // the tenant's own background jobs
    ("GET", "/api/v1/jobs", needs(JobsRead)),
    // the audit log
    ("GET", "/api/v1/audit-events", needs(AuditRead)),
    ("GET", "/api/v1/audit-events/export", needs(AuditRead)),
    // SSO connections and policy
    ("GET", "/api/v1/sso/connections", needs(SsoManage)),
    ("POST", "/api/v1/sso/connections", needs(SsoManage)),
    (
        "GET",
        "/api/v1/sso/connections/{connection_id}",
        needs(SsoManage),
    ),
    (
        "PATCH",
        "/api/v1/sso/connections/{connection_id}",
        needs(SsoManage),
    ),
    (
        "DELETE",
        "/api/v1/sso/connections/{connection_id}",
        needs(SsoManage),
    ),
    ("GET", "/api/v1/sso/settings", needs(SsoManage)),
    ("PUT", "/api/v1/sso/settings", needs(SsoManage)),
    ("GET", "/api/v1/sso/domains", needs(SsoManage)),
    ("POST", "/api/v1/sso/domains", needs(SsoManage)),
    (
        "POST",
        "/api/v1/sso/domains/{domain}/check",
        needs(SsoManage),
    ),
    ("DELETE", "/api/v1/sso/domains/{domain}", needs(SsoManage)),
    (
        "POST",
        "/api/v1/sso/connections/{connection_id}/links",
        needs(SsoManage),
    ),
    (
        "DELETE",
        "/api/v1/sso/connections/{connection_id}/links/{user_id}",
        needs(SsoManage),
    ),
    // email
    (
        "GET",
        "/api/v1/email/templates/{kind}/preview",
        needs(MembersManage),
    ),
    ("PUT", "/api/v1/email/branding", needs(MembersManage)),
    ("GET", "/api/v1/email/domain", needs(MembersManage)),
    ("PUT", "/api/v1/email/domain", needs(MembersManage)),
    ("POST", "/api/v1/email/domain/verify", needs(MembersManage)),
    ("GET", "/api/v1/email/settings", needs(MembersManage)),
    ("PUT", "/api/v1/email/settings", needs(MembersManage)),
    ("GET", "/api/v1/email/events", needs(AuditRead)),
    ("GET", "/api/v1/email/suppressions", needs(MembersManage)),
    ("POST", "/api/v1/email/suppressions", needs(MembersManage)),
    (
        "DELETE",
        "/api/v1/email/suppressions/{suppression_id}",
        needs(MembersManage),
    ),
    // billing
    ("GET", "/api/v1/billing", needs(BillingRead)),
    ("POST", "/api/v1/billing/checkout", needs(BillingManage)),
    ("POST", "/api/v1/billing/portal", needs(BillingManage)),
    ("POST", "/api/v1/billing/plan", needs(BillingManage)),
    ("POST", "/api/v1/billing/plan/preview", needs(BillingManage)),
    // the reference domain
    ("GET", "/api/v1/projects", needs(ProjectsRead)),
    ("POST", "/api/v1/projects", needs(ProjectsWrite)),
    ("GET", "/api/v1/projects/{project_id}", needs(ProjectsRead)),
    (
        "PATCH",
        "/api/v1/projects/{project_id}",
        needs(ProjectsWrite),
    ),
    (
        "DELETE",
        "/api/v1/projects/{project_id}",
        needs(ProjectsWrite),
    ),
    (
        "GET",
        "/api/v1/projects/{project_id}/members",
        needs(ProjectsRead),
    ),
    (
        "POST",
        "/api/v1/projects/{project_id}/members",
        needs(ProjectsWrite),
    ),
    (
        "PATCH",
        "/api/v1/projects/{project_id}/members/{user_id}",
        needs(ProjectsWrite),
    ),
    (
        "DELETE",
        "/api/v1/projects/{project_id}/members/{user_id}",
        needs(ProjectsWrite),
    ),
    (
        "GET",
        "/api/v1/projects/{project_id}/tasks",
        needs(TasksRead),
    ),
    (
        "POST",
        "/api/v1/projects/{project_id}/tasks",
        needs(TasksWrite),
    ),
    (
        "GET",
        "/api/v1/projects/{project_id}/tasks/{task_id}",
        needs(TasksRead),
    ),
    (
        "PATCH",
        "/api/v1/projects/{project_id}/tasks/{task_id}",
        needs(TasksWrite),
    ),
    (
        "DELETE",
        "/api/v1/projects/{project_id}/tasks/{task_id}",
        needs(TasksWrite),
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
            Access::Permission(p) => p.as_str(),
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
    // Routes under a permission are where billing may refuse (self-service routes never).
    if matches!(needs, Access::Permission(_))
        && let Some(refused) =
            crate::billing_gate::refuse(&state, auth.tenant.id, &parts.method, &path).await
    {
        return refused;
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
