//! Dropping a move's change log after the switch, while the tenant already writes on the target,
//! never deadlocks with those writes (a deadlock's victim is a writer answered 500).

use super::verify::{start_promotion, target_db};
use super::*;

/// Steps up to and including `switch`: the next one is `cleanup`.
const THROUGH_SWITCH: usize = 9;

#[tokio::test]
async fn cleanup_holds_no_table_while_it_waits_for_another() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = app.app.tenancy.mover.clone();
    let t = app.tenant("epsilon", "shared", None).await;
    let p = t.api.create_project("p").await.str("id");
    t.api.create_task(&p, "before").await.assert_status(201);
    seed_tasks(&app, &t, &p, 50).await;
    let op = start_promotion(&app, &t).await;
    let switched = mover.run_steps(op, THROUGH_SWITCH).await.expect("steps");
    assert_eq!(switched.step.as_str(), "cleanup");
    let schema = format!("move_{}", op.as_uuid().simple());
    let db = target_db(&switched).await;
    let database = switched.target["database"]
        .as_str()
        .expect("target database");
    // The tables carrying the move's triggers, the first attached first.
    let triggered: Vec<String> = db
        .query(
            "SELECT tc.relname::text FROM pg_trigger t
             JOIN pg_class tc ON tc.oid = t.tgrelid
             JOIN pg_proc p ON p.oid = t.tgfoid
             JOIN pg_namespace pn ON pn.oid = p.pronamespace
             WHERE pn.nspname = $1 GROUP BY tc.relname ORDER BY max(t.oid)",
            &[&schema],
        )
        .await
        .expect("triggers")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(triggered.len() > 1, "{triggered:?}");
    let held = &triggered[0];

    // A writer of the tenant on the live target, in the middle of its transaction: one table
    // written, more to come (as a task's insert is followed by its audit event).
    let writer = connect(&clusters().second.url(database)).await;
    writer
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE public.{held} IN ROW EXCLUSIVE MODE"
        ))
        .await
        .expect("writer's first table");
    let run = tokio::spawn({
        let mover = mover.clone();
        async move { mover.run(op).await }
    });

    // While the cleanup waits for the writer's table, it must hold no other tenant table: the
    // writer's next statement would wait for it, and each would wait for the other.
    let observer = connect(&clusters().second.url(database)).await;
    let seen = Arc::new(Mutex::new(None::<Vec<String>>));
    let waited = eventually(Duration::from_secs(30), || {
        let (observer, seen) = (&observer, Arc::clone(&seen));
        async move {
            let row = observer
                .query_opt(
                    "WITH l AS MATERIALIZED (SELECT * FROM pg_locks
                                              WHERE database = (SELECT oid FROM pg_database
                                                                WHERE datname = current_database()))
                     SELECT coalesce((
                         SELECT array_agg(c.relname::text ORDER BY c.relname)
                         FROM l h JOIN pg_class c ON c.oid = h.relation
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE h.pid = w.pid AND h.granted AND n.nspname = 'public'
                           AND c.relkind = 'r' AND h.mode = 'AccessExclusiveLock'), '{}')
                     FROM l w WHERE NOT w.granted AND w.relation = $1::text::regclass",
                    &[&format!("public.{held}")],
                )
                .await
                .expect("locks");
            match row {
                Some(r) => {
                    *seen.lock().await = Some(r.get(0));
                    true
                }
                None => false,
            }
        }
    })
    .await;
    assert!(waited.is_some(), "the cleanup never waited for {held}");
    let holding = seen.lock().await.take().expect("observed");
    assert!(
        holding.is_empty(),
        "while waiting for {held}, the cleanup holds {holding:?}: a writer holding {held} and \
         writing to one of those would deadlock with it"
    );

    // The writer goes on to the other tables and commits.
    let rest: Vec<String> = triggered[1..]
        .iter()
        .map(|t| format!("public.{t}"))
        .collect();
    writer
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '20s'; LOCK TABLE {} IN ROW EXCLUSIVE MODE; COMMIT",
            rest.join(", ")
        ))
        .await
        .expect("the writer's other tables");
    let done = run.await.expect("runner").expect("run");
    assert_eq!(done.state.as_str(), "succeeded", "{:?}", done.error);
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .expect("schema")
        .get(0);
    assert_eq!(left, 0, "the move's schema is dropped");
    t.api.create_task(&p, "after").await.assert_status(201);
    assert_no_leftovers(&app).await;
    app.finish().await;
}
