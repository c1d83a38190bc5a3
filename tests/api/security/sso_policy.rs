//! Hole 3, the rest of the linking policy (docs/sso.md, "Linking policy"): verified email
//! domains per tenant (DNS TXT record or operator, one tenant per domain), connections that
//! assert identities only in them, explicit admin links under the grant rule, and the user's own
//! TOTP, which an SSO login never skips unless the connection enforces MFA (linked identities
//! included, and a first link waits for the code). Against the real OIDC provider.

use identity::mfa::code_at;
use platform_tests::{Client, TestApp, TestTenant};
use serde_json::{Value, json};

use crate::auth::user_with_role;
use crate::sso::{
    assert_refused, events, oidc_connection, oidc_connection_unverified, oidc_login, peer_for,
    whoami,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Enrols the caller in TOTP (confirmed with the code of now); returns the secret.
async fn enrol(api: &Client) -> String {
    let e = api.enrol_totp().await;
    e.assert_status(200);
    let secret = e.str("secret");
    api.confirm_totp(&code_at(&secret, now()).expect("code"))
        .await
        .assert_status(200);
    secret
}

/// The operators' trail: `(action, actor type)` recorded for the tenant.
async fn admin_trail(app: &TestApp, t: &TestTenant) -> Vec<(String, String)> {
    let control = platform_tests::connect(&app.platform_env()[0].1).await;
    control
        .query(
            "SELECT action, actor_type FROM admin_audit_events WHERE tenant_id = $1::text::uuid ORDER BY seq",
            &[&t.id],
        )
        .await
        .expect("trail")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// How many identities are linked to `user`.
async fn links(app: &TestApp, t: &TestTenant, user: &str) -> i64 {
    app.tenant_db(t)
        .await
        .query_one(
            "SELECT count(*) FROM sso_identities WHERE user_id = $1::text::uuid",
            &[&user],
        )
        .await
        .expect("links")
        .get(0)
}

#[tokio::test]
async fn a_domain_is_verified_by_its_txt_record_and_for_one_tenant_only() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme", "shared", None).await;
    let globex = app.tenant("globex", "shared", None).await;
    let admin = user_with_role(&app, &acme, "admin@acme.test", "admin").await;
    let gadmin = user_with_role(&app, &globex, "admin@globex.test", "admin").await;

    let c = admin.api.claim_sso_domain("Acme.Example").await;
    c.assert_status(201);
    assert_eq!(c.body["domain"], "acme.example");
    assert_eq!(c.body["verified"], false);
    assert_eq!(c.body["record"]["type"], "TXT");
    assert_eq!(c.body["record"]["name"], "_platform-verify.acme.example");
    let name = c.body["record"]["name"].as_str().expect("name").to_owned();
    let token = c.body["record"]["value"]
        .as_str()
        .expect("value")
        .to_owned();
    // Claiming again answers the same token.
    let again = admin.api.claim_sso_domain("acme.example").await;
    assert_eq!(again.body["record"]["value"], token.as_str());

    // Nothing published, a wrong value, another tenant's token: not verified.
    admin
        .api
        .check_sso_domain("acme.example")
        .await
        .assert_problem(422);
    app.dns.publish(&name, "platform-verify=not-the-token");
    admin
        .api
        .check_sso_domain("acme.example")
        .await
        .assert_problem(422);
    let g = gadmin.api.claim_sso_domain("acme.example").await;
    g.assert_status(201);
    app.dns
        .publish(&name, g.body["record"]["value"].as_str().expect("value"));
    admin
        .api
        .check_sso_domain("acme.example")
        .await
        .assert_problem(422);

    // The tenant's own token: verified.
    app.dns.publish(&name, &token);
    let v = admin.api.check_sso_domain("acme.example").await;
    v.assert_status(200);
    assert_eq!(v.body["verified"], true);
    assert_eq!(v.body["method"], "dns");
    let list = admin.api.sso_domains().await;
    list.assert_status(200);
    assert_eq!(list.body["items"][0]["verified"], true, "{}", list.text);

    // Held by acme: globex cannot verify it, by DNS (its token is published too), by the
    // operator, or claim it again.
    gadmin
        .api
        .check_sso_domain("acme.example")
        .await
        .assert_problem(409);
    app.operator()
        .verify_sso_domain(&globex.id, "acme.example")
        .await
        .assert_problem(409);
    gadmin
        .api
        .claim_sso_domain("acme.example")
        .await
        .assert_problem(409);

    // A resolver outage is the upstream's fault, not a verification.
    admin
        .api
        .claim_sso_domain("other.example")
        .await
        .assert_status(201);
    app.dns.set_failing(true);
    admin
        .api
        .check_sso_domain("other.example")
        .await
        .assert_problem(502);
    app.dns.set_failing(false);

    // Bad input, unknown domains, the platform's own domain, and who may manage domains.
    for bad in ["not a domain", "localhost", "acme.localhost", "-x.example"] {
        admin.api.claim_sso_domain(bad).await.assert_problem(422);
    }
    admin
        .api
        .check_sso_domain("never.example")
        .await
        .assert_problem(404);
    admin
        .api
        .remove_sso_domain("never.example")
        .await
        .assert_problem(404);
    let member = user_with_role(&app, &acme, "member@acme.test", "member").await;
    member
        .api
        .claim_sso_domain("m.example")
        .await
        .assert_problem(403);

    // Removed by acme, the domain is free for globex (through the operator).
    admin
        .api
        .remove_sso_domain("acme.example")
        .await
        .assert_status(204);
    let op = app
        .operator()
        .verify_sso_domain(&globex.id, "acme.example")
        .await;
    op.assert_status(200);
    assert_eq!(op.body["method"], "operator");

    // Audited in the operators' trail: for which tenant, by whom (the tenant's admin, the
    // operator).
    let trail = admin_trail(&app, &acme).await;
    for action in [
        "sso_domain.created",
        "sso_domain.updated",
        "sso_domain.deleted",
    ] {
        assert!(
            trail.iter().any(|(a, _)| a == action),
            "{action} in {trail:?}"
        );
    }
    assert!(
        trail.contains(&("sso_domain.updated".to_owned(), "user".to_owned())),
        "{trail:?}"
    );
    let trail = admin_trail(&app, &globex).await;
    assert!(
        trail.contains(&("sso_domain.updated".to_owned(), "operator".to_owned())),
        "{trail:?}"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_connection_asserts_identities_only_in_verified_domains() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection_unverified(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();

    // The IdP vouches for alice@acme.test, but acme.test is no verified domain of the tenant.
    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "alice").await;
    r.assert_problem(403);
    assert_refused(&app, &t, &r, before, "unverified_domain").await;

    app.verified_domain(&t, "acme.test").await;
    let (r, _) = oidc_login(&app, &t, &id, "alice").await;
    r.assert_status(200);

    // Without the domain, even the identity linked now is refused.
    admin
        .api
        .remove_sso_domain("acme.test")
        .await
        .assert_status(204);
    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "alice").await;
    assert_refused(&app, &t, &r, before, "unverified_domain").await;
    app.finish().await;
}

#[tokio::test]
async fn an_admin_links_explicitly_within_the_grant_rule() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let owner = app.user(&t, "boss@acme.test", "owner").await;
    let erin = app.user(&t, "erin@acme.test", "member").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();
    // The provider's subject is the account id.
    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "boss-verified").await;
    assert_refused(&app, &t, &r, before, "link_refused").await;

    // An admin cannot hand the owner's account to an identity; the owner can.
    let denied = admin
        .api
        .link_sso_identity(&id, "boss-verified", &owner.id)
        .await;
    denied.assert_problem(403);
    let linked = owner
        .api
        .link_sso_identity(&id, "boss-verified", &owner.id)
        .await;
    linked.assert_status(201);
    owner
        .api
        .link_sso_identity(&id, "boss-verified", &owner.id)
        .await
        .assert_status(200);
    let (r, _) = oidc_login(&app, &t, &id, "boss-verified").await;
    r.assert_status(200);
    assert_eq!(
        whoami(&app, &t, &r.str("access_token")).await.str("id"),
        owner.id
    );

    // One identity, one user; bad input and unknown things are 4xx.
    admin
        .api
        .link_sso_identity(&id, "boss-verified", &erin.id)
        .await
        .assert_problem(409);
    admin
        .api
        .link_sso_identity(&id, "", &erin.id)
        .await
        .assert_problem(422);
    admin
        .api
        .link_sso_identity(&id, "x", "0190a0a0-0000-7000-8000-000000000000")
        .await
        .assert_problem(404);
    admin
        .api
        .link_sso_identity("0190a0a0-0000-7000-8000-000000000000", "x", &erin.id)
        .await
        .assert_problem(404);
    admin
        .api
        .link_sso_identity(&id, "x", "not-a-uuid")
        .await
        .assert_problem(422);

    // The explicit link is audited with the owner as the actor.
    let db = app.shared_owner().await;
    let actors: Vec<Option<String>> = db
        .query(
            "SELECT actor_id FROM audit_events WHERE tenant_id = $1::text::uuid AND action = 'sso_identity.created'",
            &[&t.id],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actors, vec![Some(owner.id.clone())]);
    // Unlinking: the owner's identity no longer signs anyone in (and is refused as before).
    owner
        .api
        .delete(&format!("/api/v1/sso/connections/{id}/links/{}", owner.id))
        .await
        .assert_status(204);
    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "boss-verified").await;
    assert_refused(&app, &t, &r, before, "link_refused").await;
    app.finish().await;
}

/// The answer of an SSO login that waits for the user's code: an `mfa_token`, no access token.
fn mfa_required(r: &platform_tests::TestResponse) -> String {
    r.assert_status(200);
    assert_eq!(r.body["mfa_required"], json!(true), "{}", r.text);
    assert!(r.body.get("access_token").is_none(), "{}", r.text);
    r.str("mfa_token")
}

#[tokio::test]
async fn sso_never_skips_the_users_totp_unless_the_connection_enforces_mfa() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let carol = user_with_role(&app, &t, "carol@acme.test", "member").await;
    let erin = user_with_role(&app, &t, "erin@acme.test", "member").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();
    assert_eq!(conn["enforces_mfa"], false, "off by default");

    // Carol is linked while she has no second factor, then turns TOTP on: her linked identity
    // now needs her code too.
    let (r, _) = oidc_login(&app, &t, &id, "carol-verified").await;
    r.assert_status(200);
    assert_eq!(links(&app, &t, &carol.id).await, 1);
    let carol_secret = enrol(&carol.api).await;
    let (r, _) = oidc_login(&app, &t, &id, "carol-verified").await;
    let token = mfa_required(&r);
    let done = t
        .anon
        .verify_mfa(&token, &code_at(&carol_secret, now() + 30).expect("code"))
        .await;
    done.assert_status(200);
    assert_eq!(
        whoami(&app, &t, &done.str("access_token")).await.str("id"),
        carol.id
    );

    // Erin has TOTP before her first SSO login: the link waits for her code.
    let erin_secret = enrol(&erin.api).await;
    let (r, _) = oidc_login(&app, &t, &id, "erin-verified").await;
    let token = mfa_required(&r);
    assert_eq!(
        links(&app, &t, &erin.id).await,
        0,
        "no link before the code"
    );
    t.anon
        .verify_mfa(&token, "000000")
        .await
        .assert_problem(401);
    assert_eq!(
        links(&app, &t, &erin.id).await,
        0,
        "a wrong code links nothing"
    );
    let done = t
        .anon
        .verify_mfa(&token, &code_at(&erin_secret, now() + 30).expect("code"))
        .await;
    done.assert_status(200);
    assert_eq!(
        whoami(&app, &t, &done.str("access_token")).await.str("id"),
        erin.id
    );
    assert_eq!(
        links(&app, &t, &erin.id).await,
        1,
        "linked once the code was right"
    );

    // The connection marked as enforcing MFA at the IdP: the SSO login stands in for TOTP.
    let p = admin
        .api
        .update_sso_connection(&id, json!({"enforces_mfa": true}))
        .await;
    p.assert_status(200);
    assert_eq!(p.body["enforces_mfa"], true);
    let (r, _) = oidc_login(&app, &t, &id, "carol-verified").await;
    r.assert_status(200);
    assert_eq!(
        whoami(&app, &t, &r.str("access_token")).await.str("id"),
        carol.id
    );

    // Audited: the connection's life with the MFA setting, and each automatic link.
    let db = app.shared_owner().await;
    let summaries: Vec<Value> = db
        .query(
            "SELECT summary FROM audit_events WHERE tenant_id = $1::text::uuid AND action = 'sso_connection.updated'",
            &[&t.id],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        summaries.iter().any(|s| s["enforces_mfa"] == json!(true)),
        "{summaries:?}"
    );
    assert_eq!(
        crate::audit::count(&app, &t, "sso_identity.created").await,
        2
    );
    admin
        .api
        .delete_sso_connection(&id)
        .await
        .assert_status(204);
    assert_eq!(
        crate::audit::count(&app, &t, "sso_connection.created").await,
        1
    );
    assert_eq!(
        crate::audit::count(&app, &t, "sso_connection.deleted").await,
        1
    );
    app.finish().await;
}
