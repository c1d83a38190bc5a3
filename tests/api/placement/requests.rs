//! Placement requests are validated.

use super::*;

#[tokio::test]
async fn placement_requests_are_validated() {
    let app = TestApp::spawn().await;
    app.tenant("alpha", "shared", None).await;
    app.admin(
        Method::POST,
        "/admin/v1/tenants/alpha/placement",
        Some(json!({"placement": "shared"})),
    )
    .await
    .assert_problem(409);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/alpha/placement",
        Some(json!({"placement": "dedicated"})),
    )
    .await
    .assert_problem(422);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/alpha/placement",
        Some(json!({"placement": "dedicated", "db_server": "nope"})),
    )
    .await
    .assert_problem(422);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/nobody/placement",
        Some(json!({"placement": "shared"})),
    )
    .await
    .assert_problem(404);
    app.admin(
        Method::GET,
        &format!("/admin/v1/operations/{}", uuid::Uuid::now_v7()),
        None,
    )
    .await
    .assert_problem(404);
    app.finish().await;
}
