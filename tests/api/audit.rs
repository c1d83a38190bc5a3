//! The audit log: every mutating route leaves an event with its request id ([`walk`]), events
//! are written in the change's transaction (a rollback leaves none), the application role cannot
//! change or remove them, the listing filters and pages, denied attempts are recorded ([`log`]),
//! and an export of 100,000 events streams in bounded chunks; expiry keeps the chain verifiable
//! ([`export`]).

use platform_tests::{TestApp, TestTenant};

mod export;
mod log;
mod sealer;
mod walk;

pub(crate) async fn count(app: &TestApp, t: &TestTenant, action: &str) -> i64 {
    app.shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = $1 AND tenant_id = $2::text::uuid",
            &[&action, &t.id],
        )
        .await
        .expect("count")
        .get(0)
}

/// Waits until every event of the tenant is linked into its chain (sealing by hand too, for
/// events no data-plane commit hinted, such as rows the owner wrote).
pub(crate) async fn sealed(app: &TestApp, tenant: &tenancy::catalog::Tenant) {
    let dp = &app.app.tenancy.dataplane;
    let done = platform_tests::eventually(std::time::Duration::from_secs(30), || async {
        audit::sealer::seal_tenant(dp, tenant).await.expect("seal");
        audit::verify_tenant(dp, tenant)
            .await
            .expect("verify")
            .unlinked
            == 0
    })
    .await;
    assert!(done.is_some(), "events stayed unlinked");
}
