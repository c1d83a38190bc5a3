//! Load benchmark of the platform against a bare axum + PostgreSQL baseline, run side by side in
//! alternation on the same machine (issue 9). A benchmark reports; it never fails CI and is not
//! part of `cargo test`. `cargo run --release -p bench -- --help` for the options; the
//! request-path micro-benchmark is `cargo bench -p bench`.

pub mod baseline;
pub mod load;
pub mod platform_server;
pub mod probe;
pub mod report;
pub mod run;
pub mod tokens;
pub mod world;
