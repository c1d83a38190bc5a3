//! Integration tests: the real router against real PostgreSQL clusters the harness starts.

mod admin;
mod auth;
mod authz;
mod bench;
mod mfa;
mod bad_input;
mod domain;
mod isolation;
mod keys;
mod routing;
