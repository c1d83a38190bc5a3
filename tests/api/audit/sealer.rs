//! The audit sealer (tenant V8): writers append unlinked events without queueing on each other,
//! the sealer links them after commit, and verification catches a changed, removed or reordered
//! event, and events left unlinked too long. A sealer that dies in the middle of a batch leaves
//! no trace; the next one resumes from the head without gaps or duplicates.

use std::time::Duration;

use platform_tests::{TestApp, TestTenant, eventually};
use tenancy::ids::TenantId;

async fn catalog_tenant(app: &TestApp, t: &TestTenant) -> tenancy::catalog::Tenant {
    app.app
        .tenancy
        .catalog
        .tenant(TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant")
}

async fn verify(app: &TestApp, tenant: &tenancy::catalog::Tenant) -> audit::ChainReport {
    audit::verify_tenant(&app.app.tenancy.dataplane, tenant)
        .await
        .expect("verify")
}

/// (events, linked, distinct seqs, lowest seq, highest seq) of the tenant, as the owner sees them.
async fn shape(db: &tokio_postgres::Client, t: &TestTenant) -> (i64, i64, i64, i64, i64) {
    let r = db
        .query_one(
            "SELECT count(*), count(seq), count(DISTINCT seq), COALESCE(min(seq), 0), COALESCE(max(seq), 0)
             FROM audit_events WHERE tenant_id = $1::text::uuid",
            &[&t.id],
        )
        .await
        .expect("shape");
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// Runs `sql` as the owner with every trigger off (a tamper past the immutability trigger).
async fn tamper(db: &tokio_postgres::Client, sql: &str) {
    db.batch_execute(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT"
    ))
    .await
    .expect(sql);
}

#[tokio::test]
async fn thirty_two_writers_of_one_tenant_lose_no_event_and_verify_catches_tampering() {
    let app = TestApp::spawn().await;
    let t = app.tenant("busy", "shared", None).await;
    let tenant = catalog_tenant(&app, &t).await;
    let db = app.shared_owner().await;
    let (before, ..) = shape(&db, &t).await;
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let api = t.api.clone();
            tokio::spawn(async move {
                for i in 0..4 {
                    let r = api.create_project(&format!("w{w}-{i}")).await;
                    assert_eq!(r.status.as_u16(), 201, "writer {w}: {}", r.text);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    // Every write left its event, and the running sealer links them all, soon.
    let linked = eventually(Duration::from_secs(30), || async {
        let (n, linked, ..) = shape(&db, &t).await;
        n == linked
    })
    .await;
    assert!(linked.is_some(), "the sealer did not link every event");
    let (n, linked, distinct, lo, hi) = shape(&db, &t).await;
    assert_eq!(n, before + 128, "an event is missing");
    assert_eq!(
        (linked, distinct, lo, hi),
        (n, n, 1, n),
        "seq numbers are not 1..=n without gaps or duplicates"
    );
    let r = verify(&app, &tenant).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.events_checked, r.head_seq, r.unlinked), (n as u64, n, 0));

    // A changed event.
    let scope = format!("tenant_id = '{}'", tenant.id);
    tamper(
        &db,
        &format!(
            "CREATE TABLE kept AS SELECT * FROM audit_events WHERE {scope} AND seq = 7;
             UPDATE audit_events SET actor_id = 'someone else' WHERE {scope} AND seq = 7"
        ),
    )
    .await;
    assert_eq!(verify(&app, &tenant).await.broken.map(|b| b.seq), Some(7));
    tamper(
        &db,
        "UPDATE audit_events e SET actor_id = k.actor_id FROM kept k
         WHERE e.tenant_id = k.tenant_id AND e.seq = k.seq; DROP TABLE kept",
    )
    .await;
    assert!(verify(&app, &tenant).await.ok(), "restoring the event");

    // A removed event.
    tamper(&db, &format!("CREATE TABLE kept AS SELECT * FROM audit_events WHERE {scope} AND seq = 9; DELETE FROM audit_events WHERE {scope} AND seq = 9")).await;
    // Reported at the event after the gap.
    assert_eq!(verify(&app, &tenant).await.broken.map(|b| b.seq), Some(10));
    tamper(
        &db,
        "INSERT INTO audit_events SELECT * FROM kept; DROP TABLE kept",
    )
    .await;
    assert!(verify(&app, &tenant).await.ok(), "restoring the event");

    // A reordered pair (their seq numbers swapped).
    tamper(
        &db,
        &format!(
            "UPDATE audit_events SET seq = -1 WHERE {scope} AND seq = 3;
             UPDATE audit_events SET seq = 3 WHERE {scope} AND seq = 4;
             UPDATE audit_events SET seq = 4 WHERE {scope} AND seq = -1"
        ),
    )
    .await;
    assert_eq!(verify(&app, &tenant).await.broken.map(|b| b.seq), Some(3));
    app.finish().await;
}

#[tokio::test]
async fn a_sealer_killed_mid_batch_leaves_nothing_and_the_next_resumes_without_gaps() {
    let app = TestApp::spawn().await;
    // This test seals by hand.
    app.app.stop_sealing();
    let t = app.tenant("crashy", "dedicated", Some("second")).await;
    let tenant = catalog_tenant(&app, &t).await;
    for i in 0..10 {
        t.api
            .create_project(&format!("p{i}"))
            .await
            .assert_status(201);
    }
    let db = app.tenant_db(&t).await;
    let (n, linked, ..) = shape(&db, &t).await;
    assert!(n >= 10, "{n}");
    assert_eq!(linked, 0, "nothing seals while the sealer is stopped");
    let dp = &app.app.tenancy.dataplane;

    // A sealer that dies mid-batch: it linked three events (with whatever hashes), then its
    // process died before COMMIT.
    let pid: i32 = {
        let mut tx = dp.connect(&tenant).await.expect("connect").begin();
        let ids: Vec<uuid::Uuid> = tx
            .query(
                "SELECT id FROM audit_events WHERE seq IS NULL ORDER BY occurred_at, id LIMIT 3",
                &[],
            )
            .await
            .expect("unlinked")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let hashes = vec!["f".repeat(64); ids.len()];
        tx.query_opt(
            "SELECT platform_audit_link($1, 0, $2, $3)",
            &[&tenant.id.as_uuid(), &ids, &hashes],
        )
        .await
        .expect("partial link");
        tx.query_opt("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .expect("row")
            .get(0)
        // Dropped here without COMMIT: the crash.
    };
    let ended = eventually(Duration::from_secs(10), || async {
        db.query_opt(
            "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND xact_start IS NOT NULL",
            &[&pid],
        )
        .await
        .expect("activity")
        .is_none()
    })
    .await;
    assert!(ended.is_some(), "the crashed batch never ended");
    assert_eq!(
        shape(&db, &t).await.1,
        0,
        "a crashed batch left links behind"
    );

    // The next sealer starts from the head: every event linked once, in order.
    let sealed = audit::sealer::seal_tenant(dp, &tenant).await.expect("seal");
    assert_eq!(sealed, u64::try_from(n).expect("count"));
    assert_eq!(shape(&db, &t).await, (n, n, n, 1, n));
    let r = verify(&app, &tenant).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.events_checked, u64::try_from(n).expect("count"));

    // Two sealers at once on more events: each event is linked by exactly one of them.
    for i in 0..10 {
        t.api
            .create_project(&format!("q{i}"))
            .await
            .assert_status(201);
    }
    let (a, b) = tokio::join!(
        audit::sealer::seal_tenant(dp, &tenant),
        audit::sealer::seal_tenant(dp, &tenant)
    );
    let (a, b) = (a.expect("seal a"), b.expect("seal b"));
    let rest = audit::sealer::seal_tenant(dp, &tenant).await.expect("seal");
    let (m, ..) = shape(&db, &t).await;
    assert_eq!(a + b + rest, u64::try_from(m - n).expect("count"));
    assert_eq!(shape(&db, &t).await, (m, m, m, 1, m));
    assert!(verify(&app, &tenant).await.ok());

    // An event nobody links for longer than the bound is an alarm (here: written as if long ago).
    db.batch_execute(&format!(
        "INSERT INTO audit_events (tenant_id, id, occurred_at, actor_type, action, outcome)
         VALUES ('{}', gen_random_uuid(), now() - interval '10 minutes', 'system', 'x.stale', 'success')",
        tenant.id
    ))
    .await
    .expect("stale event");
    let r = verify(&app, &tenant).await;
    assert!(r.broken.is_none(), "{r:?}");
    assert!(r.unlinked_alarm && !r.ok(), "no alarm: {r:?}");
    app.finish().await;
}
