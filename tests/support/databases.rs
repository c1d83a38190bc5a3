//! Direct database access for assertions a user would notice in the data: superuser connections
//! to a tenant's database (shared or dedicated), the data-plane role, and schema versions.

use crate::app::TestApp;
use crate::clusters::{clusters, connect};
use crate::tenants::TestTenant;

impl TestApp {
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

    /// A superuser connection to the shared database.
    pub async fn shared_owner(&self) -> tokio_postgres::Client {
        connect(&clusters().primary.url(&self.shared_db)).await
    }

    /// A data-plane (`platform_app`) connection to a database on the primary cluster.
    pub async fn app_role(&self, database: &str) -> tokio_postgres::Client {
        let c = clusters();
        let config = tenancy::pg::app_config(&c.primary.url("postgres"), database, &c.app_password)
            .expect("config");
        tenancy::pg::connect(&config)
            .await
            .expect("connect as app role")
    }
}
