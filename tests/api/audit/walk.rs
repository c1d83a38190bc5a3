//! The walk over every mutating route: a table of routes (their OpenAPI templates, filled from
//! what earlier steps returned), who calls them and the audit event each must leave, driven by
//! one loop. The route list comes from the OpenAPI document, so a new route without a row (or
//! without an event) fails here.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use identity::mfa::code_at;
use platform_tests::{PASSWORD, Req, TestApp, TestTenant, token_in};
use serde_json::json;

mod engine;

use engine::{Step, Walk, Who, now, step};

use Who::{Anonymous as Anon, Bearer, Operator as Op};

/// The operator creates the tenant and changes its settings and the platform's.
fn operator_steps() -> Vec<Step> {
    vec![
        step(Op, "POST /admin/v1/tenants", "tenant.created")
            .json(json!({"slug": "acme", "name": "Acme", "plan": "pro"}))
            .save("tenant", "id"),
        step(
            Op,
            "POST /admin/v1/tenants/{tenant}/api-keys",
            "api_key.created",
        )
        .json(json!({"name": "ops"}))
        .save("acme_key", "key"),
        step(
            Op,
            "POST /admin/v1/tenants/{tenant}/api-keys",
            "api_key.created",
        )
        .json(json!({"name": "spare"}))
        .save("key_id", "id"),
        step(
            Op,
            "DELETE /admin/v1/tenants/{tenant}/api-keys/{key_id}",
            "api_key.updated",
        ),
        step(Op, "PATCH /admin/v1/tenants/{tenant}", "tenant.updated")
            .json(json!({"signup": "open"})),
        step(
            Op,
            "POST /admin/v1/tenants/{tenant}/domains",
            "domain.created",
        )
        .json(json!({"domain": "{domain}"})),
        step(
            Op,
            "DELETE /admin/v1/tenants/{tenant}/domains/{domain}",
            "domain.deleted",
        ),
        step(Op, "POST /admin/v1/db-servers", "db_server.created")
            .json(json!({"name": "third", "url": "{second_url}"})),
        step(
            Op,
            "POST /admin/v1/jwt-keys/rotate",
            "jwt_signing_key.created",
        ),
        step(Op, "PUT /admin/v1/plans/{plan}", "plan.created")
            .json(json!({"requests_per_second": 50, "burst": 100, "audit_retention_days": 7})),
        step(
            Op,
            "POST /admin/v1/tenants/{tenant}/invitations",
            "invitation.created",
        )
        .json(json!({"email": "owner@acme.test", "role": "owner"}))
        .save("invitation", "token"),
    ]
}

/// Sign-up, invitation, email verification, login and tokens, password reset.
async fn account_steps(w: &mut Walk<'_>) {
    w.run(vec![
        step(
            Anon,
            "POST /api/v1/auth/invitations/accept",
            "invitation.updated",
        )
        .json(json!({"token": "{invitation}", "password": PASSWORD, "name": "Owner"}))
        .save("owner_token", "access_token"),
        step(Anon, "POST /api/v1/auth/signup", "user.created")
            .json(json!({"email": "self@acme.test", "password": PASSWORD, "name": "Self"}))
            .save("self_token", "access_token"),
    ])
    .await;
    let t = TestTenant::new(w.app, w.var("tenant"), "acme", w.var("acme_key"));
    let me = t.as_bearer(w.var("self_token")).me().await;
    w.set("user_id", me.str("id"));
    w.run(vec![step(
        Bearer("self_token"),
        "POST /api/v1/me/email/verification",
        "one_time_token.created",
    )])
    .await;
    let mail = w.app.outbox("self@acme.test").await;
    w.set(
        "verify",
        token_in(mail.last().expect("mail"), "verification token"),
    );
    w.run(vec![
        step(Anon, "POST /api/v1/auth/email/verify", "user.updated")
            .json(json!({"token": "{verify}"})),
        step(Anon, "POST /api/v1/auth/login", "session.created")
            .json(json!({"email": "self@acme.test", "password": PASSWORD}))
            .save("refresh", "refresh_token"),
        step(
            Anon,
            "POST /api/v1/auth/token/refresh",
            "refresh_token.created",
        )
        .json(json!({"refresh_token": "{refresh}"}))
        .save("refresh", "refresh_token"),
        step(Anon, "POST /api/v1/auth/logout", "session.updated")
            .json(json!({"refresh_token": "{refresh}"})),
        step(
            Anon,
            "POST /api/v1/auth/password/forgot",
            "one_time_token.created",
        )
        .json(json!({"email": "self@acme.test"})),
    ])
    .await;
    let mail = w.app.outbox("self@acme.test").await;
    w.set("reset", token_in(mail.last().expect("mail"), "reset token"));
    w.run(vec![
        step(Anon, "POST /api/v1/auth/password/reset", "user.updated")
            .json(json!({"token": "{reset}", "password": PASSWORD})),
    ])
    .await;
}

/// MFA (enrol, confirm, log in with a recovery code, disable) and sessions.
async fn mfa_and_session_steps(w: &mut Walk<'_>) {
    let fresh = w.login_self().await;
    w.set("self_token", fresh.str("access_token"));
    w.run(vec![
        step(
            Bearer("self_token"),
            "POST /api/v1/me/mfa/totp",
            "user.updated",
        )
        .save("secret", "secret"),
    ])
    .await;
    w.set("totp", code_at(w.var("secret"), now()).expect("code"));
    let confirmed = w
        .run(vec![
            step(
                Bearer("self_token"),
                "POST /api/v1/me/mfa/totp/confirm",
                "recovery_code.created",
            )
            .json(json!({"code": "{totp}"})),
        ])
        .await
        .expect("confirmed");
    let recovery = confirmed.body["recovery_codes"]
        .as_array()
        .expect("codes")
        .clone();
    w.set("recovery0", recovery[0].as_str().expect("code"));
    w.set("recovery1", recovery[1].as_str().expect("code"));
    let step1 = w.login_self().await;
    w.set("mfa_token", step1.str("mfa_token"));
    w.run(vec![
        step(
            Anon,
            "POST /api/v1/auth/mfa/verify",
            "recovery_code.updated",
        )
        .json(json!({"mfa_token": "{mfa_token}", "code": "{recovery0}"}))
        .save("self_token", "access_token"),
        step(
            Bearer("self_token"),
            "DELETE /api/v1/me/mfa/totp",
            "recovery_code.deleted",
        )
        .json(json!({"code": "{recovery1}"})),
    ])
    .await;
    let _other = w.login_self().await;
    let t = TestTenant::new(w.app, w.var("tenant"), "acme", w.var("acme_key"));
    let sessions = t.as_bearer(w.var("self_token")).sessions().await;
    let other = sessions.body["items"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] != json!(true))
        .and_then(|s| s["id"].as_str())
        .expect("another session")
        .to_owned();
    w.set("session_id", other);
    w.run(vec![step(
        Bearer("self_token"),
        "DELETE /api/v1/me/sessions/{session_id}",
        "session.updated",
    )])
    .await;
    w.login_self().await;
    w.run(vec![step(
        Bearer("self_token"),
        "POST /api/v1/me/sessions/revoke-others",
        "session.updated",
    )])
    .await;
}

/// Members, roles and keys, as the owner; an operator signs the user out in between.
async fn member_steps(w: &mut Walk<'_>) {
    let owner = Bearer("owner_token");
    w.run(vec![
        step(owner, "PATCH /api/v1/users/{user_id}", "user.updated").json(json!({"role": "admin"})),
        step(
            owner,
            "DELETE /api/v1/users/{user_id}/sessions",
            "session.updated",
        ),
    ])
    .await;
    w.login_self().await;
    w.run(vec![
        step(
            Op,
            "DELETE /admin/v1/tenants/{tenant}/users/{user_id}/sessions",
            "session.updated",
        ),
        step(owner, "POST /api/v1/invitations", "invitation.created")
            .json(json!({"email": "new@acme.test", "role": "member"})),
        step(owner, "POST /api/v1/roles", "role.created")
            .json(json!({"name": "auditor", "permissions": ["audit:read"]}))
            .save("role_id", "id"),
        step(
            owner,
            "PATCH /api/v1/roles/{role_id}",
            "role_permission.created",
        )
        .json(json!({"permissions": ["audit:read", "users:read"]})),
        step(owner, "DELETE /api/v1/roles/{role_id}", "role.deleted"),
        step(owner, "POST /api/v1/api-keys", "api_key.created")
            .json(json!({"name": "ci"}))
            .save("key_id", "id"),
        step(owner, "DELETE /api/v1/api-keys/{key_id}", "api_key.updated"),
    ])
    .await;
}

/// The reference domain, and SSO configuration (with a refused assertion at the ACS, recorded
/// as a security event), as the owner.
fn domain_and_sso_steps() -> Vec<Step> {
    let owner = Bearer("owner_token");
    vec![
        step(owner, "POST /api/v1/projects", "project.created")
            .json(json!({"name": "Launch"}))
            .save("project_id", "id"),
        step(owner, "PATCH /api/v1/projects/{project_id}", "project.updated").json(json!({"name": "Launch 2"})),
        step(owner, "POST /api/v1/projects/{project_id}/members", "project_member.created")
            .json(json!({"user_id": "{user_id}", "role": "member"})),
        step(owner, "PATCH /api/v1/projects/{project_id}/members/{user_id}", "project_member.updated")
            .json(json!({"role": "admin"})),
        step(owner, "DELETE /api/v1/projects/{project_id}/members/{user_id}", "project_member.deleted"),
        step(owner, "POST /api/v1/projects/{project_id}/tasks", "task.created")
            .json(json!({"title": "Ship"}))
            .save("task_id", "id"),
        step(owner, "PATCH /api/v1/projects/{project_id}/tasks/{task_id}", "task.updated")
            .json(json!({"status": "done"})),
        step(owner, "DELETE /api/v1/projects/{project_id}/tasks/{task_id}", "task.deleted"),
        step(owner, "DELETE /api/v1/projects/{project_id}", "project.deleted"),
        step(owner, "POST /api/v1/sso/connections", "sso_connection.created")
            .json(json!({"kind": "google", "name": "Google", "client_id": "g.apps", "client_secret": "s3cret-value"}))
            .save("connection_id", "id"),
        step(owner, "PATCH /api/v1/sso/connections/{connection_id}", "sso_connection.updated")
            .json(json!({"enabled": true, "default_role": "viewer"})),
        step(owner, "PUT /api/v1/sso/settings", "sso_settings.created").json(json!({"enforce_sso": false})),
        step(Anon, "POST /sso/saml/acs", "security.sso.rejected").form("SAMLResponse=bm90IHhtbA%3D%3D"),
        step(owner, "POST /api/v1/sso/connections/{connection_id}/links", "sso_identity.created")
            .json(json!({"subject": "walk-subject", "user_id": "{user_id}"})),
        step(owner, "DELETE /api/v1/sso/connections/{connection_id}/links/{user_id}", "sso_identity.deleted"),
        step(owner, "DELETE /api/v1/sso/connections/{connection_id}", "sso_connection.deleted"),
    ]
}

/// A verified email domain: claimed, proved by its TXT record, removed, marked by the operator
/// (in the operators' trail).
async fn sso_domain_steps(w: &mut Walk<'_>) {
    let owner = Bearer("owner_token");
    let claimed = w
        .run(vec![
            step(owner, "POST /api/v1/sso/domains", "sso_domain.created")
                .json(json!({"domain": "{domain}"})),
        ])
        .await
        .expect("claimed");
    w.app.dns.publish(
        claimed.body["record"]["name"].as_str().expect("name"),
        claimed.body["record"]["value"].as_str().expect("value"),
    );
    w.run(vec![
        step(
            owner,
            "POST /api/v1/sso/domains/{domain}/check",
            "sso_domain.updated",
        ),
        step(
            owner,
            "DELETE /api/v1/sso/domains/{domain}",
            "sso_domain.deleted",
        ),
        step(
            Op,
            "PUT /admin/v1/tenants/{tenant}/sso-domains/{domain}",
            "sso_domain.updated",
        ),
    ])
    .await;
}

/// Placement (left pending: nothing resumes it here) and deletion, last, on another tenant.
fn placement_steps() -> Vec<Step> {
    vec![
        step(
            Op,
            "POST /admin/v1/tenants/{tenant}/placement",
            "operation.created",
        )
        .json(json!({"placement": "dedicated", "db_server": "local"}))
        .save("operation_id", "id"),
        step(
            Op,
            "POST /admin/v1/operations/{operation_id}/cancel",
            "operation.updated",
        ),
        step(Op, "DELETE /admin/v1/tenants/{tenant}", "tenant.updated"),
    ]
}

/// The operator's job controls on a job of `{tenant}` (`{id}`) and a kind (`{kind}`).
fn job_steps() -> Vec<Step> {
    vec![
        step(Op, "POST /admin/v1/jobs/{id}/discard", "job.discarded"),
        step(Op, "POST /admin/v1/jobs/{id}/retry", "job.retried"),
        step(
            Op,
            "POST /admin/v1/jobs/kinds/{kind}/pause",
            "job_kind_pause.created",
        ),
        step(
            Op,
            "POST /admin/v1/jobs/kinds/{kind}/resume",
            "job_kind_pause.deleted",
        ),
    ]
}

/// Every mutating route (POST, PUT, PATCH, DELETE) of the OpenAPI document.
/// Flags: authored, imported, switched, opted into by the tenant's owner, deleted; each change in
/// the operators' trail (before and after).
fn flag_steps() -> Vec<Step> {
    vec![
        step(Op, "POST /admin/v1/flags", "flag.created").json(json!({
            "name": "walk-flag", "enabled": true, "tenantOptIn": true,
            "strategies": [{"name": "flexibleRollout",
                "parameters": {"rollout": "0", "stickiness": "default", "groupId": "walk"}}]
        })),
        step(Op, "PUT /admin/v1/flags/{name}", "flag.updated")
            .json(json!({"enabled": true, "tenantOptIn": true, "type": "experiment"})),
        step(Op, "POST /admin/v1/flags/{name}/disable", "flag.updated"),
        step(Op, "POST /admin/v1/flags/{name}/enable", "flag.updated"),
        step(
            Bearer("owner_token"),
            "PUT /api/v1/flags/{name}/choice",
            "flag_override.created",
        )
        .json(json!({"choice": "in"})),
        step(
            Op,
            "POST /admin/v1/flags/kill-switch",
            "flag_kill_switch.updated",
        ),
        step(
            Op,
            "DELETE /admin/v1/flags/kill-switch",
            "flag_kill_switch.updated",
        ),
        step(Op, "POST /admin/v1/flags/import", "flag.created").json(json!({
            "version": 2, "features": [{"name": "walk-imported", "enabled": true}]
        })),
        step(Op, "DELETE /admin/v1/flags/{name}", "flag.deleted"),
    ]
}

/// Email: branding, a manual suppression and its removal, the user's locale, a sending domain
/// and its verification (as the owner), a one-click
/// unsubscribe (no credential) and a provider's hard-bounce webhook (HTTP Basic); each adds or
/// removes a suppression, audited by the table's trigger with the request's id.
async fn email_steps(w: &mut Walk<'_>) {
    let owner = Bearer("owner_token");
    w.run(vec![
        step(
            owner,
            "PUT /api/v1/email/branding",
            "email_branding.created",
        )
        .json(json!({"primary_color": "#123456"})),
        step(
            owner,
            "POST /api/v1/email/suppressions",
            "email_suppression.created",
        )
        .json(json!({"recipient": "manual@acme.test"}))
        .save("suppression_id", "id"),
        step(
            owner,
            "DELETE /api/v1/email/suppressions/{suppression_id}",
            "email_suppression.deleted",
        ),
        // The user's own locale (the mail they get).
        step(owner, "PATCH /api/v1/me", "user.updated").json(json!({"locale": "fr-CA"})),
        // Open tracking.
        step(
            owner,
            "PUT /api/v1/email/settings",
            "email_settings.created",
        )
        .json(json!({"open_tracking": true})),
    ])
    .await;
    // A sending domain, verified by its DKIM record in DNS.
    let domain = w
        .run(vec![
            step(owner, "PUT /api/v1/email/domain", "email_domain.created")
                .json(json!({"domain": "mail.audit.example"})),
        ])
        .await
        .expect("a sending domain");
    w.app
        .dns
        .publish(&domain.str("txt_name"), &domain.str("txt_value"));
    w.run(vec![step(
        owner,
        "POST /api/v1/email/domain/verify",
        "email_domain.updated",
    )])
    .await;
    let tenant = tenancy::ids::TenantId::parse(w.var("tenant")).expect("tenant id");
    let token = w
        .app
        .app
        .mailer
        .unsubscribe_token(&email::unsubscribe::Unsubscribe {
            tenant,
            category: email::Category::Marketing,
            recipient: "reader@acme.test".into(),
        })
        .await
        .expect("an unsubscribe token");
    w.set("token", token);
    w.run(vec![step(
        Anon,
        "POST /u/{token}",
        "email_suppression.created",
    )])
    .await;
    let id = format!("audit-{}", w.sent.len());
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(WEBHOOK_CREDENTIALS);
    let r = w
        .app
        .send(
            Req::new(Method::POST, "/webhooks/email/postmark")
                .header("x-request-id", &id)
                .header("authorization", &format!("Basic {basic}"))
                .json(&json!({
                    "RecordType": "Bounce", "ID": 42, "Type": "HardBounce",
                    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
                    "Email": "bounced@acme.test",
                    "Metadata": {"tenant": w.var("tenant")},
                })),
        )
        .await;
    r.assert_status(200);
    w.sent.push((
        "POST /webhooks/email/{provider}",
        id,
        "email_suppression.created",
    ));
}

/// The provider webhook's credentials in this walk.
const WEBHOOK_CREDENTIALS: &str = "postmark:walk-webhook-password-0123";

/// POST routes that change nothing (so leave no event): evaluating flags for a test context.
/// Billing (issue 19), against the Stripe stand-in: an operator's grant, a checkout (the Stripe
/// customer), the subscription arriving by webhook, a plan change, the portal, and a
/// reconciliation that applies a missed event. Each leaves its event with its request id.
async fn billing_steps(w: &mut Walk<'_>, stripe: &platform_tests::stripe::StripeStandIn) {
    use platform_tests::stripe::{event, invoice, sign, subscription};
    let control = platform_tests::connect(&w.app.platform_env()[0].1).await;
    control
        .batch_execute("UPDATE plans SET stripe_price_monthly = 'price_' || name")
        .await
        .expect("prices");
    let owner = Bearer("owner_token");
    w.run(vec![
        step(
            Op,
            "PUT /admin/v1/tenants/{tenant}/billing/grant",
            "billing_account.created",
        )
        .json(json!({"plan": "pro"})),
        step(
            owner,
            "POST /api/v1/billing/checkout",
            "billing_checkout.started",
        )
        .json(json!({
            "plan": "pro", "contact_email": "billing@acme.test",
            "return_url": "https://acme.test/billing"})),
    ])
    .await;
    // Stripe's webhook: a signed body (the engine sends JSON bodies only).
    let sub = subscription(
        "sub_1",
        "cus_1",
        "price_pro",
        "active",
        platform_tests::stripe::now() + 86_400,
    );
    stripe.put_subscription(sub.clone());
    let body = event(
        "evt_walk",
        "customer.subscription.created",
        platform_tests::stripe::now(),
        sub,
    )
    .to_string();
    let id = format!("audit-{}", w.sent.len());
    let r = w
        .app
        .send(
            Req::new(Method::POST, "/webhooks/stripe")
                .raw(body.clone(), Some("application/json"))
                .header("x-request-id", &id)
                .header(
                    "stripe-signature",
                    &sign(&body, WALK_WEBHOOK_SECRET, platform_tests::stripe::now()),
                ),
        )
        .await;
    r.assert_status(200);
    w.sent
        .push(("POST /webhooks/stripe", id, "billing_account.updated"));
    stripe.put_event(event(
        "evt_walk_missed",
        "invoice.payment_failed",
        platform_tests::stripe::now(),
        invoice("in_walk", "cus_1", 100, "billing@acme.test"),
    ));
    w.run(vec![
        step(
            owner,
            "POST /api/v1/billing/plan",
            "billing_account.updated",
        )
        .json(json!({"plan": "enterprise"})),
        step(
            owner,
            "POST /api/v1/billing/portal",
            "billing_portal.opened",
        )
        .json(json!({"return_url": "https://acme.test/billing"})),
        step(
            Op,
            "POST /admin/v1/billing/reconcile",
            "billing_account.updated",
        )
        .json(json!({})),
    ])
    .await;
}

/// The walk's webhook secret.
const WALK_WEBHOOK_SECRET: &str = "whsec_walk_0123456789";

const READ_ONLY_POSTS: &[&str] = &[
    "POST /admin/v1/flags/evaluate",
    "POST /api/v1/billing/plan/preview",
];

async fn mutating_routes(app: &TestApp) -> BTreeSet<String> {
    let doc = app.send(Req::new(Method::GET, "/openapi.json")).await;
    let mut out = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for m in ["post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                let route = format!("{} {path}", m.to_uppercase());
                if !READ_ONLY_POSTS.contains(&route.as_str()) {
                    out.insert(route);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_mutating_route_records_an_audit_event_with_its_request() {
    let stripe = platform_tests::stripe::StripeStandIn::start().await;
    let app = TestApp::spawn_with(&[
        ("PLATFORM_EMAIL_WEBHOOK_CREDENTIALS", WEBHOOK_CREDENTIALS),
        ("PLATFORM_STRIPE_SECRET_KEY", "sk_test_walk"),
        ("PLATFORM_STRIPE_WEBHOOK_SECRET", WALK_WEBHOOK_SECRET),
        ("PLATFORM_STRIPE_API_BASE", &stripe.base),
    ])
    .await;
    let mut w = Walk {
        app: &app,
        host: "acme.localhost".into(),
        vars: BTreeMap::new(),
        sent: Vec::new(),
    };
    w.set("domain", "audit.example.com");
    w.set("plan", "audited");
    w.set(
        "second_url",
        platform_tests::clusters().second.url("postgres"),
    );
    w.run(operator_steps()).await;
    account_steps(&mut w).await;
    mfa_and_session_steps(&mut w).await;
    member_steps(&mut w).await;
    w.run(domain_and_sso_steps()).await;
    sso_domain_steps(&mut w).await;
    w.set("name", "walk-flag");
    w.run(flag_steps()).await;
    email_steps(&mut w).await;
    billing_steps(&mut w, &stripe).await;
    // A job of acme's that no worker runs (due in a day), for the operator's job controls.
    let job_id = uuid::Uuid::now_v7().to_string();
    app.shared_owner()
        .await
        .execute(
            "INSERT INTO jobs (tenant_id, id, kind, run_at)
             VALUES ($1::text::uuid, $2::text::uuid, 'walk.test', now() + interval '1 day')",
            &[&w.var("tenant").to_owned(), &job_id],
        )
        .await
        .expect("a job");
    w.set("id", job_id);
    w.set("kind", "walk.test");
    w.run(job_steps()).await;
    app.app.stop_resuming();
    let acme = w.var("tenant").to_owned();
    let leaving = app.tenant("leaving", "shared", None).await;
    w.set("tenant", leaving.id);
    w.run(placement_steps()).await;

    // Every mutating route was exercised ...
    let exercised: BTreeSet<String> = w.sent.iter().map(|(r, _, _)| (*r).to_owned()).collect();
    let missing: Vec<String> = mutating_routes(&app)
        .await
        .difference(&exercised)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "mutating routes this test does not exercise: {missing:?}"
    );
    // ... and each request left its event, carrying its request id.
    let wrong = events_not_left(&app, &w.sent).await;
    assert!(
        wrong.is_empty(),
        "routes that changed something without their audit event (route, expected, found): {wrong:#?}"
    );
    let t = TestTenant::new(&app, &acme, "acme", w.var("acme_key"));
    let owner = t.as_bearer(w.var("owner_token"));
    who_and_what(
        &app,
        &acme,
        &owner.me().await.str("id"),
        w.var("project_id"),
    )
    .await;
    app.finish().await;
}

/// The steps whose request id carries no event with the expected action: `(route, expected,
/// the actions found)`. Events land in the tenant's database or the operator trail.
async fn events_not_left(
    app: &TestApp,
    sent: &[(&'static str, String, &'static str)],
) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let tenant_db = app.shared_owner().await;
    let control = platform_tests::connect(&app.platform_env()[0].1).await;
    let mut wrong = Vec::new();
    for (route, id, expected) in sent {
        let mut actions: Vec<String> = Vec::new();
        for (db, table) in [
            (&tenant_db, "audit_events"),
            (&control, "admin_audit_events"),
        ] {
            let rows = db
                .query(
                    &format!("SELECT action FROM {table} WHERE request_id = $1"),
                    &[id],
                )
                .await
                .expect("events");
            actions.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        if !actions.iter().any(|a| a == expected) {
            wrong.push((*route, *expected, actions));
        }
    }
    wrong
}

/// Who and what are right: the project creation is the owner's, via the tenant API; an
/// operator's change to tenant data is the operator's; no secret reaches a summary.
async fn who_and_what(app: &TestApp, tenant: &str, owner_id: &str, project: &str) {
    let tenant_db = app.shared_owner().await;
    let row = tenant_db
        .query_one(
            "SELECT actor_type, actor_id, target_id, route, outcome FROM audit_events
             WHERE action = 'project.created' AND tenant_id = $1::text::uuid",
            &[&tenant],
        )
        .await
        .expect("project event");
    assert_eq!(row.get::<_, String>(0), "user");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(owner_id));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some(project));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("POST /api/v1/projects")
    );
    assert_eq!(row.get::<_, String>(4), "success");
    // audit-1 is the operator's creation of the tenant's first API key.
    let op_key: String = tenant_db
        .query_one(
            "SELECT actor_type FROM audit_events WHERE request_id = 'audit-1' LIMIT 1",
            &[],
        )
        .await
        .expect("operator key event")
        .get(0);
    assert_eq!(op_key, "operator");
    // Password and key hashes appear by column name at most.
    let leaks: i64 = tenant_db
        .query_one(
            "SELECT count(*) FROM audit_events WHERE summary::text LIKE '%$argon2%' OR summary ? 'key_hash' OR summary ? 'password_hash'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(leaks, 0);
}
