//! The operators' job API: list with filters, retry, discard, pause and resume a kind.

use axum::http::Method;

use super::*;

#[tokio::test]
async fn operators_list_retry_discard_pause_and_resume_jobs() {
    let app = TestApp::spawn().await;
    let a = app.tenant("adm", "shared", None).await;
    let runs = Runs::default();
    // Paused before the worker starts: it never claims the kind.
    app.admin(Method::POST, "/admin/v1/jobs/kinds/test.record/pause", None)
        .await
        .assert_status(200);
    let _w = start_worker(&app, &runs, WorkerConfig::default());

    // A dead job, listed with its last error.
    let dead = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.fail"), serde_json::json!({})).max_attempts(1),
    )
    .await
    .expect("id");
    wait_state(&app, dead, "dead").await;
    let list = app
        .admin(
            Method::GET,
            &format!("/admin/v1/jobs?tenant={}&state=dead&kind=test.fail", a.id),
            None,
        )
        .await;
    list.assert_status(200);
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", list.text);
    let item = &items[0];
    assert_eq!(item["id"], dead.to_string());
    assert_eq!(item["tenant_id"], a.id);
    assert_eq!(item["kind"], "test.fail");
    assert_eq!(item["state"], "dead");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["last_error"], "boom on purpose");
    assert!(item["run_at"].is_string());

    // Retry: it runs again (and fails again: one more attempt).
    let r = app
        .admin(Method::POST, &format!("/admin/v1/jobs/{dead}/retry"), None)
        .await;
    r.assert_status(200);
    assert_eq!(r.body["state"], "pending");
    let again = eventually(Duration::from_secs(30), || async {
        runs.all().iter().filter(|x| x.job == dead).count() == 2
    })
    .await;
    assert!(again.is_some(), "the retried job did not run again");
    wait_state(&app, dead, "dead").await;

    // The paused kind stays pending while the other runs; resumed, it runs.
    let held = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.record"), serde_json::json!({})),
    )
    .await
    .expect("id");
    let other = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.noop"), serde_json::json!({})),
    )
    .await
    .expect("id");
    wait_state(&app, other, "succeeded").await;
    assert_eq!(state_of(&app, held).await.as_deref(), Some("pending"));
    app.admin(
        Method::POST,
        "/admin/v1/jobs/kinds/test.record/resume",
        None,
    )
    .await
    .assert_status(200);
    wait_state(&app, held, "succeeded").await;

    // Discard a job scheduled for later: cancelled, and never run; twice is a conflict.
    let later = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.record"), serde_json::json!({}))
            .run_at(OffsetDateTime::now_utc() + Duration::from_secs(3600)),
    )
    .await
    .expect("id");
    let d = app
        .admin(
            Method::POST,
            &format!("/admin/v1/jobs/{later}/discard"),
            None,
        )
        .await;
    d.assert_status(200);
    assert_eq!(d.body["state"], "cancelled");
    app.admin(
        Method::POST,
        &format!("/admin/v1/jobs/{later}/discard"),
        None,
    )
    .await
    .assert_status(409);
    // A succeeded job cannot be retried.
    app.admin(
        Method::POST,
        &format!("/admin/v1/jobs/{other}/retry?tenant={}", a.id),
        None,
    )
    .await
    .assert_status(409);

    // Listing across tenants pages with a cursor.
    let p1 = app.admin(Method::GET, "/admin/v1/jobs?limit=2", None).await;
    p1.assert_status(200);
    assert_eq!(p1.body["items"].as_array().expect("items").len(), 2);
    let cursor = p1.body["next_cursor"].as_str().expect("cursor").to_owned();
    let p2 = app
        .admin(
            Method::GET,
            &format!("/admin/v1/jobs?limit=100&cursor={cursor}"),
            None,
        )
        .await;
    p2.assert_status(200);
    let seen: std::collections::HashSet<String> = p1.body["items"]
        .as_array()
        .into_iter()
        .chain(p2.body["items"].as_array())
        .flatten()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(seen.len(), 4, "{} {}", p1.text, p2.text);
    app.finish().await;
}

#[tokio::test]
async fn bad_job_requests_get_problems_not_5xx() {
    let app = TestApp::spawn().await;
    for (method, path, status) in [
        (Method::GET, "/admin/v1/jobs?state=bogus".to_owned(), 400),
        (Method::GET, "/admin/v1/jobs?tenant=nope".to_owned(), 400),
        (
            Method::GET,
            "/admin/v1/jobs?kind=Not%20A%20Kind".to_owned(),
            400,
        ),
        (Method::GET, "/admin/v1/jobs?limit=0".to_owned(), 400),
        (Method::GET, "/admin/v1/jobs?cursor=zzz".to_owned(), 400),
        (
            Method::GET,
            format!("/admin/v1/jobs?tenant={}", uuid::Uuid::now_v7()),
            404,
        ),
        (
            Method::POST,
            "/admin/v1/jobs/not-a-uuid/retry".to_owned(),
            404,
        ),
        (
            Method::POST,
            format!("/admin/v1/jobs/{}/discard", uuid::Uuid::now_v7()),
            404,
        ),
        (
            Method::POST,
            "/admin/v1/jobs/kinds/BAD/pause".to_owned(),
            400,
        ),
    ] {
        let r = app.admin(method.clone(), &path, None).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.text);
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{path}"
        );
    }
    app.finish().await;
}

/// A tenant's owners and admins see their own tenant's jobs (never a payload, never another
/// tenant's); members do not.
#[tokio::test]
async fn a_tenant_admin_sees_the_tenants_own_jobs_only() {
    let app = TestApp::spawn().await;
    app.app.stop_jobs();
    let a = app.tenant("ownjobsa", "shared", None).await;
    let b = app.tenant("ownjobsb", "shared", None).await;
    let mine = enqueue(
        &app,
        &a,
        NewJob::new(
            kind("test.record"),
            serde_json::json!({"secret": "payload"}),
        ),
    )
    .await
    .expect("id");
    let theirs = enqueue(
        &app,
        &b,
        NewJob::new(kind("test.record"), serde_json::json!({})),
    )
    .await
    .expect("id");

    let r = a.api.get("/api/v1/jobs?state=pending").await;
    r.assert_status(200);
    let items = r.body["items"].as_array().expect("items");
    let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, [mine.to_string().as_str()], "{}", r.text);
    assert!(!r.text.contains(&theirs.to_string()));
    assert!(
        !r.text.contains("payload"),
        "a payload was shown: {}",
        r.text
    );
    assert_eq!(items[0]["kind"], "test.record");

    // Filters and pages: nothing succeeded yet; a cursor past the last job is an empty page.
    let r = a.api.get("/api/v1/jobs?state=succeeded").await;
    r.assert_status(200);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(0));
    let r = a.api.get(&format!("/api/v1/jobs?cursor={mine}")).await;
    r.assert_status(200);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(0));
    // Bad input is a 400 problem.
    for q in [
        "state=lost",
        "kind=Bad!",
        "limit=0",
        "limit=x",
        "cursor=nope",
    ] {
        a.api
            .get(&format!("/api/v1/jobs?{q}"))
            .await
            .assert_problem(400);
    }
    // A member holds no `jobs:read`.
    let member = app.user(&a, "member@ownjobsa.test", "member").await;
    member.api.get("/api/v1/jobs").await.assert_problem(403);
    app.finish().await;
}
