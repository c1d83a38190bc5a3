//! Regression tests of the security review (issue 14), one module per area.

mod floods;
mod keys;
mod throttles;
