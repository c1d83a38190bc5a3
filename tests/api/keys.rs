//! Envelope encryption: per-tenant data keys wrapped by the master key, purpose- and
//! tenant-bound ciphertexts, online KEK rotation, DEK rotation, crypto-shredding.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::Method;
use platform_tests::{Req, TestApp, clusters, connect};
use rand::RngCore;
use serde_json::json;
use tenancy::catalog::DB_URL_PURPOSE;
use tenancy::crypto::{KeyError, MasterKey, Scope};
use tenancy::ids::TenantId;

fn tid(id: &str) -> TenantId {
    TenantId::parse(id).expect("tenant id")
}

#[tokio::test]
async fn sealed_values_round_trip_and_refuse_tampering_and_moves() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha", "shared", None).await;
    let b = app.tenant("bravo", "shared", None).await;
    let keyring = &app.app.tenancy.keyring;
    let (sa, sb) = (Scope::Tenant(tid(&a.id)), Scope::Tenant(tid(&b.id)));

    let sealed = keyring
        .seal(sa, "sso.saml.sp_key", b"-----BEGIN KEY-----")
        .await
        .expect("seal");
    assert_eq!(
        &**keyring
            .open(sa, "sso.saml.sp_key", &sealed)
            .await
            .expect("open"),
        b"-----BEGIN KEY-----"
    );
    assert!(
        !sealed.windows(5).any(|w| w == b"BEGIN"),
        "ciphertext must not contain the plaintext"
    );

    // Moved to another tenant, or another field: refused, with the owner and purpose named.
    let moved = keyring
        .open(sb, "sso.saml.sp_key", &sealed)
        .await
        .expect_err("other tenant");
    assert!(
        matches!(moved, KeyError::Open { .. } | KeyError::NoKey { .. }),
        "{moved}"
    );
    assert!(
        moved.to_string().contains(&b.id) && moved.to_string().contains("sso.saml.sp_key"),
        "{moved}"
    );
    let other_field = keyring
        .open(sa, "db_url", &sealed)
        .await
        .expect_err("other purpose");
    assert!(
        matches!(other_field, KeyError::Open { .. }),
        "{other_field}"
    );

    // Any flipped bit (version, key id, nonce, ciphertext, tag) is refused.
    for i in 0..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x80;
        assert!(
            keyring.open(sa, "sso.saml.sp_key", &t).await.is_err(),
            "byte {i} tampered but opened"
        );
    }
    // Truncations and garbage are errors, never panics.
    for len in 0..sealed.len() {
        assert!(
            keyring
                .open(sa, "sso.saml.sp_key", &sealed[..len])
                .await
                .is_err()
        );
    }
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let mut junk = vec![0u8; (rng.next_u32() % 96) as usize];
        rng.fill_bytes(&mut junk);
        if let Some(first) = junk.first_mut() {
            *first = 2; // make it look like the current format, to reach the deeper checks
        }
        assert!(keyring.open(sa, "p", &junk).await.is_err());
    }
    app.finish().await;
}

#[tokio::test]
async fn every_tenant_gets_its_own_wrapped_data_key_and_dedicated_urls_are_sealed() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha", "shared", None).await;
    let d = app.tenant("delta", "dedicated", Some("second")).await;
    let cp = connect(&clusters().primary.url(&app.control_db)).await;
    for t in [&a, &d] {
        let rows = cp
            .query(
                "SELECT kek_id, wrapped FROM data_keys WHERE scope = $1",
                &[&t.id],
            )
            .await
            .expect("keys");
        assert_eq!(rows.len(), 1, "one data key for {}", t.slug);
        assert_eq!(rows[0].get::<_, String>(0), clusters().key.id());
    }
    let sealed: Option<Vec<u8>> = cp
        .query_one(
            "SELECT db_url_sealed FROM tenants WHERE slug = 'delta'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    let sealed = sealed.expect("a dedicated tenant's URL is sealed");
    assert!(!String::from_utf8_lossy(&sealed).contains("postgres://"));
    let url = app
        .app
        .tenancy
        .keyring
        .open_string(Scope::Tenant(tid(&d.id)), DB_URL_PURPOSE, &sealed)
        .await
        .expect("opens");
    assert!(url.contains("tenant_"));
    app.api(
        &d,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "works"})),
    )
    .await
    .assert_status(201);
    app.finish().await;
}

type Counters = (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<std::sync::atomic::AtomicBool>,
);

/// Creates projects for `t` on `server` until stopped (and at least 5), forcing every request
/// to open the tenant's secrets again (cached keys and pool dropped); counts `(failures, reads)`.
/// Returns how many it wrote.
async fn write_with_fresh_keys(
    server: Arc<platform::App>,
    t: platform_tests::TestTenant,
    i: usize,
    (failures, reads, stop): Counters,
) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) || n < 5 {
        server.tenancy.keyring.forget_cached();
        server.tenancy.dataplane.forget_tenant(tid(&t.id)).await;
        let r = Req::new(Method::POST, "/api/v1/projects")
            .host(t.host())
            .bearer(&t.key)
            .json(&json!({"name": format!("during-{i}-{n}")}))
            .send(&server.router)
            .await;
        if r.status.as_u16() != 201 {
            failures.fetch_add(1, Ordering::SeqCst);
            eprintln!("request failed during rotation: {}", r.text);
        }
        reads.fetch_add(1, Ordering::SeqCst);
        n += 1;
    }
    n
}

/// A server with only the new key opens everything (every write, before and during the
/// rotation); one with only the old key refuses to start, naming the key it lacks.
async fn the_old_key_can_be_retired(
    app: &TestApp,
    tenants: &[platform_tests::TestTenant],
    written: usize,
    new: &MasterKey,
    old: &MasterKey,
) {
    let retired = app
        .instance_with_keys(new, &[])
        .await
        .expect("the new key alone suffices");
    let mut total = 0;
    for t in tenants {
        let list = Req::new(Method::GET, "/api/v1/projects?limit=100")
            .host(t.host())
            .bearer(&t.key)
            .send(&retired.router)
            .await;
        list.assert_status(200);
        total += list.body["items"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(
        total,
        tenants.len() + written,
        "every write, before and during the rotation, is there"
    );
    let err = app
        .instance_with_keys(old, &[])
        .await
        .expect_err("old key alone must not start");
    assert!(format!("{err:#}").contains(new.id()), "{err:#}");
}

#[tokio::test]
async fn kek_rotation_while_requests_read_secrets_loses_nothing() {
    let app = TestApp::spawn().await;
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(
            app.tenant(
                &format!("ded-{i}"),
                "dedicated",
                Some(if i % 2 == 0 { "local" } else { "second" }),
            )
            .await,
        );
    }
    for t in &tenants {
        t.api
            .create_project(&format!("before-{}", t.slug))
            .await
            .assert_status(201);
    }
    let old = clusters().key.clone();
    let new = MasterKey::generate();
    // Step 1 of the procedure: servers know the new KEK as current and the old one as previous.
    let server = Arc::new(
        app.instance_with_keys(&new, std::slice::from_ref(&old))
            .await
            .expect("instance with both keys"),
    );
    let failures = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = tenants
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, t)| {
            let counters = (Arc::clone(&failures), Arc::clone(&reads), Arc::clone(&stop));
            tokio::spawn(write_with_fresh_keys(Arc::clone(&server), t, i, counters))
        })
        .collect();
    // Step 2: re-wrap every data key under the new KEK, while the requests run.
    let rewrapped = server.tenancy.keyring.rotate_kek().await.expect("rotate");
    assert!(rewrapped >= 5, "platform + 4 tenants, got {rewrapped}");
    stop.store(true, Ordering::SeqCst);
    let mut written = 0;
    for w in workers {
        written += w.await.expect("worker");
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed during KEK rotation"
    );
    assert!(reads.load(Ordering::SeqCst) >= 20);

    // Step 3: the old KEK is retired.
    let status = server.tenancy.keyring.status().await.expect("status");
    assert!(status.iter().all(|(id, _, _)| id == new.id()), "{status:?}");
    the_old_key_can_be_retired(&app, &tenants, written, &new, &old).await;
    app.finish().await;
}

#[tokio::test]
async fn dek_rotation_reseals_the_tenants_secrets() {
    let app = TestApp::spawn().await;
    let d = app.tenant("delta", "dedicated", Some("second")).await;
    let t = &app.app.tenancy;
    let tenant = t
        .catalog
        .tenant(tid(&d.id))
        .await
        .expect("catalog")
        .expect("tenant");
    let before = tenant.db_url_sealed.clone().expect("sealed");
    let v2 = t
        .provisioner
        .rotate_tenant_key(&tenant)
        .await
        .expect("rotate")
        .version;
    assert_eq!(v2, 2);
    let after = t
        .catalog
        .tenant(tid(&d.id))
        .await
        .expect("catalog")
        .expect("tenant")
        .db_url_sealed
        .expect("sealed");
    assert_ne!(before, after);
    assert_eq!(tenancy::crypto::keyring::sealed_version(&after), Some(2));
    let scope = Scope::Tenant(tid(&d.id));
    assert_eq!(
        t.keyring
            .open(scope, DB_URL_PURPOSE, &after)
            .await
            .expect("new opens"),
        t.keyring
            .open(scope, DB_URL_PURPOSE, &before)
            .await
            .expect("previous still opens")
    );
    // A second rotation destroys version 1: values sealed under it no longer open.
    let tenant = t
        .catalog
        .tenant(tid(&d.id))
        .await
        .expect("catalog")
        .expect("tenant");
    assert_eq!(
        t.provisioner
            .rotate_tenant_key(&tenant)
            .await
            .expect("rotate")
            .version,
        3
    );
    assert!(matches!(
        t.keyring.open(scope, DB_URL_PURPOSE, &before).await,
        Err(KeyError::NoKey { version: 1, .. })
    ));
    t.dataplane.forget_tenant(tid(&d.id)).await;
    app.api(
        &d,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "after rotation"})),
    )
    .await
    .assert_status(201);
    app.finish().await;
}

#[tokio::test]
async fn purging_a_tenant_shreds_its_key() {
    let app = TestApp::spawn().await;
    let d = app.tenant("delta", "dedicated", Some("second")).await;
    let t = &app.app.tenancy;
    let scope = Scope::Tenant(tid(&d.id));
    // A secret of the tenant and a copy of the catalog row, as an old backup would hold them.
    let secret = t
        .keyring
        .seal(scope, "stripe.webhook_secret", b"whsec_123")
        .await
        .expect("seal");
    let backup = t
        .catalog
        .tenant(tid(&d.id))
        .await
        .expect("catalog")
        .expect("tenant")
        .db_url_sealed
        .expect("sealed");
    app.admin(Method::DELETE, &format!("/admin/v1/tenants/{}", d.id), None)
        .await
        .assert_status(204);
    let tenant = t
        .catalog
        .tenant(tid(&d.id))
        .await
        .expect("catalog")
        .expect("tenant");
    t.provisioner.purge(&tenant).await.expect("purge");
    t.keyring.forget_cached();
    assert!(matches!(
        t.keyring
            .open(scope, "stripe.webhook_secret", &secret)
            .await,
        Err(KeyError::NoKey { .. })
    ));
    assert!(matches!(
        t.keyring.open(scope, DB_URL_PURPOSE, &backup).await,
        Err(KeyError::NoKey { .. })
    ));
    let cp = connect(&clusters().primary.url(&app.control_db)).await;
    let n: i64 = cp
        .query_one("SELECT count(*) FROM data_keys WHERE scope = $1", &[&d.id])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    app.finish().await;
}

#[tokio::test]
async fn a_wrong_master_key_fails_start_up_clearly() {
    let app = TestApp::spawn().await;
    let err = app
        .instance_with_keys(&MasterKey::generate(), &[])
        .await
        .expect_err("wrong key must not start");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(clusters().key.id()) && msg.contains("PLATFORM_MASTER_KEY"),
        "{msg}"
    );
    app.finish().await;
}
