//! Access tokens: EdDSA JWTs with the required claims and a JWKS; tampered, `none` and HMAC-confused tokens and other tenants' tokens are refused.

use super::*;

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
