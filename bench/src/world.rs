//! The benchmark's world, built from nothing: two throwaway PostgreSQL clusters (`primary` holds
//! the control plane, the shared tenant database and the baseline database; `second` stands for a
//! second database server and holds every dedicated tenant database), tenants provisioned through
//! `tenancy` exactly as the operator API does, one API key each, and the same seed data for every
//! tenant and for the baseline. A watchdog stops the clusters and removes their directory when this
//! process exits, however it exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use tenancy::catalog::Placement;
use tenancy::crypto::MasterKey;
use tenancy::embedded::Cluster;
use tenancy::ids::TenantSlug;
use tenancy::provision::{CreateTenant, PlacementRequest};
use tenancy::settings::Settings;
use uuid::Uuid;

/// Operator token of the benchmark's platform (never used over the wire here).
pub const ADMIN_TOKEN: &str = "bench-operator-token-0123456789abcdef";
/// Name under which the second cluster is registered as a database server.
pub const SECOND_SERVER: &str = "second";
const CONTROL_DB: &str = "bench_control";
const SHARED_DB: &str = "bench_shared";
const BASELINE_DB: &str = "bench_baseline";

/// The baseline's schema: the reference domain's tables without tenancy (no `tenant_id`, no RLS).
const BASELINE_SCHEMA: &str = "
CREATE TABLE projects (
    id uuid PRIMARY KEY, name text NOT NULL, description text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE tasks (
    id uuid PRIMARY KEY, project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title text NOT NULL, status text NOT NULL CHECK (status IN ('todo', 'doing', 'done')),
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX tasks_project ON tasks (project_id, id);";

/// How big a world to build.
#[derive(Clone, Copy, Debug)]
pub struct WorldConfig {
    pub shared_tenants: usize,
    pub dedicated_tenants: usize,
    pub tasks_per_project: usize,
    pub shared_pool: usize,
    pub dedicated_pool: usize,
    /// Connection budget of the dedicated-database server.
    pub budget: u32,
}

/// One project and its tasks: what a request needs to name.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub project: Uuid,
    pub tasks: Arc<[Uuid]>,
}

impl Dataset {
    fn generate(n: usize) -> Self {
        Self {
            project: Uuid::now_v7(),
            tasks: (0..n).map(|_| Uuid::now_v7()).collect(),
        }
    }
}

/// A provisioned tenant as a client sees it.
#[derive(Clone, Debug)]
pub struct BenchTenant {
    pub id: Uuid,
    pub slug: String,
    pub api_key: String,
    /// The tenant's own database on the second server, if it is a dedicated tenant.
    pub database: Option<String>,
    pub data: Dataset,
}

/// The clusters, URLs and tenants of one benchmark run.
pub struct World {
    pub dir: PathBuf,
    pub primary: Cluster,
    pub second: Cluster,
    pub key: MasterKey,
    pub config: WorldConfig,
    /// Shared tenants first, then dedicated ones.
    pub tenants: Vec<BenchTenant>,
    pub baseline: Dataset,
}

/// The plan of the benchmark's tenants (created by [`World::build`]).
pub const BENCH_PLAN: &str = "bench";

impl World {
    /// Starts the clusters, provisions the tenants and seeds every database.
    pub async fn build(config: WorldConfig) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("platform-bench-{}", std::process::id()));
        let d = dir.clone();
        let (primary, second) = tokio::task::spawn_blocking(move || {
            let primary = Cluster::ensure_running(&d.join("primary"))?;
            watchdog(&primary, &d);
            let second = Cluster::ensure_running(&d.join("second"))?;
            watchdog(&second, &d);
            anyhow::Ok((primary, second))
        })
        .await
        .context("cluster start-up task")?
        .context("starting the benchmark's PostgreSQL clusters")?;

        let admin = connect(&primary.url("postgres")).await?;
        for db in [CONTROL_DB, SHARED_DB, BASELINE_DB] {
            admin
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await?;
        }
        let mut world = Self {
            dir,
            primary,
            second,
            key: MasterKey::generate(),
            config,
            tenants: Vec::new(),
            baseline: Dataset::generate(config.tasks_per_project),
        };
        world.seed_baseline().await?;
        world.provision().await?;
        world.seed_tenants().await?;
        Ok(world)
    }

    /// The platform's configuration, as `PLATFORM_*` variables.
    #[must_use]
    pub fn platform_env(&self, listen: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PLATFORM_DATABASE_URL", self.primary.url(CONTROL_DB)),
            ("PLATFORM_SHARED_DATABASE_URL", self.primary.url(SHARED_DB)),
            ("PLATFORM_MASTER_KEY", self.key.to_base64()),
            ("PLATFORM_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("PLATFORM_LISTEN", listen.into()),
            ("PLATFORM_BASE_DOMAIN", "localhost".into()),
            ("PLATFORM_DEFAULT_DB_SERVER", SECOND_SERVER.into()),
            // Per-credential limit out of the way too (the fairness benchmark sets tenants'
            // own quotas through the catalog).
            ("PLATFORM_RATE_LIMIT_PRINCIPAL", "1000000/1000000".into()),
            (
                "PLATFORM_SHARED_POOL_SIZE",
                self.config.shared_pool.to_string(),
            ),
            (
                "PLATFORM_DEDICATED_POOL_SIZE",
                self.config.dedicated_pool.to_string(),
            ),
            (
                "PLATFORM_SERVER_CONNECTION_BUDGET",
                self.config.budget.to_string(),
            ),
        ]
    }

    /// Settings equal to what the platform reads from [`Self::platform_env`].
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let env = self.platform_env("127.0.0.1:0");
        Ok(Settings::from_lookup(|k| {
            env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })?)
    }

    /// Owner URLs of the tenant databases `tenants` live in (the shared one, dedicated ones).
    pub fn tenant_db_urls<'a>(
        &self,
        tenants: impl Iterator<Item = &'a BenchTenant>,
    ) -> Vec<String> {
        let mut urls: Vec<String> = tenants
            .map(|t| match &t.database {
                Some(db) => self.second.url(db),
                None => self.primary.url(SHARED_DB),
            })
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Superuser URL of the baseline database.
    #[must_use]
    pub fn baseline_url(&self) -> String {
        self.primary.url(BASELINE_DB)
    }

    /// The shared tenants, then the dedicated ones.
    pub fn shared_tenants(&self) -> impl Iterator<Item = &BenchTenant> {
        self.tenants.iter().filter(|t| t.database.is_none())
    }

    pub fn dedicated_tenants(&self) -> impl Iterator<Item = &BenchTenant> {
        self.tenants.iter().filter(|t| t.database.is_some())
    }

    /// Stops both clusters (immediate mode: they are thrown away, so no shutdown checkpoint) and
    /// removes the run's directory.
    pub fn shutdown(self) {
        for c in [&self.primary, &self.second] {
            let argv = c.stop_command_line();
            let stopped = argv.split_first().is_some_and(|(program, args)| {
                std::process::Command::new(program)
                    .args(args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if !stopped {
                eprintln!(
                    "could not stop the benchmark cluster in {}; its watchdog will",
                    c.dir().display()
                );
            }
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }

    async fn seed_baseline(&self) -> anyhow::Result<()> {
        let db = connect(&self.baseline_url()).await?;
        db.batch_execute(BASELINE_SCHEMA).await?;
        db.execute(
            "INSERT INTO projects (id, name) VALUES ($1, 'Benchmark')",
            &[&self.baseline.project],
        )
        .await?;
        let tasks: Vec<Uuid> = self.baseline.tasks.to_vec();
        let projects = vec![self.baseline.project; tasks.len()];
        db.execute(
            "INSERT INTO tasks (id, project_id, title, status)
             SELECT i, p, 'task ' || n, 'todo' FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS u(i, p, n)",
            &[&tasks, &projects],
        )
        .await?;
        // The same data volume as the shared database: one project of as many tasks per shared
        // tenant (the others are never requested), so index depth and cache footprint match.
        let filler = i64::try_from(self.config.shared_tenants.saturating_sub(1))?;
        let per = i64::try_from(self.config.tasks_per_project)?;
        db.execute(
            "WITH p AS (INSERT INTO projects (id, name)
                        SELECT gen_random_uuid(), 'Filler' FROM generate_series(1, $1::bigint)
                        RETURNING id)
             INSERT INTO tasks (id, project_id, title, status)
             SELECT gen_random_uuid(), p.id, 'task ' || n, 'todo'
             FROM p CROSS JOIN generate_series(1, $2::bigint) AS n",
            &[&filler, &per],
        )
        .await?;
        db.batch_execute("ANALYZE").await?;
        Ok(())
    }

    /// Provisions the tenants through `tenancy` (as `POST /admin/v1/tenants` and
    /// `POST .../api-keys` do), with the platform's own settings.
    async fn provision(&mut self) -> anyhow::Result<()> {
        let started = tenancy::bootstrap::start(&self.settings()?)
            .await
            .context("bootstrapping tenancy on the benchmark databases")?;
        let t = started.tenancy;
        t.provisioner
            .register_server(
                SECOND_SERVER,
                &self.second.url("postgres"),
                self.config.budget,
                true,
            )
            .await
            .context("registering the second server")?;
        // The load benchmark measures the request path, limits checked but never reached: its
        // tenants are on a plan far above any rate this machine can serve.
        t.catalog
            .put_plan(&tenancy::catalog::Plan {
                name: BENCH_PLAN.into(),
                requests_per_second: 1_000_000,
                burst: 1_000_000,
                audit_retention_days: 365,
            })
            .await
            .context("creating the benchmark plan")?;
        let total = self.config.shared_tenants + self.config.dedicated_tenants;
        let tasks = self.config.tasks_per_project;
        let shared = self.config.shared_tenants;
        let t = &t;
        let id = &identity::Identity::start(t).await?;
        self.tenants = stream::iter(0..total)
            .map(|i| async move {
                let placement = if i >= shared {
                    PlacementRequest::Dedicated {
                        server: Some(SECOND_SERVER.into()),
                    }
                } else {
                    PlacementRequest::Shared
                };
                let slug = format!("bench-{i:04}");
                let tenant = t
                    .provisioner
                    .create_tenant(CreateTenant {
                        slug: TenantSlug::parse(&slug)?,
                        name: format!("Bench tenant {i}"),
                        plan: BENCH_PLAN.into(),
                        placement,
                    })
                    .await
                    .with_context(|| format!("provisioning tenant {slug}"))?;
                let (_, api_key) = id
                    .api_keys
                    .create(&t.dataplane, &tenant, "bench", None)
                    .await
                    .with_context(|| format!("creating an API key for {slug}"))?;
                anyhow::Ok(BenchTenant {
                    id: tenant.id.as_uuid(),
                    slug,
                    api_key,
                    database: match &tenant.placement {
                        Placement::Dedicated { database, .. } => Some(database.clone()),
                        Placement::Shared => None,
                    },
                    data: Dataset::generate(tasks),
                })
            })
            // One at a time: provisioning a dedicated database runs `ALTER ROLE platform_app`, and
            // two of those at once fail with "tuple concurrently updated".
            .buffered(1)
            .try_collect()
            .await?;
        t.catalog.pool().close().await;
        Ok(())
    }

    /// Seeds one project with its tasks per tenant, as the database owner.
    async fn seed_tenants(&self) -> anyhow::Result<()> {
        let shared = connect(&self.primary.url(SHARED_DB)).await?;
        insert_tenant_rows(&shared, self.shared_tenants()).await?;
        shared.batch_execute("ANALYZE").await?;
        stream::iter(self.dedicated_tenants())
            .map(|t| async move {
                let db = t.database.as_deref().unwrap_or_default();
                let c = connect(&self.second.url(db)).await?;
                insert_tenant_rows(&c, std::iter::once(t)).await?;
                c.batch_execute("ANALYZE").await?;
                anyhow::Ok(())
            })
            .buffer_unordered(4)
            .try_collect::<()>()
            .await
    }
}

async fn insert_tenant_rows<'a>(
    db: &tokio_postgres::Client,
    tenants: impl Iterator<Item = &'a BenchTenant>,
) -> anyhow::Result<()> {
    let (mut p_tenant, mut p_id) = (Vec::new(), Vec::new());
    let (mut t_tenant, mut t_id, mut t_project) = (Vec::new(), Vec::new(), Vec::new());
    for t in tenants {
        p_tenant.push(t.id);
        p_id.push(t.data.project);
        for task in t.data.tasks.iter() {
            t_tenant.push(t.id);
            t_id.push(*task);
            t_project.push(t.data.project);
        }
    }
    db.execute(
        "INSERT INTO projects (tenant_id, id, name) SELECT t, i, 'Benchmark' FROM unnest($1::uuid[], $2::uuid[]) AS u(t, i)",
        &[&p_tenant, &p_id],
    )
    .await?;
    db.execute(
        "INSERT INTO tasks (tenant_id, id, project_id, title, status)
         SELECT t, i, p, 'task ' || n, 'todo' FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) WITH ORDINALITY AS u(t, i, p, n)",
        &[&t_tenant, &t_id, &t_project],
    )
    .await?;
    Ok(())
}

/// One superuser connection.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    tenancy::pg::connect(&url.parse()?)
        .await
        .with_context(|| "connecting to a benchmark cluster".to_owned())
}

/// Stops the cluster and removes the run's directory once this process is gone. The watchdog
/// outlives this process, so it is never waited for.
fn watchdog(cluster: &Cluster, dir: &std::path::Path) {
    let stop = cluster
        .stop_command_line()
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    if let Err(e) = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("no watchdog for the benchmark cluster ({e}); stop it by hand if this run dies");
    }
}
