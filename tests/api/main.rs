//! Integration tests: the real router against real PostgreSQL clusters the harness starts.

mod admin;
mod bad_input;
mod domain;
mod isolation;
mod migrations;
mod routing;
