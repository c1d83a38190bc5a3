//! Rate limits: each refusal path (tenant plan, tenant override, principal, client address on a
//! sensitive endpoint, admin API) answers 429 problem+json with `Retry-After` and the
//! `RateLimit-*` headers, allowed requests carry the headers too, plan and override changes apply
//! live, and `X-Forwarded-For` counts only from a trusted proxy.

use std::time::Duration;

use axum::http::Method;
use platform_tests::{ADMIN_TOKEN, Req, TestApp, TestResponse, TestTenant, eventually};
use serde_json::json;

fn header(r: &TestResponse, name: &str) -> Option<u64> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A refusal: 429 problem, `Retry-After` >= 1, `RateLimit-Remaining: 0`, `RateLimit-Limit: limit`.
#[track_caller]
fn assert_refused(r: &TestResponse, limit: u64) {
    r.assert_problem(429);
    assert!(
        header(r, "retry-after").is_some_and(|s| s >= 1),
        "{:?}",
        r.headers
    );
    assert_eq!(header(r, "ratelimit-limit"), Some(limit), "{:?}", r.headers);
    assert_eq!(header(r, "ratelimit-remaining"), Some(0));
    assert!(header(r, "ratelimit-reset").is_some_and(|s| s >= 1));
}

#[tokio::test]
async fn a_tenant_is_held_to_its_plan_and_plan_and_override_changes_apply_live() {
    let app = TestApp::spawn().await;
    let operator = app.operator();
    operator
        .put_plan(
            "tiny",
            json!({"requests_per_second": 1, "burst": 3, "audit_retention_days": 30}),
        )
        .await
        .assert_status(200);
    let t = app.tenant("small", "shared", None).await;
    operator
        .patch_tenant(&t.id, json!({"plan": "tiny"}))
        .await
        .assert_status(200);
    let other = app.tenant("big", "shared", None).await;
    // Allowed requests count down in the headers ...
    for remaining in [2, 1, 0] {
        let r = t.api.projects().await;
        r.assert_status(200);
        assert_eq!(header(&r, "ratelimit-limit"), Some(3));
        assert_eq!(header(&r, "ratelimit-remaining"), Some(remaining));
    }
    // ... then the tenant is refused, and another tenant is not.
    let refused = t.api.projects().await;
    assert_refused(&refused, 3);
    assert!(refused.str("detail").contains("plan"));
    let fine = other.api.projects().await;
    fine.assert_status(200);
    // (The harness's tenants are on a plan the catalog does not know: the server default, which
    // the harness sets far out of reach.)
    assert_eq!(header(&fine, "ratelimit-limit"), Some(1_000_000));

    // The plan changes: within seconds, without a restart, the new burst applies.
    operator
        .put_plan(
            "tiny",
            json!({"requests_per_second": 1, "burst": 50, "audit_retention_days": 30}),
        )
        .await
        .assert_status(200);
    let applied = eventually(Duration::from_secs(5), || async {
        header(&t.api.projects().await, "ratelimit-limit") == Some(50)
    })
    .await;
    assert!(applied.is_some(), "the plan change did not apply");
    an_override_wins_over_the_plan_until_removed(&app, &t).await;
    app.finish().await;
}

/// A per-tenant override wins over the plan, and removing it goes back to the plan (burst 50);
/// bad overrides and plan names are refused.
async fn an_override_wins_over_the_plan_until_removed(app: &TestApp, t: &TestTenant) {
    let operator = app.operator();
    let patched = operator
        .patch_tenant(
            &t.id,
            json!({"rate_limit": {"requests_per_second": 1, "burst": 2}}),
        )
        .await;
    patched.assert_status(200);
    assert_eq!(patched.body["rate_limit_override"]["burst"], 2);
    let r = t.api.projects().await;
    assert_eq!(header(&r, "ratelimit-limit"), Some(2));
    t.api.projects().await.assert_status(200);
    assert_refused(&t.api.projects().await, 2);
    operator
        .patch_tenant(&t.id, json!({"rate_limit": null}))
        .await
        .assert_status(200);
    let r = t.api.projects().await;
    assert_eq!(header(&r, "ratelimit-limit"), Some(50));
    // Bad values are refused with a 4xx.
    for body in [
        json!({"rate_limit": {"requests_per_second": 0, "burst": 2}}),
        json!({"rate_limit": {"requests_per_second": 1}}),
    ] {
        let r = operator.patch_tenant(&t.id, body).await;
        assert!(r.status.is_client_error(), "{}", r.text);
    }
    operator
        .put_plan(
            "Bad%20Name",
            json!({"requests_per_second": 1, "burst": 1, "audit_retention_days": 1}),
        )
        .await
        .assert_problem(422);
}

#[tokio::test]
async fn principals_addresses_and_the_admin_api_have_their_own_limits_and_proxies_are_trusted_by_config()
 {
    let app = TestApp::spawn_with(&[
        ("PLATFORM_RATE_LIMIT_PRINCIPAL", "1/2"),
        ("PLATFORM_RATE_LIMIT_SENSITIVE_IP", "1/2"),
        ("PLATFORM_RATE_LIMIT_ADMIN_IP", "1/3"),
        ("PLATFORM_TRUSTED_PROXIES", "10.0.0.0/8"),
    ])
    .await;
    let t = app.tenant("acme", "shared", None).await;
    per_principal(&app, &t).await;
    per_address_on_a_sensitive_endpoint(&app, &t).await;

    // The admin API, per address, before the token is even checked.
    let admin = |peer: &'static str| {
        Req::new(Method::GET, "/admin/v1/tenants")
            .bearer(ADMIN_TOKEN)
            .peer(peer)
    };
    for remaining in [2, 1, 0] {
        let r = app.send(admin("192.0.2.10:1")).await;
        r.assert_status(200);
        assert_eq!(header(&r, "ratelimit-remaining"), Some(remaining));
    }
    assert_refused(&app.send(admin("192.0.2.10:1")).await, 3);
    app.send(admin("192.0.2.11:1")).await.assert_status(200);
    app.finish().await;
}

/// Per principal (burst 2): this key is refused after its burst; another key of the tenant is
/// not.
async fn per_principal(app: &TestApp, t: &TestTenant) {
    t.api.projects().await.assert_status(200);
    t.api.projects().await.assert_status(200);
    let refused = t.api.projects().await;
    assert_refused(&refused, 2);
    assert!(refused.str("detail").contains("credential"));
    let second = app
        .operator()
        .create_api_key(&t.id, json!({"name": "b"}))
        .await
        .str("key");
    t.with_key(&second).api.projects().await.assert_status(200);
}

/// Per address on a sensitive endpoint (password reset requests: cheap, so the requests below
/// come faster than the 1/s refill): two accepted, then 429; `X-Forwarded-For` counts only from
/// a trusted proxy, and the address it gives is the one the audit log records.
async fn per_address_on_a_sensitive_endpoint(app: &TestApp, t: &TestTenant) {
    let forgot = |peer: &'static str, xff: Option<&'static str>| {
        let mut r = t
            .anon
            .req(Method::POST, "/api/v1/auth/password/forgot")
            .peer(peer)
            .json(&json!({"email": "nobody@acme.test"}));
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        r
    };
    let first = app.send(forgot("203.0.113.5:4000", None)).await;
    first.assert_status(202);
    assert_eq!(header(&first, "ratelimit-limit"), Some(2));
    assert_eq!(header(&first, "ratelimit-remaining"), Some(1));
    app.send(forgot("203.0.113.5:4001", None))
        .await
        .assert_status(202);
    assert_refused(&app.send(forgot("203.0.113.5:4002", None)).await, 2);
    // Another address is not affected.
    app.send(forgot("203.0.113.6:4000", None))
        .await
        .assert_status(202);
    // An untrusted peer's X-Forwarded-For is ignored: it is still 203.0.113.5, refused.
    assert_refused(
        &app.send(forgot("203.0.113.5:4003", Some("198.51.100.77")))
            .await,
        2,
    );
    // Behind a trusted proxy the right-most untrusted forwarded address is the client.
    for _ in 0..2 {
        app.send(forgot(
            "10.1.2.3:5000",
            Some("6.6.6.6, 198.51.100.1, 10.9.9.9"),
        ))
        .await
        .assert_status(202);
    }
    assert_refused(
        &app.send(forgot("10.1.2.3:5000", Some("198.51.100.1")))
            .await,
        2,
    );
    app.send(forgot("10.1.2.3:5000", Some("198.51.100.2")))
        .await
        .assert_status(202);
    // ... and it is the address the audit log records, e.g. for a failed login.
    app.send(
        t.anon
            .req(Method::POST, "/api/v1/auth/login")
            .peer("10.1.2.3:5000")
            .header("x-forwarded-for", "198.51.100.3")
            .json(&json!({"email": "x@acme.test", "password": "wrong"})),
    )
    .await
    .assert_problem(401);
    let ips: Vec<Option<String>> = app
        .shared_owner()
        .await
        .query(
            "SELECT client_ip FROM audit_events WHERE action = 'auth.login'",
            &[],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ips, vec![Some("198.51.100.3".to_owned())]);
}

#[test]
fn a_bad_limit_setting_names_its_variable() {
    for (var, value) in [
        ("PLATFORM_RATE_LIMIT_PRINCIPAL", "fast"),
        ("PLATFORM_RATE_LIMIT_SENSITIVE_IP", "0/1"),
        ("PLATFORM_TRUSTED_PROXIES", "10.0.0.0/33"),
    ] {
        let e = tenancy::settings::Settings::from_lookup(|k| (k == var).then(|| value.to_owned()))
            .expect_err(var);
        assert!(e.to_string().contains(var), "{e}");
    }
}
