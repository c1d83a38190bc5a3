//! Usage metering: tasks created, counted in the tenant's database, reported to Stripe by the
//! `billing.usage_report` job, retried after a failure, never reported twice for a period.

use std::time::Duration;

use axum::http::Method;
use jobs::{JobKind, NewJob};
use platform_tests::eventually;
use serde_json::json;
use tenancy::ids::TenantId;

use super::Billed;

async fn enqueue_report(b: &Billed, period: &str) {
    let tenancy = &b.app.app.tenancy;
    let t = tenancy
        .catalog
        .tenant(TenantId::parse(&b.t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant");
    let mut tx = tenancy
        .dataplane
        .connect(&t)
        .await
        .expect("connect")
        .begin();
    jobs::enqueue(
        &mut tx,
        NewJob::new(
            JobKind::parse("billing.usage_report").expect("kind"),
            json!({"period": period}),
        ),
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
}

async fn jobs_done(b: &Billed) -> i64 {
    b.shared
        .query_one(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1::text::uuid
             AND kind = 'billing.usage_report' AND state = 'succeeded'",
            &[&b.t.id],
        )
        .await
        .expect("jobs")
        .get(0)
}

#[tokio::test]
async fn the_usage_report_is_retried_after_a_failure_and_never_doubles_a_period() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    let p = b.write().await;
    p.assert_status(201);
    let project = p.str("id");
    for i in 0..3 {
        b.api(
            Method::POST,
            &format!("/api/v1/projects/{project}/tasks"),
            Some(json!({"title": format!("t{i}")})),
        )
        .await
        .assert_status(201);
    }
    let period = time::OffsetDateTime::now_utc();
    let period = format!("{:04}-{:02}", period.year(), u8::from(period.month()));
    b.stripe.fail("/v1/billing/meter_events", 1);
    enqueue_report(&b, &period).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            jobs_done(&b).await == 1
        })
        .await
        .is_some(),
        "the report succeeded after its retry"
    );
    let calls = b.stripe.requests_to("POST", "/v1/billing/meter_events");
    assert_eq!(calls.len(), 2, "one failure, one retry");
    let identifier = format!("usage:{}:tasks_created:{period}", b.t.id);
    for c in &calls {
        assert_eq!(c.field("identifier"), Some(identifier.as_str()));
        assert_eq!(c.idempotency_key.as_deref(), Some(identifier.as_str()));
        assert_eq!(c.field("payload[value]"), Some("3"));
        assert_eq!(c.field("payload[stripe_customer_id]"), Some("cus_1"));
    }
    let recorded: i64 = b
        .shared
        .query_one(
            "SELECT quantity FROM usage_reports WHERE tenant_id = $1::text::uuid AND period = $2",
            &[&b.t.id, &period],
        )
        .await
        .expect("usage report")
        .get(0);
    assert_eq!(recorded, 3);
    // The same period again: nothing is sent.
    enqueue_report(&b, &period).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            jobs_done(&b).await == 2
        })
        .await
        .is_some()
    );
    assert_eq!(
        b.stripe
            .requests_to("POST", "/v1/billing/meter_events")
            .len(),
        2
    );
    b.finish().await;
}
