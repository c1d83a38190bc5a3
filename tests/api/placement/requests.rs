//! Placement requests are validated.

use super::*;

#[tokio::test]
async fn placement_requests_are_validated() {
    let app = TestApp::spawn().await;
    app.tenant("alpha", "shared", None).await;
    let operator = app.operator();
    // Already there; no server; an unknown server; an unknown tenant.
    for (tenant, body, status) in [
        ("alpha", json!({"placement": "shared"}), 409),
        ("alpha", json!({"placement": "dedicated"}), 422),
        (
            "alpha",
            json!({"placement": "dedicated", "db_server": "nope"}),
            422,
        ),
        ("nobody", json!({"placement": "shared"}), 404),
    ] {
        operator
            .change_placement(tenant, body)
            .await
            .assert_problem(status);
    }
    operator
        .operation(&uuid::Uuid::now_v7().to_string())
        .await
        .assert_problem(404);
    app.finish().await;
}
