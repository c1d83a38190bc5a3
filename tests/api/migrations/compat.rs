//! Code and schema versions: a tenant below the minimum waits for its migration; the current code works one migration ahead.

use super::*;

#[tokio::test]
async fn a_tenant_below_the_minimum_version_gets_503_until_migrated() {
    let app = TestApp::spawn().await;
    let dedicated = app.tenant("behind", "dedicated", Some("second")).await;
    let shared = app.tenant("behind-too", "shared", None).await;
    // A newer build that needs version 6 (head + 1), deployed before the fleet is migrated.
    let newer = app.instance_requiring_schema(ahead()).await;
    for t in [&dedicated, &shared] {
        let r = Req::new(Method::GET, "/api/v1/projects")
            .host(t.host())
            .bearer(&t.key)
            .send(&newer.router)
            .await;
        r.assert_problem(503);
        assert_eq!(r.body["type"], "/problems/tenant-schema-behind");
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    }
    // The current build still serves them.
    app.api(&dedicated, Method::GET, "/api/v1/projects", None)
        .await
        .assert_status(200);

    let report = run(&app, ahead(), &opts()).await;
    assert!(report.succeeded(), "{report:?}");
    // The catalog notification refreshes the newer instance's cached tenant records.
    for t in [&dedicated, &shared] {
        let served = eventually(Duration::from_secs(5), || async {
            Req::new(Method::GET, "/api/v1/projects")
                .host(t.host())
                .bearer(&t.key)
                .send(&newer.router)
                .await
                .status
                .as_u16()
                == 200
        })
        .await;
        assert!(served.is_some(), "{} still refused after migrating", t.slug);
    }
    drop(newer);
    app.finish().await;
}

#[tokio::test]
async fn the_current_code_works_on_a_database_one_migration_ahead() {
    let app = TestApp::spawn().await;
    let dedicated = app.tenant("ahead", "dedicated", Some("local")).await;
    let shared = app.tenant("ahead-shared", "shared", None).await;
    let report = run(&app, ahead(), &opts()).await;
    assert!(report.succeeded(), "{report:?}");
    for t in [&dedicated, &shared] {
        assert_eq!(app.schema_version(t).await, ahead());
        let project = app
            .api(
                t,
                Method::POST,
                "/api/v1/projects",
                Some(json!({"name": "Ahead", "description": "on N+1"})),
            )
            .await;
        project.assert_status(201);
        let pid = project.str("id");
        app.api(
            t,
            Method::PATCH,
            &format!("/api/v1/projects/{pid}"),
            Some(json!({"name": "Renamed"})),
        )
        .await
        .assert_status(200);
        let task = app
            .api(
                t,
                Method::POST,
                &format!("/api/v1/projects/{pid}/tasks"),
                Some(json!({"title": "works"})),
            )
            .await;
        task.assert_status(201);
        let list = app.api(t, Method::GET, "/api/v1/projects", None).await;
        list.assert_status(200);
        assert_eq!(list.body["items"][0]["name"], "Renamed", "{}", list.text);
        app.api(
            t,
            Method::GET,
            &format!("/api/v1/projects/{pid}/tasks"),
            None,
        )
        .await
        .assert_status(200);
        app.api(t, Method::DELETE, &format!("/api/v1/projects/{pid}"), None)
            .await
            .assert_status(204);
    }
    // And a new dedicated tenant still provisions (to this build's head) beside them.
    let fresh = app.tenant("fresh", "dedicated", Some("local")).await;
    assert_eq!(app.recorded_version(&fresh).await, Some(head()));
    app.finish().await;
}
