//! SAML against a real IdP (pysaml2, signing with xmlsec1): SP-initiated and IdP-initiated
//! logins, role mapping, the replay cache across instances, and the attack corpus. Each attack
//! starts from a response the real IdP signed (or has it sign something wrong) and must be
//! refused with a 4xx problem and an `sso.rejected` security event naming the reason.

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use platform_tests::peers::SamlIdp;
use platform_tests::{Req, TestApp, TestResponse, TestTenant};
use serde_json::{Value, json};

use super::{assert_refused, events, whoami};
use crate::auth::{TestUser, as_user, user_with_role};

const IDP: &str = "https://idp.corp.test";

/// A tenant with a SAML connection to `idp`.
struct Fixture {
    t: TestTenant,
    conn: String,
    sp_metadata: String,
}

async fn saml_tenant(
    app: &TestApp,
    slug: &str,
    idp: &SamlIdp,
    idp_initiated: bool,
) -> (Fixture, TestUser) {
    let t = app.tenant(slug, "shared", None).await;
    let admin = user_with_role(app, &t, &format!("admin@{slug}.test"), "admin").await;
    app.verified_domain(&t, &format!("{slug}.test")).await;
    let r = as_user(
        app,
        &t,
        &admin.access,
        Method::POST,
        "/api/v1/sso/connections",
        Some(json!({
            "kind": "saml",
            "name": "Corporate SAML",
            "idp_metadata_xml": idp.metadata().await,
            "allow_idp_initiated": idp_initiated,
            "role_attribute": "groups",
            "role_mapping": [{"value": "admins", "role": "admin"}],
            "default_role": "member",
        })),
    )
    .await;
    r.assert_status(201);
    assert_eq!(
        r.body["saml"]["acs_url"],
        format!("https://{slug}.localhost/sso/saml/acs")
    );
    assert_eq!(r.body["saml"]["certificate_count"], 1);
    let md = app
        .send(Req::new(Method::GET, "/sso/saml/metadata").host(t.host()))
        .await;
    md.assert_status(200);
    assert!(
        md.text
            .contains(&format!("https://{slug}.localhost/sso/saml/acs"))
    );
    (
        Fixture {
            conn: r.str("id"),
            sp_metadata: md.text.clone(),
            t,
        },
        admin,
    )
}

/// Starts an SP-initiated login; returns the `SAMLRequest` the IdP receives.
async fn start(app: &TestApp, f: &Fixture) -> String {
    let r = app
        .send(
            Req::new(
                Method::GET,
                format!("/sso/saml/login?connection={}", f.conn),
            )
            .host(f.t.host()),
        )
        .await;
    r.assert_status(303);
    let loc = url::Url::parse(r.headers["location"].to_str().expect("location")).expect("url");
    assert!(loc.as_str().starts_with(&format!("{IDP}/sso?")), "{loc}");
    loc.query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .map(|(_, v)| v.into_owned())
        .expect("SAMLRequest")
}

fn user(name_id: &str, groups: &[&str]) -> Value {
    json!({"name_id": name_id, "attributes": {"email": [name_id], "groups": groups, "displayName": ["Dana Scully"]}})
}

async fn post_acs(app: &TestApp, t: &TestTenant, saml_response: &str) -> TestResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", saml_response)
        .append_pair("RelayState", "")
        .finish();
    app.send(
        Req::new(Method::POST, "/sso/saml/acs")
            .host(t.host())
            .raw(body, Some("application/x-www-form-urlencoded")),
    )
    .await
}

fn decode(b64: &str) -> String {
    String::from_utf8(STANDARD.decode(b64).expect("base64")).expect("utf-8")
}
fn encode(xml: &str) -> String {
    STANDARD.encode(xml)
}

#[tokio::test]
async fn saml_login_through_pysaml2_gives_tokens_maps_roles_and_refuses_replays() {
    let app = TestApp::spawn().await;
    let idp = SamlIdp::new(IDP).await;
    let (f, _) = saml_tenant(&app, "acme", &idp, false).await;
    let req = start(&app, &f).await;
    let resp = idp
        .respond(
            &f.sp_metadata,
            Some(&req),
            user("dana@acme.test", &["staff", "admins"]),
            json!({}),
        )
        .await;
    let r = post_acs(&app, &f.t, &resp).await;
    r.assert_status(200);
    let me = whoami(&app, &f.t, &r.str("access_token")).await;
    me.assert_status(200);
    assert_eq!(me.str("email"), "dana@acme.test");
    assert_eq!(me.str("name"), "Dana Scully");
    assert_eq!(me.str("role"), "admin", "mapped from the groups attribute");
    assert_eq!(events(&app, &f.t, "sso.login").await.len(), 1);

    // The same response again: its request is spent.
    let before = events(&app, &f.t, "sso.rejected").await.len();
    let again = post_acs(&app, &f.t, &resp).await;
    assert_refused(&app, &f.t, &again, before, "replay").await;

    // Second login: no longer in `admins`, so the role follows the IdP (not for owners).
    let req = start(&app, &f).await;
    let resp = idp
        .respond(
            &f.sp_metadata,
            Some(&req),
            user("dana@acme.test", &["staff"]),
            json!({}),
        )
        .await;
    let r = post_acs(&app, &f.t, &resp).await;
    r.assert_status(200);
    let me = whoami(&app, &f.t, &r.str("access_token")).await;
    assert_eq!(me.str("role"), "admin", "no mapped value: the role is kept");
    app.finish().await;
}

#[tokio::test]
async fn idp_initiated_login_is_off_by_default_and_its_replay_cache_survives_a_restart() {
    let app = TestApp::spawn().await;
    let idp = SamlIdp::new(IDP).await;
    let (f, admin) = saml_tenant(&app, "acme", &idp, false).await;
    let unsolicited = || {
        idp.respond(
            &f.sp_metadata,
            None,
            user("fox@acme.test", &[]),
            json!({"sp_entity_id": "https://acme.localhost/sso/saml/metadata",
                   "acs_url": "https://acme.localhost/sso/saml/acs"}),
        )
    };
    let resp = unsolicited().await;
    let before = events(&app, &f.t, "sso.rejected").await.len();
    let r = post_acs(&app, &f.t, &resp).await;
    assert_refused(&app, &f.t, &r, before, "unsolicited").await;

    // The admin turns IdP-initiated login on: accepted once.
    as_user(
        &app,
        &f.t,
        &admin.access,
        Method::PATCH,
        &format!("/api/v1/sso/connections/{}", f.conn),
        Some(json!({"allow_idp_initiated": true})),
    )
    .await
    .assert_status(200);
    let resp = unsolicited().await;
    post_acs(&app, &f.t, &resp).await.assert_status(200);
    // Replayed to another instance (a restarted server): the assertion id is remembered in the
    // tenant's database, not in memory.
    let restarted = app.another_instance().await;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", &resp)
        .finish();
    let r = Req::new(Method::POST, "/sso/saml/acs")
        .host(f.t.host())
        .raw(body, Some("application/x-www-form-urlencoded"))
        .send(&restarted.router)
        .await;
    assert_refused(&app, &f.t, &r, before + 1, "replay").await;
    drop(restarted);
    app.finish().await;
}

/// Cuts the first `<{tag}` ... `</{tag}>` element out of `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let start = xml
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no {tag} in {xml}"));
    let end_tag = format!("</{tag}>");
    let end = xml[start..].find(&end_tag).expect("closing tag") + start + end_tag.len();
    &xml[start..end]
}

const ASSERTION: &str = "ns1:Assertion";
const SIGNATURE: &str = "ns2:Signature";

/// An attacker's assertion: the signed one with another identity, a new ID, no signature.
fn evil_assertion(signed: &str) -> String {
    let sig = element(signed, SIGNATURE);
    signed
        .replace(sig, "")
        .replace("dana@acme.test", "eve@acme.test")
        .replacen(" ID=\"", " ID=\"evil-", 1)
}

/// The signature-wrapping variants of Somorovsky et al. (XSW1-XSW8), built from a response the
/// IdP signed at the Response level (`by_response`) or at the Assertion level (`by_assertion`).
fn xsw(n: u8, by_response: &str, by_assertion: &str) -> String {
    let body = |x: &str| {
        x.trim_start_matches("<?xml version=\"1.0\"?>")
            .trim()
            .to_owned()
    };
    match n {
        1 | 2 => {
            // The signed Response is kept verbatim inside (1) or beside (2) the signature of an
            // attacker's Response that carries the attacker's assertion.
            let original = body(by_response);
            let sig = element(&original, SIGNATURE).to_owned();
            let assertion = element(&original, ASSERTION).to_owned();
            let evil = original.replacen(" ID=\"", " ID=\"evil-", 1).replace(
                &assertion,
                &assertion.replace("dana@acme.test", "eve@acme.test"),
            );
            let moved = if n == 1 {
                sig.replace("</ns2:Signature>", &format!("{original}</ns2:Signature>"))
            } else {
                format!("{original}{sig}")
            };
            evil.replace(&sig, &moved)
        }
        _ => {
            let signed = element(by_assertion, ASSERTION).to_owned();
            let sig = element(&signed, SIGNATURE).to_owned();
            let evil = evil_assertion(&signed);
            let unsigned_original = signed.replace(&sig, "");
            let modified_signed = signed.replace("dana@acme.test", "eve@acme.test");
            let replacement = match n {
                // The attacker's assertion before the signed one.
                3 => format!("{evil}{signed}"),
                // The signed assertion inside the attacker's.
                4 => evil.replace("</ns1:Assertion>", &format!("{signed}</ns1:Assertion>")),
                // The signed copy modified; an unsigned copy of the original after it.
                5 => format!("{modified_signed}{unsigned_original}"),
                // As 5, with the original copy inside the signature.
                6 => modified_signed.replace(
                    "</ns2:Signature>",
                    &format!("{unsigned_original}</ns2:Signature>"),
                ),
                // The signed assertion hidden in an Extensions element; the attacker's follows.
                7 => format!("<ns0:Extensions>{signed}</ns0:Extensions>{evil}"),
                // The original inside an Object element of the modified assertion's signature.
                8 => modified_signed.replace(
                    "</ns2:Signature>",
                    &format!("<ns2:Object>{unsigned_original}</ns2:Object></ns2:Signature>"),
                ),
                _ => unreachable!(),
            };
            by_assertion.replace(&signed, &replacement)
        }
    }
}

/// The attack corpus against one login request: `(name, SAMLResponse, refusal reason)`, and
/// the genuine (assertion-signed) answer the attacks are made from.
async fn attack_corpus(
    idp: &SamlIdp,
    f: &Fixture,
    req: &str,
) -> (Vec<(String, String, &'static str)>, String) {
    let req = req.to_owned();
    let dana = || user("dana@acme.test", &[]);
    let sign = |extra: Value| {
        let (idp, f, req) = (idp, f, &req);
        async move { idp.respond(&f.sp_metadata, Some(req), dana(), extra).await }
    };
    let by_assertion = decode(&sign(json!({})).await);
    let by_response = decode(&sign(json!({"sign_assertion": false, "sign_response": true})).await);
    let impostor = idp.impostor().await;
    let acs = "https://acme.localhost/sso/saml/acs";

    let mut cases: Vec<(String, String, &'static str)> = vec![
        ("unsigned".into(), sign(json!({"sign_assertion": false, "sign_response": false})).await, "signature"),
        (
            "signed by another key".into(),
            impostor.respond(&f.sp_metadata, Some(&req), dana(), json!({})).await,
            "signature",
        ),
        (
            "modified after signing (assertion signed)".into(),
            encode(&by_assertion.replace(">dana@acme.test<", ">eve@acme.test<")),
            "signature",
        ),
        (
            "modified after signing (response signed)".into(),
            encode(&by_response.replace(">dana@acme.test<", ">eve@acme.test<")),
            "signature",
        ),
        ("SHA-1 signature (outside the allow-list)".into(), sign(json!({"sha1": true})).await, "signature"),
        (
            "two assertions".into(),
            encode(&by_assertion.replace(
                "</ns0:Response>",
                &format!("{}</ns0:Response>", evil_assertion(element(&by_assertion, ASSERTION))),
            )),
            "structure",
        ),
        (
            "signature moved out of the assertion it signs".into(),
            {
                let sig = element(&by_assertion, SIGNATURE).to_owned();
                let without = by_assertion.replace(&sig, "");
                encode(&without.replacen("</ns0:Status>", &format!("</ns0:Status>{sig}"), 1))
            },
            "structure",
        ),
        (
            "comment injected in NameID".into(),
            {
                // A user the IdP knows as dana@acme.test.evil.test: the comment leaves the
                // canonical form (and so the signature) unchanged.
                let signed = decode(
                    &idp.respond(&f.sp_metadata, Some(&req), user("dana@acme.test.evil.test", &[]), json!({}))
                        .await,
                );
                encode(&signed.replace("dana@acme.test.evil.test", "dana@acme.test<!---->.evil.test"))
            },
            "structure",
        ),
        (
            "wrong audience".into(),
            sign(json!({"audience": "https://other.example/sp"})).await,
            "wrong_audience",
        ),
        (
            "wrong recipient".into(),
            {
                // Signed for another ACS; the unsigned Response envelope is pointed back at ours.
                let other = "https://other.example/acs";
                let x = decode(&sign(json!({"destination": other})).await);
                encode(&x.replacen(&format!("Destination=\"{other}\""), &format!("Destination=\"{acs}\""), 1))
            },
            "wrong_recipient",
        ),
        (
            "wrong destination".into(),
            sign(json!({"destination": "https://other.example/acs", "sign_assertion": false, "sign_response": true})).await,
            "wrong_destination",
        ),
        ("expired".into(), sign(json!({"clock_offset": -3600})).await, "expired"),
        ("not yet valid".into(), sign(json!({"clock_offset": 3600})).await, "not_yet_valid"),
        (
            "unsolicited while IdP-initiated login is off".into(),
            idp.respond(
                &f.sp_metadata,
                None,
                dana(),
                json!({"sp_entity_id": "https://acme.localhost/sso/saml/metadata", "acs_url": acs}),
            )
            .await,
            "unsolicited",
        ),
        ("not base64".into(), "%%%not base64%%%".into(), "malformed"),
        ("not XML".into(), encode("<samlp:Response"), "malformed"),
        (
            "a DTD (entity expansion)".into(),
            encode(&format!(
                "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY e \"x\">]>{}",
                by_assertion.trim_start_matches("<?xml version=\"1.0\"?>")
            )),
            "malformed",
        ),
    ];
    for n in 1..=8 {
        cases.push((
            format!("XSW{n}"),
            encode(&xsw(n, &by_response, &by_assertion)),
            "structure",
        ));
    }

    (cases, by_assertion)
}

#[tokio::test]
async fn every_attack_in_the_corpus_is_refused_with_a_4xx_and_a_security_event() {
    let app = TestApp::spawn().await;
    let idp = SamlIdp::new(IDP).await;
    let (f, _) = saml_tenant(&app, "acme", &idp, false).await;
    let req = start(&app, &f).await;
    let (cases, by_assertion) = attack_corpus(&idp, &f, &req).await;

    let mut failures = Vec::new();
    for (name, response, reason) in &cases {
        let before = events(&app, &f.t, "sso.rejected").await.len();
        let r = post_acs(&app, &f.t, response).await;
        let ev = events(&app, &f.t, "sso.rejected").await;
        let ok = r.status.is_client_error()
            && r.body["type"] == "/problems/sso-refused"
            && ev.len() == before + 1
            && ev[before]["reason"] == *reason;
        if !ok {
            failures.push(format!(
                "{name}: expected 4xx reason {reason}, got {} {} events {:?}",
                r.status,
                r.text,
                ev.get(before)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "attacks not refused as expected:\n{}",
        failures.join("\n")
    );
    // No account was made or signed in by any of them.
    assert_eq!(events(&app, &f.t, "sso.login").await.len(), 0);
    // And the genuine answer to the same request still works: the refusals were about the attacks.
    post_acs(&app, &f.t, &encode(&by_assertion))
        .await
        .assert_status(200);
    app.finish().await;
}

#[tokio::test]
async fn responses_cannot_cross_tenants() {
    let app = TestApp::spawn().await;
    let idp = SamlIdp::new(IDP).await;
    let (a, _) = saml_tenant(&app, "acme", &idp, false).await;
    let (b, _) = saml_tenant(&app, "globex", &idp, true).await;
    let dana = || user("dana@acme.test", &[]);

    // A response for tenant A (audience and ACS of A) that answers tenant B's request.
    let b_req = start(&app, &b).await;
    let for_a_with_b_request = idp
        .respond(
            &b.sp_metadata,
            Some(&b_req),
            dana(),
            json!({"audience": "https://acme.localhost/sso/saml/metadata",
                   "destination": "https://acme.localhost/sso/saml/acs"}),
        )
        .await;
    let before = events(&app, &a.t, "sso.rejected").await.len();
    let r = post_acs(&app, &a.t, &for_a_with_b_request).await;
    assert_refused(&app, &a.t, &r, before, "unknown_request").await;

    // Tenant A's genuine response posted to tenant B's ACS.
    let a_req = start(&app, &a).await;
    let for_a = idp
        .respond(&a.sp_metadata, Some(&a_req), dana(), json!({}))
        .await;
    let before_b = events(&app, &b.t, "sso.rejected").await.len();
    let r = post_acs(&app, &b.t, &for_a).await;
    assert_refused(&app, &b.t, &r, before_b, "unknown_request").await;

    // An unsolicited response for A posted to B (which allows IdP-initiated login).
    let unsolicited_for_a = idp
        .respond(
            &a.sp_metadata,
            None,
            dana(),
            json!({"sp_entity_id": "https://acme.localhost/sso/saml/metadata",
                   "acs_url": "https://acme.localhost/sso/saml/acs"}),
        )
        .await;
    let r = post_acs(&app, &b.t, &unsolicited_for_a).await;
    assert_refused(&app, &b.t, &r, before_b + 1, "wrong_destination").await;

    // A's own response still logs into A only.
    let r = post_acs(&app, &a.t, &for_a).await;
    r.assert_status(200);
    assert!(events(&app, &b.t, "sso.login").await.is_empty());
    app.finish().await;
}
