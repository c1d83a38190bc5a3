//! `platformctl migrate` as an operator runs it: the real binary as a child process against the
//! harness's databases. Exit codes, JSON lines, the failed databases on the last lines, `status`
//! after a run, and `kill -9` mid-run followed by a rerun that converges with nothing applied
//! twice.

use std::process::Stdio;
use std::time::Duration;

use platform_tests::{TestApp, TestTenant, ahead, eventually, failing, head, test_migrations_dir};
use serde_json::Value;
use tokio::process::{Child, Command};

fn platformctl(app: &TestApp, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_platformctl"));
    c.args(args)
        .envs(app.platform_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs to completion; returns the exit code and the stdout JSON lines.
async fn run_json(app: &TestApp, args: &[&str]) -> (i32, Vec<Value>) {
    let out = platformctl(app, args)
        .output()
        .await
        .expect("run platformctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "not a JSON line ({e}): {l}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

fn extra() -> String {
    test_migrations_dir().display().to_string()
}

fn status_of<'a>(lines: &'a [Value], slug: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| {
            l["event"] == "status"
                && l["tenants"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|s| s == slug))
        })
        .unwrap_or_else(|| panic!("no status line for {slug}: {lines:?}"))
}

async fn set_allow_connections(app: &TestApp, t: &TestTenant, allow: bool) {
    let url = app.tenant_db_url(t).await;
    let (base, db) = url.rsplit_once('/').expect("url has a database");
    platform_tests::connect(&format!("{base}/postgres"))
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {allow}"
        ))
        .await
        .expect("alter database");
}

#[tokio::test]
async fn a_failed_database_makes_the_exit_code_non_zero_and_is_listed_last() {
    let app = TestApp::spawn().await;
    let ok = app.tenant("cli-ok", "dedicated", Some("local")).await;
    let down = app.tenant("cli-down", "dedicated", Some("second")).await;
    set_allow_connections(&app, &down, false).await;

    let (code, lines) = run_json(
        &app,
        &[
            "migrate",
            "tenants",
            "--json",
            "--extra-migrations",
            &extra(),
        ],
    )
    .await;
    assert_ne!(code, 0, "{lines:?}");
    // One JSON line per database event: started and finished for each of the three databases.
    assert_eq!(lines.iter().filter(|l| l["event"] == "started").count(), 3);
    assert_eq!(lines.iter().filter(|l| l["event"] == "finished").count(), 3);
    let last = lines.last().expect("output");
    assert_eq!(last["event"], "failed");
    assert_eq!(last["tenants"][0], "cli-down");
    assert!(last["error"].as_str().is_some_and(|e| !e.is_empty()));
    let summary = &lines[lines.len() - 2];
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["ok"], 2);
    assert_eq!(app.schema_version(&ok).await, failing());

    let (code, status) = run_json(
        &app,
        &[
            "migrate",
            "status",
            "--json",
            "--extra-migrations",
            &extra(),
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(status_of(&status, "cli-down")["state"], "failed");
    assert_eq!(status_of(&status, "cli-ok")["state"], "ok");
    assert_eq!(status_of(&status, "cli-ok")["version"], failing());
    assert!(status_of(&status, "cli-ok")["last_run_at"].is_string());
    let summary = status.last().expect("summary");
    assert_eq!(
        (summary["ok"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );

    // Back up: the rerun converges and exits 0; the human status says so.
    set_allow_connections(&app, &down, true).await;
    let (code, lines) = run_json(
        &app,
        &[
            "migrate",
            "tenants",
            "--json",
            "--extra-migrations",
            &extra(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    let human = platformctl(&app, &["migrate", "status", "--extra-migrations", &extra()])
        .output()
        .await
        .expect("status");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.lines().last().is_some_and(|l| l.contains(&format!(
            "3 databases at target {}: 3 ok, 0 pending, 0 running, 0 failed",
            failing()
        ))),
        "{text}"
    );
    assert!(
        text.contains("cli-down") && text.contains("second"),
        "{text}"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_runner_killed_mid_run_then_rerun_converges_and_applies_nothing_twice() {
    let app = TestApp::spawn().await;
    let mut tenants = Vec::new();
    for slug in ["kill-a", "kill-b", "kill-c"] {
        tenants.push(app.tenant(slug, "dedicated", Some("local")).await);
    }
    let held = &tenants[1];
    // The runner will block inside `kill-b`'s V2 transaction (its ALTER TABLE needs this lock).
    let mut blocker = app.tenant_db(held).await;
    let tx = blocker.transaction().await.expect("begin");
    tx.batch_execute("LOCK TABLE projects IN ACCESS SHARE MODE")
        .await
        .expect("lock");

    let mut child: Child = platformctl(
        &app,
        &[
            "migrate",
            "tenants",
            "--json",
            "--lock-timeout",
            "0",
            "--concurrency",
            "1",
            "--extra-migrations",
            &extra(),
        ],
    )
    .spawn()
    .expect("spawn");
    let watcher = app.tenant_db(held).await;
    let control = platform_tests::connect(&app.platform_env()[0].1).await;
    let blocked = eventually(Duration::from_secs(60), || async {
        // Blocked inside kill-b, and the ledger says so: starts and results go to the ledger in
        // batches (within 50 ms), so wait until kill-b, and only kill-b, is `running` there.
        let waiting = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE application_name = 'platform-migrate' AND wait_event_type = 'Lock'
                    AND datname = current_database()",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false);
        let running = control
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE t.slug = 'kill-b')
                   FROM migration_ledger l LEFT JOIN tenants t ON t.id::text = l.db_key
                  WHERE l.state = 'running'",
                &[],
            )
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .unwrap_or((0, 0));
        waiting && running == (1, 1)
    })
    .await;
    assert!(blocked.is_some(), "the runner never reached kill-b");
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("wait");
    assert_eq!(status.code(), None, "killed by a signal");

    // Where do we stand? kill-b was being migrated by a dead runner; the others are done or were
    // never started (the runner takes databases roughly, not strictly, in plan order).
    let (_, lines) = run_json(
        &app,
        &[
            "migrate",
            "status",
            "--json",
            "--extra-migrations",
            &extra(),
        ],
    )
    .await;
    let b = status_of(&lines, "kill-b");
    assert_eq!(b["state"], "failed", "{b}");
    assert!(
        b["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("interrupted")),
        "{b}"
    );
    for slug in ["kill-a", "kill-c"] {
        let s = &status_of(&lines, slug)["state"];
        assert!(s == "ok" || s == "pending", "{slug}: {s}");
    }
    let summary = lines.last().expect("summary");
    assert_eq!(
        (summary["failed"].as_u64(), summary["running"].as_u64()),
        (Some(1), Some(0))
    );

    // The killed transaction never committed; release the lock and run again.
    assert_eq!(app.schema_version(held).await, head());
    tx.rollback().await.expect("release");
    let (code, lines) = run_json(
        &app,
        &[
            "migrate",
            "tenants",
            "--json",
            "--extra-migrations",
            &extra(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    for t in &tenants {
        assert_eq!(app.schema_version(t).await, failing(), "{}", t.slug);
        let db = app.tenant_db(t).await;
        for v in [ahead(), failing()] {
            let n: i64 = db
                .query_one(
                    "SELECT count(*) FROM test_applications WHERE version::bigint = $1",
                    &[&v],
                )
                .await
                .expect("count")
                .get(0);
            assert_eq!(n, 1, "{}: migration {v} applied once", t.slug);
        }
    }
    let (_, lines) = run_json(
        &app,
        &[
            "migrate",
            "status",
            "--json",
            "--extra-migrations",
            &extra(),
        ],
    )
    .await;
    assert_eq!(lines.last().expect("summary")["ok"], 4);
    // The killed run is on record as interrupted.
    let interrupted = interrupted_runs(&app).await;
    assert_eq!(interrupted, 1);
    app.finish().await;
}

async fn interrupted_runs(app: &TestApp) -> i64 {
    let url = app.platform_env()[0].1.clone();
    platform_tests::connect(&url)
        .await
        .query_one(
            "SELECT count(*) FROM migration_runs WHERE state = 'interrupted'",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

async fn verify(app: &TestApp, slug: &str) -> (i32, Value) {
    let (code, lines) = run_json(app, &["audit", "verify", "--tenant", slug, "--json"]).await;
    (code, lines.last().cloned().unwrap_or(Value::Null))
}

#[tokio::test]
async fn audit_verify_finds_a_tampered_row_and_the_chain_survives_promotion() {
    use axum::http::Method;
    let app = TestApp::spawn().await;
    let t = app.tenant("chain", "shared", None).await;
    for i in 0..3 {
        app.api(
            &t,
            Method::POST,
            "/api/v1/projects",
            Some(serde_json::json!({"name": format!("p{i}")})),
        )
        .await
        .assert_status(201);
    }
    let (code, report) = verify(&app, "chain").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    let checked = report["events_checked"].as_u64().expect("count");
    assert!(checked >= 4, "{report}");

    // Promotion copies the chain; it still verifies in the dedicated database, and appends go on.
    let op = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{}/placement", t.id),
            Some(serde_json::json!({"placement": "dedicated", "db_server": "second"})),
        )
        .await;
    op.assert_status(202);
    let id = op.str("id");
    let done = eventually(Duration::from_secs(60), || async {
        let o = app
            .admin(Method::GET, &format!("/admin/v1/operations/{id}"), None)
            .await;
        o.body["state"] == "succeeded"
    })
    .await;
    assert!(done.is_some(), "promotion did not finish");
    app.api(
        &t,
        Method::POST,
        "/api/v1/projects",
        Some(serde_json::json!({"name": "after"})),
    )
    .await
    .assert_status(201);
    let (code, report) = verify(&app, "chain").await;
    assert_eq!(code, 0, "{report}");
    assert!(
        report["events_checked"].as_u64().expect("count") > checked,
        "{report}"
    );

    // A changed row (by someone who got past the immutability trigger) is found, by seq.
    let db = app.tenant_db(&t).await;
    db.batch_execute(
        "BEGIN; SET LOCAL platform.audit_erase = 'on';
         UPDATE audit_events SET summary = '{\"name\": \"innocent\"}' WHERE seq = 2; COMMIT",
    )
    .await
    .expect("tamper");
    let (code, report) = verify(&app, "chain").await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["broken"]["seq"], 2, "{report}");
    assert!(
        report["broken"]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("changed")),
        "{report}"
    );
    // A removed row is found too (the next event's link is missing).
    db.batch_execute(
        "BEGIN; SET LOCAL platform.audit_erase = 'on'; DELETE FROM audit_events WHERE seq = 1; COMMIT",
    )
    .await
    .expect("remove");
    let (code, report) = verify(&app, "chain").await;
    assert_eq!(
        (code, report["broken"]["seq"].as_i64()),
        (1, Some(2)),
        "{report}"
    );

    // The operators' trail verifies as well; an unknown tenant is a clear error.
    let (code, lines) = run_json(&app, &["audit", "verify", "--admin", "--json"]).await;
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines[0]["events_checked"].as_u64().is_some_and(|n| n > 0));
    let (code, _) = verify(&app, "nobody").await;
    assert_eq!(code, 2);
    app.finish().await;
}

#[tokio::test]
async fn flags_stale_lists_flags_past_their_date_only() {
    let app = TestApp::spawn().await;
    for (name, date) in [("old-experiment", "2020-01-31"), ("fresh", "2999-12-31")] {
        let r = app
            .admin(
                axum::http::Method::POST,
                "/admin/v1/flags",
                Some(
                    serde_json::json!({"name": name, "type": "experiment", "enabled": true,
                    "owner": "growth-team", "staleAfter": date}),
                ),
            )
            .await;
        r.assert_status(201);
    }
    let (code, lines) = run_json(&app, &["--json", "flags", "stale"]).await;
    assert_eq!(code, 0, "{lines:?}");
    let names: Vec<&str> = lines.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["old-experiment"], "{lines:?}");
    assert_eq!(lines[0]["owner"], "growth-team");
    app.finish().await;
}

/// `platformctl jobs`: list a tenant's jobs, discard and retry one, pause and resume a kind.
#[tokio::test]
async fn jobs_list_discard_retry_pause_and_resume() {
    let app = TestApp::spawn().await;
    let t = app.tenant("ctljobs", "shared", None).await;
    let tenancy = &app.app.tenancy;
    let tenant = tenancy
        .catalog
        .tenant_by_slug("ctljobs")
        .await
        .expect("catalog")
        .expect("tenant");
    // A job no worker here runs (its kind is not registered), due in an hour.
    let mut tx = tenancy
        .dataplane
        .connect(&tenant)
        .await
        .expect("conn")
        .begin();
    let id = jobs::enqueue(
        &mut tx,
        jobs::NewJob::new(
            jobs::JobKind::parse("ctl.test").expect("kind"),
            serde_json::json!({}),
        )
        .run_at(time::OffsetDateTime::now_utc() + Duration::from_secs(3600)),
    )
    .await
    .expect("enqueue")
    .expect("id")
    .to_string();
    tx.commit().await.expect("commit");

    let (code, lines) = run_json(&app, &["--json", "jobs", "list", "--tenant", &t.slug]).await;
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], id.as_str());
    assert_eq!(lines[0]["state"], "pending");
    assert_eq!(lines[0]["tenant_id"], t.id.as_str());

    let (code, lines) = run_json(&app, &["--json", "jobs", "discard", &id]).await;
    assert_eq!(code, 0);
    assert_eq!(lines[0]["state"], "cancelled");
    let (code, lines) =
        run_json(&app, &["--json", "jobs", "retry", &id, "--tenant", &t.slug]).await;
    assert_eq!(code, 0);
    assert_eq!(lines[0]["state"], "pending");
    let (code, _) = run_json(&app, &["--json", "jobs", "list", "--state", "nonsense"]).await;
    assert_ne!(code, 0);

    let (code, _) = run_json(&app, &["--json", "jobs", "pause", "ctl.test"]).await;
    assert_eq!(code, 0);
    let paused = jobs::admin::paused_kinds(&tenancy.catalog)
        .await
        .expect("pauses");
    assert_eq!(paused, vec!["ctl.test".to_owned()]);
    let (code, _) = run_json(&app, &["--json", "jobs", "resume", "ctl.test"]).await;
    assert_eq!(code, 0);
    assert!(
        jobs::admin::paused_kinds(&tenancy.catalog)
            .await
            .expect("pauses")
            .is_empty()
    );
    app.finish().await;
}
