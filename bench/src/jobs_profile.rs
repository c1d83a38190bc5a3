//! `bench jobs --pg-stats`: where PostgreSQL's time per job goes, per statement and per trigger
//! function, from `pg_stat_statements` (`track = all`, so statements run inside functions and
//! triggers are counted too, marked nested; `track_planning = on`) and `track_functions = all`
//! on the primary cluster (the shared database, the control plane and the bare loop's database
//! are all there). Counters are reset before a scenario and read after it, divided by its jobs.
//!
//! Times are PostgreSQL's own clock (execution and planning, wall time inside the server: a
//! statement that waits for a lock or for the CPU counts its wait), so they rank the statements;
//! the CPU per job the scenario prints (from `/proc`) is the total they are a part of. What the
//! top-level statements do not cover is the per-message work around them (reading, parsing and
//! answering each protocol message, transaction start and end) and the background processes
//! (autovacuum, WAL writer).

use std::time::Duration;

use platform_tests::{clusters, connect};

/// Turns the counters on (a restart of the primary cluster, for `shared_preload_libraries`).
/// Call before any app connects to it.
pub async fn enable() -> anyhow::Result<()> {
    let c = clusters();
    let admin = connect(&c.primary.url("postgres")).await;
    // One statement per call: ALTER SYSTEM refuses to run inside a (multi-statement) block.
    for s in [
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        "ALTER SYSTEM SET track_functions = 'all'",
    ] {
        admin.batch_execute(s).await?;
    }
    drop(admin);
    c.primary.restart(false)?;
    let admin = connect(&c.primary.url("postgres")).await;
    // The extension's settings exist once it is loaded.
    for s in [
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        "ALTER SYSTEM SET pg_stat_statements.track = 'all'",
        "ALTER SYSTEM SET pg_stat_statements.track_planning = on",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(s).await?;
    }
    Ok(())
}

/// Resets the statement counters (whole cluster) and `db`'s function and table counters.
pub async fn reset(db: &str) -> anyhow::Result<()> {
    let c = clusters();
    connect(&c.primary.url("postgres"))
        .await
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await?;
    connect(&c.primary.url(db))
        .await
        .batch_execute("SELECT pg_stat_reset()")
        .await?;
    Ok(())
}

/// Prints the statements, functions and table counters since [`reset`], per job.
pub async fn report(name: &str, db: &str, jobs: usize, table: &str) -> anyhow::Result<()> {
    let c = clusters();
    let per = |v: f64| v / jobs.max(1) as f64;
    // Statement counters are written as each statement ends; function and table counters are
    // flushed by each backend when it goes idle, at most once a second (and within 10 s).
    let stmts = connect(&c.primary.url("postgres"))
        .await
        .query(
            "SELECT coalesce(d.datname::text, '?') AS db, s.toplevel,
                    left(regexp_replace(regexp_replace(s.query, '\\s+', ' ', 'g'),
                                        '''[0-9a-f-]{36}''', '$uuid', 'g'), 110) AS q,
                    sum(s.calls)::float8, sum(s.total_exec_time)::float8,
                    sum(s.total_plan_time)::float8, sum(s.rows)::float8
             FROM pg_stat_statements s LEFT JOIN pg_database d ON d.oid = s.dbid
             WHERE s.query NOT LIKE '%pg_stat_statements%'
             GROUP BY 1, 2, 3
             ORDER BY sum(s.total_exec_time + s.total_plan_time) DESC",
            &[],
        )
        .await?;
    println!("\n#### {name}: PostgreSQL time per job by statement ({jobs} jobs)\n");
    println!("| db | level | statement | calls/job | exec µs/job | plan µs/job | rows/call |");
    println!("|---|---|---|---|---|---|---|");
    let (mut top_exec, mut top_plan) = (0.0, 0.0);
    for (i, r) in stmts.iter().enumerate() {
        let (db, toplevel, q): (String, bool, String) = (r.get(0), r.get(1), r.get(2));
        let (calls, exec, plan, rows): (f64, f64, f64, f64) =
            (r.get(3), r.get(4), r.get(5), r.get(6));
        if toplevel {
            top_exec += exec;
            top_plan += plan;
        }
        if i < 25 {
            println!(
                "| {db} | {} | `{}` | {:.3} | {:.1} | {:.1} | {:.1} |",
                if toplevel { "top" } else { "nested" },
                q.replace('|', "\\|"),
                per(calls),
                per(exec * 1000.0),
                per(plan * 1000.0),
                rows / calls.max(1.0),
            );
        }
    }
    println!(
        "\ntop-level statements: exec {:.1} µs/job, plan {:.1} µs/job ({} distinct)",
        per(top_exec * 1000.0),
        per(top_plan * 1000.0),
        stmts.len()
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    let client = connect(&c.primary.url(db)).await;
    println!("\n| function | calls/job | total µs/job | self µs/job |");
    println!("|---|---|---|---|");
    for r in client
        .query(
            "SELECT funcname::text, calls::float8, total_time, self_time
             FROM pg_stat_user_functions ORDER BY total_time DESC LIMIT 10",
            &[],
        )
        .await?
    {
        let (f, calls, total, own): (String, f64, f64, f64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        println!(
            "| `{f}` | {:.3} | {:.1} | {:.1} |",
            per(calls),
            per(total * 1000.0),
            per(own * 1000.0)
        );
    }
    if let Some(r) = client
        .query_opt(
            "SELECT n_tup_ins::float8, n_tup_upd::float8, n_tup_hot_upd::float8,
                    n_tup_del::float8, autovacuum_count::float8, autoanalyze_count::float8
             FROM pg_stat_user_tables WHERE relname = $1",
            &[&table],
        )
        .await?
    {
        let v: Vec<f64> = (0..6).map(|i| r.get(i)).collect();
        println!(
            "\n`{table}` per job: {:.2} inserts, {:.2} updates ({:.2} HOT), {:.2} deletes; \
             autovacuum {} times, autoanalyze {} times",
            per(v[0]),
            per(v[1]),
            per(v[2]),
            per(v[3]),
            v[4],
            v[5]
        );
    }
    Ok(())
}
