//! Test-only tenant migrations (`tests/migrations/`), standing for future releases. They are
//! numbered relative to the built-in head at run time, so adding a real tenant migration needs no
//! change here or in the tests: [`ahead`] (head + 1) adds a table and a nullable column the way
//! `docs/migrations.md` allows; [`failing`] (head + 2) fails in a database that has a
//! `test_fail_here` table. Each logs its own version into `test_applications`.

use std::path::PathBuf;
use std::sync::OnceLock;

const AHEAD_SQL: &str = include_str!("../migrations/test_ahead.sql");
const FAILING_SQL: &str = include_str!("../migrations/test_fails_where_marked.sql");

/// The newest built-in tenant migration.
#[must_use]
pub fn head() -> i64 {
    tenancy::migrate::tenant_head_version()
}

/// The test migration standing for the next release (head + 1).
#[must_use]
pub fn ahead() -> i64 {
    head() + 1
}

/// The test migration that fails where marked (head + 2).
#[must_use]
pub fn failing() -> i64 {
    head() + 2
}

/// The test migrations as refinery names them, with their SQL.
fn rendered() -> [(String, String); 2] {
    [
        (
            format!("V{}__test_ahead", ahead()),
            AHEAD_SQL.replace("{version}", &ahead().to_string()),
        ),
        (
            format!("V{}__test_fails_where_marked", failing()),
            FAILING_SQL.replace("{version}", &failing().to_string()),
        ),
    ]
}

/// The built-in tenant migrations plus the test-only ones up to `version`.
pub fn migrations_up_to(version: i64) -> Vec<refinery::Migration> {
    let mut all = tenancy::migrate::tenant_migrations();
    for (name, sql) in rendered() {
        let m = refinery::Migration::unapplied(&name, &sql).expect("test migration");
        if i64::from(m.version()) <= version {
            all.push(m);
        }
    }
    all.sort();
    all
}

/// A directory with the test-only migrations as `V{n}__*.sql` files (for `platformctl
/// --extra-migrations`), written once per test process.
pub fn test_migrations_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Inside the directory of this process's clusters, which the watchdog removes at exit.
        let dir = std::env::temp_dir()
            .join(format!("platform-tests-{}", std::process::id()))
            .join("extra-migrations");
        std::fs::create_dir_all(&dir).expect("test migrations dir");
        for (name, sql) in rendered() {
            std::fs::write(dir.join(format!("{name}.sql")), sql).expect("write test migration");
        }
        dir
    })
    .clone()
}
