//! Regression tests of the security review (issue 14), one file per area.

mod floods;
mod throttles;
