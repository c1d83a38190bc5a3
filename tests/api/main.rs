//! Integration tests: the real router against real PostgreSQL clusters the harness starts.

mod admin;
mod audit;
mod auth;
mod authz;
mod bad_input;
mod billing;
mod domain;
mod email;
mod flags;
mod isolation;
mod jobs;
mod keys;
mod mfa;
mod migrations;
mod observability;
mod placement;
mod ratelimit;
mod routing;
mod security;
mod sso;
mod transactions;
