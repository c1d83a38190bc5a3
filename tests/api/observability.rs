//! Observability: a real Prometheus scrapes an instance's metrics listener while the tests drive
//! requests, and PromQL through its HTTP API finds the series an on-call engineer needs: route
//! templates (never raw paths), per-tenant series for the busiest tenants plus `other`, per plan
//! and placement, pool gauges per database server; and the per-tenant series stay bounded when
//! hundreds of tenants each send a request.

mod errors;
mod operations;
mod traces;

use axum::http::Method;
use platform_tests::prometheus::Prometheus;
use platform_tests::{Req, TestApp};

const METRICS_ON: (&str, &str) = ("PLATFORM_METRICS_LISTEN", "127.0.0.1:0");

#[tokio::test]
async fn prometheus_sees_route_templates_top_tenants_with_other_and_pool_gauges() {
    let app = TestApp::spawn_with(&[METRICS_ON, ("PLATFORM_METRICS_TOP_TENANTS", "2")]).await;
    let prom = Prometheus::scraping(&app).await;
    let a = app.tenant("obs-a", "shared", None).await;
    let b = app.tenant("obs-b", "dedicated", Some("second")).await;
    let c = app.tenant("obs-c", "shared", None).await;

    // Two busy tenants: each creates a project and reads it back by id, five times.
    for t in [&a, &b] {
        for i in 0..5 {
            let p = app
                .api(
                    t,
                    Method::POST,
                    "/api/v1/projects",
                    Some(serde_json::json!({"name": format!("p{i}")})),
                )
                .await;
            p.assert_status(201);
            let id = p.str("id");
            app.api(t, Method::GET, &format!("/api/v1/projects/{id}"), None)
                .await
                .assert_status(200);
        }
    }
    // A third tenant, with no room left among the top 2: counted under `other`.
    app.api(&c, Method::GET, "/api/v1/projects", None)
        .await
        .assert_status(200);
    // No credential: a refused authentication, counted by kind.
    app.send(Req::new(Method::GET, "/api/v1/projects").host(a.host()))
        .await
        .assert_problem(401);

    // Route templates, method and status class; the raw path (with an id) never is a label.
    prom.wait_for(
        r#"sum(http_server_request_duration_seconds_count{http_route="/api/v1/projects/{project_id}",http_request_method="GET",http_response_status_code="2xx"})"#,
        |v| v >= 10.0,
    )
    .await;
    assert!(
        prom.query(r#"http_server_request_duration_seconds_count{http_route=~".*[0-9a-f]{8}-[0-9a-f]{4}-.*"}"#)
            .await
            .is_empty(),
        "a raw path became a label"
    );
    // Top 2 tenants by id, then `other`; nothing else.
    for t in [&a, &b] {
        prom.wait_for(
            &format!(r#"platform_tenant_requests_total{{tenant_id="{}"}}"#, t.id),
            |v| v >= 10.0,
        )
        .await;
        prom.wait_for(
            &format!(
                r#"platform_tenant_request_duration_seconds_count{{tenant_id="{}"}}"#,
                t.id
            ),
            |v| v >= 10.0,
        )
        .await;
    }
    prom.wait_for(
        r#"platform_tenant_requests_total{tenant_id="other"}"#,
        |v| v >= 1.0,
    )
    .await;
    assert!(
        prom.query(&format!(
            r#"platform_tenant_requests_total{{tenant_id="{}"}}"#,
            c.id
        ))
        .await
        .is_empty(),
        "the third tenant has a series of its own"
    );
    prom.wait_for("count(platform_tenant_requests_total)", |v| {
        (v - 3.0).abs() < 0.5
    })
    .await;
    // Per plan and placement.
    prom.wait_for(
        r#"sum(platform_plan_requests_total{plan="test",placement="dedicated"})"#,
        |v| v >= 10.0,
    )
    .await;
    prom.wait_for(
        r#"sum(platform_plan_requests_total{plan="test",placement="shared"})"#,
        |v| v >= 11.0,
    )
    .await;
    // Pool gauges: the shared pool (4 in the test settings) and the second server's dedicated
    // pool with its connection budget (40 when registered).
    prom.wait_for(r#"db_client_connection_max{db_server="shared"}"#, |v| {
        (v - 4.0).abs() < 0.5
    })
    .await;
    prom.wait_for(r#"platform_db_pools{db_server="second"}"#, |v| v >= 1.0)
        .await;
    prom.wait_for(
        r#"platform_db_connection_budget{db_server="second"}"#,
        |v| (v - 40.0).abs() < 0.5,
    )
    .await;
    prom.wait_for(
        r#"sum(db_client_connection_count{db_server="second"})"#,
        |v| v >= 1.0,
    )
    .await;
    prom.wait_for(r#"platform_auth_failures_total{kind="credential"}"#, |v| {
        v >= 1.0
    })
    .await;
    prom.wait_for("process_resident_memory_bytes", |v| v > 1e6)
        .await;
    prom.wait_for("process_open_fds", |v| v > 0.0).await;
    prom.wait_for("http_server_active_requests", |v| v >= 0.0)
        .await;
    drop(prom);
    app.finish().await;
}

/// 1,000 tenants each send one request: every request is counted, and the per-tenant metric has
/// at most N + 1 series. The tenants are provisioned through the operator API, eight at a time.
#[tokio::test]
async fn per_tenant_series_stay_bounded_across_a_thousand_tenants() {
    use futures_util::StreamExt as _;
    const TENANTS: usize = 1000;
    const TOP: usize = 20;
    let app = TestApp::spawn_with(&[METRICS_ON]).await;
    let prom = Prometheus::scraping(&app).await;
    let tenants: Vec<_> = futures_util::stream::iter(0..TENANTS)
        .map(|i| {
            let app = &app;
            async move { app.tenant(&format!("many-{i}"), "shared", None).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for t in &tenants {
        app.api(t, Method::GET, "/api/v1/projects", None)
            .await
            .assert_status(200);
    }
    #[expect(clippy::cast_precision_loss, reason = "small numbers")]
    let all = TENANTS as f64;
    prom.wait_for("sum(platform_tenant_requests_total)", |v| {
        (v - all).abs() < 0.5
    })
    .await;
    for metric in [
        "platform_tenant_requests_total",
        "platform_tenant_request_duration_seconds_count",
    ] {
        let n = prom
            .wait_for(&format!("count({metric})"), |v| v >= 1.0)
            .await;
        #[expect(clippy::cast_precision_loss, reason = "small numbers")]
        let bound = (TOP + 1) as f64;
        assert!(
            n <= bound,
            "{metric}: {n} series for {TENANTS} tenants (bound {bound})"
        );
    }
    prom.wait_for(
        r#"platform_tenant_requests_total{tenant_id="other"}"#,
        |v| v >= (TENANTS - TOP) as f64,
    )
    .await;
    // The whole exposition stays small: no label follows the number of tenants.
    let samples = prom
        .wait_for(r#"scrape_samples_scraped{job="platform"}"#, |v| v > 0.0)
        .await;
    assert!(samples < 1500.0, "{samples} samples per scrape");
    drop(prom);
    app.finish().await;
}

/// Requests record into handles kept between requests, but never across a scrape: a series
/// the exporter dropped as idle (`PLATFORM_METRICS_IDLE_SECS`) comes back, counting from one,
/// with the next request (a handle kept across the drop would count into a series no longer
/// exported).
#[tokio::test]
async fn a_series_dropped_as_idle_comes_back_with_the_next_request() {
    let app = TestApp::spawn_with(&[METRICS_ON, ("PLATFORM_METRICS_IDLE_SECS", "1")]).await;
    let t = app.tenant("obs-idle", "shared", None).await;
    let route = r#"http_server_request_duration_seconds_count{http_route="/api/v1/projects",http_request_method="GET",http_response_status_code="2xx"}"#;
    let tenant = format!(r#"platform_tenant_requests_total{{tenant_id="{}"}}"#, t.id);
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    let get = || async {
        app.api(&t, Method::GET, "/api/v1/projects", None)
            .await
            .assert_status(200);
    };
    get().await;
    get().await;
    let text = app.app.metrics.render().await.expect("metrics on");
    assert_eq!(value(&text, route), Some(2.0), "{text}");
    assert_eq!(value(&text, &tenant), Some(2.0), "{text}");

    // Idle past the timeout: a scrape drops both.
    let dropped = platform_tests::eventually(std::time::Duration::from_secs(20), || async {
        let text = app.app.metrics.render().await.expect("metrics on");
        value(&text, route).is_none() && value(&text, &tenant).is_none()
    })
    .await;
    assert!(dropped.is_some(), "the idle series were never dropped");

    get().await;
    let text = app.app.metrics.render().await.expect("metrics on");
    assert_eq!(value(&text, route), Some(1.0), "{text}");
    assert_eq!(value(&text, &tenant), Some(1.0), "{text}");
    app.finish().await;
}

/// The real binary's metrics listener: a statement that outlasts the statement timeout is
/// counted, every checkout's wait lands in the per-server histogram, and the tokio runtime's
/// gauges (workers, tasks, global queue, busy ratio between two scrapes) are there.
#[tokio::test]
async fn statement_timeouts_checkout_waits_and_the_runtime_are_exported() {
    let app = TestApp::spawn().await;
    let t = app.tenant("obs-timeout", "shared", None).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let p = platform_tests::process::Platform::start_with(
        &app,
        &[
            ("PLATFORM_METRICS_LISTEN", listen.as_str()),
            ("PLATFORM_STATEMENT_TIMEOUT", "1"),
            ("PLATFORM_TEST_PANIC_ROUTE", "true"),
        ],
    )
    .await;
    let scrape = || async {
        reqwest::get(format!("http://{listen}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("exposition")
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    let before = scrape().await;
    assert_eq!(value(&before, "platform_db_statement_timeouts_total"), None);

    let r = p
        .request(reqwest::Method::POST, "/_test/fail")
        .header("host", t.host())
        .bearer_auth(&t.key)
        .header("content-type", "application/json")
        .body(r#"{"sleep": 5}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 503);
    let body = r.text().await.expect("body");
    assert!(body.contains("query-timeout"), "{body}");

    let after = scrape().await;
    assert_eq!(
        value(&after, "platform_db_statement_timeouts_total"),
        Some(1.0),
        "{after}"
    );
    // The request's checkout (and the key check's) waited on the shared pool.
    assert!(
        value(
            &after,
            r#"db_client_connection_wait_time_seconds_count{db_server="shared"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        after.contains(
            r#"db_client_connection_wait_time_seconds_bucket{db_server="shared",le="0.001"}"#
        ),
        "a histogram with the checkout buckets: {after}"
    );
    assert!(
        value(&after, "tokio_workers").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        value(&after, "tokio_alive_tasks").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        value(&after, "tokio_global_queue_depth").is_some(),
        "{after}"
    );
    // Busy ratio: from the second scrape on (it compares with the one before).
    assert!(
        value(&after, "tokio_workers_busy_ratio").is_some_and(|r| (0.0..=1.0).contains(&r)),
        "{after}"
    );
    p.stop().await;
}
