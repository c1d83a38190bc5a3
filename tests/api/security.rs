//! Regression tests for the holes of the security review (issue 14), one file per area.

mod audit;
mod moves;
mod tokens;
