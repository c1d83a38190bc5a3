//! The reference domain (projects and tasks) end to end, for a shared and a dedicated tenant,
//! through the tenant's subdomain and through its API key alone.

use axum::http::Method;
use platform_tests::{Client, Req, TestApp, TestTenant};
use serde_json::json;

async fn crud_round_trip(app: &TestApp, t: &TestTenant, via_host: bool) {
    // Through the subdomain, or with the key alone (the key names its tenant).
    let api = Client::new(
        app.router(),
        via_host.then(|| t.host()),
        Some(t.key.clone()),
    );
    let p = api
        .post(
            "/api/v1/projects",
            json!({"name": "Launch", "description": "Q3"}),
        )
        .await;
    p.assert_status(201);
    let pid = p.str("id");
    assert_eq!(p.body["description"], "Q3");
    api.project(&pid).await.assert_status(200);
    let patched = api
        .patch(
            &format!("/api/v1/projects/{pid}"),
            json!({"name": "Launch v2", "description": null}),
        )
        .await;
    patched.assert_status(200);
    assert_eq!(patched.str("name"), "Launch v2");
    assert!(patched.body["description"].is_null());

    let mut task_ids = Vec::new();
    for i in 0..3 {
        let task = api.create_task(&pid, &format!("task {i}")).await;
        task.assert_status(201);
        assert_eq!(task.str("status"), "todo");
        task_ids.push(task.str("id"));
    }
    let page1 = api
        .get(&format!("/api/v1/projects/{pid}/tasks?limit=2"))
        .await;
    page1.assert_status(200);
    assert_eq!(page1.body["items"].as_array().map(Vec::len), Some(2));
    let cursor = page1.str("next_cursor");
    let page2 = api
        .get(&format!(
            "/api/v1/projects/{pid}/tasks?limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(page2.body["items"].as_array().map(Vec::len), Some(1));
    assert!(page2.body["next_cursor"].is_null());

    let tid = &task_ids[0];
    let done = api.update_task(&pid, tid, json!({"status": "done"})).await;
    done.assert_status(200);
    assert_eq!(done.str("status"), "done");
    assert_eq!(api.task(&pid, tid).await.str("status"), "done");
    api.delete_task(&pid, tid).await.assert_status(204);
    api.task(&pid, tid).await.assert_problem(404);
    // A task under another (unknown) project is not found.
    let stranger = uuid::Uuid::now_v7().to_string();
    api.task(&stranger, &task_ids[1]).await.assert_problem(404);
    api.create_task(&stranger, "x").await.assert_problem(404);

    // Deleting the project deletes its tasks.
    api.delete_project(&pid).await.assert_status(204);
    api.project(&pid).await.assert_problem(404);
    api.tasks(&pid).await.assert_problem(404);
}

#[tokio::test]
async fn shared_tenant_crud_via_subdomain_and_via_key() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    crud_round_trip(&app, &t, true).await;
    crud_round_trip(&app, &t, false).await;
    app.finish().await;
}

#[tokio::test]
async fn dedicated_tenant_crud_via_subdomain_and_via_key() {
    let app = TestApp::spawn().await;
    let t = app.tenant("bigco", "dedicated", Some("second")).await;
    crud_round_trip(&app, &t, true).await;
    crud_round_trip(&app, &t, false).await;
    // The rows are in its own database, not in the shared one.
    app.api(
        &t,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "kept"})),
    )
    .await
    .assert_status(201);
    let owner = app.shared_owner().await;
    let n: i64 = owner
        .query_one("SELECT count(*) FROM projects", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    app.finish().await;
}

#[tokio::test]
async fn the_host_selects_but_never_grants() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let r = app
        .send(Req::new(Method::GET, "/api/v1/projects").host(t.host()))
        .await;
    r.assert_problem(401);
    app.send(
        Req::new(Method::GET, "/api/v1/projects")
            .host(t.host())
            .bearer("garbage"),
    )
    .await
    .assert_problem(401);
    app.send(Req::new(Method::GET, "/api/v1/projects"))
        .await
        .assert_problem(404);
    app.finish().await;
}
