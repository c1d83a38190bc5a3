//! The SQL migrations are embedded at compile time (`refinery::embed_migrations!`): rebuild when
//! a migration is added or changed, not only when Rust code changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=../tenant-migrations");
}
