//! Every benchmark of the workspace, each next to its baseline measured in the same run: the load
//! benchmark of the platform against a bare axum + PostgreSQL baseline (issue 9, the default
//! subcommand), rate-limit fairness and memory, fleet migrations, promotion under write load, and
//! password logins / refresh rotations. A benchmark reports; it never fails CI and is not part of
//! `cargo test`. `cargo run --release -p bench -- --help` for the subcommands; the request-path
//! micro-benchmark is `cargo bench -p bench`. Results and commands: `docs/benchmarks.md`.

pub mod auth;
pub mod baseline;
pub mod jobs;
pub mod jobs_profile;
pub mod limits;
pub mod load;
pub mod micro;
pub mod migrations;
pub mod otlp_sink;
pub mod output;
pub mod platform_server;
pub mod probe;
pub mod promote;
pub mod report;
pub mod run;
pub mod seal;
pub mod tokens;
pub mod world;
