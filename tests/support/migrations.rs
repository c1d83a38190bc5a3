//! Test-only tenant migrations (`tests/migrations/`), standing for future releases.

/// The built-in tenant migrations plus the test-only ones in `tests/migrations/` up to
/// `version` (V6 adds a table and a nullable column; V7 fails where `test_fail_here` exists).
pub fn migrations_up_to(version: i64) -> Vec<refinery::Migration> {
    // The test-only files are numbered head + 1 and head + 2 (V6, V7 while head is V5).
    assert_eq!(
        tenancy::migrate::tenant_head_version(),
        5,
        "a tenant migration was added: renumber tests/migrations/ to head + 1 and head + 2 and the versions in the tests that use them"
    );
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
