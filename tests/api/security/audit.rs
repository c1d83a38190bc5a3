//! Holes 8 and 9: the audit log cannot be suppressed or forged by the data-plane role, and
//! `audit verify` reads one consistent chain while writers append to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use platform_tests::{TestApp, TestTenant};
use tenancy::ids::TenantId;

fn tenant_uuid(t: &TestTenant) -> uuid::Uuid {
    TenantId::parse(&t.id).expect("id").as_uuid()
}

async fn catalog_tenant(app: &TestApp, t: &TestTenant) -> tenancy::catalog::Tenant {
    app.app
        .tenancy
        .catalog
        .tenant(TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant")
}

/// Writers creating projects (each an audit event), one per permit of `budget`, until it is
/// closed; returns how many they wrote. Permits handed out just before each verification keep
/// the writes overlapping it without letting the chain grow without bound.
fn writers(
    t: &TestTenant,
    n: usize,
    budget: &Arc<Semaphore>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..n)
        .map(|w| {
            let (api, budget) = (t.api.clone(), Arc::clone(budget));
            tokio::spawn(async move {
                let mut ok = 0;
                while let Ok(permit) = budget.acquire().await {
                    permit.forget();
                    let r = api.create_project(&format!("w{w}-{ok}")).await;
                    assert_eq!(r.status.as_u16(), 201, "writer: {}", r.text);
                    ok += 1;
                }
                ok
            })
        })
        .collect()
}

/// Hole 9: twenty verifications while four writers append: never a false alarm; a real tamper
/// (by the owner, past every trigger) is still caught.
#[tokio::test]
async fn verify_under_write_load_has_no_false_alarm() {
    let app = TestApp::spawn().await;
    for (slug, placement, server) in [
        ("verify-shared", "shared", None),
        ("verify-dedicated", "dedicated", Some("second")),
    ] {
        let t = app.tenant(slug, placement, server).await;
        let tenant = catalog_tenant(&app, &t).await;
        let budget = Arc::new(Semaphore::new(0));
        let handles = writers(&t, 4, &budget);
        let alarms = AtomicUsize::new(0);
        for i in 0..20 {
            budget.add_permits(40);
            tokio::task::yield_now().await;
            let r = audit::verify_tenant(&app.app.tenancy.dataplane, &tenant)
                .await
                .expect("verify");
            if let Some(b) = &r.broken {
                alarms.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "{slug}: verification {i}: false alarm at {}: {}",
                    b.seq, b.problem
                );
            }
        }
        budget.close();
        let mut written = 0;
        for h in handles {
            written += h.await.expect("writer");
        }
        assert!(written > 0, "{slug}: the writers wrote nothing");
        assert_eq!(
            alarms.load(Ordering::Relaxed),
            0,
            "{slug}: verify reported tampering that did not happen ({written} writes ran meanwhile)"
        );
        let r = audit::verify_tenant(&app.app.tenancy.dataplane, &tenant)
            .await
            .expect("verify");
        assert!(r.ok(), "{slug}: {:?}", r.broken);
        assert!(r.events_checked > 0);

        // A real tamper: the owner rewrites an event with the triggers off.
        let db = app.tenant_db(&t).await;
        db.batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE audit_events SET action = 'project.forged' WHERE tenant_id = '{}' AND seq = 2;
             COMMIT",
            tenant_uuid(&t)
        ))
        .await
        .expect("tamper");
        let r = audit::verify_tenant(&app.app.tenancy.dataplane, &tenant)
            .await
            .expect("verify");
        assert_eq!(
            r.broken.as_ref().map(|b| b.seq),
            Some(2),
            "{slug}: tamper not caught"
        );
    }
    app.finish().await;
}
