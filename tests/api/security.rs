//! Regression tests of the security review (issue 14), one file per slice: each test failed on
//! the code before its fix.

mod grants;
mod oracles;
mod sso_linking;
