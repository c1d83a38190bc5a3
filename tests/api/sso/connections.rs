//! SSO connections are validated, tenant-scoped, and cannot reach private networks by default.

use super::*;

#[tokio::test]
async fn connections_are_validated_and_tenant_scoped() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let other = app.tenant("globex", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let post = |body: Value| {
        as_user(
            &app,
            &t,
            &admin.access,
            Method::POST,
            "/api/v1/sso/connections",
            Some(body),
        )
    };
    post(json!({"kind": "saml", "name": "x", "idp_metadata_xml": "<not-metadata/>"}))
        .await
        .assert_problem(422);
    post(json!({"kind": "oidc", "name": "x", "issuer": "http://evil.example", "client_id": "c"}))
        .await
        .assert_problem(422);
    // (An issuer the test policy accepts, so the role is what is refused.)
    let owner = post(json!({"kind": "oidc", "name": "x", "issuer": "http://127.0.0.1:9", "client_id": "c", "default_role": "owner"}))
        .await;
    owner.assert_problem(422);
    assert!(owner.text.contains("owner"), "{}", owner.text);
    post(json!({"kind": "ldap", "name": "x"}))
        .await
        .assert_problem(422);
    let google = post(
        json!({"kind": "google", "name": "Google", "client_id": "g.apps", "client_secret": "x"}),
    )
    .await;
    google.assert_status(201);
    assert_eq!(google.body["oidc"]["issuer"], "https://accounts.google.com");
    assert_eq!(google.body["oidc"]["preset"], "google");
    let id = google.str("id");
    // Another tenant cannot see it, even with a valid key of its own.
    app.api(
        &other,
        Method::GET,
        &format!("/api/v1/sso/connections/{id}"),
        None,
    )
    .await
    .assert_problem(404);
    let patched = as_user(
        &app,
        &t,
        &admin.access,
        Method::PATCH,
        &format!("/api/v1/sso/connections/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    patched.assert_status(200);
    assert_eq!(patched.body["enabled"], false);
    // A disabled connection cannot start a login.
    let r = app
        .send(Req::new(Method::GET, format!("/sso/oidc/login?connection={id}")).host(t.host()))
        .await;
    r.assert_problem(403);
    as_user(
        &app,
        &t,
        &admin.access,
        Method::DELETE,
        &format!("/api/v1/sso/connections/{id}"),
        None,
    )
    .await
    .assert_status(204);
    app.finish().await;
}

#[tokio::test]
async fn tenant_configured_urls_cannot_reach_private_networks_by_default() {
    // The production default: no private or loopback addresses for tenant-configured URLs.
    let app = TestApp::spawn_with(&[("PLATFORM_SSO_ALLOW_PRIVATE_NETWORKS", "false")]).await;
    let t = app.tenant("ssrf", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@ssrf.test", "admin").await;
    // Loopback (where the other tests' identity providers listen), the cloud metadata endpoint,
    // private networks, by address, by a mapped IPv6 address and by name.
    for body in [
        json!({"kind": "oidc", "name": "a", "issuer": "http://127.0.0.1:8080", "client_id": "c"}),
        json!({"kind": "oidc", "name": "b", "issuer": "https://169.254.169.254/latest", "client_id": "c"}),
        json!({"kind": "oidc", "name": "c", "issuer": "https://[::ffff:10.0.0.1]/", "client_id": "c"}),
        json!({"kind": "oidc", "name": "d", "issuer": "https://localhost/", "client_id": "c"}),
        json!({"kind": "saml", "name": "e", "idp_metadata_url": "http://localhost:8080/metadata"}),
        json!({"kind": "saml", "name": "f", "idp_metadata_url": "https://127.0.0.1:5432/"}),
        json!({"kind": "github", "name": "g", "client_id": "c", "client_secret": "s",
               "github_base_url": "https://192.168.0.10"}),
    ] {
        let r = as_user(
            &app,
            &t,
            &admin.access,
            Method::POST,
            "/api/v1/sso/connections",
            Some(body.clone()),
        )
        .await;
        r.assert_problem(422);
        assert!(
            r.text.contains("non-public address") || r.text.contains("must be an https URL"),
            "{body}: {}",
            r.text
        );
    }
    // Nothing was stored.
    let list = as_user(
        &app,
        &t,
        &admin.access,
        Method::GET,
        "/api/v1/sso/connections",
        None,
    )
    .await;
    list.assert_status(200);
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.text
    );
    app.finish().await;
}
