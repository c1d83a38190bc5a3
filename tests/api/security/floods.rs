//! Failed authentication is limited per client address before any database work (issue 14,
//! hole 4): a flood of made-up API keys from one address is answered 429 after the allowed
//! number, the tenant's database sees none of the refused ones, and a genuine client from
//! another address is served meanwhile. The other public, token-carrying auth routes (refresh,
//! logout, invitation acceptance, email verification) are limited per address like login.

use axum::http::Method;
use platform_tests::{Req, TestApp, TestResponse, TestTenant};
use serde_json::json;

fn header(r: &TestResponse, name: &str) -> Option<u64> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A well-formed key of `t` that no one issued.
fn made_up_key(t: &TestTenant, i: usize) -> String {
    let tenant = uuid::Uuid::parse_str(&t.id).expect("tenant id").simple();
    format!("plt_{tenant}_madeup{i:0>34}")
}

fn with_key(t: &TestTenant, key: &str, peer: &str) -> Req {
    t.as_bearer(key)
        .req(Method::GET, "/api/v1/projects")
        .peer(peer)
}

#[tokio::test]
async fn a_flood_of_made_up_keys_gets_429_without_touching_the_tenant_database() {
    // Statements that wait on a lock give up quickly, so a request that does reach the database
    // below answers 503 within seconds instead of hanging.
    let app = TestApp::spawn_with(&[("PLATFORM_STATEMENT_TIMEOUT", "2")]).await;
    let t = app.tenant("acme", "dedicated", Some("local")).await;
    let attacker = "198.51.100.7:4000";
    // Until the address's failure budget is spent each made-up key is checked (401); then 429.
    let mut refused_at = None;
    for i in 0..100 {
        let r = app.send(with_key(&t, &made_up_key(&t, i), attacker)).await;
        if r.status.as_u16() == 429 {
            r.assert_problem(429);
            assert!(header(&r, "retry-after").is_some_and(|s| s >= 1));
            refused_at = Some((i, header(&r, "ratelimit-limit")));
            break;
        }
        r.assert_problem(401);
    }
    let Some((refused_at, limit)) = refused_at else {
        panic!("100 made-up keys from one address were all checked against the database");
    };
    assert_eq!(
        Some(refused_at as u64),
        limit,
        "the refusals start right after the allowed number of failures"
    );

    // The tenant's database sees no query for the refused ones: with its key table locked, a
    // lookup would wait (and time out into a 503); a refusal before any lookup answers at once.
    let mut db = app.tenant_db(&t).await;
    let lock = db.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    for i in 100..110 {
        app.send(with_key(&t, &made_up_key(&t, i), attacker))
            .await
            .assert_problem(429);
    }
    // The same holds for another address of the attacker's IPv6 /64 ... (here over IPv4: the
    // /64 rule is tested in `throttles.rs`) and for an unknown host from the same address.
    app.send(
        Req::new(Method::GET, "/api/v1/projects")
            .host("no-such-tenant.localhost")
            .bearer("plt_x")
            .peer(attacker),
    )
    .await
    .assert_problem(429);
    lock.rollback().await.expect("unlock");

    // A genuine client from another address is served.
    let genuine = app
        .send(
            t.api
                .req(Method::GET, "/api/v1/projects")
                .peer("203.0.113.20:5000"),
        )
        .await;
    genuine.assert_status(200);
    app.finish().await;
}

#[tokio::test]
async fn token_carrying_auth_routes_are_limited_per_address() {
    let app = TestApp::spawn_with(&[("PLATFORM_RATE_LIMIT_SENSITIVE_IP", "1/2")]).await;
    let t = app.tenant("acme", "shared", None).await;
    for (n, (path, body)) in [
        ("/api/v1/auth/token/refresh", json!({"refresh_token": "x"})),
        ("/api/v1/auth/logout", json!({"refresh_token": "x"})),
        (
            "/api/v1/auth/invitations/accept",
            json!({"token": "x", "password": "correct horse battery staple", "name": "X"}),
        ),
        ("/api/v1/auth/email/verify", json!({"token": "x"})),
    ]
    .into_iter()
    .enumerate()
    {
        let peer = format!("192.0.2.{}:1", n + 1);
        let send = || app.send(t.anon.req(Method::POST, path).peer(&peer).json(&body));
        for _ in 0..2 {
            let r = send().await;
            // (Logout answers 204 even for an unknown token.)
            assert!(
                r.status.as_u16() != 429 && !r.status.is_server_error(),
                "{path}: {}",
                r.text
            );
            assert!(
                header(&r, "ratelimit-limit") == Some(2),
                "{path}: not limited per address"
            );
        }
        send().await.assert_problem(429);
    }
    app.finish().await;
}

#[tokio::test]
async fn a_distributed_flood_is_refused_per_tenant_and_a_key_in_use_stays_served() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let genuine = || {
        app.send(
            t.api
                .req(Method::GET, "/api/v1/projects")
                .peer("203.0.113.20:5000"),
        )
    };
    genuine().await.assert_status(200);
    // Made-up keys from many addresses, each below its own address budget.
    let mut refused = None;
    for i in 0..1000 {
        let peer = format!("198.51.{}.{}:1", i / 2500, (i / 10) % 250);
        let r = app.send(with_key(&t, &made_up_key(&t, i), &peer)).await;
        if r.status.as_u16() == 429 {
            refused = Some(r);
            break;
        }
        r.assert_problem(401);
    }
    let refused = refused.expect("1000 made-up keys from 100 addresses were all checked");
    refused.assert_problem(429);
    assert!(refused.str("detail").contains("tenant"), "{}", refused.text);
    // A fresh address is refused for this tenant too, before any lookup ...
    app.send(with_key(&t, &made_up_key(&t, 5000), "192.0.2.200:1"))
        .await
        .assert_problem(429);
    // ... but the key in use, just verified, is served.
    genuine().await.assert_status(200);
    app.finish().await;
}
