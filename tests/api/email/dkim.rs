//! DKIM: the received message verifies with dkimpy against the record `GET /admin/v1/email/dkim`
//! publishes, the signature covers `List-Unsubscribe` and `List-Unsubscribe-Post`, and a message
//! altered after signing fails.

use platform_tests::smtp::{SmtpSink, dkim_verify};

use super::{announce, smtp_app};

#[tokio::test]
async fn received_mail_verifies_with_dkimpy_and_an_altered_copy_fails() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[("PLATFORM_DKIM_SELECTOR", "s2026")]).await;
    let t = app.tenant("signed", "shared", None).await;
    announce(&app, &t, "reader@signed.test", "Hello").await;
    let m = sink.wait_for("reader@signed.test", 1).await;
    assert!(m.header("List-Unsubscribe").is_some());

    let r = app
        .admin(axum::http::Method::GET, "/admin/v1/email/dkim", None)
        .await;
    r.assert_status(200);
    assert_eq!(r.str("selector"), "s2026");
    assert_eq!(r.str("domain"), "mail.platform.test");
    assert_eq!(r.str("txt_name"), "s2026._domainkey.mail.platform.test");
    let (name, value) = (r.str("txt_name"), r.str("txt_value"));
    assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");

    let (ok, report) = dkim_verify(&m.eml, &name, &value).await;
    assert!(ok, "dkimpy: {report}");
    assert!(
        report.contains("list-unsubscribe:list-unsubscribe-post"),
        "the signature does not cover the unsubscribe headers: {report}"
    );

    // A relay that swaps the unsubscribe target breaks the signature.
    let raw = std::fs::read_to_string(&m.eml).expect("read");
    let altered = raw.replacen("/u/", "/u/X", 1);
    assert_ne!(raw, altered);
    let copy = m.eml.with_extension("altered");
    std::fs::write(&copy, altered).expect("write");
    let (ok, report) = dkim_verify(&copy, &name, &value).await;
    assert!(!ok, "an altered message verified: {report}");
    // And under another key, the genuine message does not verify.
    let other = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    assert!(!dkim_verify(&m.eml, &name, other).await.0);
    app.finish().await;
}
