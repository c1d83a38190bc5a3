//! Regression tests of the security review (issue 14), one module per area.

mod floods;
mod grants;
mod keys;
mod oracles;
mod sso_linking;
mod throttles;
