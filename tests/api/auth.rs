//! Auth: accounts, invitations, login, access tokens (JWT), refresh rotation and reuse detection,
//! sessions, and the helpers other auth tests share.

use std::time::Duration;

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use platform_tests::{ADMIN_TOKEN, Req, TestApp, TestResponse, TestTenant, eventually};
use serde_json::{Value, json};

pub use platform_tests::tenants::{as_user, public};
pub use platform_tests::{PASSWORD, TestUser, token_in};

/// The operator invites `email` with `role`; the invitee accepts; returns the signed-in user.
pub async fn user_with_role(app: &TestApp, t: &TestTenant, email: &str, role: &str) -> TestUser {
    app.user(t, email, role).await
}

/// A password login on the tenant's host.
pub async fn login(app: &TestApp, t: &TestTenant, email: &str, password: &str) -> TestResponse {
    app.send(
        Req::new(Method::POST, "/api/v1/auth/login")
            .host(t.host())
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

/// The messages in the tenant's outbox for `recipient`.
pub async fn outbox(app: &TestApp, recipient: &str) -> Vec<String> {
    app.outbox(recipient).await
}

async fn refresh(app: &TestApp, t: &TestTenant, token: &str) -> TestResponse {
    public(
        app,
        t,
        Method::POST,
        "/api/v1/auth/token/refresh",
        json!({"refresh_token": token}),
    )
    .await
}

#[tokio::test]
async fn signup_is_invite_only_until_the_operator_opens_it() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let body = json!({"email": "Ann@Example.com", "password": PASSWORD, "name": "Ann"});
    public(&app, &t, Method::POST, "/api/v1/auth/signup", body.clone())
        .await
        .assert_problem(403);
    let p = app
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{}", t.id),
            Some(json!({"signup": "open"})),
        )
        .await;
    p.assert_status(200);
    assert_eq!(p.str("signup"), "open");
    let s = public(&app, &t, Method::POST, "/api/v1/auth/signup", body.clone()).await;
    s.assert_status(201);
    assert_eq!(s.str("token_type"), "Bearer");
    let me = as_user(
        &app,
        &t,
        &s.str("access_token"),
        Method::GET,
        "/api/v1/me",
        None,
    )
    .await;
    me.assert_status(200);
    assert_eq!(me.str("role"), "member");
    assert_eq!(me.str("email"), "ann@example.com");
    assert_eq!(me.body["email_verified"], json!(false));
    // The same address again: conflict; a weak password: refused.
    public(&app, &t, Method::POST, "/api/v1/auth/signup", body)
        .await
        .assert_problem(409);
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/signup",
        json!({"email": "b@example.com", "password": "short", "name": "B"}),
    )
    .await
    .assert_problem(422);
    // The verification message is in the outbox; its token verifies the address, once.
    let msgs = outbox(&app, "ann@example.com").await;
    let token = token_in(&msgs[0], "verification token");
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/email/verify",
        json!({"token": token}),
    )
    .await
    .assert_status(204);
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/email/verify",
        json!({"token": token}),
    )
    .await
    .assert_problem(401);
    let me = as_user(
        &app,
        &t,
        &s.str("access_token"),
        Method::GET,
        "/api/v1/me",
        None,
    )
    .await;
    assert_eq!(me.body["email_verified"], json!(true));
    // Passwords are argon2id with at least OWASP's minimum parameters.
    let hash: String = app
        .shared_owner()
        .await
        .query_one(
            "SELECT password_hash FROM users WHERE email = 'ann@example.com'",
            &[],
        )
        .await
        .expect("hash")
        .get(0);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    app.finish().await;
}

#[tokio::test]
async fn login_answers_alike_for_unknown_email_and_wrong_password() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let ok = login(&app, &t, &u.email, PASSWORD).await;
    ok.assert_status(200);
    assert!(
        ok.body["expires_in"]
            .as_u64()
            .is_some_and(|s| (300..=900).contains(&s))
    );
    let wrong = login(&app, &t, &u.email, "not the password at all").await;
    let unknown = login(&app, &t, "nobody@acme.test", "not the password at all").await;
    wrong.assert_problem(401);
    unknown.assert_problem(401);
    assert_eq!(wrong.body, unknown.body);
    app.finish().await;
}

#[tokio::test]
async fn repeated_login_failures_are_slowed_down_per_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    for _ in 0..5 {
        login(&app, &t, &u.email, "wrong wrong wrong")
            .await
            .assert_problem(401);
    }
    // Even the right password must now wait.
    let r = login(&app, &t, &u.email, PASSWORD).await;
    r.assert_problem(429);
    assert!(r.headers.get("retry-after").is_some());
    // Other accounts are not affected.
    let v = user_with_role(&app, &t, "other@acme.test", "viewer").await;
    login(&app, &t, &v.email, PASSWORD).await.assert_status(200);
    app.finish().await;
}

fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("jwt part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

#[tokio::test]
async fn access_tokens_are_eddsa_jwts_with_the_required_claims_and_a_jwks() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let header = decode_part(&u.access, 0);
    let claims = decode_part(&u.access, 1);
    assert_eq!(header["alg"], "EdDSA");
    let kid = header["kid"].as_str().expect("kid").to_owned();
    for c in ["iss", "aud", "sub", "tid", "sid", "exp", "iat", "roles"] {
        assert!(!claims[c].is_null(), "missing {c}: {claims}");
    }
    assert_eq!(claims["tid"], json!(t.id));
    assert_eq!(claims["sub"], json!(u.id));
    let ttl = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert!((300..=900).contains(&ttl), "{ttl}");
    let jwks = app
        .send(Req::new(Method::GET, "/.well-known/jwks.json"))
        .await;
    jwks.assert_status(200);
    let keys = jwks.body["keys"].as_array().expect("keys").clone();
    assert!(
        keys.iter()
            .any(|k| k["kid"] == json!(kid) && k["kty"] == "OKP" && k["crv"] == "Ed25519")
    );
    assert!(
        !jwks.text.contains("\"d\""),
        "a private key leaked: {}",
        jwks.text
    );

    // Rotation: new tokens use the new key; tokens of the old key still work; both published.
    let r = app
        .admin(Method::POST, "/admin/v1/jwt-keys/rotate", None)
        .await;
    r.assert_status(200);
    let new_kid = r.str("kid");
    assert_ne!(new_kid, kid);
    as_user(&app, &t, &u.access, Method::GET, "/api/v1/me", None)
        .await
        .assert_status(200);
    let fresh = login(&app, &t, &u.email, PASSWORD).await;
    assert_eq!(
        decode_part(&fresh.str("access_token"), 0)["kid"],
        json!(new_kid)
    );
    let jwks = app
        .send(Req::new(Method::GET, "/.well-known/jwks.json"))
        .await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
    // Another instance (its own key cache) accepts tokens of both keys.
    let other = app.another_instance().await;
    for tok in [u.access.clone(), fresh.str("access_token")] {
        Req::new(Method::GET, "/api/v1/me")
            .host(t.host())
            .bearer(&tok)
            .send(&other.router)
            .await
            .assert_status(200);
    }
    app.finish().await;
}

#[tokio::test]
async fn tampered_none_and_hmac_confused_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let parts: Vec<&str> = u.access.split('.').collect();
    let mut claims = decode_part(&u.access, 1);
    claims["roles"] = json!(["owner", "superuser"]);
    let forged_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    // 1. Claims changed, signature kept.
    let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    // 2. alg none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none = format!("{none_header}.{}.", parts[1]);
    // 3. HS256 "signed" with the public key from the JWKS (algorithm confusion).
    let jwks = app
        .send(Req::new(Method::GET, "/.well-known/jwks.json"))
        .await;
    let x = jwks.body["keys"][0]["x"].as_str().expect("x").to_owned();
    let kid = decode_part(&u.access, 0)["kid"].clone();
    let hs_header = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({"alg": "HS256", "typ": "JWT", "kid": kid})).expect("json"),
    );
    let signing_input = format!("{hs_header}.{}", parts[1]);
    let mac = {
        use hmac::{Hmac, Mac};
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(x.as_bytes()).expect("key");
        m.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
    };
    let hs = format!("{signing_input}.{mac}");
    // 4. Garbage.
    for (name, tok) in [
        ("tampered", tampered),
        ("none", none),
        ("hs256", hs),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let r = as_user(&app, &t, &tok, Method::GET, "/api/v1/me", None).await;
        assert_eq!(r.status.as_u16(), 401, "{name}: {}", r.text);
        let r = as_user(&app, &t, &tok, Method::GET, "/api/v1/projects", None).await;
        assert_eq!(r.status.as_u16(), 401, "{name}: {}", r.text);
    }
    app.finish().await;
}

#[tokio::test]
async fn a_token_of_tenant_a_is_refused_on_tenant_bs_host() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha", "shared", None).await;
    let b = app.tenant("bravo", "dedicated", Some("second")).await;
    let ua = user_with_role(&app, &a, "owner@alpha.test", "owner").await;
    for path in ["/api/v1/me", "/api/v1/projects", "/api/v1/users"] {
        let r = as_user(&app, &b, &ua.access, Method::GET, path, None).await;
        r.assert_problem(403);
        // With no tenant host the token's own tenant is used.
        let r = app
            .send(Req::new(Method::GET, path).bearer(&ua.access))
            .await;
        r.assert_status(200);
    }
    // A's refresh token is unknown on B.
    refresh(&app, &b, &ua.refresh).await.assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_outside_the_grace_window_revokes_the_family() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let r1 = refresh(&app, &t, &u.refresh).await;
    r1.assert_status(200);
    let rt2 = r1.str("refresh_token");
    assert_ne!(rt2, u.refresh);
    // Inside the grace window the immediate predecessor returns the same successor.
    let again = refresh(&app, &t, &u.refresh).await;
    again.assert_status(200);
    assert_eq!(again.str("refresh_token"), rt2);
    let r2 = refresh(&app, &t, &rt2).await;
    r2.assert_status(200);
    let rt3 = r2.str("refresh_token");
    // rt1 is no longer the immediate predecessor: reuse revokes the session.
    refresh(&app, &t, &u.refresh).await.assert_problem(401);
    refresh(&app, &t, &rt3).await.assert_problem(401);
    let access = r2.str("access_token");
    let revoked = eventually(Duration::from_secs(10), || {
        let access = access.clone();
        let app = &app;
        let t = &t;
        async move {
            as_user(app, t, &access, Method::GET, "/api/v1/me", None)
                .await
                .status
                .as_u16()
                == 401
        }
    })
    .await;
    assert!(
        revoked.is_some(),
        "the revoked session's access token still works"
    );
    let events: i64 = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM security_events WHERE kind = 'refresh_token_reuse'",
            &[],
        )
        .await
        .expect("events")
        .get(0);
    assert_eq!(events, 1);
    app.finish().await;
}

#[tokio::test]
async fn reuse_of_the_predecessor_after_the_grace_window_revokes_the_family() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let r1 = refresh(&app, &t, &u.refresh).await;
    r1.assert_status(200);
    // Age the rotation past the 10 s window (in the database, not by waiting).
    app.shared_owner()
        .await
        .execute("UPDATE refresh_tokens SET rotated_at = rotated_at - interval '11 seconds' WHERE rotated_at IS NOT NULL", &[])
        .await
        .expect("age");
    refresh(&app, &t, &u.refresh).await.assert_problem(401);
    refresh(&app, &t, &r1.str("refresh_token"))
        .await
        .assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_get_the_same_successor() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let results =
        futures_util::future::join_all((0..4).map(|_| refresh(&app, &t, &u.refresh))).await;
    let ok: Vec<String> = results
        .iter()
        .filter(|r| r.status.as_u16() == 200)
        .map(|r| r.str("refresh_token"))
        .collect();
    assert!(!ok.is_empty());
    assert!(
        ok.iter().all(|r| *r == ok[0]),
        "different successors: {ok:?}"
    );
    for r in &results {
        assert!(matches!(r.status.as_u16(), 200 | 401), "{}", r.text);
    }
    // The successor works; the session is intact.
    refresh(&app, &t, &ok[0]).await.assert_status(200);
    app.finish().await;
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_and_revocation_stops_access_within_seconds() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let laptop = app
        .send(
            Req::new(Method::POST, "/api/v1/auth/login")
                .host(t.host())
                .header("user-agent", "laptop/1.0")
                .json(&json!({"email": u.email, "password": PASSWORD})),
        )
        .await;
    laptop.assert_status(200);
    let phone = login(&app, &t, &u.email, PASSWORD).await;
    let list = as_user(
        &app,
        &t,
        &u.access,
        Method::GET,
        "/api/v1/me/sessions",
        None,
    )
    .await;
    list.assert_status(200);
    let items = list.body["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 3);
    assert!(items.iter().any(|s| s["user_agent"] == "laptop/1.0"));
    assert_eq!(
        items.iter().filter(|s| s["current"] == json!(true)).count(),
        1
    );
    // Sign the laptop out.
    let laptop_access = laptop.str("access_token");
    let laptop_sid = decode_part(&laptop_access, 1)["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    as_user(
        &app,
        &t,
        &u.access,
        Method::DELETE,
        &format!("/api/v1/me/sessions/{laptop_sid}"),
        None,
    )
    .await
    .assert_status(204);
    let gone = eventually(Duration::from_secs(10), || {
        let tok = laptop_access.clone();
        let (app, t) = (&app, &t);
        async move {
            as_user(app, t, &tok, Method::GET, "/api/v1/me", None)
                .await
                .status
                .as_u16()
                == 401
        }
    })
    .await;
    assert!(gone.is_some());
    refresh(&app, &t, &laptop.str("refresh_token"))
        .await
        .assert_problem(401);
    // Sign out everywhere else: the phone goes, this session stays.
    let r = as_user(
        &app,
        &t,
        &u.access,
        Method::POST,
        "/api/v1/me/sessions/revoke-others",
        None,
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.body["revoked"], json!(1));
    refresh(&app, &t, &phone.str("refresh_token"))
        .await
        .assert_problem(401);
    as_user(&app, &t, &u.access, Method::GET, "/api/v1/me", None)
        .await
        .assert_status(200);
    // Logout ends this one too.
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/logout",
        json!({"refresh_token": u.refresh}),
    )
    .await
    .assert_status(204);
    refresh(&app, &t, &u.refresh).await.assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn operators_and_tenant_admins_can_sign_a_user_out() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let m = user_with_role(&app, &t, "m@acme.test", "member").await;
    let r = as_user(
        &app,
        &t,
        &admin.access,
        Method::DELETE,
        &format!("/api/v1/users/{}/sessions", m.id),
        None,
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.body["revoked"], json!(1));
    refresh(&app, &t, &m.refresh).await.assert_problem(401);
    let m2 = login(&app, &t, &m.email, PASSWORD).await;
    let r = app
        .admin(
            Method::DELETE,
            &format!("/admin/v1/tenants/{}/users/{}/sessions", t.id, m.id),
            None,
        )
        .await;
    r.assert_status(200);
    refresh(&app, &t, &m2.str("refresh_token"))
        .await
        .assert_problem(401);
    // A member cannot sign others out.
    let m3 = login(&app, &t, &m.email, PASSWORD).await;
    as_user(
        &app,
        &t,
        &m3.str("access_token"),
        Method::DELETE,
        &format!("/api/v1/users/{}/sessions", admin.id),
        None,
    )
    .await
    .assert_problem(403);
    let _ = ADMIN_TOKEN;
    app.finish().await;
}

#[tokio::test]
async fn password_reset_by_single_use_token_from_the_outbox() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/password/forgot",
        json!({"email": "nobody@acme.test"}),
    )
    .await
    .assert_status(202);
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/password/forgot",
        json!({"email": u.email}),
    )
    .await
    .assert_status(202);
    let msgs = outbox(&app, &u.email).await;
    let token = token_in(msgs.last().expect("message"), "reset token");
    assert!(outbox(&app, "nobody@acme.test").await.is_empty());
    let new = "a brand new passphrase";
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/password/reset",
        json!({"token": token, "password": new}),
    )
    .await
    .assert_status(204);
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/password/reset",
        json!({"token": token, "password": new}),
    )
    .await
    .assert_problem(401);
    login(&app, &t, &u.email, PASSWORD)
        .await
        .assert_problem(401);
    login(&app, &t, &u.email, new).await.assert_status(200);
    // Existing sessions were signed out.
    refresh(&app, &t, &u.refresh).await.assert_problem(401);
    // The token is stored only hashed.
    let n: i64 = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM one_time_tokens WHERE token_hash = convert_to($1, 'UTF8')",
            &[&token],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    app.finish().await;
}

#[tokio::test]
async fn unverified_users_cannot_invite_until_they_verify_their_address() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    app.admin(
        Method::PATCH,
        &format!("/admin/v1/tenants/{}", t.id),
        Some(json!({"signup": "open"})),
    )
    .await
    .assert_status(200);
    let owner = user_with_role(&app, &t, "owner@example.com", "owner").await;
    // Ann signs up (unverified) and the owner makes her an admin: she holds `members:manage`.
    let s = public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/signup",
        json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann"}),
    )
    .await;
    s.assert_status(201);
    let ann = s.str("access_token");
    let me = as_user(&app, &t, &ann, Method::GET, "/api/v1/me", None).await;
    assert_eq!(me.body["email_verified"], json!(false));
    as_user(
        &app,
        &t,
        &owner.access,
        Method::PATCH,
        &format!("/api/v1/users/{}", me.str("id")),
        Some(json!({"role": "admin"})),
    )
    .await
    .assert_status(200);
    let invite = json!({"email": "bob@example.com", "role": "member"});
    let refused = as_user(
        &app,
        &t,
        &ann,
        Method::POST,
        "/api/v1/invitations",
        Some(invite.clone()),
    )
    .await;
    refused.assert_problem(403);
    assert!(
        refused.str("detail").contains("verify"),
        "{:?}",
        refused.body
    );
    assert!(outbox(&app, "bob@example.com").await.is_empty());
    // The owner (invited, so verified) may invite; so may Ann once her address is verified.
    let token = token_in(
        &outbox(&app, "ann@example.com").await[0],
        "verification token",
    );
    public(
        &app,
        &t,
        Method::POST,
        "/api/v1/auth/email/verify",
        json!({"token": token}),
    )
    .await
    .assert_status(204);
    as_user(
        &app,
        &t,
        &ann,
        Method::POST,
        "/api/v1/invitations",
        Some(invite),
    )
    .await
    .assert_status(201);
    assert_eq!(outbox(&app, "bob@example.com").await.len(), 1);
    app.finish().await;
}
