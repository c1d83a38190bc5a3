//! OpenID Connect login through a real provider (oidc-provider): tokens, role mapping, account linking, discovery caching and key rotation.

use super::*;

#[tokio::test]
async fn oidc_login_through_a_real_provider_gives_password_grade_tokens_and_mapped_roles() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    // The secret went in and never comes back out; it is sealed in the database.
    assert!(!conn.to_string().contains("s3cret"), "{conn}");
    assert_eq!(conn["oidc"]["has_client_secret"], true);
    assert_eq!(
        conn["oidc"]["redirect_uri"],
        format!("https://acme.localhost{CALLBACK}")
    );
    let sealed: Vec<u8> = app
        .tenant_db(&t)
        .await
        .query_one("SELECT secret_sealed FROM sso_connections", &[])
        .await
        .expect("row")
        .get(0);
    assert!(!String::from_utf8_lossy(&sealed).contains("s3cret"));
    let id = conn["id"].as_str().expect("id").to_owned();

    // Alice: verified email, mapped to admin by her groups. Tokens like a password login's.
    let (r, callback) = oidc_login(&app, &t, &id, "alice").await;
    r.assert_status(200);
    assert_eq!(r.body["token_type"], "Bearer");
    let access = r.str("access_token");
    let me = whoami(&app, &t, &access).await;
    me.assert_status(200);
    assert_eq!(me.str("email"), "alice@acme.test");
    assert_eq!(me.str("role"), "admin");
    assert_eq!(me.body["email_verified"], true);
    let sessions = as_user(&app, &t, &access, Method::GET, "/api/v1/me/sessions", None).await;
    sessions.assert_status(200);
    assert_eq!(
        sessions.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        sessions.text
    );
    let refreshed = public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/token/refresh",
        json!({"refresh_token": r.str("refresh_token")}),
    )
    .await;
    refreshed.assert_status(200);
    // An SSO-made account has no password.
    login(&app, &t, "alice@acme.test", PASSWORD)
        .await
        .assert_status(401);

    // The same callback again: the state is single-use.
    let before = events(&app, &t, "sso.rejected").await.len();
    let again = app
        .send(Req::new(Method::GET, &callback).host(t.host()))
        .await;
    assert_refused(&app, &t, &again, before, "replay").await;
    // A forged state is unknown.
    let forged = app
        .send(Req::new(Method::GET, format!("{CALLBACK}?code=abc&state=forged")).host(t.host()))
        .await;
    assert_refused(&app, &t, &forged, before + 1, "unknown_state").await;

    // Bob: no group maps, so the connection's default role; unverified email stays unverified.
    let (r, _) = oidc_login(&app, &t, &id, "bob").await;
    r.assert_status(200);
    let me = whoami(&app, &t, &r.str("access_token")).await;
    assert_eq!(me.str("role"), "viewer");
    assert_eq!(me.body["email_verified"], false);
    assert_eq!(events(&app, &t, "sso.login").await.len(), 2);
    app.finish().await;
}

#[tokio::test]
async fn an_identity_links_to_an_existing_account_only_on_a_verified_email() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let carol = user_with_role(&app, &t, "carol@acme.test", "member").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();

    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "carol-unverified").await;
    r.assert_status(403);
    assert_refused(&app, &t, &r, before, "link_refused").await;

    let (r, _) = oidc_login(&app, &t, &id, "carol-verified").await;
    r.assert_status(200);
    let me = whoami(&app, &t, &r.str("access_token")).await;
    assert_eq!(me.str("id"), carol.id, "the same account, linked");
    // Her password still works (SSO is not enforced here).
    login(&app, &t, "carol@acme.test", PASSWORD)
        .await
        .assert_status(200);
    app.finish().await;
}

#[tokio::test]
async fn discovery_is_cached_and_fetched_again_when_the_provider_rotates_its_keys() {
    let app = TestApp::spawn().await;
    let t = app.tenant("rotate", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@rotate.test", "admin").await;
    let mut peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();
    let (discovery_before, jwks_before) = peer.fetches().await;
    for _ in 0..3 {
        let (r, _) = oidc_login(&app, &t, &id, "alice").await;
        r.assert_status(200);
    }
    let (discovery, jwks) = peer.fetches().await;
    assert_eq!(
        (discovery - discovery_before, jwks - jwks_before),
        (1, 1),
        "three logins, one discovery document and one key set"
    );
    // The provider restarts with a new signing key: the cached keys no longer verify its
    // id_tokens, so the callback fetches the document again, once, and the login succeeds.
    peer.restart().await;
    let (discovery_before, jwks_before) = peer.fetches().await;
    let (r, _) = oidc_login(&app, &t, &id, "alice").await;
    r.assert_status(200);
    let (discovery, jwks) = peer.fetches().await;
    assert_eq!((discovery - discovery_before, jwks - jwks_before), (1, 1));
    app.finish().await;
}
