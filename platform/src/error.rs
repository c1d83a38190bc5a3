//! The one HTTP error type. Every error is RFC 9457 `application/problem+json` with a stable
//! `type`, a `title`, the `status` and a `detail`. Internal error text never reaches the client: a
//! 5xx carries it in a response extension, and the request middleware logs it once with the
//! request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Problem details (RFC 9457), as sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI reference naming the kind of problem, e.g. `/problems/not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// The internal cause of a 5xx, for the log line only.
#[derive(Clone, Debug)]
pub struct InternalCause(pub String);

/// The problem type slug of an error response (e.g. `query-timeout`), for the metrics.
#[derive(Clone, Copy, Debug)]
pub struct ProblemKind(pub &'static str);

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u32>,
    www_authenticate: bool,
    cause: Option<String>,
    /// Extension members of the problem (RFC 9457 section 3.2), e.g. a quota's figures.
    members: serde_json::Map<String, Value>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after: None,
            www_authenticate: false,
            cause: None,
            members: serde_json::Map::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        );
        e.www_authenticate = true;
        e
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }
    pub fn tenant_suspended() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "tenant-suspended",
            "Tenant suspended",
            "this tenant is suspended",
        )
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this route does not accept that method",
        )
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            detail,
        )
    }
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
            detail,
        )
    }
    pub fn idempotency_mismatch() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused",
            "this Idempotency-Key was used with a different request body",
        )
    }
    pub fn idempotency_in_flight() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency-in-flight",
            "Request in progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
    }
    /// A dependency is down or saturated; the client may retry.
    pub fn unavailable(detail: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        e.retry_after = Some(1);
        e.cause = Some(cause.to_string());
        e
    }
    /// The tenant's database is older than this build needs: its migration is due or running.
    /// Answered before any query, so nothing fails half-way; the client retries later.
    pub fn schema_behind(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant-schema-behind",
            "Tenant database upgrading",
            "this tenant's database is being upgraded; retry later",
        );
        e.retry_after = Some(30);
        e.cause = Some(cause.to_string());
        e
    }
    /// A bug or an unexpected failure: the cause is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "an unexpected error occurred; it has been logged with this request's id",
        );
        e.cause = Some(cause.to_string());
        e
    }

    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem body as JSON (for idempotency records).
    #[must_use]
    pub fn body(&self) -> Value {
        let mut v = serde_json::to_value(self.problem()).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut v {
            for (k, m) in &self.members {
                o.entry(k.clone()).or_insert_with(|| m.clone());
            }
        }
        v
    }

    fn problem(&self) -> Problem {
        Problem {
            kind: format!("/problems/{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.www_authenticate {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp.extensions_mut().insert(ProblemKind(self.kind));
        if let Some(cause) = self.cause {
            resp.extensions_mut().insert(InternalCause(cause));
        }
        resp
    }
}

impl From<tenancy::catalog::CatalogError> for ApiError {
    fn from(e: tenancy::catalog::CatalogError) -> Self {
        Self::unavailable("the catalog is unavailable", format!("{e}: {:?}", e.0))
    }
}

impl From<std::sync::Arc<tenancy::catalog::CatalogError>> for ApiError {
    fn from(e: std::sync::Arc<tenancy::catalog::CatalogError>) -> Self {
        Self::unavailable("the catalog is unavailable", format!("{e}: {:?}", e.0))
    }
}

impl From<tenancy::dataplane::ConnectError> for ApiError {
    fn from(e: tenancy::dataplane::ConnectError) -> Self {
        match e {
            tenancy::dataplane::ConnectError::Unavailable(_)
            | tenancy::dataplane::ConnectError::BadDatabaseUrl => {
                Self::unavailable("the tenant's database is unavailable", e)
            }
            tenancy::dataplane::ConnectError::SchemaBehind { .. } => Self::schema_behind(e),
            other => Self::internal(other),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        // TF001: the tenant is fenced in this database while it moves; the client retries.
        if e.code().map(tokio_postgres::error::SqlState::code) == Some("TF001") {
            let mut err = Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant-moving",
                "Tenant is moving",
                "this tenant's data is being moved; writes pause briefly: retry",
            );
            err.retry_after = Some(1);
            return err;
        }
        // 57014: cancelled by `statement_timeout` (a query slower than the data plane allows).
        if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
            let mut err = Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "query-timeout",
                "Request took too long",
                "the database did not answer within the statement timeout: retry, or ask for less",
            );
            err.retry_after = Some(1);
            tracing::warn!(error = %e, "a statement hit the statement timeout");
            return err;
        }
        if e.is_closed() || e.as_db_error().is_none() {
            return Self::unavailable("the tenant's database is unavailable", e);
        }
        // `Display` of a database error says only "db error": the cause names the SQLSTATE
        // and PostgreSQL's message (never its detail, which quotes row values).
        match e.as_db_error() {
            Some(db) => Self::internal(format_args!(
                "db error {}: {}",
                db.code().code(),
                db.message()
            )),
            None => Self::internal(e),
        }
    }
}

impl From<identity::credentials::ApiKeyError> for ApiError {
    fn from(e: identity::credentials::ApiKeyError) -> Self {
        match e {
            identity::credentials::ApiKeyError::Connect(c) => c.into(),
            identity::credentials::ApiKeyError::Db(d) => d.into(),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// Too many attempts; retry after `secs`.
    pub fn too_many_requests(detail: impl Into<String>, secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too many requests",
            detail,
        );
        e.retry_after = Some(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        e
    }
}

impl ApiError {
    /// A plan's usage quota is used up for the period: 429 `quota-exceeded` (not the request
    /// rate's `too-many-requests`), `Retry-After` until the period resets, and the quota's figures
    /// as extension members.
    pub fn quota_exceeded(
        detail: impl Into<String>,
        reset_in_secs: u64,
        members: serde_json::Map<String, Value>,
    ) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota-exceeded",
            "Usage quota exceeded",
            detail,
        );
        e.retry_after = Some(u32::try_from(reset_in_secs.max(1)).unwrap_or(u32::MAX));
        e.members = members;
        e
    }
}

impl ApiError {
    /// An identity provider's answer was refused (the reason code is in the detail).
    pub fn sso_refused(forbidden: bool, detail: impl Into<String>) -> Self {
        if forbidden {
            Self::new(
                StatusCode::FORBIDDEN,
                "sso-refused",
                "SSO login refused",
                detail,
            )
        } else {
            Self::new(
                StatusCode::UNAUTHORIZED,
                "sso-refused",
                "SSO login refused",
                detail,
            )
        }
    }
    /// An upstream service (an identity provider) failed; the cause is logged, never sent.
    pub fn bad_gateway(detail: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_GATEWAY,
            "bad-gateway",
            "Upstream failure",
            detail,
        );
        e.cause = Some(cause.to_string());
        e
    }
}

impl From<sso::SsoError> for ApiError {
    fn from(e: sso::SsoError) -> Self {
        use sso::{Rejection as R, SsoError as E};
        match e {
            E::Rejected { reason, .. } => Self::sso_refused(
                matches!(
                    reason,
                    R::LinkRefused | R::NoEmail | R::Disabled | R::UnverifiedDomain
                ),
                format!("{} (reason: {})", reason.public_detail(), reason.as_str()),
            ),
            E::Invalid(d) => Self::unprocessable(d),
            E::NoSuchConnection(d) => Self::not_found(d),
            E::DuplicateEntityId | E::DomainTaken | E::IdentityTaken => {
                Self::conflict(e.to_string())
            }
            E::NoSuchDomain => Self::not_found("no such domain"),
            E::Catalog(c) => c.into(),
            E::Upstream(cause) => Self::bad_gateway(
                "the identity provider could not be reached or answered badly",
                cause,
            ),
            E::Auth(a) => a.into(),
            E::Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<identity::AuthError> for ApiError {
    fn from(e: identity::AuthError) -> Self {
        use identity::AuthError as E;
        match e {
            E::InvalidCredentials => Self::unauthorized("invalid email or password"),
            E::InvalidToken => Self::unauthorized("the token is invalid or expired"),
            E::TokenReused => {
                Self::unauthorized("the token was already used; the session has been signed out")
            }
            E::InvalidCode => Self::unauthorized("the code is not valid"),
            E::EmailTaken => Self::conflict("an account with this email already exists"),
            E::Invalid(d) => Self::unprocessable(d),
            E::NotGrantable | E::OwnerOnly => Self::forbidden(e.to_string()),
            E::NoSuchRole => Self::not_found(e.to_string()),
            E::RoleNameTaken | E::BuiltinRole | E::RoleInUse(_) | E::TotpAlreadyEnabled => {
                Self::conflict(e.to_string())
            }
            E::SeatLimit(_) => Self::new(
                StatusCode::CONFLICT,
                "seat-limit",
                "Seat limit reached",
                e.to_string(),
            ),
            E::Throttled(s) => Self::too_many_requests("too many failed attempts; retry later", s),
            E::Connect(c) => c.into(),
            E::Db(d) => d.into(),
            other @ (E::Key(_) | E::Catalog(_) | E::Crypto { .. }) => Self::internal(other),
        }
    }
}

impl From<flags::store::FlagError> for ApiError {
    fn from(e: flags::store::FlagError) -> Self {
        use flags::store::FlagError;
        match e {
            FlagError::NotFound(..) => Self::not_found(e.to_string()),
            FlagError::Invalid(d) => Self::unprocessable(d.0),
            FlagError::NotAllowed(m) => Self::unprocessable(m),
            FlagError::Database(_) => Self::unavailable("flag storage is unavailable", e),
        }
    }
}
