//! A tenant's own sending domain (`/api/v1/email/domain`): validated as a host name, its DKIM key
//! generated and sealed by the platform, its TXT record answered; until the record is found in
//! DNS the platform's domain signs; once verified, the tenant's mail is `From` its domain, signed
//! `d=` it, and verifies with dkimpy against the tenant's record (not the platform's), while
//! another tenant's mail still verifies against the platform's.

use axum::http::Method;
use platform_tests::smtp::{Received, SmtpSink, dkim_verify};
use serde_json::json;

use super::{FROM, announce, smtp_app};

/// A tag of the message's DKIM signature (`d`, `s`, ...).
fn dkim_tag(m: &Received, tag: &str) -> String {
    let sig = m.header("DKIM-Signature").expect("a DKIM signature");
    sig.split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim() == tag)
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_else(|| panic!("no `{tag}=` in {sig}"))
}

#[tokio::test]
async fn a_verified_tenant_domain_signs_its_mail_and_other_tenants_keep_the_platforms() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let branded = app.tenant("branded", "shared", None).await;
    let plain = app.tenant("plain", "shared", None).await;

    // Not a host name, or the platform's own domain (the harness's base domain is `localhost`).
    for bad in [
        "",
        "not a host",
        "mail.acme.example:25",
        "acme",
        "-x.example",
        "[::1]",
        "x.localhost",
    ] {
        branded
            .api
            .put("/api/v1/email/domain", json!({"domain": bad}))
            .await
            .assert_problem(422);
    }
    branded
        .api
        .get("/api/v1/email/domain")
        .await
        .assert_problem(404);

    let r = branded
        .api
        .put(
            "/api/v1/email/domain",
            json!({"domain": "Mail.Branded.Example"}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.str("domain"), "mail.branded.example");
    let selector = r.str("selector");
    let (name, value) = (r.str("txt_name"), r.str("txt_value"));
    assert_eq!(name, format!("{selector}._domainkey.mail.branded.example"));
    assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
    assert_eq!(r.body["verified"], json!(false));
    // The same domain again keeps its key (the published record stays right).
    let again = branded
        .api
        .put(
            "/api/v1/email/domain",
            json!({"domain": "mail.branded.example"}),
        )
        .await;
    again.assert_status(200);
    assert_eq!(again.str("txt_value"), value);
    let shown = branded.api.get("/api/v1/email/domain").await;
    shown.assert_status(200);
    assert_eq!(shown.str("txt_value"), value);
    // The private key is stored sealed (the keyring's format, under the tenant's key), never
    // as the raw 32 bytes.
    let sealed: Vec<u8> = app
        .shared_owner()
        .await
        .query_one("SELECT key_sealed FROM email_domains", &[])
        .await
        .expect("the sealed key")
        .get(0);
    assert!(sealed.len() > 32 + 12, "{} bytes", sealed.len());

    // Unverified: the platform's domain still signs the tenant's mail.
    announce(&app, &branded, "early@reader.test", "Before").await;
    let early = sink.wait_for("early@reader.test", 1).await;
    let from = early.header("From").expect("From");
    assert!(from.contains(FROM), "{from}");
    assert_eq!(dkim_tag(&early, "d"), "mail.platform.test");

    // Verification: the record is looked up; absent, 422 with what to publish; DNS failing, 502.
    let missing = branded.api.post_empty("/api/v1/email/domain/verify").await;
    missing.assert_problem(422);
    assert!(missing.str("detail").contains(&name), "{}", missing.text);
    app.dns.publish(
        &name,
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    );
    branded
        .api
        .post_empty("/api/v1/email/domain/verify")
        .await
        .assert_problem(422);
    app.dns.set_failing(true);
    branded
        .api
        .post_empty("/api/v1/email/domain/verify")
        .await
        .assert_problem(502);
    app.dns.set_failing(false);
    app.dns.publish(&name, &value);
    let v = branded.api.post_empty("/api/v1/email/domain/verify").await;
    v.assert_status(200);
    assert_eq!(v.body["verified"], json!(true), "{}", v.text);
    assert_eq!(
        branded.api.get("/api/v1/email/domain").await.body["verified"],
        json!(true)
    );

    // Verified: `From` the tenant's domain, signed for it with its key.
    announce(&app, &branded, "reader@branded.test", "Hello").await;
    let m = sink.wait_for("reader@branded.test", 1).await;
    let from = m.header("From").expect("From");
    assert!(from.contains("<no-reply@mail.branded.example>"), "{from}");
    assert_eq!(dkim_tag(&m, "d"), "mail.branded.example");
    assert_eq!(dkim_tag(&m, "s"), selector);
    let (ok, report) = dkim_verify(&m.eml, &name, &value).await;
    assert!(ok, "dkimpy, the tenant's record: {report}");
    let platform = app.admin(Method::GET, "/admin/v1/email/dkim", None).await;
    platform.assert_status(200);
    let (p_name, p_value) = (platform.str("txt_name"), platform.str("txt_value"));
    assert!(
        !dkim_verify(&m.eml, &name, &p_value).await.0,
        "the tenant's mail verified under the platform's key"
    );

    // Another tenant: the platform's domain and key, as before.
    announce(&app, &plain, "reader@plain.test", "Hi").await;
    let p = sink.wait_for("reader@plain.test", 1).await;
    let from = p.header("From").expect("From");
    assert!(from.contains(FROM), "{from}");
    assert_eq!(dkim_tag(&p, "d"), "mail.platform.test");
    let (ok, report) = dkim_verify(&p.eml, &p_name, &p_value).await;
    assert!(ok, "dkimpy, the platform's record: {report}");
    assert!(!dkim_verify(&p.eml, &p_name, &value).await.0);

    // Another domain: a new key, unverified, so the platform's domain signs again.
    let moved = branded
        .api
        .put(
            "/api/v1/email/domain",
            json!({"domain": "news.branded.example"}),
        )
        .await;
    moved.assert_status(200);
    assert_eq!(moved.body["verified"], json!(false));
    assert_ne!(moved.str("txt_value"), value);
    announce(&app, &branded, "later@reader.test", "After").await;
    let later = sink.wait_for("later@reader.test", 1).await;
    assert_eq!(dkim_tag(&later, "d"), "mail.platform.test");
    app.finish().await;
}
