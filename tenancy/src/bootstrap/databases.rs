//! Finding the databases start-up runs on: the external URLs from the settings, or the embedded
//! cluster (started or attached to, with its control and shared databases created), and the
//! master key that goes with them (from the settings or the data directory's key file).

use std::path::PathBuf;

use anyhow::Context as _;

use crate::crypto::{LocalKeys, MasterKey};
use crate::embedded::{Cluster, write_private};
use crate::pg;
use crate::settings::{DatabaseMode, Settings};

const CONTROL_DB: &str = "platform_control";
const SHARED_DB: &str = "platform_shared";

pub(super) type Databases = (String, String, Option<Cluster>, LocalKeys, Option<PathBuf>);

pub(super) async fn databases(settings: &Settings) -> anyhow::Result<Databases> {
    let previous = settings.previous_master_keys.clone();
    match &settings.database {
        DatabaseMode::External {
            control_plane_url,
            shared_url,
        } => {
            let key = settings
                .master_key
                .clone()
                .context("PLATFORM_MASTER_KEY is required with external databases")?;
            Ok((
                control_plane_url.expose().to_owned(),
                shared_url.expose().to_owned(),
                None,
                LocalKeys::new(key, previous),
                None,
            ))
        }
        DatabaseMode::Embedded => {
            let dir = settings.data_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || Cluster::ensure_running(&dir))
                .await
                .context("embedded PostgreSQL task")??;
            let fail = |c: &Cluster| {
                if c.started_here() {
                    c.stop().ok();
                }
            };
            let (key, key_file) = match &settings.master_key {
                Some(k) => (k.clone(), None),
                None => {
                    let path = settings.data_dir.join("master-key");
                    match load_or_create_key(&path) {
                        Ok(k) => (k, Some(path)),
                        Err(e) => {
                            fail(&cluster);
                            return Err(e);
                        }
                    }
                }
            };
            let created = async {
                let admin = pg::connect(&cluster.url("postgres").parse()?)
                    .await
                    .context("connecting to the embedded PostgreSQL")?;
                for db in [CONTROL_DB, SHARED_DB] {
                    let exists = admin
                        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
                        .await?
                        .is_some();
                    if !exists {
                        admin
                            .batch_execute(&format!("CREATE DATABASE {db}"))
                            .await?;
                    }
                }
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = created {
                fail(&cluster);
                return Err(e);
            }
            let (cp, shared) = (cluster.url(CONTROL_DB), cluster.url(SHARED_DB));
            Ok((
                cp,
                shared,
                Some(cluster),
                LocalKeys::new(key, previous),
                key_file,
            ))
        }
    }
}

fn load_or_create_key(path: &std::path::Path) -> anyhow::Result<MasterKey> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("{} is not a valid master key", path.display()));
    }
    let key = MasterKey::generate();
    write_private(path, &key.to_base64()).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}
