//! Feature flags through the real router: strict authoring and lenient import, tenant targeting
//! and stickiness, kill switches (global, per tenant), tenant opt-in, audit of every change, and a
//! disable seen by a second platform process within a second.

use std::time::{Duration, Instant};

use axum::http::Method;
use platform_tests::app::TestApp;
use platform_tests::requests::TestResponse;
use serde_json::{Value, json};

async fn flag_op(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> TestResponse {
    app.admin(method, path, body).await
}

fn toggle<'a>(r: &'a TestResponse, name: &str) -> &'a Value {
    r.body["toggles"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no toggle {name} in {}", r.text))
}

fn on(r: &TestResponse, name: &str) -> bool {
    toggle(r, name)["enabled"]
        .as_bool()
        .expect("enabled is a boolean")
}

async fn evaluate(app: &TestApp, context: Value, toggles: &[&str]) -> TestResponse {
    let r = flag_op(
        app,
        Method::POST,
        "/admin/v1/flags/evaluate",
        Some(json!({"context": context, "toggles": toggles})),
    )
    .await;
    r.assert_status(200);
    r
}

#[tokio::test]
async fn authoring_is_strict_import_is_lenient_and_every_change_is_audited() {
    let app = TestApp::spawn().await;
    // Strict: unknown operator, weights not summing to 1000, a dependency cycle, a reserved name.
    for (body, why) in [
        (
            json!({"name": "f", "enabled": true, "strategies": [{"name": "default",
                "constraints": [{"contextName": "userId", "operator": "LIKE", "values": ["1"]}]}]}),
            "LIKE",
        ),
        (
            json!({"name": "f", "enabled": true, "variants": [
                {"name": "a", "weight": 500}, {"name": "b", "weight": 400}]}),
            "1000",
        ),
        (
            json!({"name": "f", "enabled": true, "strategies": [{"name": "noSuchStrategy"}]}),
            "noSuchStrategy",
        ),
        (json!({"name": "import", "enabled": true}), "reserved"),
    ] {
        let r = flag_op(&app, Method::POST, "/admin/v1/flags", Some(body)).await;
        r.assert_problem(422);
        assert!(r.str("detail").contains(why), "{}", r.text);
    }
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags",
        Some(json!({"name": "a", "enabled": true, "dependencies": [{"feature": "b"}]})),
    )
    .await
    .assert_status(201);
    let r = flag_op(
        &app,
        Method::PUT,
        "/admin/v1/flags/b",
        Some(json!({"enabled": true, "dependencies": [{"feature": "a"}]})),
    )
    .await;
    r.assert_problem(422);
    assert!(r.str("detail").contains("cycle"), "{}", r.text);
    // The same duplicate name is a conflict, and a body naming another flag is refused.
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags",
        Some(json!({"name": "a", "enabled": false})),
    )
    .await
    .assert_problem(409);
    flag_op(
        &app,
        Method::PUT,
        "/admin/v1/flags/a",
        Some(json!({"name": "z", "enabled": false})),
    )
    .await
    .assert_problem(422);

    // Lenient import (an Unleash document with an unknown operator and a cycle): accepted, and
    // what Unleash cannot evaluate is off.
    let doc = json!({"version": 2, "features": [
        {"name": "odd", "enabled": true, "strategies": [{"name": "default",
            "constraints": [{"contextName": "userId", "operator": "LIKE", "values": ["1"]}]}]},
        {"name": "plain", "enabled": true, "strategies": [{"name": "default"}]},
        {"name": "c1", "enabled": true, "dependencies": [{"feature": "c2"}]},
        {"name": "c2", "enabled": true, "dependencies": [{"feature": "c1"}]}
    ], "segments": []});
    let r = flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/import",
        Some(doc.clone()),
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.body["flags"], 4);
    let r = evaluate(&app, json!({"userId": "1"}), &["odd", "plain", "c1", "a"]).await;
    assert!(!on(&r, "odd"), "an unknown operator evaluates to false");
    assert!(on(&r, "plain"));
    assert!(!on(&r, "c1"), "a dependency cycle evaluates to false");
    // `a` depends on `b`, which does not exist.
    assert!(!on(&r, "a"));
    // The stored definition round-trips the unknown operator as given.
    let r = flag_op(&app, Method::GET, "/admin/v1/flags/odd", None).await;
    r.assert_status(200);
    assert_eq!(
        r.body["definition"]["strategies"][0]["constraints"][0]["operator"],
        "LIKE"
    );
    // Replace mode leaves exactly the document's flags; the delta format imports too.
    let r = flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/import?mode=replace",
        Some(json!({"version": 2, "features": [{"name": "plain", "enabled": false}]})),
    )
    .await;
    r.assert_status(200);
    let r = flag_op(&app, Method::GET, "/admin/v1/flags", None).await;
    let names: Vec<&str> = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["definition"]["name"].as_str())
        .collect();
    assert_eq!(names, ["plain"]);
    let delta = json!({"events": [
        {"eventId": 1, "type": "feature-updated", "feature": {"name": "d", "enabled": true, "strategies": [{"name": "default"}]}},
        {"eventId": 2, "type": "feature-removed", "featureName": "plain", "project": "default"}
    ]});
    flag_op(&app, Method::POST, "/admin/v1/flags/import", Some(delta))
        .await
        .assert_status(200);
    let r = evaluate(&app, json!({}), &["d", "plain"]).await;
    assert!(on(&r, "d"));
    assert!(!on(&r, "plain"));
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/import?mode=sideways",
        Some(json!({"features": []})),
    )
    .await
    .assert_problem(400);
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/import",
        Some(json!({"nothing": []})),
    )
    .await
    .assert_problem(422);

    // Audited: who, what, before and after.
    flag_op(&app, Method::POST, "/admin/v1/flags/d/disable", None)
        .await
        .assert_status(204);
    let r = app
        .operator()
        .audit_events("action=flag.updated&target=production/d")
        .await;
    r.assert_status(200);
    let events = r.body["items"].as_array().expect("items");
    let e = events
        .first()
        .unwrap_or_else(|| panic!("no audit event: {}", r.text));
    assert_eq!(e["actor_type"], "operator", "{e}");
    let summary = &e["summary"];
    assert_eq!(summary["before"]["enabled"], true, "{e}");
    assert_eq!(summary["after"]["enabled"], false, "{e}");
    app.finish().await;
}

#[tokio::test]
async fn tenants_are_targeted_by_id_plan_and_placement_and_stick_together() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha", "shared", None).await;
    let b = app.tenant("bravo", "dedicated", Some("second")).await;
    let ua = app.user(&a, "ana@alpha.test", "member").await;
    let ub = app.user(&b, "bob@bravo.test", "member").await;
    let doc = json!({"version": 2, "features": [
        {"name": "only-alpha", "enabled": true, "strategies": [{"name": "tenantIds", "parameters": {"tenantIds": a.id}}]},
        {"name": "plan-test", "enabled": true, "strategies": [{"name": "tenantPlan", "parameters": {"plans": "test"}}]},
        {"name": "plan-pro", "enabled": true, "strategies": [{"name": "tenantPlan", "parameters": {"plans": "pro"}}]},
        {"name": "dedicated-only", "enabled": true, "strategies": [{"name": "tenantPlacement", "parameters": {"placements": "dedicated"}}]},
        {"name": "half-of-tenants", "enabled": true, "strategies": [{"name": "flexibleRollout",
            "parameters": {"rollout": "50", "stickiness": "tenantId", "groupId": "half"}}]}
    ]});
    flag_op(&app, Method::POST, "/admin/v1/flags/import", Some(doc))
        .await
        .assert_status(200);
    let ra = ua.api.get("/api/v1/flags").await;
    ra.assert_status(200);
    let rb = ub.api.get("/api/v1/flags").await;
    rb.assert_status(200);
    assert!(on(&ra, "only-alpha") && !on(&rb, "only-alpha"));
    assert!(on(&ra, "plan-test") && on(&rb, "plan-test"));
    assert!(!on(&ra, "plan-pro") && !on(&rb, "plan-pro"));
    assert!(!on(&ra, "dedicated-only") && on(&rb, "dedicated-only"));
    // API keys are not users: the front-end listing is for signed-in users.
    a.api.get("/api/v1/flags").await.assert_problem(403);

    // Stickiness on the tenant: every user of one tenant lands on the same side.
    for tenant in ["t-1", "t-2", "t-3", "t-4", "t-5", "t-6"] {
        let mut sides = std::collections::BTreeSet::new();
        for user in 0..40 {
            let r = evaluate(
                &app,
                json!({"userId": format!("u{user}"), "properties": {"tenantId": tenant}}),
                &["half-of-tenants"],
            )
            .await;
            sides.insert(on(&r, "half-of-tenants"));
        }
        assert_eq!(sides.len(), 1, "tenant {tenant}'s users split: {sides:?}");
    }
    app.finish().await;
}

#[tokio::test]
async fn kill_switches_turn_flags_off_globally_and_per_tenant_and_tenants_opt_in() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha", "shared", None).await;
    let b = app.tenant("bravo", "shared", None).await;
    let admin_a = app.user(&a, "admin@alpha.test", "admin").await;
    let member_a = app.user(&a, "member@alpha.test", "member").await;
    let ub = app.user(&b, "bob@bravo.test", "member").await;
    let doc = json!({"version": 2, "features": [
        {"name": "new-ui", "type": "release", "enabled": true, "strategies": [{"name": "default"}]},
        {"name": "trial", "type": "experiment", "enabled": true, "strategies": [{"name": "default"}]},
        {"name": "maintenance", "type": "operational", "enabled": true, "strategies": [{"name": "default"}]},
        {"name": "beta", "type": "release", "enabled": true, "tenantOptIn": true,
            "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "0", "stickiness": "default", "groupId": "beta"}}]}
    ]});
    flag_op(&app, Method::POST, "/admin/v1/flags/import", Some(doc))
        .await
        .assert_status(200);

    // Per tenant: off for alpha only.
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/new-ui/disable",
        Some(json!({"tenant": a.id})),
    )
    .await
    .assert_status(204);
    assert!(!on(&member_a.api.get("/api/v1/flags").await, "new-ui"));
    assert!(on(&ub.api.get("/api/v1/flags").await, "new-ui"));
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/new-ui/enable",
        Some(json!({"tenant": a.id})),
    )
    .await
    .assert_status(204);
    assert!(on(&member_a.api.get("/api/v1/flags").await, "new-ui"));
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/new-ui/disable",
        Some(json!({"tenant": "not-a-uuid"})),
    )
    .await
    .assert_problem(422);
    flag_op(&app, Method::POST, "/admin/v1/flags/nope/disable", None)
        .await
        .assert_problem(404);

    // Global kill switch: experiment and release flags off, ops flags stay; lifted: back.
    let r = flag_op(&app, Method::POST, "/admin/v1/flags/kill-switch", None).await;
    r.assert_status(200);
    assert_eq!(r.body["engaged"], true);
    let r = ub.api.get("/api/v1/flags").await;
    assert!(!on(&r, "new-ui") && !on(&r, "trial") && on(&r, "maintenance"));
    flag_op(&app, Method::DELETE, "/admin/v1/flags/kill-switch", None)
        .await
        .assert_status(200);
    let r = ub.api.get("/api/v1/flags").await;
    assert!(on(&r, "new-ui") && on(&r, "trial"));

    // Opt-in where the flag allows it, by a tenant admin only, for their tenant only.
    assert!(!on(&member_a.api.get("/api/v1/flags").await, "beta"));
    member_a
        .api
        .put("/api/v1/flags/beta/choice", json!({"choice": "in"}))
        .await
        .assert_problem(403);
    admin_a
        .api
        .put("/api/v1/flags/beta/choice", json!({"choice": "in"}))
        .await
        .assert_status(204);
    assert!(on(&member_a.api.get("/api/v1/flags").await, "beta"));
    assert!(!on(&ub.api.get("/api/v1/flags").await, "beta"));
    admin_a
        .api
        .put("/api/v1/flags/new-ui/choice", json!({"choice": "out"}))
        .await
        .assert_problem(422);
    admin_a
        .api
        .put("/api/v1/flags/beta/choice", json!({"choice": "maybe"}))
        .await
        .assert_problem(422);
    // An operator's per-tenant disable wins over the tenant's opt-in.
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags/beta/disable",
        Some(json!({"tenant": a.id})),
    )
    .await
    .assert_status(204);
    assert!(!on(&member_a.api.get("/api/v1/flags").await, "beta"));
    app.finish().await;
}

#[tokio::test]
async fn a_disable_reaches_a_second_platform_process_within_a_second() {
    let app = TestApp::spawn().await;
    flag_op(
        &app,
        Method::POST,
        "/admin/v1/flags",
        Some(json!({"name": "checkout", "enabled": true, "strategies": [{"name": "default"}]})),
    )
    .await
    .assert_status(201);
    let other = platform_tests::process::Platform::start(&app).await;
    let is_on = |body: &Value| body["toggles"][0]["enabled"].as_bool();
    let ask = || {
        other.post(
            "/admin/v1/flags/evaluate",
            json!({"context": {}, "toggles": ["checkout"]}),
        )
    };
    assert_eq!(is_on(&ask().await), Some(true));
    flag_op(&app, Method::POST, "/admin/v1/flags/checkout/disable", None)
        .await
        .assert_status(204);
    let disabled_at = Instant::now();
    loop {
        if is_on(&ask().await) == Some(false) {
            break;
        }
        assert!(
            disabled_at.elapsed() < Duration::from_secs(1),
            "the second process still evaluates the flag as on after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other.stop().await;
    app.finish().await;
}
