//! Hole 2: a delegated permission never leads to admin. Every way a role reaches a principal
//! (a user's role, a custom role's permissions, an API key, an invitation, an SSO connection's
//! default role and role mapping) refuses a role whose permissions the actor does not hold; an
//! API key's default role is `viewer` (or the creator's own role if narrower), never `admin`.

use platform_tests::{TestApp, TestTenant, TestUser};
use serde_json::json;

/// A user of `t` holding a custom role with exactly `permissions`.
async fn delegate(app: &TestApp, t: &TestTenant, role: &str, permissions: &[&str]) -> TestUser {
    t.api
        .create_role(role, permissions)
        .await
        .assert_status(201);
    app.user(t, &format!("{role}@acme.test"), role).await
}

#[tokio::test]
async fn a_members_manager_cannot_make_anyone_admin() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let d = delegate(&app, &t, "people", &["members:manage", "users:read"]).await;
    // The victim's current role is within the delegate's, so only the new role can be refused.
    t.api
        .create_role("reader", &["users:read"])
        .await
        .assert_status(201);
    let victim = app.user(&t, "v@acme.test", "reader").await;
    let admin = app.user(&t, "a@acme.test", "admin").await;

    for role in ["admin", "owner", "member", "viewer"] {
        let r = d.api.set_role(&victim.id, role).await;
        r.assert_problem(403);
        let r = d.api.set_role(&d.id, role).await;
        r.assert_problem(403);
    }
    // Nor take a stronger principal's role away (a demotion is a grant over that user).
    d.api
        .set_role(&admin.id, "viewer")
        .await
        .assert_problem(403);
    // Invitations: the same rule.
    for role in ["admin", "member"] {
        d.api
            .invite(&format!("new-{role}@acme.test"), role)
            .await
            .assert_problem(403);
    }
    // What the delegate holds, it may give.
    d.api
        .set_role(&victim.id, "people")
        .await
        .assert_status(200);
    d.api
        .invite("p@acme.test", "people")
        .await
        .assert_status(201);
    // The operator is exempt: it makes the first owner.
    app.operator()
        .invite(&t.id, "boss@acme.test", "admin")
        .await
        .assert_status(201);
    app.finish().await;
}

#[tokio::test]
async fn a_key_manager_mints_no_admin_key_and_keys_default_to_the_narrowest_role() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let k = delegate(&app, &t, "keys", &["api_keys:manage", "projects:read"]).await;
    for role in ["admin", "owner", "member"] {
        k.api
            .create_api_key(json!({"name": "x", "role": role}))
            .await
            .assert_problem(403);
    }
    // No role: the creator's own role, narrower than `viewer` here; never `admin`.
    let own = k.api.create_api_key(json!({"name": "default"})).await;
    own.assert_status(201);
    assert_eq!(own.str("role"), "keys", "{}", own.text);
    let key = t.with_key(&own.str("key"));
    key.api.users().await.assert_problem(403);

    // An admin's key with no role is a `viewer` key.
    let a = app.user(&t, "a@acme.test", "admin").await;
    let viewer = a.api.create_api_key(json!({"name": "ci"})).await;
    viewer.assert_status(201);
    assert_eq!(viewer.str("role"), "viewer", "{}", viewer.text);
    // So is the operator's.
    let op = app
        .operator()
        .create_api_key(&t.id, json!({"name": "ops"}))
        .await;
    op.assert_status(201);
    assert_eq!(op.str("role"), "viewer", "{}", op.text);
    app.finish().await;
}

#[tokio::test]
async fn a_role_manager_cannot_widen_a_role_beyond_its_own() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let r = delegate(&app, &t, "roler", &["roles:manage", "users:read"]).await;
    r.api
        .create_role("escalate", &["roles:manage", "members:manage"])
        .await
        .assert_problem(403);
    let mine = r.api.create_role("mine", &["users:read"]).await;
    mine.assert_status(201);
    r.api
        .update_role(&mine.str("id"), &["users:read", "sso:manage"])
        .await
        .assert_problem(403);
    app.finish().await;
}

#[tokio::test]
async fn an_sso_manager_cannot_map_identities_to_admin() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let s = delegate(&app, &t, "ssoer", &["sso:manage", "users:read"]).await;
    let body = |extra: serde_json::Value| {
        let mut b = json!({"kind": "oidc", "name": "corp", "issuer": "http://127.0.0.1:9",
                           "client_id": "c", "default_role": "ssoer"});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        b
    };
    s.api
        .create_sso_connection(body(json!({"default_role": "admin"})))
        .await
        .assert_problem(403);
    s.api
        .create_sso_connection(body(json!({"role_attribute": "groups",
            "role_mapping": [{"value": "it", "role": "admin"}]})))
        .await
        .assert_problem(403);
    // Without a default role, a connection would hand out `member`, which this actor lacks.
    s.api
        .create_sso_connection(
            json!({"kind": "oidc", "name": "corp", "issuer": "http://127.0.0.1:9",
                                      "client_id": "c"}),
        )
        .await
        .assert_problem(403);
    let ok = s.api.create_sso_connection(body(json!({}))).await;
    ok.assert_status(201);
    s.api
        .update_sso_connection(&ok.str("id"), json!({"default_role": "admin"}))
        .await
        .assert_problem(403);
    app.finish().await;
}
