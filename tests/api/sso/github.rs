//! GitHub login takes the primary verified email only.

use super::*;

#[tokio::test]
async fn github_login_takes_the_primary_verified_email_only() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let callback = format!("https://{}/sso/github/callback", t.host());
    // oidc-provider as a GitHub Enterprise Server (see tests/peers/oidc/server.mjs).
    let peer = OidcPeer::start(
        json!([{
            "client_id": "gh-app",
            "client_secret": "gh-secret",
            "redirect_uris": [callback],
            "token_endpoint_auth_method": "client_secret_post",
        }]),
        json!({
            "octocat": {"github_id": 583_231, "name": "The Octocat", "github_emails": [
                {"email": "octo@private.test", "primary": false, "verified": true},
                {"email": "octocat@acme.test", "primary": true, "verified": true},
            ]},
            "unverified-cat": {"github_id": 2, "github_emails": [
                {"email": "cat@acme.test", "primary": true, "verified": false},
                {"email": "cat@other.test", "primary": false, "verified": true},
            ]},
        }),
    )
    .await;
    app.verified_domain(&t, "acme.test").await;
    let conn = as_user(
        &app,
        &t,
        &admin.access,
        Method::POST,
        "/api/v1/sso/connections",
        Some(
            json!({"kind": "github", "name": "GitHub", "client_id": "gh-app",
                    "client_secret": "gh-secret", "github_base_url": peer.issuer}),
        ),
    )
    .await;
    conn.assert_status(201);
    assert_eq!(conn.body["github"]["redirect_uri"], callback.as_str());
    assert_eq!(
        conn.body["login_path"],
        format!("/sso/github/login?connection={}", conn.str("id"))
    );
    let login_as = |account: &'static str| {
        let (app, t, conn, callback) = (&app, &t, &conn, &callback);
        async move {
            let start = app
                .send(Req::new(Method::GET, conn.str("login_path")).host(t.host()))
                .await;
            start.assert_status(303);
            let to = start.headers["location"]
                .to_str()
                .expect("location")
                .to_owned();
            assert!(to.contains("/login/oauth/authorize?"), "{to}");
            let back = Browser::new().oidc_login(&to, account, callback).await;
            let path = back
                .strip_prefix(&format!("https://{}", t.host()))
                .expect("ours")
                .to_owned();
            app.send(Req::new(Method::GET, &path).host(t.host())).await
        }
    };
    let r = login_as("octocat").await;
    r.assert_status(200);
    let me = whoami(&app, &t, &r.str("access_token")).await;
    assert_eq!(me.str("email"), "octocat@acme.test");
    assert_eq!(me.str("name"), "The Octocat");
    assert_eq!(me.body["email_verified"], true);

    let before = events(&app, &t, "sso.rejected").await.len();
    let r = login_as("unverified-cat").await;
    assert_refused(&app, &t, &r, before, "no_email").await;
    app.finish().await;
}
