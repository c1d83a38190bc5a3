//! Usage quotas: the plan in effect bounds the tasks a tenant creates per month (UTC). The task
//! beyond it answers 429 `quota-exceeded` and writes nothing; a plan change (an operator's grant,
//! an upgrade by webhook) moves the limit at once, a past-due tenant keeps its plan's during
//! grace, a canceled one has the free plan's; the next period starts from zero; parallel writers
//! at the edge do not overshoot it; `GET /api/v1/billing` (and the operators' view) shows it.

use axum::http::Method;
use futures_util::future::join_all;
use platform_tests::requests::TestResponse;
use platform_tests::stripe::{self, now};
use serde_json::{Value, json};

use super::Billed;

/// A plan with room for any request rate and `tasks` tasks a month (`null`: unlimited).
async fn put_plan(b: &Billed, plan: &str, tasks: Value) -> TestResponse {
    b.app
        .operator()
        .put_plan(
            plan,
            json!({"requests_per_second": 1_000_000, "burst": 1_000_000,
                   "audit_retention_days": 30, "tasks_per_month": tasks}),
        )
        .await
}

async fn grant(b: &Billed, plan: &str) {
    b.app
        .admin(
            Method::PUT,
            &format!("/admin/v1/tenants/{}/billing/grant", b.t.id),
            Some(json!({"plan": plan})),
        )
        .await
        .assert_status(204);
}

async fn project(b: &Billed) -> String {
    let p = b.write().await;
    p.assert_status(201);
    p.str("id")
}

async fn create_task(b: &Billed, project: &str, title: &str) -> TestResponse {
    b.api(
        Method::POST,
        &format!("/api/v1/projects/{project}/tasks"),
        Some(json!({"title": title})),
    )
    .await
}

/// The tenant's task rows and usage events, read from its database.
async fn rows(b: &Billed) -> (i64, i64) {
    let r = b
        .shared
        .query_one(
            "SELECT (SELECT count(*) FROM tasks WHERE tenant_id = $1::text::uuid),
                    (SELECT count(*) FROM usage_events WHERE tenant_id = $1::text::uuid)",
            &[&b.t.id],
        )
        .await
        .expect("counts");
    (r.get(0), r.get(1))
}

/// The current period (`YYYY-MM`) and when it resets (RFC 3339), in UTC.
fn period() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let (y, m) = (now.year(), u8::from(now.month()));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (
        format!("{y:04}-{m:02}"),
        format!("{ny:04}-{nm:02}-01T00:00:00Z"),
    )
}

fn assert_exceeded(r: &TestResponse, plan: &str, limit: i64) {
    r.assert_problem(429);
    let (period, resets_at) = period();
    assert_eq!(r.body["type"], "/problems/quota-exceeded", "{}", r.text);
    assert_eq!(r.body["quota"], "tasks_created", "{}", r.text);
    assert_eq!(r.body["plan"], plan, "{}", r.text);
    assert_eq!(r.body["limit"], limit, "{}", r.text);
    assert_eq!(r.body["used"], limit, "{}", r.text);
    assert_eq!(r.body["period"], period.as_str(), "{}", r.text);
    assert_eq!(r.body["resets_at"], resets_at.as_str(), "{}", r.text);
    let wait: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=31 * 86_400).contains(&wait), "{wait}");
}

#[tokio::test]
async fn the_task_beyond_the_quota_is_refused_and_shown_until_the_next_period_or_a_grant() {
    let b = Billed::start().await;
    // Operators set the quota where they edit plans; a bad one is refused.
    put_plan(&b, "small", json!(-1)).await.assert_problem(422);
    let p = put_plan(&b, "small", json!(3)).await;
    p.assert_status(200);
    assert_eq!(p.body["tasks_per_month"], 3, "{}", p.text);
    grant(&b, "small").await;
    let project = project(&b).await;
    for i in 0..3 {
        create_task(&b, &project, &format!("t{i}"))
            .await
            .assert_status(201);
    }
    let refused = create_task(&b, &project, "one too many").await;
    assert_exceeded(&refused, "small", 3);
    assert_eq!(rows(&b).await, (3, 3), "the refused task wrote nothing");

    // Visible to the tenant and to operators: limit, usage, period and reset.
    let (period, resets_at) = period();
    let shown = json!([{"quota": "tasks_created", "limit": 3, "used": 3,
                        "period": period, "resets_at": resets_at}]);
    let view = b.billing().await;
    assert_eq!(view["entitlements"]["tasks_per_month"], 3, "{view}");
    assert_eq!(view["quotas"], shown, "{view}");
    let admin = b
        .app
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{}/billing", b.t.id),
            None,
        )
        .await;
    admin.assert_status(200);
    assert_eq!(admin.body["quotas"], shown, "{}", admin.text);
    assert_eq!(admin.body["plan"], "small", "{}", admin.text);

    // The next period: the tests' clock is the stored times, so the three creations move to the
    // last second of the previous month.
    b.shared
        .execute(
            "UPDATE usage_events
             SET occurred_at = date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 second'
             WHERE tenant_id = $1::text::uuid",
            &[&b.t.id],
        )
        .await
        .expect("move the usage to the previous period");
    create_task(&b, &project, "a new month")
        .await
        .assert_status(201);
    assert_eq!(b.billing().await["quotas"][0]["used"], 1);
    for i in 0..2 {
        create_task(&b, &project, &format!("u{i}"))
            .await
            .assert_status(201);
    }
    assert_exceeded(&create_task(&b, &project, "again").await, "small", 3);

    // An operator's grant of an unlimited plan lifts it on the next request.
    put_plan(&b, "big", Value::Null).await.assert_status(200);
    grant(&b, "big").await;
    create_task(&b, &project, "granted")
        .await
        .assert_status(201);
    let view = b.billing().await;
    assert_eq!(view["quotas"][0]["limit"], Value::Null, "{view}");
    assert_eq!(view["quotas"][0]["used"], 4, "{view}");
    b.finish().await;
}

#[tokio::test]
async fn the_quota_follows_the_entitlement_through_grace_an_upgrade_and_a_cancellation() {
    let b = Billed::start().await;
    put_plan(&b, "pro", json!(2)).await.assert_status(200);
    put_plan(&b, "free", json!(3)).await.assert_status(200);
    put_plan(&b, "enterprise", Value::Null)
        .await
        .assert_status(200);
    b.subscribe("pro").await;
    let project = project(&b).await;
    for i in 0..2 {
        create_task(&b, &project, &format!("t{i}"))
            .await
            .assert_status(201);
    }
    assert_exceeded(&create_task(&b, &project, "over").await, "pro", 2);
    // Past due, in grace: the plan's entitlements, its quota included.
    b.invoice_event(false).await;
    assert_eq!(b.billing().await["standing"], "grace");
    assert_exceeded(&create_task(&b, &project, "grace").await, "pro", 2);
    // An upgrade by webhook (enterprise: unlimited) lifts it at once.
    let end = now() + 20 * 86_400;
    let up = stripe::subscription("sub_1", "cus_1", "price_enterprise", "active", end);
    b.stripe.put_subscription(up.clone());
    b.deliver(&stripe::event(
        "evt_up",
        "customer.subscription.updated",
        now(),
        up,
    ))
    .await;
    create_task(&b, &project, "upgraded")
        .await
        .assert_status(201);
    // A cancellation leaves the free plan's quota (3, with 3 used).
    let gone = stripe::subscription("sub_1", "cus_1", "price_enterprise", "canceled", end);
    b.stripe.put_subscription(gone.clone());
    b.deliver(&stripe::event(
        "evt_gone",
        "customer.subscription.deleted",
        now() + 5,
        gone,
    ))
    .await;
    assert_exceeded(&create_task(&b, &project, "canceled").await, "free", 3);
    assert_eq!(rows(&b).await, (3, 3));
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_writers_at_the_edge_of_the_quota_do_not_overshoot_it() {
    let b = Billed::start().await;
    put_plan(&b, "edge", json!(100)).await.assert_status(200);
    grant(&b, "edge").await;
    let project = project(&b).await;
    for i in 0..23 {
        create_task(&b, &project, &format!("s{i}"))
            .await
            .assert_status(201);
    }
    // Three rounds of 32 parallel writers: far from the limit (the fast path), near it (exact,
    // one at a time), and across it (13 of 32 fit: not a multiple of the pool's 4 connections,
    // so writers that counted together cannot land on the limit by chance).
    let mut created = 23;
    let mut refused = 0;
    for round in 0..3 {
        let titles: Vec<String> = (0..32).map(|i| format!("r{round}-{i}")).collect();
        let answers = join_all(titles.iter().map(|t| create_task(&b, &project, t))).await;
        for a in &answers {
            match a.status.as_u16() {
                201 => created += 1,
                429 => {
                    assert_eq!(a.body["type"], "/problems/quota-exceeded", "{}", a.text);
                    refused += 1;
                }
                other => panic!("unexpected {other}: {}", a.text),
            }
        }
    }
    assert_eq!((created, refused), (100, 19));
    assert_eq!(rows(&b).await, (100, 100), "no overshoot");
    b.finish().await;
}
