//! Regression tests of the security review (issue 14), one module per slice.

mod audit;
mod keys;
mod moves;
mod tokens;
