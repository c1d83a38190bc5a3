//! Test harness: two throwaway PostgreSQL clusters per test process (started from the machine's
//! server binaries with the same code as the embedded default; the second stands for a second
//! database server), migrated template databases, and a fresh control-plane and shared database
//! per test cloned from them. A watchdog stops the clusters and removes their directories when
//! the test process exits, however it exits.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tenancy::crypto::MasterKey;
use tenancy::embedded::Cluster;
use tenancy::settings::Settings;
use tower::ServiceExt as _;

pub const ADMIN_TOKEN: &str = "test-operator-token-0123456789abcdef";
const TEMPLATE_CONTROL: &str = "tmpl_control";
const TEMPLATE_SHARED: &str = "tmpl_shared";

/// The clusters of this test process.
pub struct Clusters {
    pub primary: Cluster,
    pub second: Cluster,
    pub key: MasterKey,
}

static CLUSTERS: OnceLock<Clusters> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// Starts (once per process) the clusters and the migrated templates.
pub fn clusters() -> &'static Clusters {
    CLUSTERS.get_or_init(|| {
        // Runs on its own thread with its own runtime: callers are inside a test runtime.
        std::thread::spawn(start_clusters)
            .join()
            .expect("cluster start-up thread panicked")
    })
}

fn start_clusters() -> Clusters {
    let base = std::env::temp_dir().join(format!("platform-tests-{}", std::process::id()));
    let primary = Cluster::ensure_running(&base.join("primary")).expect("start primary cluster");
    watchdog(&primary, &base);
    let second = Cluster::ensure_running(&base.join("second")).expect("start second cluster");
    watchdog(&second, &base);
    let key = MasterKey::generate();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin = connect(&primary.url("postgres")).await;
        for db in [TEMPLATE_CONTROL, TEMPLATE_SHARED] {
            admin.batch_execute(&format!("CREATE DATABASE {db}")).await.expect("create templates");
        }
        // Migrations and the data-plane role, exactly as the server does at start-up.
        let settings = settings(&primary, TEMPLATE_CONTROL, TEMPLATE_SHARED, &key);
        let started = tenancy::bootstrap::start(&settings).await.expect("bootstrap on templates");
        started.tenancy.catalog.pool().close().await;
        drop(started);
        // The second server needs the role too (as registering it would do).
        let second_admin = connect(&second.url("postgres")).await;
        tenancy::pg::ensure_app_role(&second_admin, &tenancy::provision::app_role_password(&key))
            .await
            .expect("role on second");
        // Templates must have no connections left when they are cloned.
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ('{TEMPLATE_CONTROL}', '{TEMPLATE_SHARED}') AND pid <> pg_backend_pid()"
            ))
            .await
            .expect("disconnect templates");
    });
    Clusters {
        primary,
        second,
        key,
    }
}

/// Stops the cluster and removes the test directory once this process is gone.
#[expect(
    clippy::zombie_processes,
    reason = "the watchdog must outlive the test process, so it is never waited for"
)]
fn watchdog(cluster: &Cluster, base: &std::path::Path) {
    let stop = cluster
        .stop_command_line()
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{base}'",
        pid = std::process::id(),
        base = base.display()
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn watchdog");
}

fn settings(cluster: &Cluster, control: &str, shared: &str, key: &MasterKey) -> Settings {
    let control = cluster.url(control);
    let shared = cluster.url(shared);
    let key = key.to_base64();
    Settings::from_lookup(move |k| match k {
        "PLATFORM_DATABASE_URL" => Some(control.clone()),
        "PLATFORM_SHARED_DATABASE_URL" => Some(shared.clone()),
        "PLATFORM_MASTER_KEY" => Some(key.clone()),
        "PLATFORM_ADMIN_TOKEN" => Some(ADMIN_TOKEN.into()),
        "PLATFORM_SHARED_POOL_SIZE" => Some("4".into()),
        "PLATFORM_DEDICATED_POOL_SIZE" => Some("2".into()),
        _ => None,
    })
    .expect("test settings")
}

/// One connection with a superuser URL.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    tenancy::pg::connect(&url.parse().expect("url"))
        .await
        .expect("connect")
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// The field as a string (panics with the whole body if absent).
    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string `{field}` in {}", self.text))
            .to_owned()
    }

    /// Asserts the status, printing the body on mismatch.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts an RFC 9457 problem with this status.
    #[track_caller]
    pub fn assert_problem(&self, expected: u16) -> &Self {
        self.assert_status(expected);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "not a problem response: {}",
            self.text
        );
        assert_eq!(
            self.body["status"].as_u64(),
            Some(u64::from(expected)),
            "{}",
            self.text
        );
        assert!(
            self.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("/problems/")),
            "{}",
            self.text
        );
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "{}",
            self.text
        );
        self
    }
}

/// A request under construction.
pub struct Req {
    method: Method,
    path: String,
    host: Option<String>,
    bearer: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            host: None,
            bearer: None,
            headers: Vec::new(),
            body: None,
            content_type: None,
        }
    }
    pub fn host(mut self, h: impl Into<String>) -> Self {
        self.host = Some(h.into());
        self
    }
    pub fn bearer(mut self, t: impl Into<String>) -> Self {
        self.bearer = Some(t.into());
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn json(mut self, v: &Value) -> Self {
        self.body = Some(serde_json::to_vec(v).expect("json"));
        self.content_type = Some("application/json".into());
        self
    }
    pub fn raw(mut self, body: impl Into<Vec<u8>>, content_type: Option<&str>) -> Self {
        self.body = Some(body.into());
        self.content_type = content_type.map(str::to_owned);
        self
    }

    /// Sends it through `router` (no socket).
    pub async fn send(self, router: &Router) -> TestResponse {
        let mut b = Request::builder().method(self.method).uri(&self.path);
        b = b.header("host", self.host.as_deref().unwrap_or("localhost"));
        if let Some(t) = &self.bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = &self.content_type {
            b = b.header("content-type", ct);
        }
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = b
            .body(Body::from(self.body.unwrap_or_default()))
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }
}

/// A platform instance over a fresh control-plane and shared database.
pub struct TestApp {
    pub app: platform::App,
    pub control_db: String,
    pub shared_db: String,
}

/// A provisioned tenant with an API key.
#[derive(Clone, Debug)]
pub struct TestTenant {
    pub id: String,
    pub slug: String,
    pub key: String,
}

impl TestTenant {
    pub fn host(&self) -> String {
        format!("{}.localhost", self.slug)
    }
}

impl TestApp {
    /// A fresh instance: new databases cloned from the templates, both clusters registered as
    /// database servers (`local` and `second`).
    pub async fn spawn() -> Self {
        let c = clusters();
        let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let control_db = format!("cp_{pid}_{n}");
        let shared_db = format!("sh_{pid}_{n}");
        let admin = connect(&c.primary.url("postgres")).await;
        for (db, template) in [
            (&control_db, TEMPLATE_CONTROL),
            (&shared_db, TEMPLATE_SHARED),
        ] {
            admin
                .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE {template}"))
                .await
                .expect("clone template");
        }
        let app = Self::instance_on(&control_db, &shared_db).await;
        let p = &app.tenancy.provisioner;
        p.register_server("local", &c.primary.url("postgres"), 40, true)
            .await
            .expect("register local");
        p.register_server("second", &c.second.url("postgres"), 40, true)
            .await
            .expect("register second");
        Self {
            app,
            control_db,
            shared_db,
        }
    }

    async fn instance_on(control_db: &str, shared_db: &str) -> platform::App {
        Self::instance_requiring(control_db, shared_db, None).await
    }

    async fn instance_requiring(
        control_db: &str,
        shared_db: &str,
        min_schema: Option<i64>,
    ) -> platform::App {
        let c = clusters();
        let mut started =
            tenancy::bootstrap::start(&settings(&c.primary, control_db, shared_db, &c.key))
                .await
                .expect("bootstrap");
        if let Some(min) = min_schema {
            started.tenancy.dataplane = started.tenancy.dataplane.with_min_schema(min);
        }
        platform::App::new(started.tenancy, ADMIN_TOKEN)
            .await
            .expect("app")
    }

    /// Another instance over the same databases (as a second server process would be).
    pub async fn another_instance(&self) -> platform::App {
        Self::instance_on(&self.control_db, &self.shared_db).await
    }

    /// Another instance whose code needs tenant schema `min` (a newer build, deployed before the
    /// fleet is migrated).
    pub async fn instance_requiring_schema(&self, min: i64) -> platform::App {
        Self::instance_requiring(&self.control_db, &self.shared_db, Some(min)).await
    }

    /// The fleet migrator of this instance.
    pub fn migrator(&self) -> &tenancy::migrate::fleet::Migrator {
        &self.app.tenancy.migrator
    }

    /// The `PLATFORM_*` environment that points `platformctl` at this instance's databases.
    pub fn platform_env(&self) -> Vec<(String, String)> {
        let c = clusters();
        vec![
            (
                "PLATFORM_DATABASE_URL".into(),
                c.primary.url(&self.control_db),
            ),
            (
                "PLATFORM_SHARED_DATABASE_URL".into(),
                c.primary.url(&self.shared_db),
            ),
            ("PLATFORM_MASTER_KEY".into(), c.key.to_base64()),
            (
                "PLATFORM_DATA_DIR".into(),
                std::env::temp_dir()
                    .join("platformctl-unused")
                    .display()
                    .to_string(),
            ),
        ]
    }

    /// The superuser URL of a dedicated tenant's database (or of the shared one).
    pub async fn tenant_db_url(&self, t: &TestTenant) -> String {
        let c = clusters();
        let tenant = self
            .app
            .tenancy
            .catalog
            .tenant_by_slug(&t.slug)
            .await
            .expect("catalog")
            .expect("tenant exists");
        match tenant.placement {
            tenancy::catalog::Placement::Shared => c.primary.url(&self.shared_db),
            tenancy::catalog::Placement::Dedicated { server, database } => {
                let servers = self
                    .app
                    .tenancy
                    .catalog
                    .db_servers()
                    .await
                    .expect("servers");
                let name = servers
                    .iter()
                    .find(|s| s.id == server)
                    .map(|s| s.name.clone())
                    .expect("registered server");
                let cluster = if name == "second" {
                    &c.second
                } else {
                    &c.primary
                };
                cluster.url(&database)
            }
        }
    }

    /// A superuser connection to a tenant's database.
    pub async fn tenant_db(&self, t: &TestTenant) -> tokio_postgres::Client {
        connect(&self.tenant_db_url(t).await).await
    }

    /// The real schema version of a tenant's database (refinery's history).
    pub async fn schema_version(&self, t: &TestTenant) -> i64 {
        let db = self.tenant_db(t).await;
        tenancy::migrate::database::current_version(&db)
            .await
            .expect("version")
    }

    /// The recorded version of a tenant's database in the catalog.
    pub async fn recorded_version(&self, t: &TestTenant) -> Option<i64> {
        self.app
            .tenancy
            .catalog
            .tenant_by_slug(&t.slug)
            .await
            .expect("catalog")
            .expect("tenant")
            .schema_version
    }

    pub fn router(&self) -> &Router {
        &self.app.router
    }

    /// Sends a request to this instance.
    pub async fn send(&self, req: Req) -> TestResponse {
        req.send(&self.app.router).await
    }

    /// An operator request.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let mut r = Req::new(method, path).bearer(ADMIN_TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }

    /// Provisions a tenant (`shared`, or `dedicated` on `server`) and gives it an API key.
    pub async fn tenant(&self, slug: &str, placement: &str, server: Option<&str>) -> TestTenant {
        let mut body = serde_json::json!({ "slug": slug, "name": format!("Tenant {slug}"), "plan": "pro", "placement": placement });
        if let Some(s) = server {
            body["db_server"] = Value::String(s.to_owned());
        }
        let t = self
            .admin(Method::POST, "/admin/v1/tenants", Some(body))
            .await;
        t.assert_status(201);
        let id = t.str("id");
        let k = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{id}/api-keys"),
                Some(serde_json::json!({ "name": "test" })),
            )
            .await;
        k.assert_status(201);
        TestTenant {
            id,
            slug: slug.to_owned(),
            key: k.str("key"),
        }
    }

    /// A tenant API request with the tenant's key and host.
    pub async fn api(
        &self,
        t: &TestTenant,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut r = Req::new(method, path).host(t.host()).bearer(&t.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }

    /// A superuser connection to the shared database.
    pub async fn shared_owner(&self) -> tokio_postgres::Client {
        connect(&clusters().primary.url(&self.shared_db)).await
    }

    /// A data-plane (`platform_app`) connection to a database on the primary cluster.
    pub async fn app_role(&self, database: &str) -> tokio_postgres::Client {
        let c = clusters();
        let config = tenancy::pg::app_config(
            &c.primary.url("postgres"),
            database,
            &tenancy::provision::app_role_password(&c.key),
        )
        .expect("config");
        tenancy::pg::connect(&config)
            .await
            .expect("connect as app role")
    }

    /// Drops this test's databases (call at the end of a passing test).
    pub async fn finish(self) {
        let Self {
            app,
            control_db,
            shared_db,
        } = self;
        app.tenancy.catalog.pool().close().await;
        drop(app);
        let admin = connect(&clusters().primary.url("postgres")).await;
        for db in [&control_db, &shared_db] {
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await
                .expect("drop test database");
        }
    }
}

/// The built-in tenant migrations plus the test-only ones in `tests/migrations/` up to
/// `version` (V2 adds a table and a nullable column; V3 fails where `test_fail_here` exists).
pub fn migrations_up_to(version: i64) -> Vec<refinery::Migration> {
    let mut all = tenancy::migrate::tenant_migrations();
    let extra = refinery::load_sql_migrations(test_migrations_dir()).expect("test migrations");
    all.extend(
        extra
            .into_iter()
            .filter(|m| i64::from(m.version()) <= version),
    );
    all.sort();
    all
}

/// `tests/migrations/`: migrations that only tests apply, standing for future releases.
pub fn test_migrations_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// Polls `check` until it returns true or `deadline` passes; returns how long it took.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
