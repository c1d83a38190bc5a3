//! A platform instance over a fresh control-plane and shared database per test, cloned from the
//! templates, and further instances over the same databases (another server process, other
//! master keys, a newer build).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use tenancy::crypto::MasterKey;
use tenancy::embedded::Cluster;
use tenancy::settings::Settings;

use crate::clusters::{TEMPLATE_CONTROL, TEMPLATE_SHARED, TEMPLATE_TENANT, clusters, connect};
use crate::dns::TestDns;
use crate::requests::{Req, TestResponse};

pub const ADMIN_TOKEN: &str = "test-operator-token-0123456789abcdef";

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// How a dedicated tenant's database comes to be in this test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Provisioning {
    /// Cloned from the migrated tenant template (the migrations still run and find nothing to
    /// do): for tests that need a dedicated tenant but do not test provisioning.
    #[default]
    FromTemplate,
    /// Created empty and migrated, exactly as the product does: for tests of provisioning.
    Real,
}

/// A platform instance over a fresh control-plane and shared database.
pub struct TestApp {
    pub app: platform::App,
    pub control_db: String,
    pub shared_db: String,
    /// The TXT records the verified-domain check of every instance sees.
    pub dns: Arc<TestDns>,
    provisioning: Provisioning,
}

/// How to start a [`TestApp`]: more `PLATFORM_*` variables, real provisioning.
#[derive(Default)]
pub struct Spawn<'a> {
    env: &'a [(&'a str, &'a str)],
    provisioning: Provisioning,
}

impl<'a> Spawn<'a> {
    /// More `PLATFORM_*` variables (rate limits, trusted proxies).
    #[must_use]
    pub fn env(mut self, env: &'a [(&'a str, &'a str)]) -> Self {
        self.env = env;
        self
    }

    /// Dedicated databases are created and migrated as the product does it (no template).
    #[must_use]
    pub fn real_provisioning(mut self) -> Self {
        self.provisioning = Provisioning::Real;
        self
    }

    pub async fn spawn(self) -> TestApp {
        TestApp::spawn_from(self).await
    }
}

impl TestApp {
    /// A fresh instance: new databases cloned from the templates, both clusters registered as
    /// database servers (`local` and `second`), dedicated databases cloned from the tenant
    /// template.
    pub async fn spawn() -> Self {
        Spawn::default().spawn().await
    }

    /// [`Self::spawn`] with more `PLATFORM_*` variables (rate limits, trusted proxies).
    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Spawn::default().env(extra).spawn().await
    }

    /// [`Self::spawn`] with options.
    #[must_use]
    pub fn build<'a>() -> Spawn<'a> {
        Spawn::default()
    }

    async fn spawn_from(options: Spawn<'_>) -> Self {
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
            // Concurrent clones of one template can briefly find it in use: retry.
            let mut attempt = 0;
            while let Err(e) = admin
                .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE {template}"))
                .await
            {
                attempt += 1;
                assert!(attempt < 50, "clone template: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let dns = TestDns::new();
        let app = instance(
            &Databases {
                control: &control_db,
                shared: &shared_db,
                provisioning: options.provisioning,
                dns: &dns,
            },
            &c.key,
            &[],
            None,
            options.env,
        )
        .await
        .expect("start the instance");
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
            dns,
            provisioning: options.provisioning,
        }
    }

    fn databases(&self) -> Databases<'_> {
        Databases {
            control: &self.control_db,
            shared: &self.shared_db,
            provisioning: self.provisioning,
            dns: &self.dns,
        }
    }

    /// Another instance over the same databases with other master keys (current, previous).
    pub async fn instance_with_keys(
        &self,
        current: &MasterKey,
        previous: &[MasterKey],
    ) -> anyhow::Result<platform::App> {
        instance(&self.databases(), current, previous, None, &[]).await
    }

    /// Another instance over the same databases (as a second server process would be).
    pub async fn another_instance(&self) -> platform::App {
        instance(&self.databases(), &clusters().key, &[], None, &[])
            .await
            .expect("another instance")
    }

    /// Another instance whose code needs tenant schema `min` (a newer build, deployed before the
    /// fleet is migrated).
    pub async fn instance_requiring_schema(&self, min: i64) -> platform::App {
        instance(&self.databases(), &clusters().key, &[], Some(min), &[])
            .await
            .expect("instance requiring a schema")
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

    pub fn router(&self) -> &Router {
        &self.app.router
    }

    /// Sends a request to this instance.
    pub async fn send(&self, req: Req) -> TestResponse {
        req.send(&self.app.router).await
    }

    /// Drops this test's databases (call at the end of a passing test).
    pub async fn finish(self) {
        let Self {
            app,
            control_db,
            shared_db,
            ..
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

/// The databases an instance runs on.
struct Databases<'a> {
    control: &'a str,
    shared: &'a str,
    provisioning: Provisioning,
    dns: &'a Arc<TestDns>,
}

/// Starts an instance as the server does, with the test's provisioning and, for a newer build,
/// the minimum tenant schema it needs.
async fn instance(
    dbs: &Databases<'_>,
    key: &MasterKey,
    previous: &[MasterKey],
    min_schema: Option<i64>,
    extra: &[(&str, &str)],
) -> anyhow::Result<platform::App> {
    let c = clusters();
    let settings = settings_with(&c.primary, dbs.control, dbs.shared, key, previous, extra)?;
    let mut started = tenancy::bootstrap::start(&settings).await?;
    if let Some(min) = min_schema {
        started.tenancy.dataplane = started.tenancy.dataplane.with_min_schema(min);
    }
    if dbs.provisioning == Provisioning::FromTemplate {
        // Only the provisioner the admin API uses: promotions (the mover) keep the real path.
        started.tenancy.provisioner = started
            .tenancy
            .provisioner
            .with_tenant_db_template(TEMPLATE_TENANT);
    }
    platform::App::with_dns(started.tenancy, ADMIN_TOKEN, Arc::clone(dbs.dns) as _).await
}

pub(crate) fn settings(
    cluster: &Cluster,
    control: &str,
    shared: &str,
    key: &MasterKey,
) -> Settings {
    settings_with(cluster, control, shared, key, &[], &[]).expect("test settings")
}

fn settings_with(
    cluster: &Cluster,
    control: &str,
    shared: &str,
    key: &MasterKey,
    previous: &[MasterKey],
    extra: &[(&str, &str)],
) -> anyhow::Result<Settings> {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let control = cluster.url(control);
    let shared = cluster.url(shared);
    let key = key.to_base64();
    let previous = previous
        .iter()
        .map(MasterKey::to_base64)
        .collect::<Vec<_>>()
        .join(",");
    Ok(Settings::from_lookup(move |k| match k {
        "PLATFORM_DATABASE_URL" => Some(control.clone()),
        "PLATFORM_SHARED_DATABASE_URL" => Some(shared.clone()),
        "PLATFORM_MASTER_KEY" => Some(key.clone()),
        "PLATFORM_MASTER_KEY_PREVIOUS" => Some(previous.clone()),
        "PLATFORM_ADMIN_TOKEN" => Some(ADMIN_TOKEN.into()),
        // Small pools unless the caller sizes them (the benchmarks do).
        "PLATFORM_SHARED_POOL_SIZE" | "PLATFORM_DEDICATED_POOL_SIZE"
            if !extra.iter().any(|(name, _)| name == k) =>
        {
            Some(
                if k == "PLATFORM_SHARED_POOL_SIZE" {
                    "4"
                } else {
                    "2"
                }
                .into(),
            )
        }
        other => extra
            .iter()
            .find(|(name, _)| name == other)
            .map(|(_, v)| v.clone())
            // Limits out of the way unless a test sets them: tests run as fast as they can with
            // one key, and the harness's tenants are on a plan the catalog does not know.
            .or_else(|| {
                matches!(
                    other,
                    "PLATFORM_RATE_LIMIT_PRINCIPAL" | "PLATFORM_RATE_LIMIT_TENANT_DEFAULT"
                )
                .then(|| "1000000/1000000".to_owned())
            })
            // The identity-provider peers listen on loopback.
            .or_else(|| (other == "PLATFORM_SSO_ALLOW_PRIVATE_NETWORKS").then(|| "true".to_owned()))
            // Mail with no transport set goes to `<data dir>/mail`: out of the source tree.
            .or_else(|| {
                (other == "PLATFORM_DATA_DIR").then(|| {
                    std::env::temp_dir()
                        .join(format!("platform-tests-{}", std::process::id()))
                        .display()
                        .to_string()
                })
            }),
    })?)
}
