//! Placement moves: promotion under write load with no lost write, move and demote, a crash at
//! every step, cancel before cutover, and nothing left behind (slots, publications,
//! subscriptions).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::Method;
use platform_tests::{Client, TestApp, TestTenant, clusters, connect, eventually};
use serde_json::{Value, json};
use tenancy::ids::TenantId;
use tenancy::placement::MoveRequest;
use tokio::sync::Mutex;

mod cleanup;
mod moves;
mod promote;
mod recovery;
mod requests;
mod verify;

/// What a writer saw acknowledged.
#[derive(Default)]
struct Acked {
    created: Vec<String>,
    titles: HashMap<String, String>,
    /// Answers 503 (the tenant fenced or moving), retried.
    unavailable: usize,
    /// The longest time between two acknowledged writes: what the writer felt as a pause.
    longest_gap: Duration,
}

/// Writers creating tasks and renaming their own until stopped, each for one tenant's project,
/// retrying 503s (a fenced or moving tenant) and counting any other failure.
struct Writers {
    stop: Arc<AtomicBool>,
    unexpected: Arc<AtomicUsize>,
    acked: Vec<Arc<Mutex<Acked>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// One writer per `(tenant, project)`.
    fn start(targets: &[(&TestTenant, &str)]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let unexpected = Arc::new(AtomicUsize::new(0));
        let acked: Vec<_> = targets
            .iter()
            .map(|_| Arc::new(Mutex::new(Acked::default())))
            .collect();
        let handles = targets
            .iter()
            .zip(&acked)
            .enumerate()
            .map(|(w, ((t, project), ack))| {
                tokio::spawn(writer(
                    t.api.clone(),
                    (*project).to_owned(),
                    Arc::clone(&stop),
                    Arc::clone(ack),
                    Arc::clone(&unexpected),
                    w,
                ))
            })
            .collect();
        Self {
            stop,
            unexpected,
            acked,
            handles,
        }
    }

    async fn created(&self, w: usize) -> usize {
        self.acked[w].lock().await.created.len()
    }

    /// Waits (30 s at most) until writer `w` has more than `n` acknowledged creations.
    async fn wait_beyond(&self, w: usize, n: usize) {
        let reached = eventually(Duration::from_secs(30), || async {
            self.created(w).await > n
        })
        .await;
        assert!(
            reached.is_some(),
            "writer {w} did not get beyond {n} writes"
        );
    }

    /// Stops the writers; none saw an unexpected status. Returns what each saw acknowledged.
    async fn stop(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.await.expect("writer");
        }
        assert_eq!(
            self.unexpected.load(Ordering::SeqCst),
            0,
            "a writer saw an unexpected status"
        );
        let mut out = Vec::new();
        for a in self.acked {
            out.push(std::mem::take(&mut *a.lock().await));
        }
        out
    }
}

/// Writes through `api` until `stop`: creates tasks and renames its own, retrying 503s.
async fn writer(
    api: Client,
    project: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
    unexpected: Arc<AtomicUsize>,
    w: usize,
) {
    let mut n = 0usize;
    let mut last_ack = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let title = format!("w{w}-{n}");
        let r = api.create_task(&project, &title).await;
        match r.status.as_u16() {
            201 => {
                let id = r.str("id");
                let mut a = acked.lock().await;
                a.created.push(id.clone());
                a.titles.insert(id, title);
                a.longest_gap = a.longest_gap.max(last_ack.elapsed());
                last_ack = std::time::Instant::now();
            }
            503 => {
                acked.lock().await.unavailable += 1;
                continue;
            }
            s => {
                eprintln!("writer {w}: unexpected {s}: {}", r.text);
                unexpected.fetch_add(1, Ordering::SeqCst);
            }
        }
        let own = acked.lock().await.created.get(n % 7).cloned();
        if let Some(id) = own {
            let renamed = format!("w{w}-{n}-renamed");
            let r = api
                .update_task(&project, &id, json!({"title": renamed}))
                .await;
            match r.status.as_u16() {
                200 => {
                    acked.lock().await.titles.insert(id, renamed);
                }
                503 => acked.lock().await.unavailable += 1,
                s => {
                    eprintln!("writer {w}: unexpected {s} on update: {}", r.text);
                    unexpected.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

async fn seed_tasks(app: &TestApp, t: &TestTenant, project: &str, n: i64) {
    let owner = app.shared_owner().await;
    let tenant = uuid::Uuid::parse_str(&t.id).expect("uuid");
    let project = uuid::Uuid::parse_str(project).expect("uuid");
    owner
        .execute(
            "INSERT INTO tasks (tenant_id, id, project_id, title, status)
             SELECT $1, gen_random_uuid(), $2, 'seed ' || g, 'todo' FROM generate_series(1, $3::bigint) g",
            &[&tenant, &project, &n],
        )
        .await
        .expect("seed");
}

pub(crate) async fn wait_op(app: &TestApp, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let r = app
            .admin(Method::GET, &format!("/admin/v1/operations/{id}"), None)
            .await;
        if matches!(
            r.body["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return r.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "operation did not finish: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rows of the tenant's tasks, by id, in the database it lives in now.
async fn tasks_in(db: &tokio_postgres::Client, tenant: &str) -> HashMap<String, String> {
    let tenant = uuid::Uuid::parse_str(tenant).expect("uuid");
    db.query(
        "SELECT id::text, title FROM tasks WHERE tenant_id = $1",
        &[&tenant],
    )
    .await
    .expect("tasks")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

pub(crate) async fn dedicated_db(
    app: &TestApp,
    t: &TestTenant,
) -> (String, tokio_postgres::Client) {
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant(TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant");
    let tenancy::catalog::Placement::Dedicated { server, database } = tenant.placement else {
        panic!("not dedicated")
    };
    let servers = app.app.tenancy.catalog.db_servers().await.expect("servers");
    let name = servers
        .iter()
        .find(|s| s.id == server)
        .map(|s| s.name.clone())
        .expect("server");
    let cluster = if name == "second" {
        &clusters().second
    } else {
        &clusters().primary
    };
    (name, connect(&cluster.url(&database)).await)
}

/// No replication slot, subscription or publication of this test's moves is left on either
/// cluster (other tests run moves on the same clusters at the same time).
async fn assert_no_leftovers(app: &TestApp) {
    let cp = connect(&clusters().primary.url(&app.control_db)).await;
    let names: Vec<String> = cp
        .query(
            "SELECT 'move_' || replace(id::text, '-', '') FROM operations",
            &[],
        )
        .await
        .expect("operations")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!names.is_empty());
    for cluster in [&clusters().primary, &clusters().second] {
        let c = connect(&cluster.url("postgres")).await;
        let slots: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY($1)",
                &[&names],
            )
            .await
            .expect("slots")
            .get(0);
        let subs: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_subscription WHERE subname = ANY($1)",
                &[&names],
            )
            .await
            .expect("subs")
            .get(0);
        assert_eq!((slots, subs), (0, 0), "leftover slots/subscriptions");
    }
    let shared = app.shared_owner().await;
    let pubs: i64 = shared
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = ANY($1)",
            &[&names],
        )
        .await
        .expect("pubs")
        .get(0);
    assert_eq!(pubs, 0, "leftover publications in the shared database");
}

/// The tenant's writes are refused in the shared database (its old, fenced copy).
async fn assert_fenced_in_shared(app: &TestApp, t: &TestTenant) {
    let db = app.app_role(&app.shared_db).await;
    db.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{}'", t.id))
        .await
        .expect("scope");
    let err = db
        .batch_execute("UPDATE tasks SET title = 'stale write'")
        .await
        .expect_err("fenced");
    assert_eq!(
        err.code().map(tokio_postgres::error::SqlState::code),
        Some("TF001"),
        "{err}"
    );
    db.batch_execute("ROLLBACK").await.expect("rollback");
}
