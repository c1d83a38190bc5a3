//! Hole 1: rotating a data key destroyed live secrets. Every binary column of both schemas must
//! be classified by the registry of sealed values, and two rotations in a row (tenant and
//! platform), with a writer sealing values meanwhile, must leave every secret readable: TOTP
//! logins, an OIDC login with a client secret, JWT signing and verification, a dedicated tenant's
//! data, and new processes (a `platform::App`, and the start-up every `platformctl` run does).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use identity::mfa::code_at;
use platform_tests::{Client, PASSWORD, TestApp, TestTenant, TestUser, clusters, connect};
use serde_json::json;
use tenancy::crypto::registry::{self, Database};

use crate::sso::{oidc_connection, oidc_login, peer_for};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `(table, column)` of every binary column, and of every column named like a sealed one.
async fn binary_columns(url: &str) -> Vec<(String, String)> {
    connect(url)
        .await
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND (data_type = 'bytea' OR column_name LIKE '%sealed%')
             ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn every_sealed_column_of_both_schemas_is_in_the_registry() {
    let app = TestApp::spawn().await;
    let c = clusters();
    for (database, url) in [
        (Database::Catalog, c.primary.url(&app.control_db)),
        (Database::Tenant, c.primary.url(&app.shared_db)),
    ] {
        let found = binary_columns(&url).await;
        assert!(!found.is_empty(), "{database:?}: no binary column at all?");
        let unclassified: Vec<_> = found
            .iter()
            .filter(|(t, col)| !registry::is_classified(database, t, col))
            .collect();
        assert!(
            unclassified.is_empty(),
            "{database:?}: binary columns neither in registry::SEALED nor in registry::NOT_SEALED \
             (a new secret that rotation would destroy?): {unclassified:?}"
        );
        // And the registry names only columns that exist, so no entry silently walks nothing.
        for col in registry::columns(database) {
            assert!(
                found.iter().any(|(t, c)| t == col.table && c == col.column),
                "{database:?}: the registry names {} which the schema lacks",
                col.name()
            );
        }
    }
    app.finish().await;
}

/// Enrols `u` in TOTP; returns the secret. The current step's code is spent by the confirmation.
async fn enrol(u: &TestUser) -> String {
    let e = u.api.enrol_totp().await;
    e.assert_status(200);
    let secret = e.str("secret");
    let code = code_at(&secret, now()).expect("code");
    u.api.confirm_totp(&code).await.assert_status(200);
    secret
}

/// A full TOTP login (password, then the next step's code); returns the access token.
async fn totp_login(anon: &Client, email: &str, secret: &str) -> String {
    let l = anon.login(email, PASSWORD).await;
    l.assert_status(200);
    assert_eq!(l.body["mfa_required"], json!(true), "{}", l.text);
    let code = code_at(secret, now() + 30).expect("code");
    let v = anon.verify_mfa(&l.str("mfa_token"), &code).await;
    assert_eq!(
        v.status, 200,
        "TOTP login after two rotations: {} {}",
        v.status, v.text
    );
    v.str("access_token")
}

/// Refreshes in a loop until stopped (each refresh seals the successor with the tenant's key);
/// counts the failures. Returns how many refreshes succeeded.
fn writer(
    anon: Client,
    refresh: String,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut token = refresh;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = anon.refresh(&token).await;
            if r.status != 200 {
                failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("refresh during rotation: {} {}", r.status, r.text);
                return n;
            }
            token = r.str("refresh_token");
            n += 1;
        }
        n
    })
}

async fn rotate_tenant(app: &TestApp, t: &TestTenant) {
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant_by_slug(&t.slug)
        .await
        .expect("catalog")
        .expect("tenant");
    let r = app
        .app
        .tenancy
        .provisioner
        .rotate_tenant_key(&tenant)
        .await
        .expect("rotate tenant key");
    assert_eq!(r.unreadable(), 0, "{r:?}");
}

async fn rotate_platform(app: &TestApp) {
    let r = app
        .app
        .tenancy
        .provisioner
        .rotate_platform_key()
        .await
        .expect("rotate platform key");
    assert_eq!(r.unreadable(), 0, "{r:?}");
}

#[tokio::test]
async fn two_rotations_under_load_leave_every_secret_readable() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme", "shared", None).await;
    let delta = app.tenant("delta", "dedicated", Some("second")).await;
    let owner = app.user(&acme, "owner@acme.test", "owner").await;
    let admin = app.user(&acme, "admin@acme.test", "admin").await;
    let dan = app.user(&delta, "dan@delta.test", "owner").await;
    let acme_secret = enrol(&owner).await;
    let delta_secret = enrol(&dan).await;
    let peer = peer_for(&acme).await;
    let conn = oidc_connection(&app, &acme, &admin, &peer).await;
    let conn = conn["id"].as_str().expect("id").to_owned();
    delta.api.create_project("before").await.assert_status(201);

    // Writers that seal with the tenants' keys while the keys rotate.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let writers = [
        writer(
            acme.anon.clone(),
            admin.refresh.clone(),
            stop.clone(),
            failures.clone(),
        ),
        writer(
            delta.anon.clone(),
            dan.refresh.clone(),
            stop.clone(),
            failures.clone(),
        ),
    ];
    for _ in 0..2 {
        rotate_tenant(&app, &acme).await;
        rotate_tenant(&app, &delta).await;
        rotate_platform(&app).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.await.expect("writer") > 0, "a writer made no progress");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "a refresh failed during rotation"
    );
    app.app.tenancy.keyring.forget_cached();

    // TOTP (shared and dedicated), then the dedicated tenant's data.
    let access = totp_login(&acme.anon, &owner.email, &acme_secret).await;
    acme.as_bearer(&access).me().await.assert_status(200);
    let delta_access = totp_login(&delta.anon, &dan.email, &delta_secret).await;
    let delta_id = tenancy::ids::TenantId::parse(&delta.id).expect("id");
    app.app.tenancy.dataplane.forget_tenant(delta_id).await;
    delta.api.projects().await.assert_status(200);
    delta.api.create_project("after").await.assert_status(201);
    // OIDC with the sealed client secret.
    let (r, _) = oidc_login(&app, &acme, &conn, "alice").await;
    assert_eq!(r.status, 200, "OIDC login after two rotations: {}", r.text);

    // A new server process starts, verifies tokens signed before, signs new ones, and reaches
    // the dedicated tenant's database.
    let again = app.another_instance().await;
    let on = |t: &TestTenant, bearer: Option<&str>| {
        Client::new(&again.router, Some(t.host()), bearer.map(str::to_owned))
    };
    on(&acme, Some(&access)).me().await.assert_status(200);
    let fresh = on(&acme, None).login(&admin.email, PASSWORD).await;
    fresh.assert_status(200);
    on(&acme, Some(&fresh.str("access_token")))
        .me()
        .await
        .assert_status(200);
    on(&delta, Some(&delta_access))
        .projects()
        .await
        .assert_status(200);
    on(&delta, Some(&delta.key))
        .create_project("new process")
        .await
        .assert_status(201);

    // What `platformctl` does on every run: start from the environment.
    let env: HashMap<String, String> = app.platform_env().into_iter().collect();
    let settings =
        tenancy::settings::Settings::from_lookup(|k| env.get(k).cloned()).expect("settings");
    let started = tenancy::bootstrap::start(&settings)
        .await
        .expect("platformctl starts");
    let status = started
        .tenancy
        .provisioner
        .sealed_status(None)
        .await
        .expect("status");
    assert!(status.iter().all(|c| c.lost == 0), "{status:?}");
    drop(started);
    drop(again);
    app.finish().await;
}
