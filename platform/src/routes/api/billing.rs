//! `/api/v1/billing`: the tenant's plan, subscription status, entitlements and deadlines
//! (`billing:read`); Checkout and Billing Portal sessions, plan changes and their preview
//! (`billing:manage`). The domain is the `billing` crate. Also the usage quota's problem (429
//! `quota-exceeded`), which the task-create path answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use billing::Billing;
use billing::api::Proration;
use billing::manage::ManageError;
use billing::quota::{QuotaError, QuotaUsage};
use serde::{Deserialize, Serialize};
use tenancy::catalog::{Catalog, Tenant};
use tenancy::dataplane::DataPlane;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::Authenticated;
use crate::routes::ts;

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::UnknownPlan => Self::unprocessable("no such plan"),
            // The plan exists; the operator has not priced it (yet): the platform's state.
            ManageError::NoPrice => {
                Self::conflict("that plan is not sold through Stripe for this interval")
            }
            ManageError::NoSubscription => {
                Self::conflict("this tenant has no Stripe subscription: start one with checkout")
            }
            ManageError::NoCustomer => {
                Self::conflict("this tenant has no Stripe customer: start a subscription first")
            }
            ManageError::SamePlan => Self::conflict("the tenant is already on that plan"),
            ManageError::UnknownTenant => Self::not_found("no such tenant"),
            // A server without a Stripe key: the request cannot succeed here (not an outage).
            ManageError::Stripe(billing::api::StripeCallError::NotConfigured) => {
                Self::conflict("billing through Stripe is not configured on this server")
            }
            ManageError::Stripe(e) => Self::bad_gateway("Stripe did not complete the call", e),
            ManageError::Db(e) => Self::internal(e),
            ManageError::Catalog(e) => e.into(),
        }
    }
}

impl From<billing::account::AccountError> for ApiError {
    fn from(e: billing::account::AccountError) -> Self {
        Self::internal(e)
    }
}

/// A task creation beyond the plan's quota: 429 `/problems/quota-exceeded` with `Retry-After`
/// until the period resets, naming the quota, its limit, the usage and the reset time. 429
/// because the refusal lifts by itself at a known time (or at once with a bigger plan); 402 is
/// kept for an overdue payment, 403 for permissions.
impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(q) => {
                let limit = q.limit.unwrap_or_default();
                let detail = format!(
                    "the plan `{}` allows {limit} tasks created per month; {} were created in {} (UTC); the quota resets at {}",
                    q.plan,
                    q.used,
                    q.period,
                    ts(q.resets_at)
                );
                let wait = (q.resets_at - OffsetDateTime::now_utc()).whole_seconds();
                let members: serde_json::Map<String, serde_json::Value> = [
                    ("quota", serde_json::json!(q.metric)),
                    ("plan", serde_json::json!(q.plan)),
                    ("limit", serde_json::json!(limit)),
                    ("used", serde_json::json!(q.used)),
                    ("period", serde_json::json!(q.period)),
                    ("resets_at", serde_json::json!(ts(q.resets_at))),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                Self::quota_exceeded(detail, u64::try_from(wait).unwrap_or(1), members)
            }
            QuotaError::Account(a) => a.into(),
            QuotaError::Catalog(c) => c.into(),
            QuotaError::Db(d) => d.into(),
        }
    }
}

/// A plan's entitlements (absent: the platform's defaults, for a plan the catalog does not list).
#[derive(Debug, Serialize, ToSchema)]
pub struct Entitlements {
    pub requests_per_second: Option<i32>,
    pub burst: Option<i32>,
    pub audit_retention_days: Option<i32>,
    /// Members allowed (none: unbounded).
    pub seats: Option<i32>,
    /// Tasks that may be created per month, UTC (none: unlimited).
    pub tasks_per_month: Option<i64>,
}

/// A usage quota in the current period.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaView {
    /// The metered dimension: `tasks_created`.
    pub quota: String,
    /// Allowed per period (none: unlimited).
    pub limit: Option<i64>,
    /// Used in the current period.
    pub used: i64,
    /// The current period, `YYYY-MM` (a calendar month, UTC).
    pub period: String,
    /// When the next period starts (RFC 3339).
    pub resets_at: String,
}

impl From<QuotaUsage> for QuotaView {
    fn from(u: QuotaUsage) -> Self {
        Self {
            quota: u.metric.to_owned(),
            limit: u.limit,
            used: u.used,
            period: u.period,
            resets_at: ts(u.resets_at),
        }
    }
}

/// The tenant's billing as it applies now.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingView {
    /// The plan whose entitlements apply now.
    pub plan: String,
    /// Stripe's subscription status (`none` without a subscription, `granted` for an operator's grant).
    pub status: String,
    /// `full`, `grace` (past due, full access), `restricted` (read-only) or `suspended`.
    pub standing: String,
    pub entitlements: Entitlements,
    pub billing_interval: Option<String>,
    pub current_period_end: Option<String>,
    pub cancel_at_period_end: bool,
    /// A downgrade waiting for the period end.
    pub scheduled_plan: Option<String>,
    pub scheduled_at: Option<String>,
    pub grace_until: Option<String>,
    pub suspend_at: Option<String>,
    pub grant_until: Option<String>,
    pub pay_url: Option<String>,
    /// The plan's usage quotas, with the usage of the current period.
    pub quotas: Vec<QuotaView>,
}

/// The tenant's plan, subscription status, entitlements, deadlines and quotas.
#[utoipa::path(get, path = "/api/v1/billing", tag = "billing",
    responses((status = 200, body = BillingView), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn show(
    auth: Authenticated,
    State(billing): State<Arc<Billing>>,
    State(catalog): State<Catalog>,
    State(dataplane): State<DataPlane>,
) -> ApiResult<Json<BillingView>> {
    Ok(Json(
        view(&billing, &catalog, &dataplane, &auth.tenant).await?,
    ))
}

/// A tenant's billing as it applies now (the tenant's view, and the operators').
pub(crate) async fn view(
    billing: &Billing,
    catalog: &Catalog,
    dataplane: &DataPlane,
    tenant: &Tenant,
) -> ApiResult<BillingView> {
    let account = billing.account(tenant.id).await?;
    let now = billing.now().await?;
    let (plan, standing) = match &account {
        Some(a) => (a.effective_plan(now), a.standing(now)),
        None => (tenant.plan.clone(), billing::Standing::Full),
    };
    let p = catalog.plans().await?.into_iter().find(|p| p.name == plan);
    let seats = billing.seats(&plan).await?;
    let mut tx = dataplane.connect(tenant).await?.begin();
    let tasks = billing.task_usage(&mut tx, tenant.id, &plan).await?;
    tx.commit().await?;
    let a = account.as_ref();
    Ok(BillingView {
        status: a.map_or_else(|| "none".to_owned(), |a| a.status.clone()),
        standing: serde_json::to_value(standing)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        entitlements: Entitlements {
            requests_per_second: p.as_ref().map(|p| p.requests_per_second),
            burst: p.as_ref().map(|p| p.burst),
            audit_retention_days: p.as_ref().map(|p| p.audit_retention_days),
            seats,
            tasks_per_month: tasks.limit,
        },
        plan,
        billing_interval: a.map(|a| a.billing_interval.clone()),
        current_period_end: a.and_then(|a| a.current_period_end).map(ts),
        cancel_at_period_end: a.is_some_and(|a| a.cancel_at_period_end),
        scheduled_plan: a.and_then(|a| a.scheduled_plan.clone()),
        scheduled_at: a.and_then(|a| a.scheduled_at).map(ts),
        grace_until: a.and_then(|a| a.grace_until).map(ts),
        suspend_at: a.and_then(|a| a.suspend_at).map(ts),
        grant_until: a.and_then(|a| a.grant_until).map(ts),
        pay_url: a.and_then(|a| a.pay_url.clone()),
        quotas: vec![tasks.into()],
    })
}

/// Body of `POST /api/v1/billing/checkout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    pub plan: String,
    /// `monthly` (default) or `yearly`.
    #[serde(default)]
    pub interval: Option<String>,
    /// Where billing emails go (the Stripe customer's email).
    pub contact_email: String,
    /// Where Checkout sends the user back (`?checkout=success|cancel` is appended).
    pub return_url: String,
}

/// A hosted Stripe page to send the user to.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionUrl {
    pub url: String,
}

fn interval(v: Option<&str>) -> Result<&'static str, ApiError> {
    match v {
        None | Some("monthly") => Ok("monthly"),
        Some("yearly") => Ok("yearly"),
        Some(_) => Err(ApiError::unprocessable(
            "`interval` is `monthly` or `yearly`",
        )),
    }
}

fn url(field: &str, v: &str) -> Result<(), ApiError> {
    if (v.starts_with("https://") || v.starts_with("http://")) && v.len() <= 2000 {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "`{field}` must be an http(s) URL of at most 2000 characters"
        )))
    }
}

/// Start a subscription: a Stripe Checkout session for a plan.
#[utoipa::path(post, path = "/api/v1/billing/checkout", tag = "billing",
    request_body = CheckoutBody,
    responses((status = 200, body = SessionUrl), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 502, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn checkout(
    auth: Authenticated,
    State(billing): State<Arc<Billing>>,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> ApiResult<Json<SessionUrl>> {
    let interval = interval(body.interval.as_deref())?;
    url("return_url", &body.return_url)?;
    let email = body.contact_email.trim();
    if email.len() > 254 || !email.contains('@') {
        return Err(ApiError::unprocessable(
            "`contact_email` must be an email address",
        ));
    }
    let url = billing
        .start_checkout(
            auth.tenant.id,
            email,
            &body.plan,
            interval,
            &body.return_url,
        )
        .await?;
    Ok(Json(SessionUrl { url }))
}

/// Body of `POST /api/v1/billing/portal`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalBody {
    pub return_url: String,
}

/// Manage payment methods and invoices: a Stripe Billing Portal session.
#[utoipa::path(post, path = "/api/v1/billing/portal", tag = "billing",
    request_body = PortalBody,
    responses((status = 200, body = SessionUrl), (status = 409, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 502, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn portal(
    auth: Authenticated,
    State(billing): State<Arc<Billing>>,
    ApiJson(body): ApiJson<PortalBody>,
) -> ApiResult<Json<SessionUrl>> {
    url("return_url", &body.return_url)?;
    let url = billing
        .open_portal(auth.tenant.id, &body.return_url)
        .await?;
    Ok(Json(SessionUrl { url }))
}

/// Body of `POST /api/v1/billing/plan` and of its preview.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    pub plan: String,
}

/// A plan change, made or previewed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanChangeView {
    pub plan: String,
    /// Stripe's `proration_behavior`: `always_invoice` (upgrade: prorated, invoiced now) or
    /// `none` (downgrade: from the period end).
    pub proration_behavior: String,
    /// When it takes effect (absent: now).
    pub effective_at: Option<String>,
    /// Preview only: the invoice amount due now, in minor units.
    pub amount_due: Option<i64>,
    pub currency: Option<String>,
}

/// What a plan change would cost now (Stripe's invoice preview), before confirming it. A POST
/// like Stripe's own preview, though it changes nothing.
#[utoipa::path(post, path = "/api/v1/billing/plan/preview", tag = "billing",
    request_body = PlanBody,
    responses((status = 200, body = PlanChangeView), (status = 409, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 502, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn preview(
    auth: Authenticated,
    State(billing): State<Arc<Billing>>,
    ApiJson(q): ApiJson<PlanBody>,
) -> ApiResult<Json<PlanChangeView>> {
    let p = billing.preview_plan(auth.tenant.id, &q.plan).await?;
    Ok(Json(PlanChangeView {
        plan: q.plan,
        proration_behavior: p.proration.as_str().to_owned(),
        effective_at: None,
        amount_due: Some(p.amount_due),
        currency: Some(p.currency),
    }))
}

/// Change plan: an upgrade applies now (prorated, invoiced at once), a downgrade at the
/// period end.
#[utoipa::path(post, path = "/api/v1/billing/plan", tag = "billing",
    request_body = PlanBody,
    responses((status = 200, body = PlanChangeView), (status = 409, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 502, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn change(
    auth: Authenticated,
    State(billing): State<Arc<Billing>>,
    ApiJson(body): ApiJson<PlanBody>,
) -> ApiResult<Json<PlanChangeView>> {
    let c = billing.change_plan(auth.tenant.id, &body.plan).await?;
    Ok(Json(PlanChangeView {
        plan: c.plan,
        proration_behavior: c.proration.as_str().to_owned(),
        effective_at: match c.proration {
            Proration::Now => None,
            Proration::AtPeriodEnd => c.effective_at.map(ts),
        },
        amount_due: None,
        currency: None,
    }))
}
