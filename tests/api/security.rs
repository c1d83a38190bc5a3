//! Regression tests of the security review (issue 14), one module per area.

mod audit;
mod floods;
mod grants;
mod keys;
mod moves;
mod oracles;
mod sso_linking;
mod sso_policy;
mod throttles;
mod tokens;
