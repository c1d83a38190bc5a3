//! `bench promote`: promote a tenant holding N rows while writers keep inserting through the HTTP
//! API (the platform's router served in process on a local socket, API-key authenticated), and
//! in the same run copy the same rows with `pg_dump | psql` as the baseline: every tenant table,
//! from a shared database that holds only this tenant, into a fresh migrated database. Seeding
//! bypasses the request path (one `INSERT .. SELECT` as the owner, as a replica session so no
//! audit event is derived per seeded row). Reports total time, the write pause as the server and
//! as the writers saw it, and the ratio. Run it on a throwaway embedded data dir:
//! `D=$(mktemp -d) && chmod 755 $D && PLATFORM_DATA_DIR=$D cargo run --release -p bench -- promote` (the data dir must be traversable by the `postgres` user).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use tenancy::bootstrap::{LOCAL_SERVER, Started};
use tenancy::ids::TenantSlug;
use tenancy::placement::MoveRequest;
use tenancy::provision::{CreateTenant, PlacementRequest};
use tenancy::settings::Settings;
use tokio::sync::Mutex;

use crate::output::Output;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Args)]
pub struct PromoteBench {
    /// Rows the tenant holds.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Concurrent writers (each inserts one task per transaction, back to back).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Write the result table into this markdown file (between its markers).
    #[arg(long)]
    write_doc: Option<std::path::PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The benchmark tenant's plan: no rate limit within reach.
const PLAN: &str = "bench-promote";

/// One write as a writer saw it.
struct Sample {
    at: Instant,
    latency: Duration,
    ok: bool,
}

/// Runs the benchmark on the embedded default (`PLATFORM_DATA_DIR`) and prints its table.
pub async fn run(args: PromoteBench) -> anyhow::Result<()> {
    let out = &Output { json: args.json };
    let mut settings = Settings::from_env().context("configuration")?;
    // The writers share one API key: its own quota must not refuse them either.
    settings.limits.principal = tenancy::catalog::RateQuota {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    let started = tenancy::bootstrap::start(&settings).await?;
    let cluster_url = started
        .cluster
        .as_ref()
        .map(|c| c.url("postgres"))
        .context("run the benchmark on the embedded default (a fresh PLATFORM_DATA_DIR)")?;
    let t = Arc::new(started.tenancy.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(Arc::clone(&t).listen_for_changes(ready_tx, &[], |_| {}));
    ready_rx.await.ok();

    // Writers back to back must meet the pause, not a rate limit.
    t.catalog
        .put_plan(&tenancy::catalog::Plan {
            name: PLAN.into(),
            requests_per_second: 1_000_000,
            burst: 1_000_000,
            audit_retention_days: 365,
        })
        .await?;
    let slug = format!("bench-{}", std::process::id());
    let tenant = t
        .provisioner
        .create_tenant(CreateTenant {
            slug: TenantSlug::parse(&slug)?,
            name: "benchmark".into(),
            plan: PLAN.into(),
            placement: PlacementRequest::Shared,
        })
        .await?;
    let project = uuid::Uuid::now_v7();
    let shared = tenancy::pg::connect(&t.servers.shared_admin_url().parse()?).await?;
    let seed = Instant::now();
    shared
        .execute(
            "INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'bench')",
            &[&tenant.id.as_uuid(), &project],
        )
        .await?;
    shared
        .batch_execute("SET session_replication_role = replica")
        .await?;
    shared
        .execute(
            "INSERT INTO tasks (tenant_id, id, project_id, title, status)
             SELECT $1, gen_random_uuid(), $2, 'seed task ' || g, 'todo' FROM generate_series(1, $3::bigint) g",
            &[&tenant.id.as_uuid(), &project, &args.rows],
        )
        .await?;
    shared
        .batch_execute("RESET session_replication_role")
        .await?;
    shared.batch_execute("VACUUM ANALYZE tasks").await?;
    // The baseline dumps whole tables: they must hold this tenant's rows only.
    let tables: Vec<String> = tenancy::placement::tenant_tables(&shared)
        .await?
        .into_iter()
        .filter(|t| t != "tenant_fences")
        .collect();
    let mut tenant_rows = 0i64;
    for table in &tables {
        let r = shared
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id <> $1) FROM {}",
                    tenancy::pg::quote_ident(table)
                ),
                &[&tenant.id.as_uuid()],
            )
            .await?;
        anyhow::ensure!(
            r.get::<_, i64>(1) == 0,
            "table {table} holds another tenant's rows: the baseline would copy more than the move"
        );
        tenant_rows += r.get::<_, i64>(0);
    }
    eprintln!(
        "seeded {} rows in {:.1} s",
        args.rows,
        seed.elapsed().as_secs_f64()
    );

    // Baseline: the same rows through pg_dump | psql into a fresh migrated database.
    let local = t
        .catalog
        .db_server_by_name(LOCAL_SERVER)
        .await?
        .context("no local server")?;
    let restore_db = format!("bench_restore_{}", std::process::id());
    t.servers
        .create_tenant_database(&local, &restore_db)
        .await?;
    let restore_url = tenancy::pg::with_database(&cluster_url, &restore_db)?;
    let restore_url = url_of(&restore_url);
    let source_url = url_of(&t.servers.shared_admin_url().parse()?);
    let baseline = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("pg_dump --data-only --disable-triggers $TABLES \"$SRC\" | psql -q -v ON_ERROR_STOP=1 \"$DST\" >/dev/null")
        .env(
            "TABLES",
            tables
                .iter()
                .map(|t| format!("--table=public.{t}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .env("SRC", &source_url)
        .env("DST", &restore_url)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "pg_dump | psql failed");
    let baseline = baseline.elapsed();
    let admin = tenancy::pg::connect(&cluster_url.parse()?).await?;
    admin
        .batch_execute(&format!("DROP DATABASE {restore_db} WITH (FORCE)"))
        .await?;
    eprintln!("baseline pg_dump | psql: {:.1} s", baseline.as_secs_f64());

    // The platform's router in process, then writers through it, then the promotion.
    let identity = identity::Identity::start(&t).await?;
    let (_, key) = identity
        .api_keys
        .create(&t.dataplane, &tenant, "bench", None)
        .await?;
    let app = platform::App::new(
        (*t).clone(),
        &format!("bench-admin-{}", uuid::Uuid::now_v7()),
    )
    .await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = Api {
        addr: http.local_addr()?,
        host: HeaderValue::from_str(&format!("{slug}.localhost"))?,
        authorization: HeaderValue::from_str(&format!("Bearer {key}"))?,
    };
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(http, router).await });
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let mut handles = Vec::new();
    for _ in 0..args.writers {
        handles.push(tokio::spawn(write_loop(
            api.clone(),
            project,
            Arc::clone(&stop),
            Arc::clone(&samples),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let op_started = Instant::now();
    let op = t
        .mover
        .start(
            &tenant,
            &MoveRequest::Dedicated {
                server: LOCAL_SERVER.into(),
            },
        )
        .await?;
    let end = t.mover.run(op.id).await?;
    let total = op_started.elapsed();
    anyhow::ensure!(
        end.state == tenancy::catalog::operations::OperationState::Succeeded,
        "promotion ended {}: {:?}",
        end.state,
        end.error
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut acked, mut unexpected) = (0i64, 0i64);
    for h in handles {
        let (a, u) = h.await?;
        acked += a;
        unexpected += u;
    }
    server.abort();
    listener.abort();
    if unexpected > 0 {
        eprintln!(
            "{unexpected} writes failed other than with 503 (not retried, not counted as acknowledged)"
        );
    }
    anyhow::ensure!(acked > 0, "no write was acknowledged");

    // Every acknowledged write is in the dedicated database.
    let moved = t.catalog.tenant(tenant.id).await?.context("tenant")?;
    let mut tx = t.dataplane.connect(&moved).await?.begin();
    let n: i64 = tx
        .query("SELECT count(*) FROM tasks", &[])
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_default();
    tx.commit().await?;
    anyhow::ensure!(
        n == args.rows + acked,
        "expected {} rows, found {n}",
        args.rows + acked
    );

    let samples = samples.lock().await;
    let refused = samples.iter().filter(|s| !s.ok).count() as i64 - unexpected;
    let mut ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    ok.sort_by_key(|s| s.at);
    let gap = ok
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .max()
        .unwrap_or_default();
    let mut lat: Vec<Duration> = ok.iter().map(|s| s.latency).collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let pause_ms = end.progress["write_pause_ms"].as_u64().unwrap_or_default();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let table = format!(
        "| seeded tasks | tenant rows moved (all tables) | writers (HTTP) | promotion total | pg_dump \\| psql (baseline, same rows) | ratio | fence→switch (server) | longest gap between acknowledged writes | max write latency | p99 write latency | writes refused (503) | other failed writes | acknowledged writes during run |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n\
         | {} | {tenant_rows} | {} | {:.1} s | {:.1} s | {:.2}x | {pause_ms} ms | {} ms | {} ms | {} ms | {refused} | {unexpected} | {acked} |\n\n\
         Steps (ms): {}\n\n\
         Copy: data {} ms, then {} secondary indexes built. Precheck: {} rows compared before the fence, {} keys in its catch-up round; under the fence {} keys compared.\n",
        args.rows,
        args.writers,
        total.as_secs_f64(),
        baseline.as_secs_f64(),
        total.as_secs_f64() / baseline.as_secs_f64(),
        ms(gap),
        ms(lat.last().copied().unwrap_or_default()),
        ms(pct(0.99)),
        [
            "prepare",
            "publish",
            "subscribe",
            "copy",
            "precheck",
            "fence",
            "drain",
            "verify",
            "switch",
            "cleanup"
        ]
        .iter()
        .map(|s| format!("{s} {}", end.progress[format!("{s}_ms")]))
        .collect::<Vec<_>>()
        .join(", "),
        end.progress["copy_data_ms"],
        end.progress["indexes_built"],
        end.progress["precheck_rows"],
        end.progress["catch_up_keys"],
        end.progress["verified_keys"],
    );
    out.emit(
        &json!({"rows": args.rows, "total_s": total.as_secs_f64(), "baseline_s": baseline.as_secs_f64(), "write_pause_ms": pause_ms,
                "longest_gap_ms": gap.as_secs_f64() * 1000.0, "refused": refused, "acknowledged": acked}),
        &table,
    );
    if let Some(path) = args.write_doc {
        write_section(&path, args.rows, &table)?;
    }
    drop(t);
    // Stops the embedded cluster if this run started it.
    let Started {
        tenancy, cluster, ..
    } = started;
    drop(tenancy);
    if let Some(c) = cluster.filter(|c| c.started_here()) {
        c.stop()?;
    }
    Ok(())
}

/// One writer: creates a task through the HTTP API, back to back, on one keep-alive connection
/// (reopened after an error). 201 is an acknowledged write; 503 is the tenant's pause (retried
/// after 20 ms); anything else is counted as unexpected.
async fn write_loop(
    api: Api,
    project: uuid::Uuid,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> (i64, i64) {
    let (mut acked, mut unexpected) = (0, 0);
    let mut n = 0u64;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let at = Instant::now();
        let answer = async {
            if sender.is_none() {
                sender = Some(connect(api.addr).await.ok()?);
            }
            let s = sender.as_mut()?;
            let req = Request::post(format!("/api/v1/projects/{project}/tasks"))
                .header(HOST, api.host.clone())
                .header(AUTHORIZATION, api.authorization.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(format!(
                    "{{\"title\":\"live {n}\"}}"
                ))))
                .ok()?;
            s.ready().await.ok()?;
            let resp = s.send_request(req).await.ok()?;
            let status = resp.status();
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        }
        .await;
        if answer.is_none() {
            sender = None;
        }
        let status = answer.as_ref().map(|(s, _)| *s);
        let ok = status == Some(StatusCode::CREATED);
        samples.lock().await.push(Sample {
            at,
            latency: at.elapsed(),
            ok,
        });
        if ok {
            acked += 1;
        } else {
            if status != Some(StatusCode::SERVICE_UNAVAILABLE) {
                if unexpected < 3 {
                    // The problem document says which failure it was (no answer at all: `None`).
                    let body = answer.as_ref().map(|(_, b)| String::from_utf8_lossy(b));
                    eprintln!("writer: unexpected answer {status:?}: {body:?}");
                }
                unexpected += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (acked, unexpected)
}

/// Where and as whom the writers call the API.
#[derive(Clone)]
struct Api {
    addr: std::net::SocketAddr,
    host: HeaderValue,
    authorization: HeaderValue,
}

async fn connect(addr: std::net::SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        conn.await.ok();
    });
    Ok(sender)
}

fn url_of(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    format!(
        "postgresql://{}:{}@{host}:{}/{}",
        c.get_user().unwrap_or("postgres"),
        String::from_utf8_lossy(c.get_password().unwrap_or_default()),
        c.get_ports().first().copied().unwrap_or(5432),
        c.get_dbname().unwrap_or("postgres")
    )
}

/// Replaces this benchmark's section of a markdown file (between its markers).
fn write_section(path: &std::path::Path, rows: i64, table: &str) -> anyhow::Result<()> {
    const START: &str = "<!-- promote-benchmark:start -->";
    const END: &str = "<!-- promote-benchmark:end -->";
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let date = time::OffsetDateTime::now_utc().date();
    let section = format!(
        "{START}\n## Promotion: shared → dedicated under write load\n\nMeasured {date} on this machine (2 cores, 24 GiB), both databases in one local PostgreSQL 15 cluster.\n\
         Command: `D=$(mktemp -d) && chmod 755 $D && PLATFORM_DATA_DIR=$D cargo run --release -p bench -- promote --rows {rows} --writers 4 --write-doc docs/benchmarks.md`\n\n{table}\n{END}"
    );
    let new = match (doc.find(START), doc.find(END)) {
        (Some(s), Some(e)) => format!("{}{section}{}", &doc[..s], &doc[e + END.len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}
