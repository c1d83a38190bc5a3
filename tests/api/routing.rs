//! Routing-layer behaviour: catalog changes reach every instance quickly, request ids,
//! health, the OpenAPI document, the per-server connection budget, and purge.

use std::time::Duration;

use axum::http::Method;
use platform_tests::{Req, TestApp, clusters, connect, eventually};
use serde_json::json;

#[tokio::test]
async fn suspension_and_deletion_reach_every_instance_within_a_second() {
    let app = TestApp::spawn().await;
    let other = app.another_instance().await;
    let t = app.tenant("acme", "shared", None).await;
    let probe = || {
        Req::new(Method::GET, "/api/v1/projects")
            .host(t.host())
            .bearer(&t.key)
    };
    // Warm the second instance's caches.
    probe().send(&other.router).await.assert_status(200);

    app.admin(
        Method::PATCH,
        "/admin/v1/tenants/acme",
        Some(json!({"status": "suspended"})),
    )
    .await
    .assert_status(200);
    app.send(probe()).await.assert_problem(403);
    let took = eventually(Duration::from_secs(1), || async {
        probe().send(&other.router).await.status.as_u16() == 403
    })
    .await;
    assert!(
        took.is_some(),
        "the other instance still served a suspended tenant after 1 s"
    );
    let r = probe().send(&other.router).await;
    r.assert_problem(403);
    assert_eq!(r.body["type"], "/problems/tenant-suspended");

    app.admin(
        Method::PATCH,
        "/admin/v1/tenants/acme",
        Some(json!({"status": "active"})),
    )
    .await
    .assert_status(200);
    assert!(
        eventually(Duration::from_secs(1), || async {
            probe().send(&other.router).await.status.as_u16() == 200
        })
        .await
        .is_some()
    );

    app.admin(Method::DELETE, "/admin/v1/tenants/acme", None)
        .await
        .assert_status(204);
    let gone = Req::new(Method::GET, "/api/v1/projects").host(t.host());
    app.send(gone).await.assert_problem(404);
    assert!(
        eventually(Duration::from_secs(1), || async {
            Req::new(Method::GET, "/api/v1/projects")
                .host(t.host())
                .send(&other.router)
                .await
                .status
                .as_u16()
                == 404
        })
        .await
        .is_some(),
        "the other instance still resolved a deleted tenant after 1 s"
    );
    probe().send(&other.router).await.assert_problem(403);
    drop(other);
    app.finish().await;
}

#[tokio::test]
async fn a_new_tenant_is_not_hidden_by_a_cached_negative_entry() {
    let app = TestApp::spawn().await;
    let other = app.another_instance().await;
    Req::new(Method::GET, "/api/v1/projects")
        .host("late.localhost")
        .send(&other.router)
        .await
        .assert_problem(404);
    let t = app.tenant("late", "shared", None).await;
    let ok = eventually(Duration::from_secs(1), || async {
        Req::new(Method::GET, "/api/v1/projects")
            .host(t.host())
            .bearer(&t.key)
            .send(&other.router)
            .await
            .status
            .as_u16()
            == 200
    })
    .await;
    assert!(ok.is_some());
    drop(other);
    app.finish().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let r = app.send(Req::new(Method::GET, "/healthz")).await;
    let id = r
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let kept = app
        .send(Req::new(Method::GET, "/healthz").header("x-request-id", "trace-abc_123"))
        .await;
    assert_eq!(
        kept.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-abc_123")
    );
    let replaced = app
        .send(Req::new(Method::GET, "/nope").header("x-request-id", "bad id with spaces"))
        .await;
    replaced.assert_problem(404);
    let id = replaced
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id");
    assert_ne!(id, "bad id with spaces");
    app.finish().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    app.send(Req::new(Method::GET, "/healthz"))
        .await
        .assert_status(200);
    let ready = app.send(Req::new(Method::GET, "/readyz")).await;
    ready.assert_status(200);
    assert_eq!(ready.body["status"], "ready");
    app.finish().await;
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let app = TestApp::spawn().await;
    let doc = app.send(Req::new(Method::GET, "/openapi.json")).await;
    doc.assert_status(200);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let expected = [
        ("/admin/v1/tenants", &["post", "get"][..]),
        ("/admin/v1/tenants/{tenant}", &["get", "patch", "delete"]),
        ("/admin/v1/tenants/{tenant}/domains", &["post", "get"]),
        ("/admin/v1/tenants/{tenant}/domains/{domain}", &["delete"]),
        ("/admin/v1/tenants/{tenant}/api-keys", &["post", "get"]),
        ("/admin/v1/tenants/{tenant}/api-keys/{key_id}", &["delete"]),
        ("/admin/v1/db-servers", &["post", "get"]),
        ("/api/v1/projects", &["post", "get"]),
        ("/api/v1/projects/{project_id}", &["get", "patch", "delete"]),
        ("/api/v1/projects/{project_id}/tasks", &["post", "get"]),
        (
            "/api/v1/projects/{project_id}/tasks/{task_id}",
            &["get", "patch", "delete"],
        ),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
    ];
    for (path, methods) in expected {
        for m in methods {
            assert!(
                doc.body["paths"][path][m].is_object(),
                "{m} {path} missing from the OpenAPI document"
            );
        }
    }
    app.finish().await;
}

#[tokio::test]
async fn dedicated_pools_stay_within_the_server_budget() {
    let app = TestApp::spawn().await;
    // A server entry with a budget of 2 connections (pools here hold at most 2 each).
    let p = &app.app.tenancy.provisioner;
    p.register_server("tight", &clusters().primary.url("postgres"), 2, true)
        .await
        .expect("register");
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(
            app.tenant(&format!("tight-{i}"), "dedicated", Some("tight"))
                .await,
        );
    }
    let dbs: Vec<String> = tenants
        .iter()
        .map(|t| {
            format!(
                "tenant_{}",
                uuid::Uuid::parse_str(&t.id).expect("uuid").simple()
            )
        })
        .collect();
    // Sample the server's data-plane connections to these databases all along.
    let admin = connect(&clusters().primary.url("postgres")).await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let sampler = async {
        let mut most = 0_i64;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let n: i64 = admin
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = 'platform_app' AND datname = ANY($1)", &[&dbs])
                .await
                .expect("count")
                .get(0);
            most = most.max(n);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most
    };
    // Four tenants at once, three rounds each, on a budget of two connections.
    let app_ref = &app;
    let tenants_ref = &tenants;
    let load = async {
        let requests = (0..3).flat_map(|round| {
            tenants_ref.iter().map(move |t| {
                app_ref.api(
                    t,
                    Method::POST,
                    "/api/v1/projects",
                    Some(json!({"name": format!("r{round}")})),
                )
            })
        });
        for r in futures_util::future::join_all(requests).await {
            r.assert_status(201);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (most, ()) = tokio::join!(sampler, load);
    assert!(most >= 1, "the sampler saw the load");
    assert!(
        most <= 2,
        "{most} connections open at once on a server with a budget of 2"
    );
    app.finish().await;
}

#[tokio::test]
async fn purge_removes_a_deleted_tenants_data() {
    let app = TestApp::spawn().await;
    let shared = app.tenant("gone-shared", "shared", None).await;
    let keep = app.tenant("keep", "shared", None).await;
    let dedicated = app
        .tenant("gone-dedicated", "dedicated", Some("second"))
        .await;
    for t in [&shared, &keep, &dedicated] {
        app.api(
            t,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "data"})),
        )
        .await
        .assert_status(201);
    }
    for t in [&shared, &dedicated] {
        app.admin(Method::DELETE, &format!("/admin/v1/tenants/{}", t.id), None)
            .await
            .assert_status(204);
    }
    let tenancy = &app.app.tenancy;
    let deleted = tenancy
        .catalog
        .tenants_in_status(tenancy::catalog::TenantStatus::Deleted)
        .await
        .expect("list");
    assert_eq!(deleted.len(), 2);
    for t in &deleted {
        tenancy.provisioner.purge(t).await.expect("purge");
    }
    let owner = app.shared_owner().await;
    let rows: i64 = owner
        .query_one("SELECT count(*) FROM projects", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1, "only the kept tenant's project remains");
    let second = connect(&clusters().second.url("postgres")).await;
    let db = format!(
        "tenant_{}",
        uuid::Uuid::parse_str(&dedicated.id).expect("uuid").simple()
    );
    let exists = second
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .expect("query");
    assert!(exists.is_none(), "the dedicated database is dropped");
    assert!(
        tenancy
            .catalog
            .tenants_in_status(tenancy::catalog::TenantStatus::Deleted)
            .await
            .expect("list")
            .is_empty()
    );
    app.api(&keep, Method::GET, "/api/v1/projects", None)
        .await
        .assert_status(200);
    app.finish().await;
}
